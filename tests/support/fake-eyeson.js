// The one stand-in for the eyeson JS SDK singleton in the browser tests:
// tests/web.rs and tests/presence.rs import it (`#[wasm_bindgen(module =
// "/tests/support/fake-eyeson.js")]`); the pages in tests/pages load it as
// /fake/eyeson.js, a classic script made from this file by
// tests/support/browser.mjs `fakeEyesonScript` that sets window.eyeson =
// { __esModule: true, default: new FakeEyeson() } (the real UMD bundle's
// global) while the page is parsed. So this file holds one `export` (the
// class), no imports. The real SDK itself runs in tests/pages/real-sdk.html
// and tests/e2e.
//
// It mirrors what the real SDK (npm `eyeson` 1.9.6) does, as read in
// node_modules/eyeson/src; tests/fake-eyeson.test.mjs runs one script of
// calls on this fake and on the real SDK (dist/eyeson.js) in one page and
// requires the same observations (all of the below but room_setup):
// - onEvent(fn) (eyeson.js `onEvent` -> EventHandler.js `onReceive`): a
//   non-function is refused with a logged error, nothing thrown; listeners
//   live in an array, a listener already there is not added twice.
// - offEvent(fn) (EventHandler.js `removeListener`): removes `fn` by building
//   a new array, so a dispatch under way still reaches the listeners it
//   started with; offEvent() WITHOUT an argument empties the array in place:
//   every listener goes, the SDK's own (start()'s joinOnConnect) included.
//   The fake counts such calls in `offEventAllCalls`, for the tests to assert
//   that the guard never makes one.
// - Delivery (events/PublicEvent.js, events/ForwardEvent.js `handle`):
//   `listeners.forEach(callback => callback(msg))`, synchronous, in order,
//   without try/catch: a throwing listener's exception propagates to whoever
//   dispatched the event and the later listeners miss it. `emit(event)` here
//   is that delivery (what the SDK's connections hand to EventHandler.send).
// - room_setup / room_ready (events/RoomReceivedEvent.js): the listeners get
//   the event first; then, when `content.ready === true`, `eyeson.room` is
//   `content.room`, `eyeson.user` is `content.user` with the attributes of
//   ComApi.js `addUserAttributes` (id, apiId, clientId = the signaling
//   options' client_id, sipId, largeAvatar), `eyeson.links` is
//   `content.links`. Before that, `room`, `user` and `links` are `{}`
//   (eyeson.js constructor).
// - send(msg) (eyeson.js `send` -> EventHandler.js `send`): synchronous; sets
//   `msg._src = "client"` on the caller's object; lets exceptions through.
//   `session_termination` (events/SessionTerminationEvent.js) is
//   `this.context._eyeson.destroy()`: `_eyeson` is only set by
//   start()/connect() (eyeson.js `prepareConnection`), and destroy() replaces
//   the EventHandler with a fresh one whose `_eyeson` is null. So the first
//   session_termination after start() ends the session and drops every
//   listener at once (no event reaches them afterwards; a dispatch already
//   under way finishes over its own array), and one sent before start(), or
//   after the session ended, throws a TypeError (reading 'destroy' of null).
//   Types the SDK forwards (ForwardEvent: voice_activity, options_update, …)
//   reach the listeners; any other type the client sends is not delivered
//   (PublicEvent drops `_src: "client"`).
// - destroy() (eyeson.js `destroy`): safe at any time; a fresh EventHandler,
//   no listeners, not started.
//
// A `new FakeEyeson()` is an SDK whose start(accessKey) has run (connected,
// as the guard meets it in an app); `new FakeEyeson({ started: false })` is
// one on which start() was never called. What the fake does not do: network,
// media, the start sequence's own events (tests emit the events they need).
// For the tests it records every send() call in `sent` (a copy of the
// message as the guard passed it, before `_src` is added), whether the SDK
// threw or not.

// EventHandler.js: the types whose handler is ForwardEvent.
const FORWARDED = new Set([
  "stfu", "playback_update", "capture_error", "voice_activity", "options_update",
  "ext_not_installed", "broadcasts_update", "presentation_ended",
]);

function handler(eyeson) {
  return { listeners: [], eyeson };
}

export class FakeEyeson {
  constructor({ started = true } = {}) {
    this.room = {};
    this.user = {};
    this.links = {};
    this.sent = [];
    this.offEventAllCalls = 0;
    this.core = { eventHandler: handler(null) };
    if (started) this.start("fake-access-key");
  }

  // eyeson.js `start` -> `connect` -> `prepareConnection`, which sets the
  // handler's `eyeson` (without fetching a room or joining: tests emit the
  // events they need).
  start(_accessKey) {
    this.core.eventHandler.eyeson = this;
  }

  onEvent(listener) {
    if (typeof listener !== "function") {
      console.error(`A listener to eyeson events has to be of type function. The argument passed to onEvent is of type ${typeof listener}.`);
      return;
    }
    const h = this.core.eventHandler;
    if (!h.listeners.includes(listener)) h.listeners.push(listener);
  }

  offEvent(listener) {
    const h = this.core.eventHandler;
    if (!listener) {
      this.offEventAllCalls += 1;
      h.listeners.length = 0;
      return;
    }
    h.listeners = h.listeners.filter((l) => l !== listener);
  }

  destroy() {
    this.core.eventHandler = handler(null);
  }

  send(msg) {
    this.sent.push(msg !== null && typeof msg === "object" ? { ...msg } : msg);
    msg._src = "client";
    const h = this.core.eventHandler;
    if (msg.type === "session_termination") {
      h.eyeson.destroy(); // a TypeError when not started or already ended, as in the SDK
    } else if (FORWARDED.has(msg.type)) {
      h.listeners.forEach((callback) => callback(msg));
    }
  }

  // The SDK delivering an event to its listeners.
  emit(event) {
    const h = this.core.eventHandler;
    h.listeners.forEach((callback) => callback(event));
    if (event && (event.type === "room_setup" || event.type === "room_ready") && event.content && event.content.ready === true) {
      const { room, user, links, signaling } = event.content;
      const eyeson = h.eyeson;
      if (!eyeson) throw new TypeError("Cannot set properties of null (setting 'room')");
      eyeson.room = room;
      eyeson.user = Object.assign(user, {
        id: user.id,
        apiId: user.id,
        clientId: signaling.options.client_id,
        sipId: signaling.options.client_id,
        largeAvatar: `${user.avatar}?size=large`,
      });
      eyeson.links = links;
    }
  }

  terminations() {
    return this.sent.filter((m) => m && m.type === "session_termination").length;
  }

  listenerCount() {
    return this.core.eventHandler.listeners.length;
  }
}
