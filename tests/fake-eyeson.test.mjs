// The tests' one fake eyeson SDK (tests/support/fake-eyeson.js) against the
// real SDK (node_modules/eyeson/dist/eyeson.js) in one page of Debian's
// headless Chromium: the same script of calls gives the same observations,
// for each behaviour the fake's header says it mirrors (except room_setup,
// which the real SDK follows by opening its signalling connection). Run
// with the other page tests (node --test tests/*.test.mjs).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fakeEyesonScript, launch, open, serve } from "./support/browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let server, browser, fake;

before(async () => {
  fake = await fakeEyesonScript();
  server = await serve({
    "/eyeson/": join(root, "node_modules/eyeson/dist"),
    "/pages/": join(root, "tests/pages"),
    "/fake/": fake.dir,
  });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
  await fake?.remove();
});

// Runs in the page on one SDK. `deliver(event)` is the SDK handing an event
// from its connections to the listeners; `connect()` is what start() does
// before any network (eyeson.js prepareConnection: the handler learns the SDK).
function script(sdk, deliver, connect) {
  const out = {};
  const seen = [];
  const listener = (name) => (e) => seen.push(`${name}:${e.type}`);
  const attempt = (f) => { try { f(); return "ok"; } catch (e) { return e.constructor.name; } };
  out.initial = { room: sdk.room, user: sdk.user };

  out.sendBeforeStart = attempt(() => sdk.send({ type: "session_termination" }));
  const msg = { type: "unknown_to_the_sdk" };
  out.unknownSend = attempt(() => sdk.send(msg));
  out.sendMarks = msg._src;
  out.nonFunction = attempt(() => sdk.onEvent("not a function"));

  const a = listener("a");
  const b = listener("b");
  sdk.onEvent(a);
  sdk.onEvent(a);
  sdk.onEvent(b);
  deliver({ type: "disconnect" });
  out.duplicateIgnoredAndSynchronous = seen.splice(0);

  sdk.send({ type: "unknown_to_the_sdk" });
  sdk.send({ type: "voice_activity", on: true });
  out.clientSends = seen.splice(0);

  // During a dispatch: a listener added is not called, one removed still is.
  const c = listener("c");
  const changer = () => { sdk.offEvent(b); sdk.onEvent(c); };
  sdk.offEvent(b);
  sdk.onEvent(changer);
  sdk.onEvent(b);
  deliver({ type: "reconnect" });
  deliver({ type: "warning" });
  out.changedDuringDispatch = seen.splice(0);
  sdk.offEvent(changer);
  sdk.offEvent(c);

  const thrower = () => { throw new Error("listener bug"); };
  sdk.onEvent(thrower);
  sdk.onEvent(b);
  out.throwingListener = attempt(() => deliver({ type: "offline" }));
  out.afterThrow = seen.splice(0);
  sdk.offEvent(thrower);

  sdk.offEvent();
  deliver({ type: "offline" });
  out.offEventWithoutArgument = seen.splice(0);

  connect();
  sdk.onEvent(a);
  const termination = { type: "session_termination" };
  out.terminationAfterStart = attempt(() => sdk.send(termination));
  deliver({ type: "disconnect" });
  out.afterTermination = seen.splice(0);
  out.secondTermination = attempt(() => sdk.send({ type: "session_termination" }));

  sdk.onEvent(a);
  sdk.destroy();
  deliver({ type: "disconnect" });
  out.afterDestroy = seen.splice(0);
  out.terminationAfterDestroy = attempt(() => sdk.send({ type: "session_termination" }));
  return out;
}

test("the fake SDK does what the real eyeson SDK does", async () => {
  const { page, errors } = await open(browser, `${server.url}/pages/sdk-and-fake.html`);
  await page.evaluate(() => { window.realEyeson = window.eyeson.default; });
  await page.addScriptTag({ url: `${server.url}/fake/eyeson.js` });
  await page.evaluate(`window.script = ${script}`);
  const [real, fakeSdk] = await page.evaluate(() => {
    const run = window.script;
    const realSdk = window.realEyeson.createInstance();
    const handler = () => realSdk.core.eventHandler;
    const real = run(realSdk, (e) => handler().send(e), () => { handler().eyeson = realSdk; });
    const Fake = window.eyeson.default.constructor;
    const fakeSdk = new Fake({ started: false });
    const fake = run(fakeSdk, (e) => fakeSdk.emit(e), () => fakeSdk.start("key"));
    return [real, fake];
  });
  assert.equal(real.sendBeforeStart, "TypeError");
  assert.equal(real.secondTermination, "TypeError");
  assert.deepEqual(real.afterTermination, []);
  assert.deepEqual(fakeSdk, real);
  assert.deepEqual(errors.uncaught, []);
  await page.close();
});
