// End to end: the guard's presence signals and the hard-deadline notice with
// the real eyeson SDK (npm eyeson 1.9.6) in headless Chromium, guarded by the
// built package (pkg/), on the eyeson sandbox and the hard-limit service
// running as real processes. The sandbox's `POST /_sandbox/voice` makes the
// SDK emit `voice_activity`; its joins and leaves make the SDK emit `podium`
// (with `solo`). Needs `node scripts/build.mjs` and
// `cargo build -p eyeson-sandbox -p eyeson-hard-limit` first.
//
// Times are compared on the page's clock (the guard's clock): the page
// records when the SDK delivered each event, before the guard handles it.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { builtBinary, startHardLimit, startMeetingPages, startSandbox, stopMeetingPages, tempDir } from "./support/system.mjs";

const HARD_LIMIT = process.env.EYESON_HARD_LIMIT_BIN || builtBinary("eyeson-hard-limit");
const NEEDS_HARD_LIMIT = HARD_LIMIT ? false : "needs the eyeson-hard-limit binary (cargo build -p eyeson-hard-limit)";

let web, browser;
const cleanups = [];

before(async () => {
  ({ web, browser } = await startMeetingPages());
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()();
});
after(() => stopMeetingPages({ web, browser }));

/**
 * Opens the meeting page for one user with the guard `options` (query
 * parameters of tests/e2e/pages/meeting.html); resolves once the SDK emitted
 * `accept` and the guard armed.
 */
async function joinInBrowser(sandbox, room, user, options) {
  const joined = await sandbox.join(room, user);
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(String(e)));
  const query = new URLSearchParams({ api: sandbox.url, key: joined.access_key, ...options });
  await page.goto(`${web.url}/e2e/meeting.html?${query}`);
  await until(page, () => window.e2e && (window.e2e.error || window.e2e.sdkEvents.includes("accept")), null, `${user} reaches accept`, 20000);
  assert.equal(await page.evaluate(() => window.e2e.error), null);
  await until(page, () => window.e2e.guard.state === "active", null, `${user}'s guard arms`);
  return { page, key: joined.access_key, userId: joined.user.id, uncaught };
}

/** Waits until `predicate(arg)` holds in `page`; says what the page saw when it does not. */
async function until(page, predicate, arg, what, timeout = 10000) {
  await page.waitForFunction(predicate, arg, { timeout }).catch(async (e) => {
    const seen = await page
      .evaluate(() => window.e2e && { ...window.e2e, guard: window.e2e.guard && { state: window.e2e.guard.state, presence: window.e2e.guard.presence } })
      .catch(() => null);
    throw new Error(`${what}; the page saw ${JSON.stringify(seen)}\n${e}`);
  });
}

async function voice(sandbox, key, on) {
  const res = await fetch(`${sandbox.url}/_sandbox/voice`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ access_key: key, on }),
  });
  assert.equal(res.status, 204, `POST /_sandbox/voice answered ${res.status}: ${await res.text()}`);
}

const state = (page) => page.evaluate(() => window.e2e.guard.state);
const presence = (page) => page.evaluate(() => window.e2e.guard.presence);

test("speech: a user who speaks without input is not prompted past timeoutMs, and is prompted timeoutMs after the voice stops", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const timeout = 2500;
  const prompt = 1000;
  const alice = await joinInBrowser(sandbox, "e2e-speech", "alice", { timeout, prompt });

  // Nobody touches the page from here on: speech is the only presence.
  await voice(sandbox, alice.key, true);
  await until(alice.page, () => window.e2e.guard.presence.speaking, null, "the guard sees alice speaking");
  // Twice timeoutMs of speech: the wait ends early (and the test fails) on any prompt.
  await until(
    alice.page,
    (span) => window.e2e.guardEvents.length > 0 || Date.now() - window.e2e.voice[0].at >= span,
    2 * timeout,
    "alice speaks for twice timeoutMs",
  );
  assert.deepEqual(await alice.page.evaluate(() => window.e2e.guardEvents), [], "no prompt while speaking");
  assert.equal(await state(alice.page), "active");
  assert.ok((await alice.page.evaluate(() => window.e2e.guard.remainingMs())) > 0);

  await voice(sandbox, alice.key, false);
  await until(alice.page, () => window.e2e.guardEvents.length > 0, null, "alice is prompted after her voice stopped", 3 * timeout);
  const seen = await alice.page.evaluate(() => window.e2e);
  assert.deepEqual(seen.voice.map((v) => v.on), [true, false]);
  const voiceOff = seen.voice[1].at;
  assert.match(seen.guardEvents[0], /^prompt:\d+$/, `the first callback is the prompt: ${seen.guardEvents}`);
  // The prompt opens promptMs before the deadline, which is timeoutMs after the voice stopped.
  const promptedAfter = seen.at.prompt - voiceOff;
  const deadline = seen.at.prompt + Number(seen.guardEvents[0].split(":")[1]);
  assert.ok(promptedAfter >= timeout - prompt, `prompted ${promptedAfter} ms after the voice stopped, not before ${timeout - prompt}`);
  assert.ok(promptedAfter < timeout + 1000, `prompted ${promptedAfter} ms after the voice stopped: too late`);
  assert.ok(deadline - voiceOff >= timeout, `the deadline is ${deadline - voiceOff} ms after the voice stopped, at least timeoutMs`);

  await until(alice.page, () => window.e2e.guard.state === "terminated", null, "alice's session ends", 3 * timeout);
  const ended = await alice.page.evaluate(() => window.e2e.at.terminate);
  assert.ok(ended - voiceOff >= timeout, `terminated ${ended - voiceOff} ms after the voice stopped, not before timeoutMs`);
  await sandbox.waitForEvents((ev) => ev.some((e) => e.kind === "user_left" && e.reason === "terminate"), {
    what: "alice's termination in the sandbox",
  });
  assert.deepEqual(alice.uncaught, []);
});

test("speech: another participant's speech is no presence for this user", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const idle = await joinInBrowser(sandbox, "e2e-other-speaks", "idle", { timeout: 3000, prompt: 1000 });
  const talker = await joinInBrowser(sandbox, "e2e-other-speaks", "talker", { timeout: 600000, prompt: 60000 });
  await voice(sandbox, talker.key, true);
  await until(talker.page, () => window.e2e.guard.presence.speaking, null, "the talker's own guard sees speech");
  await until(idle.page, () => window.e2e.sdkEvents.includes("voice_activity"), null, "the idle user's SDK reports the talker");
  assert.equal((await presence(idle.page)).speaking, false);
  await until(idle.page, () => window.e2e.guard.state === "terminated", null, "the idle user's session ends while the other speaks", 10000);
  assert.equal((await presence(talker.page)).speaking, true, "the talker is still speaking");
  assert.equal(await state(talker.page), "active");
});

test("alone: a user left alone gets the alone timeout, not timeoutMs", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const timeout = 600000;
  const alone = 3000;
  // Bob first: alice is never alone until he leaves.
  const bob = await joinInBrowser(sandbox, "e2e-left-alone", "bob", { timeout: 600000, prompt: 60000 });
  const alice = await joinInBrowser(sandbox, "e2e-left-alone", "alice", { timeout, prompt: 60000, alone });
  await until(alice.page, () => !window.e2e.guard.presence.alone, null, "alice is not alone once bob is in");
  const together = await alice.page.evaluate(() => Date.now());
  // In company, the alone limit does not apply: no prompt for twice its length.
  await until(
    alice.page,
    ([since, span]) => window.e2e.guardEvents.length > 0 || Date.now() - since >= span,
    [together, 2 * alone],
    "alice waits in company",
  );
  assert.deepEqual(await alice.page.evaluate(() => window.e2e.guardEvents), [], "no prompt in company");
  assert.ok((await alice.page.evaluate(() => window.e2e.guard.remainingMs())) > 10 * alone);

  await bob.page.evaluate(() => window.eyeson.default.destroy());
  await until(alice.page, () => window.e2e.guard.presence.alone, null, "alice is alone after bob left");
  const leftAlone = await alice.page.evaluate(() => Date.now());
  const remaining = await alice.page.evaluate(() => window.e2e.guard.remainingMs());
  assert.ok(remaining <= alone, `the alone limit applies: ${remaining} ms left`);
  await until(alice.page, () => window.e2e.guard.state === "terminated", null, "alice's session ends", 4 * alone);
  const seen = await alice.page.evaluate(() => window.e2e);
  assert.deepEqual(seen.guardEvents.map((e) => e.replace(/:\d+$/, "")), ["prompt", "terminate:idle"], "asked first");
  // The prompt window shrinks to at most half of the alone limit.
  assert.ok(Number(seen.guardEvents[0].split(":")[1]) <= alone / 2, `prompt window ${seen.guardEvents[0]}`);
  assert.ok(seen.at.terminate - leftAlone < 2 * alone, `ended ${seen.at.terminate - leftAlone} ms after being left alone`);
  const events = await sandbox.waitForEvents((ev) => ev.some((e) => e.kind === "user_left" && e.user_id === alice.userId), {
    what: "alice's leave",
  });
  assert.equal(events.find((e) => e.kind === "user_left" && e.user_id === alice.userId).reason, "terminate");
  assert.deepEqual(alice.uncaught, []);
});

test("alone: a second participant joining restores the normal timeout", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const timeout = 600000;
  const alone = 20000;
  const carol = await joinInBrowser(sandbox, "e2e-company", "carol", { timeout, prompt: 60000, alone });
  await until(carol.page, () => window.e2e.guard.presence.alone, null, "carol is alone");
  const remainingAlone = await carol.page.evaluate(() => window.e2e.guard.remainingMs());
  assert.ok(remainingAlone <= alone, `the alone limit applies: ${remainingAlone} ms left`);

  await joinInBrowser(sandbox, "e2e-company", "dave", { timeout: 600000, prompt: 60000 });
  await until(carol.page, () => !window.e2e.guard.presence.alone, null, "carol is not alone once dave is in");
  const remaining = await carol.page.evaluate(() => window.e2e.guard.remainingMs());
  assert.ok(remaining > alone, `the normal limit applies again: ${remaining} ms left`);
  assert.ok(remaining <= timeout);
  assert.equal(await state(carol.page), "active");
  assert.deepEqual(await carol.page.evaluate(() => window.e2e.guardEvents), []);
  assert.deepEqual(carol.uncaught, []);
});

/** The notice's visible countdown ("m:ss" or "N s") in ms, and when the page read it. */
async function readNotice(page) {
  return page.evaluate(() => {
    const host = document.querySelector("[data-eyeson-guard-notice]");
    const visible = host?.shadowRoot?.querySelector("[aria-hidden=true]")?.textContent ?? null;
    const status = host?.shadowRoot?.querySelector("[role=status]");
    return { visible, status: status && { live: status.getAttribute("aria-live"), text: status.textContent }, at: Date.now() };
  });
}

function shownMs(text) {
  const m = /(\d+):(\d\d)|(\d+) s/.exec(text);
  assert.ok(m, `a countdown in ${JSON.stringify(text)}`);
  return (m[1] !== undefined ? Number(m[1]) * 60 + Number(m[2]) : Number(m[3])) * 1000;
}

test("hard limit: the notice shows the service's deadline before the service ends the meeting", { skip: NEEDS_HARD_LIMIT }, async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const service = await startHardLimit(sandbox, { bin: HARD_LIMIT, database: join(db.path, "hl.db"), maxDuration: "14s" });
  cleanups.push(service.stop);
  const notice = 8000;
  const alice = await joinInBrowser(sandbox, "e2e-deadline", "alice", {
    timeout: 600000, prompt: 60000, hardLimit: service.url, notice,
  });

  // The deadline as the service's public per-room endpoint reports it to
  // the room's guest token, which the page's SDK has (as the guard does).
  const token = await alice.page.evaluate(() => window.eyeson.default.room.guest_token);
  assert.ok(token, "the SDK's room has a guest token");
  const read = (room, headers = {}) => fetch(`${service.url}/meetings/${room}`, { headers: { origin: web.url, ...headers } });
  let reported = null;
  const started = Date.now();
  while (!reported && Date.now() - started < 10000) {
    const res = await read("e2e-deadline", { "x-eyeson-guest-token": token });
    if (res.ok) reported = await res.json();
    else await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(reported, "the service reports the meeting");
  assert.equal(reported.state, "running");
  const deadline = Date.parse(reported.deadline);

  // Without the token, or with another room's, the live room answers exactly
  // as a room without a meeting: a guesser learns nothing.
  const unknown = await answerOf(await read("e2e-no-such-room"));
  assert.equal(unknown.status, 404);
  assert.deepEqual(await answerOf(await read("e2e-deadline")), unknown, "no token");
  assert.deepEqual(await answerOf(await read("e2e-deadline", { "x-eyeson-guest-token": `${token}x` })), unknown, "a wrong token");

  await until(alice.page, () => window.e2e.noticeAt !== null, null, "the notice appears", 15000);
  const shown = await readNotice(alice.page);
  const seen = await alice.page.evaluate(() => window.e2e);
  assert.ok(shown.at < deadline, "read before the deadline");
  assert.equal(byKind(await sandbox.events(), "meeting_ended").length, 0, "the notice appeared while the meeting still ran");
  assert.deepEqual(seen.hardLimits, [deadline], "onHardLimit got the service's deadline");
  assert.ok(seen.noticeAt >= deadline - notice - 50, `shown ${deadline - seen.noticeAt} ms before the deadline, not more than hardLimitNoticeMs`);
  // "This meeting ends in 0:07.": the whole seconds left, rounded up.
  assert.match(shown.visible, /^This meeting ends in \d+( s|:\d\d)\.$/);
  const left = deadline - shown.at;
  assert.ok(Math.abs(shownMs(shown.visible) - left) <= 1000 + 100, `shows ${shown.visible} with ${left} ms to the service's deadline`);
  assert.equal(shown.status.live, "polite");
  assert.match(shown.status.text, /^This meeting ends in /);

  // The countdown keeps tracking the deadline.
  await until(alice.page, (before) => {
    const t = document.querySelector("[data-eyeson-guard-notice]")?.shadowRoot?.querySelector("[aria-hidden=true]")?.textContent;
    return t && t !== before;
  }, shown.visible, "the countdown ticks");
  const later = await readNotice(alice.page);
  assert.ok(Math.abs(shownMs(later.visible) - (deadline - later.at)) <= 1100, `shows ${later.visible} with ${deadline - later.at} ms left`);

  // The service ends the meeting at its deadline; the notice goes with the guard.
  await until(alice.page, () => window.e2e.guard.state === "stopped", null, "the service ends the meeting", 20000);
  const events = await sandbox.waitForEvents((ev) => byKind(ev, "meeting_ended").length === 1, { what: "the shutdown" });
  assert.equal(byKind(events, "meeting_ended")[0].reason, "api_delete");
  assert.ok(Date.parse(byKind(events, "meeting_ended")[0].at) >= seen.noticeAt, "the notice came before the end");
  assert.equal(await alice.page.evaluate(() => window.e2e.guardEvents.at(-1)), "stop:exit");
  assert.equal(await alice.page.evaluate(() => document.querySelector("[data-eyeson-guard-notice]")), null, "the notice is gone");
  assert.deepEqual(alice.uncaught, []);
});

const byKind = (events, kind) => events.filter((e) => e.kind === kind);

/** A response's status, headers (but the clock's `date`) and body. */
async function answerOf(res) {
  const headers = [...res.headers].filter(([k]) => k !== "date").sort();
  return { status: res.status, headers, body: await res.text() };
}
