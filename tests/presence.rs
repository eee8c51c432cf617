//! Browser tests of presence beyond input events: the local user speaking,
//! being alone, other tabs, the OS (IdleDetector), the meeting's hard
//! deadline from the hard-limit service, and the `text` option.
//!
//! The SDK (the tests' one fake, tests/support/fake-eyeson.js, which behaves
//! like the real one), `fetch` and `IdleDetector` are stand-ins here, each
//! shaped like the real one where the guard depends on it (the real SDK runs
//! in tests/e2e, the real IdleDetector in tests/system-idle.test.mjs). Every
//! wait is for a condition, with a bound.
#![cfg(target_arch = "wasm32")]

use eyeson_guard::{share_activity, EyesonSdkArg, InactivityGuard, OptionsArg};
use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

#[path = "support/wasm.rs"]
mod support;
use support::{eventually, get, obj, pause};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support/fake-eyeson.js")]
extern "C" {
    type FakeEyeson;
    #[wasm_bindgen(constructor)]
    fn new() -> FakeEyeson;
    #[wasm_bindgen(method)]
    fn emit(this: &FakeEyeson, event: &JsValue);
    #[wasm_bindgen(method)]
    fn terminations(this: &FakeEyeson) -> u32;
}

#[wasm_bindgen(inline_js = r#"
// What the SDK delivers (see eyeson's RoomReceivedEvent / VoiceActivityEvent).
export function roomSetup(room, user, client) {
  return { type: "room_setup", content: { ready: true, room: { id: room, guest_token: guestToken(room) }, user: { id: user }, signaling: { options: { client_id: client } } } };
}
export function guestToken(room) { return `gt-${room}`; }
export function voice(userId, clientId, on) {
  return { type: "voice_activity", on, user: { id: userId, apiId: userId, clientId } };
}
export function mousemove() { document.dispatchEvent(new MouseEvent("mousemove", { movementX: 3, bubbles: true })); }

// Another tab of this origin.
const CHANNEL = "eyeson-guard:activity";
export class OtherTab {
  constructor() { this.got = []; this.ch = new BroadcastChannel(CHANNEL); this.ch.onmessage = (e) => this.got.push([Date.now(), e.data]); }
  post(at) { this.ch.postMessage(at); }
  received() { return this.got.length; }
  minGap() { let g = Infinity; for (let i = 1; i < this.got.length; i++) g = Math.min(g, this.got[i][0] - this.got[i - 1][0]); return g; }
  close() { this.ch.close(); }
}
// Open BroadcastChannels of the guard (not counting the tests' own).
let open = 0;
const Native = BroadcastChannel;
window.BroadcastChannel = class extends Native {
  constructor(name) { super(name); if (!new Error().stack.includes("OtherTab")) { open++; this.counted = true; } }
  close() { if (this.counted && !this.closed) { open--; this.closed = true; } super.close(); }
};
export function openChannels() { return open; }

// Document listeners still attached (as in web.rs).
const added = [];
const originalAdd = EventTarget.prototype.addEventListener;
const originalRemove = EventTarget.prototype.removeEventListener;
const cap = (o) => typeof o === "boolean" ? o : !!(o && o.capture);
EventTarget.prototype.addEventListener = function (type, fn, opts) {
  added.push({ target: this, type, fn, capture: cap(opts), removed: false });
  return originalAdd.call(this, type, fn, opts);
};
EventTarget.prototype.removeEventListener = function (type, fn, opts) {
  for (const l of added) if (l.target === this && l.type === type && l.fn === fn && l.capture === cap(opts)) l.removed = true;
  return originalRemove.call(this, type, fn, opts);
};
export function listenerMark() { return added.length; }
export function liveListenersSince(mark) {
  return added.slice(mark).filter((l) => (l.target === document || l.target === window || l.target instanceof Native) && !l.removed).length;
}

// IdleDetector as Chromium implements it: start() needs the permission,
// then `change` events carry userState / screenState.
export class IdleWorld {
  constructor(permission) {
    this.permission = permission; this.detectors = []; const world = this;
    window.IdleDetector = class extends EventTarget {
      constructor() { super(); this.userState = null; this.screenState = null; world.detectors.push(this); }
      static async requestPermission() { return world.permission; }
      async start(options) {
        if (world.permission !== "granted") throw new DOMException("Idle detection permission denied", "NotAllowedError");
        if (!(options.threshold >= 60000)) throw new TypeError("Minimum threshold is 1 minute.");
        this.signal = options.signal;
        this.userState = world.user || "active"; this.screenState = world.screen || "unlocked";
      }
    };
  }
  set(user, screen) {
    this.user = user; this.screen = screen;
    for (const d of this.detectors) {
      if (d.signal && d.signal.aborted) continue;
      d.userState = user; d.screenState = screen; d.dispatchEvent(new Event("change"));
    }
  }
  aborted() { return this.detectors.every((d) => !d.signal || d.signal.aborted); }
  remove() { delete window.IdleDetector; }
}

// The hard-limit service as `fetch` sees it: like the real one, it shows a
// meeting only to the room's guest token in X-Eyeson-Guest-Token, and
// answers as for an unknown room otherwise (its alone deadline: tests/alone.rs).
export class Service {
  constructor() {
    this.urls = []; this.tokens = []; this.deadline = null; this.status = 200; this.original = window.fetch;
    window.fetch = async (url, init) => {
      this.urls.push(String(url));
      const token = new Headers(init && init.headers).get("x-eyeson-guest-token");
      this.tokens.push(token);
      const room = decodeURIComponent(String(url).split("/meetings/")[1]);
      const status = token === guestToken(room) ? this.status : 404;
      if (status !== 200) return new Response(JSON.stringify({ error: "no open meeting in this room" }), { status });
      return new Response(JSON.stringify({ room_id: "r1", started_at: new Date().toISOString(), deadline: new Date(this.deadline).toISOString(), state: "running" }), { headers: { "content-type": "application/json" } });
    };
  }
  calls() { return this.urls.length; }
  url(i) { return this.urls[i]; }
  token(i) { return this.tokens[i]; }
  restore() { window.fetch = this.original; }
}
const warnings = [];
const originalWarn = console.warn;
console.warn = (...a) => { warnings.push(a.join(" ")); originalWarn.apply(console, a); };
export function warningCount(needle) { return warnings.filter((w) => w.includes(needle)).length; }

export function notice() {
  const host = document.querySelector("[data-eyeson-guard-notice]");
  if (!host) return null;
  const root = host.shadowRoot;
  const status = root.querySelector("[role=status]");
  return { visible: root.querySelector("[aria-hidden=true]").textContent, spoken: status.textContent, live: status.getAttribute("aria-live"), focused: document.activeElement === host, count: document.querySelectorAll("[data-eyeson-guard-notice]").length };
}
export function dialogTexts() {
  const host = document.querySelector("[data-eyeson-guard-dialog]");
  if (!host) return null;
  const root = host.shadowRoot;
  return [root.querySelector("h2").textContent, root.querySelector("p").textContent, root.querySelector("button").textContent];
}
export function log(into) { return (x) => into.push(x === undefined ? "-" : x); }
export function presenceText(p) { return `${p.speaking},${p.alone},${p.systemIdle}`; }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = roomSetup)]
    fn room_setup(room: &str, user: &str, client: &str) -> JsValue;
    fn voice(user: &str, client: &str, on: bool) -> JsValue;
    fn mousemove();

    type OtherTab;
    #[wasm_bindgen(constructor)]
    fn new() -> OtherTab;
    #[wasm_bindgen(method)]
    fn post(this: &OtherTab, at: f64);
    #[wasm_bindgen(method)]
    fn received(this: &OtherTab) -> u32;
    #[wasm_bindgen(method, js_name = minGap)]
    fn min_gap(this: &OtherTab) -> f64;
    #[wasm_bindgen(method)]
    fn close(this: &OtherTab);
    #[wasm_bindgen(js_name = openChannels)]
    fn open_channels() -> i32;
    #[wasm_bindgen(js_name = listenerMark)]
    fn listener_mark() -> u32;
    #[wasm_bindgen(js_name = liveListenersSince)]
    fn live_listeners_since(mark: u32) -> u32;

    type IdleWorld;
    #[wasm_bindgen(constructor)]
    fn new(permission: &str) -> IdleWorld;
    #[wasm_bindgen(method)]
    fn set(this: &IdleWorld, user: &str, screen: &str);
    #[wasm_bindgen(method)]
    fn aborted(this: &IdleWorld) -> bool;
    #[wasm_bindgen(method)]
    fn remove(this: &IdleWorld);

    type Service;
    #[wasm_bindgen(constructor)]
    fn new() -> Service;
    #[wasm_bindgen(method, setter)]
    fn set_deadline(this: &Service, at: f64);
    #[wasm_bindgen(method, setter)]
    fn set_status(this: &Service, status: u16);
    #[wasm_bindgen(method)]
    fn calls(this: &Service) -> u32;
    #[wasm_bindgen(method)]
    fn url(this: &Service, i: u32) -> String;
    #[wasm_bindgen(method)]
    fn token(this: &Service, i: u32) -> Option<String>;
    #[wasm_bindgen(method)]
    fn restore(this: &Service);
    #[wasm_bindgen(js_name = warningCount)]
    fn warning_count(needle: &str) -> u32;

    fn notice() -> JsValue;
    #[wasm_bindgen(js_name = dialogTexts)]
    fn dialog_texts() -> JsValue;
    fn log(into: &Array) -> JsValue;
    #[wasm_bindgen(js_name = presenceText)]
    fn presence_text(p: &JsValue) -> String;
}

fn event(pairs: &[(&str, JsValue)]) -> JsValue {
    obj(pairs)
}

fn guard(sdk: &FakeEyeson, options: &[(&str, JsValue)]) -> InactivityGuard {
    let sdk: &EyesonSdkArg = sdk.unchecked_ref();
    InactivityGuard::new(sdk, Some(obj(options).unchecked_into::<OptionsArg>()))
        .expect("valid options")
}

fn state(g: &InactivityGuard) -> String {
    JsValue::from(g.state()).as_string().unwrap()
}

/// `guard.presence` as "speaking,alone,systemIdle".
fn presence_of(g: &InactivityGuard) -> String {
    presence_text(&g.presence().into())
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// A joined guard: room r1, user u1 with client id c1.
fn joined(sdk: &FakeEyeson, options: &[(&str, JsValue)]) -> InactivityGuard {
    let g = guard(sdk, options);
    sdk.emit(&room_setup("r1", "u1", "c1"));
    sdk.emit(&event(&[("type", "accept".into())]));
    assert_eq!(state(&g), "active");
    g
}

fn quiet(timeout: u32, prompt: u32) -> Vec<(&'static str, JsValue)> {
    vec![
        ("timeoutMs", timeout.into()),
        ("promptMs", prompt.into()),
        ("dialog", false.into()),
        ("crossTab", false.into()),
    ]
}

#[wasm_bindgen_test]
async fn the_local_user_speaking_holds_the_deadline_across_it() {
    let sdk = FakeEyeson::new();
    let g = joined(&sdk, &quiet(400, 0));
    sdk.emit(&voice("u1", "c1", true));
    assert_eq!(presence_of(&g), "true,false,off");
    // Speech lasting three timeouts: nothing ends, no timer runs down.
    pause(1_200).await;
    assert_eq!(state(&g), "active");
    assert_eq!(g.remaining_ms(), 400.0, "held: the full timeout remains");
    let stopped = now();
    sdk.emit(&voice("u1", "c1", false));
    assert_eq!(presence_of(&g), "false,false,off");
    assert!(eventually(3_000, || state(&g) == "terminated").await);
    assert!(
        now() - stopped >= 400.0,
        "the end of speech counts as activity: a full timeout from there"
    );
    assert_eq!(sdk.terminations(), 1);
}

#[wasm_bindgen_test]
async fn other_participants_speech_never_counts() {
    let sdk = FakeEyeson::new();
    let g = joined(&sdk, &quiet(300, 0));
    let started = now();
    sdk.emit(&voice("u2", "c2", true));
    assert_eq!(presence_of(&g), "false,false,off");
    assert!(eventually(3_000, || state(&g) == "terminated").await);
    assert!(now() - started < 3_000.0);
}

#[wasm_bindgen_test]
async fn speech_ends_a_prompt_and_speech_false_ignores_it() {
    let sdk = FakeEyeson::new();
    let log_ = Array::new();
    let mut opts = quiet(1_000, 900);
    opts.push(("onActive", log(&log_)));
    let g = joined(&sdk, &opts);
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    // The real SDK's user for the local speaker: id = client id.
    sdk.emit(&voice("c1", "c1", true));
    assert_eq!(state(&g), "active");
    assert_eq!(log_.length(), 1, "onActive once");
    g.stop();

    let sdk = FakeEyeson::new();
    let mut opts = quiet(300, 0);
    opts.push(("speech", false.into()));
    let g = joined(&sdk, &opts);
    sdk.emit(&voice("u1", "c1", true));
    assert_eq!(presence_of(&g), "false,false,off");
    assert!(eventually(3_000, || state(&g) == "terminated").await);
}

#[wasm_bindgen_test]
async fn a_guard_created_after_the_join_knows_the_user_from_the_sdk() {
    let sdk = FakeEyeson::new();
    // The join happened before the guard existed: the SDK keeps the user
    // (with its clientId) and the room from room_setup in `eyeson.user`/`room`.
    sdk.emit(&room_setup("r1", "u1", "c1"));
    let g = guard(&sdk, &quiet(300, 0));
    g.start().unwrap();
    sdk.emit(&voice("c1", "c1", true));
    assert_eq!(presence_of(&g), "true,false,off");
    g.stop();
}

#[wasm_bindgen_test]
async fn alone_the_shorter_limit_applies_and_a_joiner_restores_the_normal_one() {
    let sdk = FakeEyeson::new();
    let mut opts = quiet(20_000, 0);
    opts.push(("aloneTimeoutMs", 400.into()));
    let g = joined(&sdk, &opts);
    sdk.emit(&event(&[("type", "podium".into()), ("solo", true.into())]));
    assert_eq!(presence_of(&g), "false,true,off");
    assert!(g.remaining_ms() <= 400.0);
    // Someone joins before the alone limit passes.
    sdk.emit(&event(&[("type", "podium".into()), ("solo", false.into())]));
    assert!(g.remaining_ms() > 19_000.0, "the normal timeout again");
    pause(600).await;
    assert_eq!(state(&g), "active");
    // Flapping, ending solo: the alone limit from the last activity.
    for solo in [true, false, true, false, true] {
        sdk.emit(&event(&[("type", "podium".into()), ("solo", solo.into())]));
    }
    assert!(eventually(5_000, || state(&g) == "terminated").await);
    assert_eq!(sdk.terminations(), 1);
}

#[wasm_bindgen_test]
async fn becoming_alone_after_a_long_quiet_asks_first() {
    let sdk = FakeEyeson::new();
    let prompts = Array::new();
    let mut opts = quiet(20_000, 10_000);
    opts.push(("aloneTimeoutMs", 400.into()));
    opts.push(("onPrompt", log(&prompts)));
    let g = joined(&sdk, &opts);
    pause(500).await; // quiet for longer than the alone limit
    let solo_at = now();
    sdk.emit(&event(&[("type", "podium".into()), ("solo", true.into())]));
    assert_ne!(state(&g), "terminated", "never ended at once");
    assert!(eventually(2_000, || state(&g) == "prompted").await);
    // The alone prompt window is at most half of the alone timeout.
    assert!(prompts.get(0).as_f64().unwrap() <= 200.0);
    assert!(eventually(3_000, || state(&g) == "terminated").await);
    assert!(now() - solo_at >= 200.0, "the whole prompt window first");
}

#[wasm_bindgen_test]
async fn another_tabs_activity_counts_unless_cross_tab_is_off() {
    let tab = OtherTab::new();
    let sdk = FakeEyeson::new();
    let mut opts = quiet(400, 0);
    opts[3] = ("crossTab", true.into());
    let g = joined(&sdk, &opts);
    for _ in 0..12 {
        tab.post(now());
        pause(100).await;
    }
    assert_eq!(state(&g), "active", "1.2 s kept alive by the other tab");
    // A time in the future counts as now at most.
    tab.post(now() + 1e9);
    pause(50).await;
    assert!(g.remaining_ms() <= 400.0);
    assert!(eventually(3_000, || state(&g) == "terminated").await);

    let sdk = FakeEyeson::new();
    let g = joined(&sdk, &quiet(400, 0));
    let ended = eventually(3_000, || {
        tab.post(now());
        state(&g) == "terminated"
    })
    .await;
    assert!(ended, "crossTab: false ignores other tabs");
    tab.close();
}

#[wasm_bindgen_test]
async fn a_guard_posts_its_activity_at_most_once_a_second() {
    let tab = OtherTab::new();
    let sdk = FakeEyeson::new();
    let mut opts = quiet(60_000, 0);
    opts[3] = ("crossTab", true.into());
    let mark = listener_mark();
    let before = open_channels();
    let g = joined(&sdk, &opts);
    assert_eq!(open_channels(), before + 1);
    let start = now();
    while now() - start < 2_300.0 {
        mousemove();
        pause(20).await;
    }
    let n = tab.received();
    assert!((2..=3).contains(&n), "{n} posts in 2.3 s of movement");
    assert!(tab.min_gap() >= 900.0, "posts {} ms apart", tab.min_gap());
    g.stop();
    assert_eq!(open_channels(), before, "stop closes the channel");
    assert_eq!(live_listeners_since(mark), 0);
    tab.close();
}

#[wasm_bindgen_test]
async fn share_activity_reports_a_tab_without_a_meeting_until_stopped() {
    let tab = OtherTab::new();
    let mark = listener_mark();
    let before = open_channels();
    let stop: Function = JsValue::from(share_activity()).unchecked_into();
    mousemove();
    assert!(eventually(1_000, || tab.received() == 1).await);
    stop.call0(&JsValue::NULL).unwrap();
    stop.call0(&JsValue::NULL).unwrap(); // idempotent
    assert_eq!(open_channels(), before);
    assert_eq!(live_listeners_since(mark), 0, "every listener removed");
    pause(1_100).await;
    mousemove();
    pause(100).await;
    assert_eq!(tab.received(), 1, "nothing after stop");
    tab.close();
}

#[wasm_bindgen_test]
async fn the_os_being_used_holds_the_deadline_a_locked_screen_does_not() {
    let world = IdleWorld::new("granted");
    let sdk = FakeEyeson::new();
    let mut opts = quiet(300, 100);
    opts.push(("systemIdle", true.into()));
    let g = joined(&sdk, &opts);
    assert!(eventually(1_000, || presence_of(&g) == "false,false,active").await);
    pause(600).await;
    assert_eq!(state(&g), "active", "active on the computer: held");
    // Locked, even with input before it: never presence.
    world.set("active", "locked");
    assert_eq!(presence_of(&g), "false,false,locked");
    assert!(eventually(2_000, || state(&g) == "terminated").await);
    assert!(world.aborted(), "the detector stops with the guard");
    world.remove();
}

#[wasm_bindgen_test]
async fn going_idle_on_the_os_asks_first() {
    let world = IdleWorld::new("granted");
    let sdk = FakeEyeson::new();
    let mut opts = quiet(300, 150);
    opts.push(("systemIdle", true.into()));
    let g = joined(&sdk, &opts);
    assert!(eventually(1_000, || presence_of(&g) == "false,false,active").await);
    pause(400).await;
    world.set("idle", "unlocked");
    assert_eq!(presence_of(&g), "false,false,idle");
    // Last seen 60 s ago: far past the timeout, but the prompt comes first.
    assert_ne!(state(&g), "terminated");
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    assert!(eventually(2_000, || state(&g) == "terminated").await);
    world.remove();
}

#[wasm_bindgen_test]
async fn without_permission_or_api_the_guard_works_as_before() {
    let world = IdleWorld::new("denied");
    let sdk = FakeEyeson::new();
    let mut opts = quiet(300, 0);
    opts.push(("systemIdle", true.into()));
    let g = joined(&sdk, &opts);
    assert!(eventually(1_000, || presence_of(&g) == "false,false,denied").await);
    assert!(eventually(2_000, || state(&g) == "terminated").await);
    let denied = JsFuture::from(Promise::from(JsValue::from(
        InactivityGuard::request_system_idle(),
    )))
    .await
    .unwrap();
    assert_eq!(denied, false);
    world.remove();

    let granted = IdleWorld::new("granted");
    let yes = JsFuture::from(Promise::from(JsValue::from(
        InactivityGuard::request_system_idle(),
    )))
    .await
    .unwrap();
    assert_eq!(yes, true);
    granted.remove();

    let missing = JsFuture::from(Promise::from(JsValue::from(
        InactivityGuard::request_system_idle(),
    )))
    .await
    .unwrap();
    assert_eq!(missing, false, "no API: false, never a rejection");
    let sdk = FakeEyeson::new();
    let g = joined(&sdk, &opts);
    assert_eq!(presence_of(&g), "false,false,unavailable");
    g.stop();
    let sdk = FakeEyeson::new();
    let g = joined(&sdk, &quiet(300, 0));
    assert_eq!(presence_of(&g), "false,false,off");
    g.stop();
}

#[wasm_bindgen_test]
async fn the_hard_deadline_is_read_shown_and_followed() {
    let service = Service::new();
    service.set_deadline(now() + 3_000.0);
    let sdk = FakeEyeson::new();
    let deadlines = Array::new();
    let g = guard(
        &sdk,
        &[
            ("timeoutMs", 60_000.into()),
            ("crossTab", false.into()),
            ("hardLimit", "https://limits.test/".into()),
            ("hardLimitNoticeMs", 5_000.into()),
            ("onHardLimit", log(&deadlines)),
        ],
    );
    assert_eq!(service.calls(), 0, "no room known yet");
    sdk.emit(&room_setup("room 1/a", "u1", "c1"));
    assert!(eventually(2_000, || deadlines.length() == 1).await);
    assert_eq!(service.url(0), "https://limits.test/meetings/room%201%2Fa");
    assert_eq!(
        service.token(0).as_deref(),
        Some("gt-room 1/a"),
        "the room's guest token, in the header"
    );
    assert!(eventually(1_000, || !notice().is_null()).await);
    let n = notice();
    assert_eq!(get(&n, "live"), "polite");
    assert_eq!(get(&n, "focused"), false, "never takes focus");
    let visible = get(&n, "visible").as_string().unwrap();
    assert!(
        visible.starts_with("This meeting ends in ") && visible.ends_with(" s."),
        "{visible}"
    );
    assert!(!get(&n, "spoken").as_string().unwrap().is_empty());
    // It counts down.
    assert!(
        eventually(2_500, || get(&notice(), "visible").as_string().unwrap()
            != visible)
        .await
    );

    // The operator extends the meeting; the next room_update re-reads.
    service.set_deadline(now() + 3_600_000.0);
    sdk.emit(&event(&[
        ("type", "room_update".into()),
        ("content", obj(&[])),
    ]));
    assert!(eventually(2_000, || deadlines.length() == 2).await);
    assert!(
        notice().is_null(),
        "hidden until 5 s before the new deadline"
    );
    // The same deadline again: no callback.
    sdk.emit(&event(&[
        ("type", "room_update".into()),
        ("content", obj(&[])),
    ]));
    assert!(eventually(2_000, || service.calls() == 3).await);
    pause(50).await;
    assert_eq!(deadlines.length(), 2);
    g.stop();
    service.restore();
}

#[wasm_bindgen_test]
async fn a_failing_service_changes_nothing_and_is_logged_once() {
    let service = Service::new();
    service.set_status(404);
    let sdk = FakeEyeson::new();
    let deadlines = Array::new();
    let before = warning_count("hard deadline");
    let g = guard(
        &sdk,
        &[
            ("crossTab", false.into()),
            ("hardLimit", "http://127.0.0.1:9".into()),
            ("onHardLimit", log(&deadlines)),
        ],
    );
    sdk.emit(&room_setup("r1", "u1", "c1"));
    for _ in 0..3 {
        sdk.emit(&event(&[
            ("type", "room_update".into()),
            ("content", obj(&[])),
        ]));
    }
    assert!(eventually(2_000, || service.calls() == 4).await);
    pause(50).await;
    assert_eq!(warning_count("hard deadline"), before + 1, "logged once");
    assert_eq!(deadlines.length(), 0);
    assert!(notice().is_null());
    g.stop();
    service.restore();
}

#[wasm_bindgen_test]
async fn a_meeting_the_service_did_not_know_yet_is_read_again_soon() {
    // The SDK's room_setup can come before the service had the meeting's
    // start webhook: the first read is a 404, and no room_update follows.
    let service = Service::new();
    service.set_status(404);
    let sdk = FakeEyeson::new();
    let deadlines = Array::new();
    let g = guard(
        &sdk,
        &[
            ("crossTab", false.into()),
            ("hardLimit", "http://127.0.0.1:9".into()),
            ("onHardLimit", log(&deadlines)),
        ],
    );
    sdk.emit(&room_setup("r1", "u1", "c1"));
    assert!(eventually(2_000, || service.calls() == 1).await);
    let deadline = now() + 600_000.0;
    service.set_deadline(deadline);
    service.set_status(200);
    assert!(eventually(4_000, || deadlines.length() == 1).await);
    assert_eq!(deadlines.get(0).as_f64(), Some(deadline));
    assert_eq!(service.calls(), 2, "one retry, no room_update needed");
    g.stop();
    service.restore();
}

/// A room the SDK gave no guest token is read without the header (so
/// without a CORS preflight); the service answers as for an unknown room.
#[wasm_bindgen_test]
async fn a_room_without_a_guest_token_is_read_without_the_header() {
    let service = Service::new();
    service.set_deadline(now() + 600_000.0);
    let sdk = FakeEyeson::new();
    let deadlines = Array::new();
    let g = guard(
        &sdk,
        &[
            ("crossTab", false.into()),
            ("hardLimit", "https://limits.test".into()),
            ("onHardLimit", log(&deadlines)),
        ],
    );
    let room = obj(&[("id", "r7".into())]);
    sdk.emit(&event(&[
        ("type", "room_setup".into()),
        ("content", obj(&[("room", room)])),
    ]));
    assert!(eventually(2_000, || service.calls() == 1).await);
    assert_eq!(service.token(0), None);
    pause(50).await;
    assert_eq!(deadlines.length(), 0);
    g.stop();
    service.restore();
}

#[wasm_bindgen_test]
async fn dialog_false_hides_the_notice_but_on_hard_limit_fires() {
    let service = Service::new();
    service.set_deadline(now() + 2_000.0);
    let sdk = FakeEyeson::new();
    // A guard created after the join reads the room from the SDK.
    Reflect::set(
        &sdk,
        &"room".into(),
        &obj(&[("id", "r9".into()), ("guest_token", "gt-r9".into())]),
    )
    .unwrap();
    let deadlines = Array::new();
    let g = guard(
        &sdk,
        &[
            ("dialog", false.into()),
            ("crossTab", false.into()),
            ("hardLimit", "https://limits.test".into()),
            ("onHardLimit", log(&deadlines)),
        ],
    );
    assert!(eventually(2_000, || deadlines.length() == 1).await);
    assert_eq!(service.url(0), "https://limits.test/meetings/r9");
    assert_eq!(service.token(0).as_deref(), Some("gt-r9"));
    pause(100).await;
    assert!(notice().is_null());
    g.stop();
    service.restore();
}

#[wasm_bindgen_test]
async fn text_replaces_every_string() {
    let service = Service::new();
    service.set_deadline(now() + 90_000.0);
    let sdk = FakeEyeson::new();
    let text = obj(&[
        ("title", "Bist du noch da?".into()),
        ("body", "Du verlässt das Meeting in {time}.".into()),
        ("button", "Ich bin noch da".into()),
        ("notice", "Dieses Meeting endet in {time}.".into()),
    ]);
    let g = joined(
        &sdk,
        &[
            ("timeoutMs", 3_000.into()),
            ("promptMs", 2_900.into()),
            ("crossTab", false.into()),
            ("hardLimit", "https://limits.test".into()),
            ("hardLimitNoticeMs", 120_000.into()),
            ("text", text),
        ],
    );
    assert!(eventually(2_000, || !notice().is_null()).await);
    let visible = get(&notice(), "visible").as_string().unwrap();
    assert!(
        visible == "Dieses Meeting endet in 1:30." || visible == "Dieses Meeting endet in 1:29.",
        "{visible}"
    );
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    let texts: Array = dialog_texts().unchecked_into();
    assert_eq!(texts.get(0), "Bist du noch da?");
    let body = texts.get(1).as_string().unwrap();
    assert!(
        body.starts_with("Du verlässt das Meeting in ") && body.ends_with(" s."),
        "{body}"
    );
    assert_eq!(texts.get(2), "Ich bin noch da");
    g.stop();
    assert!(notice().is_null(), "stop removes the notice");
    service.restore();
}

fn construct_error(options: &JsValue) -> String {
    let sdk = FakeEyeson::new();
    let sdk: &EyesonSdkArg = sdk.unchecked_ref();
    let err: JsValue = InactivityGuard::new(sdk, Some(options.clone().unchecked_into()))
        .expect_err("must be rejected")
        .into();
    get(&err, "message").as_string().unwrap()
}

#[wasm_bindgen_test]
fn bad_presence_options_get_errors_naming_them() {
    let cases: [(JsValue, &str); 16] = [
        (
            obj(&[("speech", "yes".into())]),
            "speech must be true or false",
        ),
        (
            obj(&[("crossTab", 1.into())]),
            "crossTab must be true or false",
        ),
        (
            obj(&[("systemIdle", "on".into())]),
            "systemIdle must be true or false",
        ),
        (
            obj(&[
                ("timeoutMs", 30_000.into()),
                ("aloneTimeoutMs", 30_000.into()),
            ]),
            "aloneTimeoutMs must be less than timeoutMs",
        ),
        (
            obj(&[("aloneTimeoutMs", (-5).into())]),
            "aloneTimeoutMs must be",
        ),
        (
            obj(&[("aloneTimeoutMs", "10m".into())]),
            "aloneTimeoutMs must be",
        ),
        (
            obj(&[("hardLimit", "limits.example.com".into())]),
            "hardLimit must be",
        ),
        (
            obj(&[("hardLimit", "javascript:alert(1)".into())]),
            "hardLimit must be",
        ),
        (
            obj(&[("hardLimitNoticeMs", (-1).into())]),
            "hardLimitNoticeMs must be",
        ),
        (obj(&[("text", "Hallo".into())]), "text must be an object"),
        (
            obj(&[("text", obj(&[("titel", "x".into())]))]),
            "unknown text key \"titel\"",
        ),
        (
            obj(&[("text", obj(&[("notice", "Bald vorbei".into())]))]),
            "text.notice must contain {time}",
        ),
        (
            obj(&[("onHardLimit", 5.into())]),
            "onHardLimit must be a function",
        ),
        (
            obj(&[("text", obj(&[("aloneNotice", "Du bist allein.".into())]))]),
            "text.aloneNotice must contain {time}",
        ),
        (
            obj(&[("text", obj(&[("aloneNotice", 5.into())]))]),
            "text.aloneNotice must be a non-empty string",
        ),
        (
            obj(&[("text", obj(&[("aloneNotice", JsValue::NULL)]))]),
            "text.aloneNotice must be a non-empty string",
        ),
    ];
    for (options, needle) in cases {
        let message = construct_error(&options);
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    // The defaults never throw, whatever the timeout.
    for timeout in [1_000, 30_000, 600_000, 3_600_000] {
        let sdk = FakeEyeson::new();
        let g = guard(&sdk, &[("timeoutMs", timeout.into())]);
        g.stop();
    }
    let sdk = FakeEyeson::new();
    let g = guard(&sdk, &[("aloneTimeoutMs", JsValue::NULL)]);
    g.stop();
}
