// End to end: the real eyeson SDK (npm eyeson 1.9.6) in headless Chromium,
// guarded by the built package (pkg/), in meetings on the eyeson sandbox
// running as a real process. Needs `node scripts/build.mjs` and
// `cargo build -p eyeson-sandbox` first.
//
// Tests 2, 4 and 5 (and test 1's hard-limit variant) need the hard-limit
// service (issue 3): they run when `cargo build -p eyeson-hard-limit` has
// built it in this workspace, or EYESON_HARD_LIMIT_BIN names a binary, and
// are skipped otherwise. Without it, test 1 uses a small signature-checking
// receiver and "2 (sandbox half)" plays the service's DELETE itself.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { builtBinary, startHardLimit, startMeetingPages, startSandbox, startWebhookReceiver, stopMeetingPages, tempDir } from "./support/system.mjs";

// The hard-limit service (issue 3): built in this workspace, or named by
// EYESON_HARD_LIMIT_BIN. Tests 2, 4 and 5 are skipped without it.
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

async function sandboxWithReceiver() {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const receiver = await startWebhookReceiver(sandbox.apiKey);
  cleanups.push(receiver.close);
  await sandbox.registerWebhook(receiver.url);
  return { sandbox, receiver };
}

/** Opens the meeting page for one user; resolves once the SDK emitted `accept`. */
async function joinInBrowser(sandbox, room, user, { timeoutMs, promptMs }) {
  const joined = await sandbox.join(room, user);
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(String(e)));
  const query = new URLSearchParams({ api: sandbox.url, key: joined.access_key, timeout: timeoutMs, prompt: promptMs });
  await page.goto(`${web.url}/e2e/meeting.html?${query}`);
  await page
    .waitForFunction(() => window.e2e && (window.e2e.error || window.e2e.sdkEvents.includes("accept")), null, {
      timeout: 20000,
    })
    .catch(async (e) => {
      const seen = await page.evaluate(() => window.e2e).catch(() => null);
      throw new Error(`${user} never reached accept: ${JSON.stringify(seen)}\n${e}`);
    });
  const error = await page.evaluate(() => window.e2e.error);
  assert.equal(error, null, `the page failed: ${error}`);
  return { page, joined, uncaught, userId: joined.user.id };
}

const byKind = (events, kind) => events.filter((e) => e.kind === kind);

test("1. an idle user is prompted, then terminated; the meeting ends and the signed shutdown webhook is delivered", async () => {
  const { sandbox, receiver } = await sandboxWithReceiver();
  const alice = await joinInBrowser(sandbox, "e2e-idle", "alice", { timeoutMs: 3000, promptMs: 1500 });

  // The guard armed on `accept`; nobody touches the page.
  await alice.page.waitForFunction(() => window.e2e.guard.state === "prompted", null, { timeout: 5000 });
  await alice.page.getByRole("alertdialog").waitFor({ timeout: 2000 });
  await alice.page.waitForFunction(() => window.e2e.guard.state === "terminated", null, { timeout: 5000 });
  const page = await alice.page.evaluate(() => window.e2e);
  assert.deepEqual(page.guardEvents.map((e) => e.replace(/:\d+$/, "")), ["prompt", "terminate:idle"]);
  assert.deepEqual(page.sent, ["session_termination"], "the guard sent session_termination, once");

  const events = await sandbox.waitForEvents(
    (ev) => byKind(ev, "meeting_ended").length === 1 && byKind(ev, "webhook_delivered").length === 2,
    { what: "the meeting's end and both deliveries" },
  );
  const story = events.filter((e) => e.kind !== "webhook_delivered").map((e) => [e.kind, e.reason ?? null, e.user_id ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null, null],
    ["user_joined", null, alice.userId],
    ["user_left", "terminate", alice.userId],
    ["meeting_ended", "last_user_left", null],
  ]);
  assert.ok(events.every((e) => e.room_id === "e2e-idle"));
  assert.deepEqual(byKind(events, "webhook_delivered").map((e) => e.status), [204, 204]);
  assert.equal(byKind(events, "api_delete").length, 0, "nobody called DELETE");

  // The receiver checked the signatures; the last delivery is the shutdown.
  assert.equal(receiver.deliveries.length, 2);
  assert.ok(receiver.deliveries.every((d) => d.valid), "signatures verify with the API key");
  const [start, end] = receiver.deliveries.map((d) => d.body);
  assert.equal(start.type, "room_update");
  assert.equal(start.room.id, "e2e-idle");
  assert.equal(start.room.shutdown, false);
  assert.equal(start.room.started_at, events[0].started_at);
  assert.equal(end.room.shutdown, true);
  assert.equal(end.room.id, "e2e-idle");

  const gone = await sandbox.call("GET", `/rooms/${alice.joined.access_key}`, { key: null });
  assert.equal(gone.status, 410, "the ended meeting's access key is gone");
  assert.deepEqual(alice.uncaught, []);
});

test("1 (with the hard-limit service). the shutdown webhook reaches the service, which records the meeting as ended without calling DELETE", { skip: NEEDS_HARD_LIMIT }, async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const service = await startHardLimit(sandbox, { bin: HARD_LIMIT, database: join(db.path, "hl.db"), maxDuration: "10m" });
  cleanups.push(service.stop);
  const alice = await joinInBrowser(sandbox, "e2e-idle-hl", "alice", { timeoutMs: 2000, promptMs: 1000 });

  await alice.page.waitForFunction(() => window.e2e.guard.state === "terminated", null, { timeout: 6000 });
  const events = await sandbox.waitForEvents(
    (ev) => byKind(ev, "meeting_ended").length === 1 && byKind(ev, "webhook_delivered").length === 2,
    { what: "the meeting's end and both deliveries" },
  );
  assert.deepEqual(byKind(events, "user_left").map((e) => e.reason), ["terminate"]);
  assert.equal(byKind(events, "meeting_ended")[0].reason, "last_user_left");
  assert.ok(byKind(events, "webhook_delivered").every((e) => e.status >= 200 && e.status < 300), "the service accepted both");
  let meetings = [];
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    meetings = (await service.meetings()).filter((m) => m.room_id === "e2e-idle-hl");
    if (meetings.length && meetings[0].state !== "running") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(meetings.map((m) => m.state), ["ended"]);
  assert.equal(byKind(await sandbox.events(), "api_delete").length, 0, "the service called no DELETE");
});

test("3. two users in one meeting, one idle: only the idle one leaves; the meeting ends when the second leaves", async () => {
  const { sandbox } = await sandboxWithReceiver();
  const idle = await joinInBrowser(sandbox, "e2e-pair", "idle", { timeoutMs: 2500, promptMs: 1000 });
  const busy = await joinInBrowser(sandbox, "e2e-pair", "busy", { timeoutMs: 600000, promptMs: 60000 });
  assert.equal(idle.joined.room.id, busy.joined.room.id);

  await idle.page.waitForFunction(() => window.e2e.guard.state === "terminated", null, { timeout: 8000 });
  let events = await sandbox.waitForEvents((ev) => byKind(ev, "user_left").length === 1, { what: "the idle user's leave" });
  assert.deepEqual(
    byKind(events, "user_left").map((e) => [e.user_id, e.reason]),
    [[idle.userId, "terminate"]],
  );
  assert.equal(byKind(events, "meeting_ended").length, 0, "the meeting goes on");
  const running = await sandbox.call("GET", "/rooms");
  assert.deepEqual(running.body.map((r) => r.id), ["e2e-pair"]);
  assert.equal(await busy.page.evaluate(() => window.e2e.guard.state), "active");
  assert.ok(!(await busy.page.evaluate(() => window.e2e.sdkEvents)).includes("exit"));

  // The second user leaves the page: the SDK hangs up on `beforeunload`.
  // (Playwright's page.close({ runBeforeUnload: true }) tears the page down
  // before that message goes out: the sandbox then sees a disconnect. Even
  // navigating away can lose that race on a loaded machine, so either
  // reason is accepted for this user.)
  await busy.page.goto("about:blank");
  events = await sandbox.waitForEvents((ev) => byKind(ev, "meeting_ended").length === 1, { what: "the meeting's end" });
  const story = events.filter((e) => e.kind !== "webhook_delivered").map((e) => [e.kind, e.reason ?? null, e.user_id ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null, null],
    ["user_joined", null, idle.userId],
    ["user_joined", null, busy.userId],
    ["user_left", "terminate", idle.userId],
    ["user_left", story[4][1] === "disconnect" ? "disconnect" : "terminate", busy.userId],
    ["meeting_ended", "last_user_left", null],
  ]);
  assert.deepEqual(idle.uncaught, []);
});

test("2 (sandbox half). an active user's meeting shut down by DELETE /rooms/{id}: call_terminated, the SDK exits, the guard stops without sending", async () => {
  const { sandbox, receiver } = await sandboxWithReceiver();
  const alice = await joinInBrowser(sandbox, "e2e-long", "alice", { timeoutMs: 1500, promptMs: 500 });

  // Real input keeps the guard active across more than one timeout.
  const until = Date.now() + 2500;
  for (let i = 0; Date.now() < until; i++) {
    await alice.page.mouse.move(10 + (i % 40) * 5, 30 + (i % 2));
    await alice.page.waitForTimeout(100);
  }
  assert.equal(await alice.page.evaluate(() => window.e2e.guard.state), "active");

  // What the hard-limit service does when the deadline passes.
  const deleted = await sandbox.call("DELETE", "/rooms/e2e-long");
  assert.equal(deleted.status, 204);
  await alice.page.waitForFunction(() => window.e2e.guard.state === "stopped", null, { timeout: 5000 });
  const page = await alice.page.evaluate(() => window.e2e);
  assert.ok(page.sdkEvents.includes("exit"), `the SDK emitted exit: ${page.sdkEvents}`);
  assert.deepEqual(page.guardEvents.filter((e) => !e.startsWith("prompt") && e !== "active"), ["stop:exit"]);

  const events = await sandbox.waitForEvents((ev) => byKind(ev, "webhook_delivered").length === 2, {
    what: "both deliveries",
  });
  const story = events.filter((e) => e.kind !== "webhook_delivered").map((e) => [e.kind, e.reason ?? e.status ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null],
    ["user_joined", null],
    ["api_delete", 204],
    ["user_left", "meeting_ended"],
    ["meeting_ended", "api_delete"],
  ]);
  assert.equal(receiver.deliveries.at(-1).body.room.shutdown, true);
  // The guard sent nothing through the SDK (the page records every send()).
  assert.deepEqual(await alice.page.evaluate(() => window.e2e.sent), []);
  assert.equal(byKind(await sandbox.events(), "user_left").length, 1);
  assert.deepEqual(alice.uncaught, []);
});

test("2. an active user in an over-long meeting: the hard-limit service shuts it down; the SDK exits; the guard sends nothing", { skip: NEEDS_HARD_LIMIT }, async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const service = await startHardLimit(sandbox, { bin: HARD_LIMIT, database: join(db.path, "hl.db"), maxDuration: "6s" });
  cleanups.push(service.stop);
  const alice = await joinInBrowser(sandbox, "e2e-overlong", "alice", { timeoutMs: 1500, promptMs: 500 });

  // Simulated input keeps the guard active until the service ends the meeting.
  const until = Date.now() + 20000;
  for (let i = 0; Date.now() < until; i++) {
    if ((await alice.page.evaluate(() => window.e2e.guard.state)) === "stopped") break;
    await alice.page.mouse.move(10 + (i % 40) * 5, 30 + (i % 2));
    await alice.page.waitForTimeout(100);
  }
  assert.equal(await alice.page.evaluate(() => window.e2e.guard.state), "stopped");
  const page = await alice.page.evaluate(() => window.e2e);
  assert.ok(page.sdkEvents.includes("exit"), `the SDK emitted exit: ${page.sdkEvents}`);
  assert.ok(!page.guardEvents.some((e) => e.startsWith("terminate")), `the guard sent nothing: ${page.guardEvents}`);
  assert.deepEqual(page.sent, [], "nothing passed to the SDK's send()");
  assert.equal(page.guardEvents.at(-1), "stop:exit");

  const events = await sandbox.waitForEvents((ev) => byKind(ev, "meeting_ended").length === 1, { what: "the shutdown" });
  const story = events.filter((e) => e.kind !== "webhook_delivered").map((e) => [e.kind, e.reason ?? e.status ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null],
    ["user_joined", null],
    ["api_delete", 204],
    ["user_left", "meeting_ended"],
    ["meeting_ended", "api_delete"],
  ]);
  const ran = Date.parse(byKind(events, "meeting_ended")[0].at) - Date.parse(events[0].started_at);
  assert.ok(ran >= 6000, `shut down after the limit, not before (${ran} ms)`);
  assert.deepEqual(alice.uncaught, []);
});

test("4. the hard-limit service restarted between the meeting's start and its deadline still shuts it down, once", { skip: NEEDS_HARD_LIMIT }, async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const options = { bin: HARD_LIMIT, database: join(db.path, "hl.db"), maxDuration: "8s" };
  const first = await startHardLimit(sandbox, options);
  const alice = await joinInBrowser(sandbox, "e2e-restart", "alice", { timeoutMs: 600000, promptMs: 60000 });

  // The service has recorded the meeting (the start webhook was answered)...
  await sandbox.waitForEvents((ev) => byKind(ev, "webhook_delivered").some((e) => e.status >= 200 && e.status < 300), {
    what: "the start webhook acknowledged",
  });
  // ...then goes away and comes back with the same database before the
  // deadline (checked, so the test cannot pass without a restart).
  const [tracked] = (await first.meetings()).filter((m) => m.room_id === "e2e-restart");
  assert.ok(tracked && Date.parse(tracked.deadline) > Date.now() + 1000, `deadline still ahead: ${JSON.stringify(tracked)}`);
  assert.equal(byKind(await sandbox.events(), "api_delete").length, 0);
  await first.stop();
  const second = await startHardLimit(sandbox, { ...options, port: first.port });
  cleanups.push(second.stop);

  await alice.page.waitForFunction(() => window.e2e.sdkEvents.includes("exit"), null, { timeout: 20000 });
  const events = await sandbox.waitForEvents((ev) => byKind(ev, "meeting_ended").length === 1, { what: "the shutdown" });
  assert.equal(byKind(events, "meeting_ended")[0].reason, "api_delete");
  // Once the service has recorded the shutdown, there was exactly one DELETE.
  let meetings = [];
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    meetings = (await second.meetings()).filter((m) => m.room_id === "e2e-restart");
    if (meetings.length && meetings.every((m) => m.state !== "running" && m.state !== "stopping")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(meetings.map((m) => m.state), ["shut_down"]);
  assert.deepEqual(byKind(await sandbox.events(), "api_delete").map((e) => e.status), [204]);
  assert.equal(await alice.page.evaluate(() => window.e2e.guard.state), "stopped");
});

test("5. the hard-limit service warns the meeting in its chat before the cut: the SDK emits chat with the text, then exit", { skip: NEEDS_HARD_LIMIT }, async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const service = await startHardLimit(sandbox, {
    bin: HARD_LIMIT,
    database: join(db.path, "hl.db"),
    maxDuration: "8s",
    args: ["--warn-before", "4s"],
  });
  cleanups.push(service.stop);
  // A user the guard leaves alone: only the service acts in this meeting.
  const alice = await joinInBrowser(sandbox, "e2e-warned", "alice", { timeoutMs: 600000, promptMs: 60000 });

  await alice.page.waitForFunction(() => window.e2e.chats.length > 0, null, { timeout: 15000 });
  const warned = await alice.page.evaluate(() => window.e2e);
  assert.deepEqual(
    warned.chats.map((c) => [c.content, c.user, c.guest]),
    [["This meeting ends in 4 seconds.", "Meeting limit", true]],
    "the SDK's onEvent saw one chat event from the service's guest",
  );
  assert.ok(!warned.sdkEvents.includes("exit"), "the chat came while the meeting still ran");

  await alice.page.waitForFunction(() => window.e2e.sdkEvents.includes("exit"), null, { timeout: 15000 });
  const page = await alice.page.evaluate(() => window.e2e);
  assert.ok(page.sdkEvents.indexOf("chat") < page.sdkEvents.indexOf("exit"), `chat before exit: ${page.sdkEvents}`);
  assert.equal(page.chats.length, 1, "warned once");

  const events = await sandbox.waitForEvents((ev) => byKind(ev, "meeting_ended").length === 1, { what: "the shutdown" });
  const story = events
    .filter((e) => e.kind !== "webhook_delivered")
    .map((e) => [e.kind, e.reason ?? e.status ?? e.reached ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null],
    ["user_joined", null],
    ["guest_joined", null],
    ["chat", 1],
    ["api_delete", 204],
    ["user_left", "meeting_ended"],
    ["meeting_ended", "api_delete"],
  ]);
  const started = Date.parse(events[0].started_at);
  const chat = byKind(events, "chat")[0];
  assert.equal(chat.content, "This meeting ends in 4 seconds.");
  assert.ok(Date.parse(chat.at) - started >= 4000, `not warned before deadline - 4 s (${Date.parse(chat.at) - started} ms)`);
  assert.ok(Date.parse(byKind(events, "meeting_ended")[0].at) - started >= 8000, "shut down at the limit, not before");
  assert.deepEqual(byKind(events, "user_joined").map((e) => e.user_name), ["alice"], "the guest never became a participant");
  assert.deepEqual(alice.uncaught, []);
});
