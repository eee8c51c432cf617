// The guard's `systemIdle` with Chromium's real IdleDetector (npm build,
// pkg/), headless, served over http on 127.0.0.1 (a secure context, which
// the API needs). Playwright's own grantPermissions does not know the
// permission, so it is granted through the DevTools protocol
// (Browser.grantPermissions with "idleDetection"), and the OS state is
// driven with Emulation.setIdleOverride. Run after the build (node --test).
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fakeEyesonScript, launch, serve } from "./support/browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let server, browser, fake;
const cleanups = [];

before(async () => {
  fake = await fakeEyesonScript();
  server = await serve({ "/pkg/": join(root, "pkg"), "/pages/": join(root, "tests/pages"), "/fake/": fake.dir });
  browser = await launch();
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()();
});
after(async () => {
  await browser?.close();
  await server?.close();
  await fake?.remove();
});

/** A fresh browser context on the test page; `grant` grants idleDetection to its origin first. */
async function openPage({ grant }) {
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(String(e)));
  const cdp = await context.newCDPSession(page);
  if (grant) {
    const { targetInfo } = await cdp.send("Target.getTargetInfo");
    const browserCdp = await browser.newBrowserCDPSession();
    await browserCdp.send("Browser.grantPermissions", {
      permissions: ["idleDetection"],
      origin: server.url,
      browserContextId: targetInfo.browserContextId,
    });
    // Chromium drops a session's permission overrides when it detaches.
    cleanups.push(() => browserCdp.detach());
  }
  await page.goto(`${server.url}/pages/system-idle.html`);
  await page.evaluate(() => window.page.ready);
  const idle = (isUserActive, isScreenUnlocked) => cdp.send("Emulation.setIdleOverride", { isUserActive, isScreenUnlocked });
  return { page, idle, uncaught };
}

async function systemIdleBecomes(page, expected) {
  await page
    .waitForFunction((expected) => window.guard.presence.systemIdle === expected, expected, { timeout: 5000 })
    .catch(async (e) => {
      const seen = await page.evaluate(() => window.guard.presence.systemIdle);
      throw new Error(`presence.systemIdle stayed ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}\n${e}`);
    });
}

async function requestFromClick(page) {
  await page.getByRole("button", { name: "Allow OS idle detection" }).click();
  await page.waitForFunction(() => window.page.granted !== null, null, { timeout: 5000 });
  return page.evaluate(() => window.page.granted);
}

test("granted: requestSystemIdle() resolves true, and presence.systemIdle follows the OS: active, idle, locked", async () => {
  const { page, idle, uncaught } = await openPage({ grant: true });
  await idle(true, true);
  assert.equal(await requestFromClick(page), true);

  await page.evaluate(() => {
    window.guard = window.page.guard({ timeoutMs: 600000, systemIdle: true });
  });
  await systemIdleBecomes(page, "active");
  await idle(false, true);
  await systemIdleBecomes(page, "idle");
  await idle(false, false);
  await systemIdleBecomes(page, "locked");
  // A locked screen wins over a user reported active.
  await idle(true, false);
  await page.waitForFunction(() => window.guard.state === "active");
  assert.equal(await page.evaluate(() => window.guard.presence.systemIdle), "locked");
  await idle(true, true);
  await systemIdleBecomes(page, "active");
  assert.deepEqual(await page.evaluate(() => window.guard.presence), { speaking: false, alone: false, systemIdle: "active" });
  assert.deepEqual(uncaught, []);
});

test("granted: the user active on the computer holds the deadline; locked, the guard prompts", async () => {
  const { page, idle, uncaught } = await openPage({ grant: true });
  await idle(true, true);
  const timeoutMs = 1500;
  await page.evaluate((timeoutMs) => {
    window.guard = window.page.guard({ timeoutMs, promptMs: 500, systemIdle: true });
  }, timeoutMs);
  await systemIdleBecomes(page, "active");
  const since = await page.evaluate(() => Date.now());
  // Twice timeoutMs without input: the wait ends early (and the test fails) on any prompt.
  await page.waitForFunction(
    ([since, span]) => window.page.events.length > 0 || Date.now() - since >= span,
    [since, 2 * timeoutMs],
    { timeout: 10000 },
  );
  assert.deepEqual(await page.evaluate(() => window.page.events), [], "no prompt while the user is active on the computer");

  await idle(true, false);
  await systemIdleBecomes(page, "locked");
  await page.waitForFunction(() => window.guard.state === "terminated", null, { timeout: 4 * timeoutMs });
  assert.deepEqual(await page.evaluate(() => window.page.events), ["prompt", "terminate"]);
  assert.deepEqual(uncaught, []);
});

test("without the grant: requestSystemIdle() resolves false and presence.systemIdle is denied", async () => {
  const { page, idle, uncaught } = await openPage({ grant: false });
  await idle(true, true);
  assert.equal(await requestFromClick(page), false);
  await page.evaluate(() => {
    window.guard = window.page.guard({ timeoutMs: 600000, systemIdle: true });
  });
  await systemIdleBecomes(page, "denied");
  assert.equal(await page.evaluate(() => window.guard.state), "active", "the guard works as before");
  assert.deepEqual(uncaught, []);
});

test("systemIdle off (the default): presence.systemIdle is off, even with the grant", async () => {
  const { page, idle } = await openPage({ grant: true });
  await idle(true, true);
  await page.evaluate(() => {
    window.guard = window.page.guard({ timeoutMs: 600000 });
  });
  assert.equal(await page.evaluate(() => window.guard.presence.systemIdle), "off");
});
