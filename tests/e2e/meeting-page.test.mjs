// End to end: the sandbox's own meeting page at the links eyeson hands out,
// with the real eyeson SDK (npm eyeson 1.9.6, served by the sandbox from
// node_modules) in headless Chromium: the host joins from `links.gui`, a
// guest from `links.guest_join` after giving a name, and both show in the
// sandbox's events. Needs `cargo build -p eyeson-sandbox` first.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { root, startSandbox } from "./support/system.mjs";

const MEDIA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"];
let browser;
const cleanups = [];

before(async () => {
  browser = await launch(MEDIA);
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()();
});
after(async () => {
  await browser?.close();
});

/** A fresh browser context's page at `url`, collecting errors (CSP violations show as console errors). */
async function open(url) {
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  const response = await page.goto(url);
  return { page, errors, response };
}

/** axe-core's violations on `page` (evaluated through the driver, which the page's CSP does not govern). */
async function axe(page) {
  await page.evaluate(readFileSync(join(root, "node_modules/axe-core/axe.min.js"), "utf8"));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** Waits until the page says it is in the meeting (the SDK's `accept`). */
async function joined(page, who) {
  await page.waitForSelector('main[data-state="joined"]', { timeout: 20000 }).catch(async (e) => {
    const status = await page.locator("#status").textContent().catch(() => null);
    throw new Error(`${who} never joined; the page says ${JSON.stringify(status)}\n${e}`);
  });
  assert.equal(await page.getByRole("status").textContent(), "You are in the meeting.");
}

test("the host joins from links.gui, a guest from links.guest_join; both are in the meeting", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const room = await sandbox.join("page-room", "Host <Ann>");
  // eyeson's shapes: a page for the access key, and the guest token as ?guest=.
  const gui = new URL(room.links.gui);
  const guestJoin = new URL(room.links.guest_join);
  assert.equal(gui.origin, sandbox.url);
  assert.equal(gui.pathname, `/meeting/${room.access_key}`);
  assert.equal(guestJoin.searchParams.get("guest"), room.room.guest_token);

  const host = await open(room.links.gui);
  assert.equal(host.response.status(), 200);
  const csp = host.response.headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  await joined(host.page, "the host");

  const guest = await open(room.links.guest_join);
  assert.deepEqual(await axe(guest.page), [], "the guest form has no accessibility violation");
  await guest.page.getByLabel("Your name").fill("Guest & Co");
  await guest.page.getByRole("button", { name: "Join" }).click();
  await joined(guest.page, "the guest");
  assert.deepEqual(await axe(host.page), [], "the meeting page has no accessibility violation");

  const events = await sandbox.waitForEvents(
    (ev) => ev.filter((e) => e.kind === "user_joined").length === 2,
    { what: "both users in the call" },
  );
  const story = events.map((e) => [e.kind, e.user_name ?? null]);
  assert.deepEqual(story, [
    ["meeting_started", null],
    ["user_joined", "Host <Ann>"],
    ["guest_joined", "Guest & Co"],
    ["user_joined", "Guest & Co"],
  ]);
  assert.ok(events.every((e) => e.room_id === "page-room"));
  assert.deepEqual(host.errors, [], "no page error, no CSP violation");
  assert.deepEqual(guest.errors, []);
});

test("the pages escape what they show, refuse ended meetings, and say when the SDK is missing", async () => {
  const sandbox = await startSandbox();
  cleanups.push(sandbox.stop);
  const create = await fetch(`${sandbox.url}/rooms`, {
    method: "POST",
    headers: { authorization: sandbox.apiKey },
    body: new URLSearchParams({ id: "x", name: `<script>alert("x")</script>`, "user[name]": "a" }),
  });
  const room = await create.json();
  const html = await (await fetch(room.links.gui)).text();
  assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), html);
  assert.ok(!html.includes(`<script>alert`), html);
  const odd = await fetch(`${sandbox.url}/join?guest=${encodeURIComponent(`"><img src=x>`)}`);
  assert.ok((await odd.text()).includes(`data-guest-token="&quot;&gt;&lt;img src=x&gt;"`));

  // The SDK's own terminate_meeting; the GUI link then answers 410.
  assert.equal((await fetch(`${sandbox.url}/rooms/${room.access_key}`, { method: "DELETE" })).status, 204);
  assert.equal((await fetch(room.links.gui)).status, 410);
  const guest = await open(room.links.guest_join);
  await guest.page.getByLabel("Your name").fill("late");
  await guest.page.getByRole("button", { name: "Join" }).click();
  await guest.page.waitForSelector('main[data-state="error"]', { timeout: 10000 });
  assert.equal(await guest.page.getByRole("status").textContent(), "No meeting is running for this link.");

  const bare = await startSandbox({ args: ["--sdk", "/nonexistent/eyeson.js"] });
  cleanups.push(bare.stop);
  const other = await bare.join("y", "b");
  const missing = await fetch(other.links.gui);
  assert.equal(missing.status, 503);
  const text = await missing.text();
  assert.ok(text.includes("/nonexistent/eyeson.js") && text.includes("--sdk"), text);
});
