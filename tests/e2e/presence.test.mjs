// End to end: the presence events of the real eyeson SDK (npm eyeson 1.9.6)
// in headless Chromium, driven by the eyeson sandbox as a real process: the
// SDK's `podium` (its `solo` computed from the sandbox's SEPP source_update)
// as participants join and leave, and its `voice_activity` when the
// sandbox's testing control `POST /_sandbox/voice` says somebody speaks.
// Needs `cargo build -p eyeson-sandbox` first.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { startMeetingPages, startSandbox, stopMeetingPages } from "./support/system.mjs";

let web, browser;
const cleanups = [];

before(async () => {
  ({ web, browser } = await startMeetingPages());
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()();
});
after(() => stopMeetingPages({ web, browser }));

/** Opens the presence page for one user; resolves once the SDK emitted `accept`. */
async function joinInBrowser(sandbox, room, user) {
  const joined = await sandbox.join(room, user);
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(String(e)));
  const query = new URLSearchParams({ api: sandbox.url, key: joined.access_key });
  await page.goto(`${web.url}/e2e/presence.html?${query}`);
  await page
    .waitForFunction(() => window.e2e && (window.e2e.error || window.e2e.types.includes("accept")), null, {
      timeout: 20000,
    })
    .catch(async (e) => {
      const seen = await page.evaluate(() => window.e2e).catch(() => null);
      throw new Error(`${user} never reached accept: ${JSON.stringify(seen)}\n${e}`);
    });
  assert.equal(await page.evaluate(() => window.e2e.error), null);
  const localUserId = await page.evaluate(() => window.e2e.localUserId);
  assert.equal(localUserId, joined.user.id, "room_setup's content.user.id is the user of the access key");
  return { page, key: joined.access_key, userId: localUserId, uncaught };
}

/** Waits until `predicate(window.e2e)` holds in `page`; says what was seen when it does not. */
async function until(page, predicate, arg, what) {
  await page.waitForFunction(predicate, arg, { timeout: 10000 }).catch(async (e) => {
    const seen = await page.evaluate(() => window.e2e).catch(() => null);
    throw new Error(`${what}; the page saw ${JSON.stringify(seen, null, 1)}\n${e}`);
  });
}

const lastSolo = (page, solo, what) =>
  until(page, (solo) => window.e2e.podium.length > 0 && window.e2e.podium.at(-1).solo === solo, solo, what);

/** Waits for the `n`th voice_activity event (1-based) and returns it. */
async function nthVoice(page, n, what) {
  await until(page, (n) => window.e2e.voice.length >= n, n, what);
  return page.evaluate((n) => window.e2e.voice[n - 1], n);
}

async function voice(sandbox, body, { form = false } = {}) {
  const res = await fetch(`${sandbox.url}/_sandbox/voice`, form
    ? { method: "POST", body: new URLSearchParams(body) }
    : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

test("podium: solo for a lone participant, not solo with two, solo again when one leaves", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const alice = await joinInBrowser(sandbox, "e2e-podium", "alice");
  await lastSolo(alice.page, true, "alice alone gets podium solo: true");

  // The shape the SDK delivers to onEvent listeners (it may come before `accept`).
  const first = await alice.page.evaluate(() => window.e2e.podium.at(-1));
  assert.deepEqual(Object.keys(first).sort(), [
    "allUserDimensions", "audio", "hasMutedVideoPeers", "hasPresenter", "hasVideoSources", "isPresenter",
    "isSource", "layers", "media", "presenter", "solo", "sources", "type", "userDimensions", "video", "videoSources",
  ]);
  assert.equal(first.type, "podium");
  assert.equal(first.solo, true);
  assert.deepEqual(first.sources, [alice.userId], "src holds the client ids, which are the user ids");
  assert.equal(first.isSource, true);
  assert.equal(first.audio, true);
  assert.equal(first.video, true, "a video position, so the SDK keeps the camera on");
  assert.equal(first.hasPresenter, false);

  const bob = await joinInBrowser(sandbox, "e2e-podium", "bob");
  await lastSolo(alice.page, false, "alice gets solo: false once bob is in");
  await lastSolo(bob.page, false, "bob joins a meeting with alice: solo: false");
  const [a2, b2] = await Promise.all([alice.page, bob.page].map((p) => p.evaluate(() => window.e2e.podium.at(-1))));
  assert.deepEqual(a2.sources, [alice.userId, bob.userId], "in the order they joined");
  assert.deepEqual(b2.sources, a2.sources);

  // Bob leaves the meeting (the SDK sends call_terminate).
  await bob.page.evaluate(() => window.eyeson.default.destroy());
  await sandbox.waitForEvents((ev) => ev.some((e) => e.kind === "user_left" && e.user_id === bob.userId), {
    what: "bob's leave",
  });
  await lastSolo(alice.page, true, "alice is alone again: solo: true");
  assert.deepEqual(await alice.page.evaluate(() => window.e2e.podium.at(-1).sources), [alice.userId]);
  const soloes = await alice.page.evaluate(() => window.e2e.podium.map((p) => p.solo));
  assert.deepEqual(soloes, [true, false, true], "one podium per join and leave");
  assert.deepEqual(alice.uncaught, []);
  assert.deepEqual(bob.uncaught, []);
});

test("voice_activity: the speaker and the others get it, with the speaker's user id; bad control input is refused", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const alice = await joinInBrowser(sandbox, "e2e-voice", "alice");
  const bob = await joinInBrowser(sandbox, "e2e-voice", "bob");
  await lastSolo(alice.page, false, "both in the call");

  assert.equal((await voice(sandbox, { access_key: alice.key, on: true })).status, 204);
  const aliceHearsHerself = await nthVoice(alice.page, 1, "alice gets her own voice_activity");
  const bobHearsAlice = await nthVoice(bob.page, 1, "bob gets alice's voice_activity");
  assert.deepEqual(Object.keys(aliceHearsHerself).sort(), ["on", "type", "user"]);
  assert.equal(aliceHearsHerself.type, "voice_activity");
  assert.equal(aliceHearsHerself.on, true);
  assert.equal(aliceHearsHerself.user.id, alice.userId, "equals alice's room_setup content.user.id");
  assert.equal(aliceHearsHerself.user.name, "alice");
  assert.deepEqual(bobHearsAlice, aliceHearsHerself, "the same event for the other participant");
  assert.notEqual(bobHearsAlice.user.id, bob.userId);

  // A form body, as a plain HTML form would send it.
  assert.equal((await voice(sandbox, { access_key: alice.key, on: "false" }, { form: true })).status, 204);
  const off = await nthVoice(alice.page, 2, "alice's voice off");
  assert.equal(off.on, false);
  assert.equal(off.user.id, alice.userId);
  const offForBob = await nthVoice(bob.page, 2, "alice's voice off, at bob's");
  assert.equal(offForBob.on, false);
  assert.equal(offForBob.user.id, alice.userId);

  assert.equal((await voice(sandbox, { access_key: bob.key, on: true })).status, 204);
  assert.equal((await nthVoice(alice.page, 3, "bob speaks, at alice's")).user.id, bob.userId);
  assert.equal((await nthVoice(bob.page, 3, "bob speaks, at bob's")).user.id, bob.userId);

  // Bad input names the field; an unknown key is 404; a user out of the call 409.
  const noKey = await voice(sandbox, { on: true });
  assert.deepEqual([noKey.status, noKey.body], [400, { error: "access_key is required" }]);
  const badOn = await voice(sandbox, { access_key: alice.key, on: "loud" });
  assert.deepEqual([badOn.status, badOn.body], [400, { error: "on must be true or false" }]);
  const noOn = await voice(sandbox, { access_key: alice.key }, { form: true });
  assert.deepEqual([noOn.status, noOn.body], [400, { error: "on is required (true or false)" }]);
  const unknown = await voice(sandbox, { access_key: "A".repeat(24), on: true });
  assert.deepEqual([unknown.status, unknown.body], [404, { error: "unknown access key" }]);
  await bob.page.evaluate(() => window.eyeson.default.destroy());
  await sandbox.waitForEvents((ev) => ev.some((e) => e.kind === "user_left" && e.user_id === bob.userId), {
    what: "bob's leave",
  });
  const gone = await voice(sandbox, { access_key: bob.key, on: true });
  assert.deepEqual([gone.status, gone.body], [409, { error: "the user is not in the call" }]);

  // The event log records each accepted control call.
  const logged = (await sandbox.events()).filter((e) => e.kind === "voice_activity").map((e) => [e.user_id, e.on]);
  assert.deepEqual(logged, [[alice.userId, true], [alice.userId, false], [bob.userId, true]]);
  assert.equal(await alice.page.evaluate(() => window.e2e.voice.length), 3, "nothing after the refused calls");
  assert.deepEqual(alice.uncaught, []);
  assert.deepEqual(bob.uncaught, []);
});
