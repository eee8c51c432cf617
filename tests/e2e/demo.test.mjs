// The demo as a user runs it (`node scripts/demo.mjs`, here with --no-build
// and free ports): it prints a URL, the page joins a sandbox meeting with the
// real SDK and the guard, and SIGTERM (as Ctrl-C) stops every process.
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

test("the demo starts, joins a guarded sandbox meeting from its page, and stops cleanly", async () => {
  const demo = await spawnProcess(
    process.execPath,
    [join(root, "scripts/demo.mjs"), "--no-build"],
    { DEMO_PORT: "0", SANDBOX_PORT: "0", HARD_LIMIT_PORT: String(await freePort()), EYESON_API_KEY: "" },
    { ready: /Open (\S+)/, timeoutMs: 20000 },
  );
  try {
    const sandboxUrl = demo.output.map((l) => l.match(/eyeson sandbox: (\S+)/)).find(Boolean)?.[1];
    assert.ok(sandboxUrl, demo.output.join("\n"));

    const page = await browser.newPage();
    await page.goto(demo.match[1]);
    await page.getByLabel("Name").fill("visitor");
    await page.getByRole("button", { name: "Join" }).click();
    await page.waitForFunction(() => document.getElementById("state").textContent === "active", null, { timeout: 20000 });
    const events = await waitFor(
      async () => {
        const ev = await (await fetch(`${sandboxUrl}/_sandbox/events`)).json();
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
      const ev = await (await fetch(`${sandboxUrl}/_sandbox/events`)).json();
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
