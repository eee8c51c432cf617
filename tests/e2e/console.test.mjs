// The hard-limit service's operator console (GET / on its admin listener)
// in headless Chromium: the real service binary with a real SQLite file,
// eyeson played by the sandbox (eyeson-sandbox as a process, meetings run on
// its meeting page, its event log recording every API-key DELETE), and the
// page as an operator uses it: the admin token asked once, a tracked
// meeting listed, an extension made in the page moving the deadline the API
// reports, end now (confirmed) making eyeson see exactly one DELETE and end
// the meeting. Also axe-core on the page, and no sideways scrolling at
// 1280×800 and at a phone's width.
//
// Needs `cargo build -p eyeson-sandbox -p eyeson-hard-limit` (or
// EYESON_HARD_LIMIT_BIN for the service); skipped otherwise.
// CONSOLE_SCREENSHOTS=DIR keeps screenshots there.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { builtBinary, deliverRoomUpdate, root, runMeeting, spawnProcess, startSandbox, tempDir, waitFor } from "./support/system.mjs";

const HARD_LIMIT = process.env.EYESON_HARD_LIMIT_BIN || builtBinary("eyeson-hard-limit");
const SKIP = !HARD_LIMIT
  ? "needs the eyeson-hard-limit binary (cargo build -p eyeson-hard-limit)"
  : !builtBinary("eyeson-sandbox")
    ? "needs the eyeson-sandbox binary (cargo build -p eyeson-sandbox)"
    : false;
const KEY = "console-test-key";
const TOKEN = "console-admin-token-5d1e";
const MEDIA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"];

let browser, sandbox, service, db, publicUrl, adminUrl;
const meetings = [];

before(async () => {
  if (SKIP) return;
  sandbox = await startSandbox({ apiKey: KEY });
  db = tempDir();
  service = await spawnProcess(
    HARD_LIMIT,
    [
      "--api-key", KEY,
      "--api-url", sandbox.url,
      "--listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--database", `sqlite://${join(db.path, "hl.db")}`,
      "--max-duration", "30m",
      "--reconcile-every", "1h",
    ],
    { RUST_LOG: "info", ADMIN_TOKEN: TOKEN },
    { ready: /listening addr=(\S+) admin=(\S+)/ },
  );
  publicUrl = `http://${service.match[1]}`;
  adminUrl = `http://${service.match[2]}`;
  browser = await launch(MEDIA);
});

after(async () => {
  while (meetings.length) await meetings.pop().close();
  await browser?.close();
  await service?.stop();
  await sandbox?.stop();
  db?.remove();
});

/**
 * A meeting of `room` running on the sandbox (its host on the meeting page),
 * announced to the service at `url` by the signed room_update eyeson sends
 * when a meeting starts; resolves with its start.
 */
async function meetingStarts(room, url = publicUrl) {
  const meeting = await runMeeting(sandbox, browser, room);
  meetings.push(meeting);
  assert.equal(await deliverRoomUpdate(`${url}/webhook`, KEY, meeting.room), 204);
  return new Date(meeting.room.started_at);
}

/** What the sandbox logged of the API-key `DELETE /rooms/{room_id}` calls: `[room_id, status]`. */
async function deletes() {
  return (await sandbox.events()).filter((e) => e.kind === "api_delete").map((e) => [e.room_id, e.status]);
}

async function apiMeeting(room) {
  const r = await fetch(`${adminUrl}/meetings`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  return (await r.json()).find((m) => m.room_id === room);
}

async function noSidewaysScroll(page, what) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width, `${what}: the page is ${scroll}px wide in a ${width}px window`);
}

async function axe(page) {
  // Evaluated through DevTools, not as an inline <script>: the console's policy allows none.
  await page.evaluate(readFileSync(join(root, "node_modules/axe-core/axe.min.js"), "utf8"));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

async function shot(page, name) {
  const dir = process.env.CONSOLE_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, name), fullPage: true });
}

test("the console lists a tracked meeting, extends it and ends it; eyeson sees one DELETE", { skip: SKIP }, async () => {
  const started = await meetingStarts("board room");
  await meetingStarts("webinar-7");
  const before = await apiMeeting("board room");
  assert.equal(Date.parse(before.deadline), Math.floor(started.getTime()) + 30 * 60_000);

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A script or style the Content-Security-Policy blocks shows up as a console error.
  page.on("console", (m) => m.type() === "error" && /Content Security Policy/i.test(m.text()) && errors.push(m.text()));
  await page.goto(`${adminUrl}/`);

  // The token is asked for once (the first call answered 401), then kept for the tab.
  const tokenDialog = page.getByRole("dialog", { name: "Admin token" });
  await tokenDialog.waitFor();
  await tokenDialog.getByLabel("Token").fill(TOKEN);
  await tokenDialog.getByRole("button", { name: "Continue" }).click();
  const row = page.locator("#open tbody tr", { hasText: "board room" });
  await row.waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("eyeson-hard-limit-admin-token")), TOKEN);
  assert.match(await row.locator("td[data-label='State']").textContent(), /running/);
  assert.match(await row.locator("td[data-label='Limit']").textContent(), /30m/);
  const countdown = await row.locator("td[data-label='Time left']").textContent();
  assert.match(countdown, /^(28|29):\d\d$/, `countdown ${countdown}`);

  // A limit for later meetings, edited in the page.
  await page.getByLabel("Room id or prefix").fill("webinar-");
  await page.getByLabel("Applies to").selectOption("prefixes");
  await page.getByLabel("Limit", { exact: true }).fill("2h");
  await page.getByRole("button", { name: "Add limit" }).click();
  await page.getByRole("textbox", { name: "Limit for prefix webinar-" }).waitFor();
  const limits = await (await fetch(`${adminUrl}/limits`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
  assert.equal(limits.prefixes["webinar-"], "2h");

  await shot(page, "console-1280.png");
  await noSidewaysScroll(page, "1280×800");
  const violations = await axe(page);
  assert.deepEqual(violations, [], "axe-core finds no accessibility violation");

  // +15 min, then a custom hour: the API reports each new deadline.
  await row.getByRole("button", { name: "+15 min – extend the meeting in board room by 15 minutes" }).click();
  await waitFor(async () => Date.parse((await apiMeeting("board room")).deadline) === Date.parse(before.deadline) + 15 * 60_000, {
    timeoutMs: 5000,
    what: "the deadline moved by 15 minutes",
  });
  await row.getByRole("button", { name: "Custom… – extend the meeting in board room by a custom amount" }).click();
  const custom = page.getByRole("dialog", { name: "Extend the meeting in board room" });
  await custom.getByLabel("Extend by").fill("1h");
  await custom.getByRole("button", { name: "Extend", exact: true }).click();
  await waitFor(async () => Date.parse((await apiMeeting("board room")).deadline) === Date.parse(before.deadline) + 75 * 60_000, {
    timeoutMs: 5000,
    what: "the deadline moved by another hour",
  });
  await page.locator("#status", { hasText: "Extended the meeting in board room by 1h" }).waitFor();
  await waitFor(async () => /moved/.test(await row.locator("td[data-label='Limit']").textContent()), {
    timeoutMs: 10000,
    what: "the page shows the moved deadline",
  });

  // End now: confirmed in a dialog; a refusal keeps it running.
  await row.getByRole("button", { name: "End now – end the meeting in board room now" }).click();
  await page.getByRole("dialog", { name: "End the meeting now?" }).getByRole("button", { name: "Keep it running" }).click();
  assert.equal((await apiMeeting("board room")).state, "running");
  await row.getByRole("button", { name: "End now – end the meeting in board room now" }).click();
  await page.getByRole("dialog", { name: "End the meeting now?" }).getByRole("button", { name: "End meeting" }).click();
  await waitFor(async () => (await apiMeeting("board room")).state === "shut_down", { timeoutMs: 10000, what: "the meeting shut down" });
  assert.deepEqual(await deletes(), [["board room", 204]], "exactly one DELETE, for that room");
  const ended = (await sandbox.events()).filter((e) => e.kind === "meeting_ended").map((e) => [e.room_id, e.reason]);
  assert.deepEqual(ended, [["board room", "api_delete"]], "eyeson ended that meeting, and only that one");
  const finished = page.locator("#done tbody tr", { hasText: "board room" });
  await finished.waitFor({ timeout: 10000 });
  assert.match(await finished.textContent(), /shut down/);

  // The room's history in the page: the operator's actions among the meeting's transitions.
  await finished.getByRole("button", { name: "History – what happened in board room" }).click();
  const historyDialog = page.getByRole("dialog", { name: "History of board room" });
  await historyDialog.waitFor();
  const lines = await historyDialog.locator("li").allTextContents();
  assert.equal(lines.filter((l) => /deadline moved/.test(l)).length, 2, lines.join("\n"));
  assert.ok(lines.some((l) => /ended by an operator .*end now; by 127\.0\.0\.1:/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => /shut down$/.test(l)), lines.join("\n"));
  await shot(page, "console-history.png");
  await historyDialog.getByRole("button", { name: "Close" }).click();

  const history = await (await fetch(`${adminUrl}/meetings/board%20room/history`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
  assert.deepEqual(
    history.meetings[0].events.map((e) => e.event),
    ["started", "tracked", "extend", "extend", "end", "shut_down"],
  );

  // A phone's width: still usable, nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator("#open tbody tr", { hasText: "webinar-7" }).getByRole("button", { name: /by 1 hour/ }).waitFor();
  await noSidewaysScroll(page, "390×844");
  await shot(page, "console-390.png");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a page on another origin can neither end nor extend a meeting through the operator's browser", { skip: SKIP }, async () => {
  // The default setup: admin listener on loopback, no token (what `npm start` runs).
  const dir = tempDir();
  const open = await spawnProcess(
    HARD_LIMIT,
    [
      "--api-key", KEY,
      "--api-url", sandbox.url,
      "--listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--database", `sqlite://${join(dir.path, "hl.db")}`,
      "--reconcile-every", "1h",
    ],
    { RUST_LOG: "info" },
    { ready: /listening addr=(\S+) admin=(\S+)/ },
  );
  const openPublic = `http://${open.match[1]}`;
  const openAdmin = `http://${open.match[2]}`;
  const meeting = async () => (await (await fetch(`${openAdmin}/meetings`)).json()).find((m) => m.room_id === "csrf target");
  // The attacker's page: no-cors fetches (what any site can send without a preflight).
  const evil = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" }).end(`<!doctype html><title>evil</title><script>
      const target = ${JSON.stringify(openAdmin)} + "/meetings/csrf%20target";
      Promise.allSettled([
        fetch(target + "/end", { method: "POST", mode: "no-cors" }),
        fetch(target + "/extend", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"by":"2h"}' }),
        fetch(${JSON.stringify(openAdmin)} + "/meetings").then((r) => r.text()),
      ]).then((r) => { document.title = "done " + r.map((x) => x.status).join(","); });
    </script>`);
  });
  await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
  const deletesBefore = (await deletes()).length;
  const page = await browser.newPage();
  try {
    await meetingStarts("csrf target", openPublic);
    const before = await meeting();
    await page.goto(`http://127.0.0.1:${evil.address().port}/`);
    await waitFor(async () => (await page.title()).startsWith("done"), { timeoutMs: 10000, what: "the attacks ran" });
    // The cross-origin read failed (no CORS); the writes reached the listener and were refused.
    assert.match(await page.title(), /rejected$/);
    const after = await meeting();
    assert.equal(after.state, "running");
    assert.equal(after.deadline, before.deadline, "the deadline did not move");
    assert.equal((await deletes()).length, deletesBefore, "no DELETE was sent");
    const listed = (await sandbox.call("GET", "/rooms")).body.map((r) => r.id);
    assert.ok(listed.includes("csrf target"), `eyeson still runs the meeting: ${listed}`);
    const metrics = await (await fetch(`${openAdmin}/metrics`)).text();
    assert.match(metrics, /hard_limit_admin_requests_refused_total\{reason="origin"\} [3-9]/);
  } finally {
    await page.close();
    await new Promise((r) => evil.close(r));
    await open.stop();
    dir.remove();
  }
});

test("the console shows the alone rule per meeting, turns it off for a room, and tells each alone period in the history", { skip: SKIP }, async () => {
  // Its own sandbox and service: the alone rule on, at test sizes.
  const eyeson = await startSandbox({ apiKey: KEY });
  const dir = tempDir();
  const svc = await spawnProcess(
    HARD_LIMIT,
    [
      "--api-key", KEY,
      "--api-url", eyeson.url,
      "--listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--database", `sqlite://${join(dir.path, "hl.db")}`,
      "--max-duration", "30m",
      "--reconcile-every", "1h",
      "--alone-after", "10s",
      "--warn-before", "6s",
      "--presence-every", "1s",
    ],
    { RUST_LOG: "info", ADMIN_TOKEN: TOKEN },
    { ready: /listening addr=(\S+) admin=(\S+)/ },
  );
  const hook = `http://${svc.match[1]}/webhook`;
  const admin = `http://${svc.match[2]}`;
  const get = async (path) => {
    const r = await fetch(admin + path, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 200, path);
    return r.json();
  };
  const meeting = async (room) => (await get("/meetings")).find((m) => m.room_id === room);
  const until = (room, check, what, timeoutMs = 10000) => {
    let last;
    return waitFor(async () => check((last = await meeting(room))) && last, { timeoutMs, what: () => `${what}; the service lists ${JSON.stringify(last)}` });
  };
  /** A bot joins or leaves the call of `room` (POST /_sandbox/bots); a bot alone starts the meeting. */
  const bot = async (room, name, on) => assert.equal((await eyeson.call("POST", "/_sandbox/bots", { form: { room_id: room, name, on: String(on) } })).status, 204);
  /** A meeting of `room` with one participant (a bot, no browser), tracked by the service. */
  const lonely = async (room, name) => {
    await eyeson.join(room, `host of ${room}`); // the meeting, pending: its host never connects
    await bot(room, name, true);
    const listed = (await eyeson.call("GET", "/rooms")).body.find((r) => r.id === room);
    assert.ok(listed?.started_at, `the bot started the meeting of ${room}`);
    assert.equal(await deliverRoomUpdate(hook, KEY, listed), 204);
  };
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    // "alone desk": one participant; its operator turns the rule off.
    // "left alone": one participant, company for a moment, alone again: ended by the rule.
    await lonely("alone desk", "alice");
    await lonely("left alone", "bob");
    const desk = await until("alone desk", (m) => m.participants === 1 && m.alone_deadline, "alone desk checked: 1, its alone clock running");
    assert.ok(Date.parse(desk.alone_deadline) < Date.parse(desk.deadline), "the alone end comes before the 30m deadline");
    assert.ok(desk.alone_since && !desk.ended_alone);
    await until("left alone", (m) => m.participants === 1 && m.alone_deadline, "left alone checked: 1");
    await bot("left alone", "carol", true);
    await until("left alone", (m) => m.participants === 2 && !m.alone_deadline && !m.alone_since, "company: the clock reset");
    await bot("left alone", "carol", false);

    // The console: participants, since when alone, the alone end marked as the first one.
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${admin}/`);
    const tokenDialog = page.getByRole("dialog", { name: "Admin token" });
    await tokenDialog.getByLabel("Token").fill(TOKEN);
    await tokenDialog.getByRole("button", { name: "Continue" }).click();
    const row = page.locator("#open tbody tr", { hasText: "alone desk" });
    await row.waitFor();
    assert.equal(await row.locator("td[data-label='Participants']").textContent(), "1");
    const aloneCell = row.locator("td[data-label='Alone']");
    assert.match(await aloneCell.innerText(), /^since \d\d:\d\d:\d\d( [AP]M)?\nends \d\d:\d\d:\d\d( [AP]M)? \(first\)$/);
    assert.match(await aloneCell.getAttribute("class"), /\bfirst\b/);
    assert.match(await row.locator("td[data-label='Deadline']").getAttribute("class"), /\blater\b/);
    assert.match(await row.locator("td[data-label='Time left']").textContent(), /^0:0\d \(alone\)$|^due \(alone\)$/);
    await shot(page, "console-alone.png");
    await noSidewaysScroll(page, "1280×800, a meeting alone");
    const violations = await axe(page);
    assert.deepEqual(violations, [], "axe-core finds no accessibility violation");

    // Turned off for that room from the page (PUT /limits/rooms/… {"alone_after": null}).
    await row.getByRole("button", { name: "Alone rule off – turn the alone rule off for room alone desk" }).click();
    await page.locator("#status", { hasText: "Alone rule off for room alone desk" }).waitFor();
    const limits = await get("/limits");
    assert.equal(limits.alone_after.rooms["alone desk"], "off");
    assert.equal(limits.alone_after.default, "10s");
    // The next check clears the clock; the meeting runs past the alone end it had.
    await until("alone desk", (m) => m.alone_deadline === null && m.alone_since === null, "the clock cleared", 5000);
    await waitFor(async () => Date.now() > Date.parse(desk.alone_deadline) + 2000 && (await meeting("left alone")).ended_alone, {
      timeoutMs: 20000,
      what: "left alone ended by the rule, and alone desk's old alone end passed",
    });
    assert.equal((await meeting("alone desk")).state, "running");
    const deletes = (await eyeson.events()).filter((e) => e.kind === "api_delete").map((e) => [e.room_id, e.status]);
    assert.deepEqual(deletes, [["left alone", 204]], "one DELETE, for the meeting left alone");
    const ended = await meeting("left alone");
    assert.equal(ended.state, "shut_down");
    assert.equal(ended.alone_deadline, null);

    // The page: the rule off for the room (and back on offered), the other meeting ended alone.
    await waitFor(async () => (await row.locator("td[data-label='Alone']").textContent()) === "rule off", { timeoutMs: 10000, what: "the page shows the rule off" });
    assert.match(await row.locator("td[data-label='Time left']").textContent(), /^29:\d\d$/);
    await row.getByRole("button", { name: /^Alone rule on – / }).waitFor();
    assert.equal(await page.getByRole("textbox", { name: "Alone rule for room alone desk" }).inputValue(), "off");
    const finished = page.locator("#done tbody tr", { hasText: "left alone" });
    await finished.waitFor({ timeout: 10000 });
    assert.equal(await finished.locator("td[data-label='Outcome']").textContent(), "ended alone");

    // Its history in the page: each alone period, the company, the warning, the end.
    await finished.getByRole("button", { name: "History – what happened in left alone" }).click();
    const historyDialog = page.getByRole("dialog", { name: "History of left alone" });
    await historyDialog.waitFor();
    const lines = (await historyDialog.locator("li").allTextContents()).join("\n");
    assert.match(lines, /: ended alone\n/);
    assert.equal(lines.match(/alone: the alone clock started \(1 counted\)/g)?.length, 2, lines);
    assert.match(lines, /company again: the alone clock was reset \(2 counted\)/);
    assert.match(lines, /alone warning sent in the chat/);
    assert.match(lines, /ended by the alone rule$/);
    await shot(page, "console-alone-history.png");
    await historyDialog.getByRole("button", { name: "Close" }).click();
    const history = await get("/meetings/left%20alone/history");
    assert.deepEqual(
      history.meetings[0].events.map((e) => e.event),
      ["started", "tracked", "alone", "company", "alone", "warned", "ended_alone"],
    );
    const chats = (await eyeson.events()).filter((e) => e.kind === "chat").map((e) => [e.room_id, e.user_name]);
    assert.deepEqual(chats.filter(([room]) => room === "left alone"), [["left alone", "Meeting limit"]], "one alone warning in its chat");

    // Back on from the page: the room inherits the default again and its clock runs.
    await row.getByRole("button", { name: /^Alone rule on – / }).click();
    await page.locator("#status", { hasText: "Alone rule for room alone desk back to the default" }).waitFor();
    assert.equal((await get("/limits")).alone_after.rooms["alone desk"], undefined);
    await until("alone desk", (m) => m.participants === 1 && m.alone_deadline, "the clock runs again", 5000);
    await page.setViewportSize({ width: 390, height: 844 });
    await row.getByRole("button", { name: /^Alone rule off – / }).waitFor();
    await noSidewaysScroll(page, "390×844, a meeting alone");
    await shot(page, "console-alone-390.png");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await svc.stop();
    await eyeson.stop();
    dir.remove();
  }
});
