// The demo as a user runs it (`node scripts/demo.mjs`, here with --no-build
// and free ports): it prints a URL, the page joins a sandbox meeting with the
// real SDK and the guard, and SIGTERM (as Ctrl-C) stops every process. The
// service runs the alone rule at demo sizes: the banner says how to try it,
// a visitor alone gets the chat warning a minute ahead, a second tab cancels.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { freePort, root, spawnProcess, waitFor } from "./support/system.mjs";

let browser;
before(async () => {
  browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
});
after(async () => {
  await browser?.close();
});

const sandboxEvents = async (url) => (await fetch(`${url}/_sandbox/events`)).json();

test("the demo starts, joins a guarded sandbox meeting from its page, and stops cleanly", async () => {
  const demo = await spawnProcess(
    process.execPath,
    [join(root, "scripts/demo.mjs"), "--no-build"],
    { DEMO_PORT: "0", SANDBOX_PORT: "0", HARD_LIMIT_PORT: String(await freePort()), HARD_LIMIT_ADMIN_PORT: String(await freePort()), EYESON_API_KEY: "" },
    { ready: /Open (\S+)/, timeoutMs: 20000 },
  );
  try {
    const sandboxUrl = demo.output.map((l) => l.match(/eyeson sandbox: (\S+)/)).find(Boolean)?.[1];
    assert.ok(sandboxUrl, demo.output.join("\n"));
    // The alone rule is on at demo sizes, and the banner says how to see it.
    const banner = demo.output.join("\n");
    assert.match(banner, /join alone; after about 30 s a chat warning and a notice on the page appear; open a second tab/);
    const consoleUrl = banner.match(/operator console: (http\S+)/)?.[1];
    assert.ok(consoleUrl, banner);
    const limits = await (await fetch(`${consoleUrl}limits`)).json();
    assert.equal(limits.alone_after.default, "1m 30s");

    const page = await browser.newPage();
    await page.goto(demo.match[1]);
    await page.getByLabel("Name").fill("visitor");
    await page.getByRole("button", { name: "Join" }).click();
    await page.waitForFunction(() => document.getElementById("state").textContent === "active", null, { timeout: 20000 });
    const events = await waitFor(
      async () => {
        const ev = await sandboxEvents(sandboxUrl);
        return ev.some((e) => e.kind === "user_joined") && ev;
      },
      { what: "the join in the sandbox's events" },
    );
    assert.deepEqual(
      events.filter((e) => e.kind === "user_joined").map((e) => [e.room_id, e.user_name]),
      [["demo", "visitor"]],
    );

    await page.getByRole("button", { name: "Leave" }).click();
    await waitFor(async () => {
      const ev = await sandboxEvents(sandboxUrl);
      return ev.some((e) => e.kind === "meeting_ended" && e.reason === "last_user_left");
    }, { what: "the meeting's end after Leave" });
    await page.close();
  } finally {
    await demo.stop();
  }
  assert.equal(demo.child.exitCode, 0, demo.output.slice(-10).join("\n"));
  const sandboxUrl = demo.output.map((l) => l.match(/eyeson sandbox: (\S+)/)).find(Boolean)[1];
  await assert.rejects(fetch(`${sandboxUrl}/_sandbox/events`), "the sandbox stopped with the demo");
});

/** The text of element `id` in the demo page. */
const text = (page, id) => page.evaluate((id) => document.getElementById(id).textContent, id);
/** Waits until element `id`'s text is `expected`, or matches it if a RegExp. */
const waitText = (page, id, expected, timeout = 10000) => {
  const pattern = expected instanceof RegExp ? expected.source : null;
  return page
    .waitForFunction(
      ([id, expected, pattern]) => {
        const now = document.getElementById(id).textContent;
        return pattern === null ? now === expected : new RegExp(pattern).test(now);
      },
      [id, String(expected), pattern],
      { timeout },
    )
    .catch(async (e) => {
      const wanted = pattern === null ? JSON.stringify(expected) : expected;
      throw new Error(`#${id} stayed ${JSON.stringify(await text(page, id))}, expected ${wanted}\n${e}`);
    });
};

test("the demo shows presence and the service's deadline, says plainly when the meeting ended, and joins again without a reload", async () => {
  const demo = await spawnProcess(
    process.execPath,
    [join(root, "scripts/demo.mjs"), "--no-build"],
    { DEMO_PORT: "0", SANDBOX_PORT: "0", HARD_LIMIT_PORT: String(await freePort()), HARD_LIMIT_ADMIN_PORT: String(await freePort()), EYESON_API_KEY: "", HARD_LIMIT: "20s" },
    { ready: /Open (\S+)/, timeoutMs: 20000 },
  );
  try {
    const sandboxUrl = demo.output.map((l) => l.match(/eyeson sandbox: (\S+)/)).find(Boolean)?.[1];
    const hardLimitUrl = demo.output.map((l) => l.match(/hard-limit service: (http\S+)/)).find(Boolean)?.[1];
    assert.ok(sandboxUrl && hardLimitUrl, demo.output.join("\n"));
    const page = await browser.newPage();
    const uncaught = [];
    page.on("pageerror", (e) => uncaught.push(String(e)));
    await page.goto(demo.match[1]);
    await page.getByLabel("Name").fill("speaker");
    await page.getByRole("button", { name: "Join" }).click();
    await waitText(page, "state", "active", 20000);
    await waitText(page, "alone", "yes");
    await waitText(page, "speaking", "no");
    // "off" until the guard's IdleDetector start (a permission query) settles.
    await waitText(page, "os-idle", /^(denied|unavailable|active|idle|locked)$/);

    // The speak toggle drives the sandbox's voice control; the guard sees the user speak.
    const speak = page.getByRole("button", { name: "Speak" });
    await speak.click();
    await waitText(page, "speaking", "yes");
    assert.equal(await speak.getAttribute("aria-pressed"), "true");
    await speak.click();
    await waitText(page, "speaking", "no");
    const voice = (await sandboxEvents(sandboxUrl)).filter((e) => e.kind === "voice_activity");
    assert.deepEqual(voice.map((e) => [e.user_name, e.on]), [["speaker", true], ["speaker", false]]);

    // The hard deadline comes from the service (its public per-room endpoint,
    // which shows a meeting to its guest token: the page's SDK has it).
    const token = await page.evaluate(() => window.eyeson.default.room.guest_token);
    const meeting = await (await fetch(`${hardLimitUrl}/meetings/demo`, { headers: { "x-eyeson-guest-token": token } })).json();
    const shown = await page.evaluate((iso) => new Date(Date.parse(iso)).toLocaleTimeString(), meeting.deadline);
    await waitText(page, "deadline", shown);
    await page.locator("[data-eyeson-guard-notice]").waitFor({ timeout: 10000 });

    // The service ends the meeting at its deadline.
    await page.waitForFunction(() => /^The meeting has ended for this tab/.test(document.getElementById("ended").textContent), null, {
      timeout: 30000,
    });
    assert.match(await text(page, "ended"), /ended \(for everyone\)/);
    assert.equal(await page.getByRole("button", { name: "Leave" }).isDisabled(), true);
    assert.equal(await speak.isDisabled(), true);
    assert.equal(await page.getByRole("button", { name: "Join" }).isDisabled(), false);
    assert.equal(await text(page, "deadline"), "ended");
    // The countdowns stopped: a running one past the deadline would show "0 s".
    await waitText(page, "hard-left", "–");
    await waitText(page, "left", "–");
    assert.equal(await page.locator("[data-eyeson-guard-notice]").count(), 0, "the notice went with the meeting");

    // Join again, same page, no reload: a new meeting of the room.
    await page.getByRole("button", { name: "Join" }).click();
    await waitText(page, "state", "active", 20000);
    await waitText(page, "ended", "");
    assert.equal(await page.getByRole("button", { name: "Leave" }).isDisabled(), false);
    const rejoined = await waitFor(
      async () => {
        const ev = await sandboxEvents(sandboxUrl);
        return ev.filter((e) => e.kind === "user_joined").length === 2 && ev;
      },
      { what: "the second join in the sandbox's events" },
    );
    const starts = rejoined.filter((e) => e.kind === "meeting_started");
    assert.equal(starts.length, 2, "a new meeting");
    await page.getByRole("button", { name: "Leave" }).click();
    await page.waitForFunction(() => /you left/.test(document.getElementById("ended").textContent), null, { timeout: 5000 });
    await waitFor(async () => (await sandboxEvents(sandboxUrl)).filter((e) => e.kind === "meeting_ended").length === 2, {
      what: "the second meeting's end after Leave",
    });
    const ends = (await sandboxEvents(sandboxUrl)).filter((e) => e.kind === "meeting_ended").map((e) => e.reason);
    assert.deepEqual(ends, ["api_delete", "last_user_left"]);
    assert.deepEqual(uncaught, []);
    await page.close();
  } finally {
    await demo.stop();
  }
});

test("the demo's alone rule: a visitor alone gets the service's chat warning in the page's log; a second tab cancels the alone end", async () => {
  const demo = await spawnProcess(
    process.execPath,
    [join(root, "scripts/demo.mjs"), "--no-build"],
    { DEMO_PORT: "0", SANDBOX_PORT: "0", HARD_LIMIT_PORT: String(await freePort()), HARD_LIMIT_ADMIN_PORT: String(await freePort()), EYESON_API_KEY: "" },
    { ready: /Open (\S+)/, timeoutMs: 20000 },
  );
  const contexts = [];
  try {
    const banner = demo.output.join("\n");
    const hardLimitUrl = banner.match(/hard-limit service: (http\S+)/)?.[1];
    const consoleUrl = banner.match(/operator console: (http\S+)/)?.[1];
    assert.ok(hardLimitUrl && consoleUrl, banner);
    const joinAs = async (name) => {
      const context = await browser.newContext();
      contexts.push(context);
      const page = await context.newPage();
      await page.goto(demo.match[1]);
      await page.getByLabel("Name").fill(name);
      await page.getByRole("button", { name: "Join" }).click();
      await waitText(page, "state", "active", 20000);
      return page;
    };
    const alone = await joinAs("alone");
    const token = await alone.evaluate(() => window.eyeson.default.room.guest_token);
    const publicMeeting = async () => (await fetch(`${hardLimitUrl}/meetings/demo`, { headers: { "x-eyeson-guest-token": token } })).json();
    const logText = () => alone.evaluate(() => document.getElementById("log").textContent);
    // Alone, and active (the guard's own soft limit ends an idle tab): the
    // warning comes about 30 s after the join (90 s alone, warned 60 s before).
    let x = 10;
    let seen = "";
    await waitFor(
      async () => {
        await alone.mouse.move((x = 40 - x), 200); // presence for the guard
        seen = await logText();
        return /chat from Meeting limit: You are the only participant\. This meeting ends in 1 minute unless someone joins\./.test(seen);
      },
      { timeoutMs: 50000, intervalMs: 1000, what: () => `the alone warning in the page's log:\n${seen}` },
    );
    const before = await publicMeeting();
    assert.ok(before.alone_deadline, JSON.stringify(before));
    assert.ok(Date.parse(before.alone_deadline) < Date.parse(before.deadline), "the alone end comes first");

    // A second tab joins: the next check (every 5 s) cancels the alone end.
    await joinAs("friend");
    await waitFor(
      async () => {
        await alone.mouse.move((x = 40 - x), 200);
        return (await publicMeeting()).alone_deadline === null;
      },
      { timeoutMs: 15000, intervalMs: 500, what: "the alone end cancelled by the second tab" },
    );
    const history = await (await fetch(`${consoleUrl}meetings/demo/history`)).json();
    const events = history.meetings[0].events.filter((e) => ["alone", "warned", "company"].includes(e.event));
    assert.deepEqual(events.map((e) => e.event), ["alone", "warned", "company"]);
    // On time: a minute ahead of the alone end, as its text says (not at the deadline's warning time).
    const ahead = Date.parse(before.alone_deadline) - Date.parse(events[1].at);
    assert.ok(ahead > 58_000 && ahead <= 60_000, `warned ${ahead} ms before the alone end`);
    assert.equal(history.meetings[0].state, "running");
  } finally {
    for (const c of contexts) await c.close();
    await demo.stop();
  }
});
