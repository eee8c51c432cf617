// End to end: the hard-limit service's alone rule (issue 18) with the real
// eyeson SDK (npm eyeson 1.9.6) in headless Chromium, guarded by the built
// package (pkg/) with `hardLimit` pointing at the service, on the eyeson
// sandbox and the service running as real processes on 127.0.0.1. Needs
// `node scripts/build.mjs` and `cargo build -p eyeson-sandbox -p
// eyeson-hard-limit` first.
//
// Two users meet, one leaves: the other is counted alone by the service's
// presence checks (the sandbox answers `GET /rooms/{id}/users?online=true`
// from the connected SDKs), gets the chat warning `--warn-before` ahead of
// the alone end and the guard's alone notice; then either nobody joins and
// the service ends the meeting once (recorded `ended_alone`), or a third
// user joins during the warning and nothing ends.
//
// Why 24 s: the guard reads the service 1 s after the SDK's podium says the
// user is alone, then every 15 s while an alone deadline is pending. The
// service counts at its next presence check (here every 1 s), so that first
// read may come just before the count: the notice must then come from the
// read 15 s later, and the second test must still have time to join a user
// after it. The two tests run concurrently (each with its own sandbox and
// service) to keep the file near 30 s.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { builtBinary, startHardLimit, startMeetingPages, startSandbox, stopMeetingPages, tempDir, waitFor } from "./support/system.mjs";

const HARD_LIMIT = process.env.EYESON_HARD_LIMIT_BIN || builtBinary("eyeson-hard-limit");
const NEEDS_HARD_LIMIT = HARD_LIMIT ? false : "needs the eyeson-hard-limit binary (cargo build -p eyeson-hard-limit)";

const ALONE_AFTER = 24000;
const WARN_BEFORE = 8000;
/** The guard's hardLimitNoticeMs: the alone notice shows 12 s ahead of the alone end. */
const NOTICE = 12000;
const WARNING = "You are the only participant. This meeting ends in 8 seconds unless someone joins.";
const ALONE_NOTICE = /^You are the only participant\. This meeting ends in (\d+ s|\d+:\d\d) unless someone joins\.$/;

let web, browser;

before(async () => {
  ({ web, browser } = await startMeetingPages());
});
after(() => stopMeetingPages({ web, browser }));

/** The sandbox and the service with the alone rule; cleaned up after test `t`. */
async function system(t) {
  const cleanups = [];
  t.after(async () => {
    while (cleanups.length) await cleanups.pop()();
  });
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const db = tempDir();
  cleanups.push(db.remove);
  const service = await startHardLimit(sandbox, {
    bin: HARD_LIMIT,
    database: join(db.path, "hl.db"),
    // The hard deadline is far away: only the alone rule acts.
    maxDuration: "10m",
    args: ["--alone-after", `${ALONE_AFTER / 1000}s`, "--warn-before", `${WARN_BEFORE / 1000}s`, "--presence-every", "1s"],
  });
  cleanups.push(service.stop);

  /** Opens the meeting page for `user`; resolves once the SDK emitted `accept` and the guard armed. */
  async function joinInBrowser(room, user) {
    const joined = await sandbox.join(room, user);
    const context = await browser.newContext();
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const uncaught = [];
    page.on("pageerror", (e) => uncaught.push(String(e)));
    const query = new URLSearchParams({
      api: sandbox.url, key: joined.access_key, timeout: 600000, prompt: 60000, hardLimit: service.url, notice: NOTICE,
    });
    await page.goto(`${web.url}/e2e/meeting.html?${query}`);
    await until(page, () => window.e2e && (window.e2e.error || window.e2e.sdkEvents.includes("accept")), null, `${user} reaches accept`, 20000);
    assert.equal(await page.evaluate(() => window.e2e.error), null);
    await until(page, () => window.e2e.guard.state === "active", null, `${user}'s guard arms`);
    return { page, userId: joined.user.id, uncaught };
  }

  /** The room's newest meeting in the admin `GET /meetings`. */
  async function meeting(room) {
    return (await service.meetings()).find((m) => m.room_id === room);
  }

  /** Waits until the room's meeting satisfies `predicate`; resolves with it. */
  async function meetingWhen(room, predicate, what, timeoutMs = 15000) {
    let last;
    return waitFor(
      async () => {
        last = await meeting(room);
        return last && predicate(last) && last;
      },
      { timeoutMs, what: () => `${what}; the service lists ${JSON.stringify(last)}` },
    );
  }

  async function history(room) {
    return (await fetch(`${service.admin}/meetings/${room}/history`)).json();
  }

  return { sandbox, service, joinInBrowser, meeting, meetingWhen, history };
}

/** Waits until `predicate(arg)` holds in `page`; resolves with its value; says what the page saw when it does not. */
async function until(page, predicate, arg, what, timeout = 10000) {
  const handle = await page.waitForFunction(predicate, arg, { timeout, polling: 50 }).catch(async (e) => {
    const seen = await page
      .evaluate(() => window.e2e && { ...window.e2e, guard: window.e2e.guard && { state: window.e2e.guard.state } })
      .catch(() => null);
    throw new Error(`${what}; the page saw ${JSON.stringify(seen)}\n${e}`);
  });
  return handle.jsonValue();
}

/** The guard's notice as the user sees it (`null`: none); run in the page. */
const noticeText = () => {
  const host = document.querySelector("[data-eyeson-guard-notice]");
  return host?.shadowRoot?.querySelector("[aria-hidden=true]")?.textContent ?? null;
};

/** The notice's countdown ("m:ss" or "N s") in ms. */
function shownMs(text) {
  const m = /(\d+):(\d\d)|(\d+) s/.exec(text);
  assert.ok(m, `a countdown in ${JSON.stringify(text)}`);
  return (m[1] !== undefined ? Number(m[1]) * 60 + Number(m[2]) : Number(m[3])) * 1000;
}

const byKind = (events, kind) => events.filter((e) => e.kind === kind);

/**
 * Bob and alice meet in `room`; once the service counts both, bob leaves.
 * Resolves when the service's alone clock runs, with alice and the alone
 * end (`aloneEnd`, ms) the service set.
 */
async function leftAlone(sys, room) {
  const bob = await sys.joinInBrowser(room, "bob");
  const alice = await sys.joinInBrowser(room, "alice");
  await sys.meetingWhen(room, (m) => m.participants === 2 && m.alone_deadline === null, "the service counts bob and alice");

  const leftAt = Date.now();
  await bob.page.evaluate(() => window.eyeson.default.destroy());
  await sys.sandbox.waitForEvents((ev) => ev.some((e) => e.kind === "user_left" && e.user_id === bob.userId), { what: "bob's leave" });
  // The service counts alice alone at its next presence check (every 1 s).
  const alone = await sys.meetingWhen(
    room,
    (m) => m.alone_deadline !== null && Date.parse(m.alone_since) >= leftAt,
    "the service's alone clock starts after bob left",
    5000,
  );
  assert.equal(alone.participants, 1);
  assert.equal(alone.state, "running");
  const aloneEnd = Date.parse(alone.alone_deadline);
  const since = aloneEnd - ALONE_AFTER - leftAt;
  assert.ok(since >= 0 && since < 2000, `the alone clock started ${since} ms after bob left, at the next check`);
  return { alice, aloneEnd, leftAt };
}

/**
 * Waits, on alice's page, for the service's warning in the chat and the
 * guard's alone notice (onHardLimit with kind "alone" and the service's
 * alone end), both before that end and while the meeting runs.
 */
async function warned(alice, aloneEnd, leftAt, t) {
  const left = () => Math.max(aloneEnd - Date.now(), 1000);
  const chat = await until(alice.page, () => window.e2e.chats[0] ?? null, null, "the chat warning", left() + 3000);
  assert.deepEqual([chat.content, chat.user, chat.guest], [WARNING, "Meeting limit", true], "from the service's guest");
  assert.ok(chat.at >= aloneEnd - WARN_BEFORE - 100, `warned ${aloneEnd - chat.at} ms before the alone end, not more than --warn-before`);
  assert.ok(chat.at < aloneEnd, `warned ${aloneEnd - chat.at} ms before the alone end`);

  const call = await until(
    alice.page,
    (end) => window.e2e.hardLimitCalls.find((c) => c.end === end) ?? null,
    aloneEnd,
    "onHardLimit reports the alone end",
    left() + 3000,
  );
  assert.equal(call.kind, "alone");
  assert.ok(call.at < aloneEnd);
  t.diagnostic(`the guard had the alone end ${call.at - leftAt} ms after bob left (${aloneEnd - call.at} ms ahead of it)`);

  const shown = await until(
    alice.page,
    () => {
      const host = document.querySelector("[data-eyeson-guard-notice]");
      const text = host?.shadowRoot?.querySelector("[aria-hidden=true]")?.textContent;
      return text && !window.e2e.sdkEvents.includes("exit") ? { text, at: Date.now() } : null;
    },
    null,
    "the alone notice shows while the meeting runs",
    left() + 3000,
  );
  assert.match(shown.text, ALONE_NOTICE);
  assert.ok(Math.abs(shownMs(shown.text) - (aloneEnd - shown.at)) <= 1100, `shows ${shown.text} with ${aloneEnd - shown.at} ms to the alone end`);
  assert.ok(aloneEnd - shown.at <= NOTICE + 100, `shown ${aloneEnd - shown.at} ms ahead, not more than hardLimitNoticeMs`);
  return { chat, shown };
}

describe("the alone rule end to end", { skip: NEEDS_HARD_LIMIT, concurrency: true }, () => {
  test("left alone and nobody joins: warned in the chat, the notice counts down, the service ends the meeting once (ended_alone)", async (t) => {
    const sys = await system(t);
    const room = "e2e-alone-ends";
    const { alice, aloneEnd, leftAt } = await leftAlone(sys, room);
    await warned(alice, aloneEnd, leftAt, t);

    // Nobody joins: the service ends the meeting at the alone end; alice's SDK exits.
    await until(alice.page, () => window.e2e.sdkEvents.includes("exit"), null, "alice's SDK sees the meeting end", aloneEnd - Date.now() + 10000);
    await until(alice.page, () => window.e2e.guard.state === "stopped", null, "alice's guard stops");
    const seen = await alice.page.evaluate(() => window.e2e);
    assert.equal(seen.guardEvents.at(-1), "stop:exit");
    assert.ok(seen.sdkEvents.indexOf("chat") < seen.sdkEvents.indexOf("exit"), `the warning came before the end: ${seen.sdkEvents}`);
    assert.equal(seen.chats.length, 1, "warned once");
    assert.equal(seen.hardLimitCalls.at(-1).kind, "alone", "the last end onHardLimit reported is the alone one");
    assert.equal(await alice.page.evaluate(noticeText), null, "the notice is gone with the meeting");

    const ended = await sys.meetingWhen(room, (m) => m.state !== "running" && m.state !== "stopping", "the service records the end");
    assert.equal(ended.ended_alone, true, JSON.stringify(ended));
    assert.equal(ended.state, "shut_down");
    assert.equal(ended.alone_deadline, null, "no alone end once the meeting is over");

    const events = (await sys.sandbox.events()).filter((e) => e.room_id === room);
    assert.deepEqual(byKind(events, "api_delete").map((e) => e.status), [204], "one DELETE");
    assert.deepEqual(byKind(events, "meeting_ended").map((e) => e.reason), ["api_delete"]);
    const endedAt = Date.parse(byKind(events, "meeting_ended")[0].at);
    assert.ok(endedAt >= aloneEnd, `ended ${aloneEnd - endedAt} ms before the alone end`);
    assert.ok(endedAt - aloneEnd < 3000, `ended ${endedAt - aloneEnd} ms after the alone end`);
    assert.deepEqual(byKind(events, "chat").map((e) => [e.content, e.user_name, e.reached]), [[WARNING, "Meeting limit", 1]]);

    const { meetings } = await sys.history(room);
    assert.equal(meetings.length, 1);
    const story = meetings[0].events.map((e) => e.event);
    assert.equal(story.filter((e) => e === "ended_alone").length, 1, `ended_alone once: ${story}`);
    assert.equal(story.at(-1), "ended_alone", `the last event: ${story}`);
    assert.ok(story.lastIndexOf("alone") < story.indexOf("ended_alone"), `alone, then ended_alone: ${story}`);
    assert.deepEqual(alice.uncaught, []);
  });

  test("left alone, then someone joins during the warning: the notice goes, nothing ends", async (t) => {
    const sys = await system(t);
    const room = "e2e-alone-rescued";
    const { alice, aloneEnd, leftAt } = await leftAlone(sys, room);
    await warned(alice, aloneEnd, leftAt, t);

    // Carol joins during the warning.
    const carol = await sys.joinInBrowser(room, "carol");
    const joinedAt = Date.now();
    assert.ok(joinedAt < aloneEnd - 1500, `carol joined ${aloneEnd - joinedAt} ms before the alone end: too late to test anything`);
    const company = await sys.meetingWhen(room, (m) => m.participants === 2 && m.alone_deadline === null, "the service counts alice and carol");
    assert.equal(company.state, "running");

    // The notice goes: onHardLimit reports the hard deadline again, and the
    // deadline, 10 minutes away, is not shown.
    const deadline = Date.parse(company.deadline);
    const back = await until(
      alice.page,
      (end) => {
        const last = window.e2e.hardLimitCalls.at(-1);
        return !document.querySelector("[data-eyeson-guard-notice]") && last.end === end ? last : null;
      },
      deadline,
      "alice's notice goes once carol is in",
      20000,
    );
    assert.equal(back.kind, "deadline");
    t.diagnostic(`alice's notice went ${back.at - joinedAt} ms after carol joined`);

    // The would-be alone end passes, and a later check still counts two.
    await sys.meetingWhen(
      room,
      (m) => Date.now() > aloneEnd + 2000 && m.participants === 2,
      "the alone end passes",
      aloneEnd - Date.now() + 5000,
    );
    const still = await sys.meeting(room);
    assert.equal(still.state, "running");
    assert.equal(still.alone_deadline, null);
    assert.equal(still.ended_alone, false);
    const events = (await sys.sandbox.events()).filter((e) => e.room_id === room);
    assert.deepEqual(byKind(events, "api_delete"), [], "no DELETE");
    assert.deepEqual(byKind(events, "meeting_ended"), []);
    assert.equal(await alice.page.evaluate(() => window.e2e.guard.state), "active");
    assert.ok(!(await alice.page.evaluate(() => window.e2e.sdkEvents.includes("exit"))));
    assert.equal(await alice.page.evaluate(noticeText), null, "no notice");
    assert.equal((await alice.page.evaluate(() => window.e2e.chats)).length, 1, "warned once");
    assert.deepEqual(await carol.page.evaluate(() => window.e2e.chats), [], "carol joined after the warning");

    const { meetings } = await sys.history(room);
    const story = meetings[0].events.map((e) => e.event);
    assert.ok(!story.includes("ended_alone"), `${story}`);
    assert.ok(story.lastIndexOf("alone") < story.lastIndexOf("company"), `alone, then company: ${story}`);
    assert.deepEqual(alice.uncaught, []);
    assert.deepEqual(carol.uncaught, []);
  });
});
