// The built pkg/drop-in.js in real pages, in Debian's headless Chromium.
// Run by `npm test` after the build (node --test tests/*.test.mjs).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fakeEyesonScript, launch, open, serve } from "./support/browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let server, browser, fake;

before(async () => {
  fake = await fakeEyesonScript();
  server = await serve(
    {
      "/pkg/": join(root, "pkg"),
      "/eyeson/": join(root, "node_modules/eyeson/dist"),
      "/pages/": join(root, "tests/pages"),
      "/fake/": fake.dir,
      "/axe/": join(root, "node_modules/axe-core"),
    },
    // A strict CSP: the drop-in needs no eval, only wasm compilation. One
    // page also enforces Trusted Types (no strings into innerHTML and the like).
    (path) => {
      if (!path.endsWith(".html")) return {};
      const tt = path.endsWith("/trusted-types.html") ? "; require-trusted-types-for 'script'" : "";
      return { "content-security-policy": `script-src 'self' 'wasm-unsafe-eval'${tt}` };
    },
  );
  browser = await launch(["--js-flags=--expose-gc"]);
});
after(async () => {
  await browser?.close();
  await server?.close();
  await fake?.remove();
});

test("loads after the real eyeson SDK (window.exports = {}) and guards window.eyeson.default", async () => {
  const { page, errors } = await open(browser, `${server.url}/pages/real-sdk.html`);
  await page.evaluate(() => window.EyesonGuard.ready);
  const seen = await page.evaluate(() => ({
    exportsObject: typeof window.exports === "object",
    classic: typeof window.EyesonGuard.InactivityGuard,
    sdkIsDefault: typeof window.eyeson.default.onEvent,
    state: window.EyesonGuard.guard && window.EyesonGuard.guard.state,
    remaining: window.EyesonGuard.guard.remainingMs(),
  }));
  assert.deepEqual(seen, { exportsObject: true, classic: "function", sdkIsDefault: "function", state: "waiting", remaining: 400 });

  // Armed by hand before the SDK ever connected: the real SDK throws on
  // session_termination then, and the guard must swallow that.
  await page.evaluate(() => window.EyesonGuard.guard.start());
  await page.waitForFunction(() => window.EyesonGuard.guard.state === "terminated", null, { timeout: 3000 });
  assert.deepEqual(errors.uncaught, []);
  assert.ok(errors.console.some((m) => m.includes("refused session_termination")), errors.console.join("\n"));
  await page.close();
});

test("terminates an idle user once, with the accessible dialog", async () => {
  const { page, errors } = await open(browser, `${server.url}/pages/fake-sdk.html`);
  await page.evaluate(() => window.EyesonGuard.ready);
  await page.evaluate(() => window.eyeson.default.emit({ type: "accept" }));
  assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "active");

  const dialog = page.locator("[data-eyeson-guard-dialog]").getByRole("alertdialog");
  await dialog.waitFor({ timeout: 3000 });
  assert.match(await dialog.innerText(), /Are you still there\?/);
  const button = page.getByRole("button", { name: "I'm still here" });
  assert.ok(await button.evaluate((b) => b.getRootNode().activeElement === b), "focus is on the button");

  // Real keyboard input answers it.
  await page.keyboard.press("Escape");
  assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "active");
  assert.equal(await page.locator("[data-eyeson-guard-dialog]").count(), 0);

  await page.waitForFunction(() => window.EyesonGuard.guard.state === "terminated", null, { timeout: 5000 });
  const sent = await page.evaluate(() => window.eyeson.default.sent);
  assert.deepEqual(sent, [{ type: "session_termination" }]);
  assert.equal(await page.evaluate(() => window.eyeson.default.listenerCount()), 0);
  assert.equal(await page.evaluate(() => window.eyeson.default.offEventAllCalls), 0, "never offEvent() without a listener");
  assert.equal(await page.locator("[data-eyeson-guard-dialog]").count(), 0);
  assert.deepEqual(errors.uncaught, []);
  await page.close();
});

test("real mouse input keeps the session alive", async () => {
  const { page } = await open(browser, `${server.url}/pages/fake-sdk.html`);
  await page.evaluate(() => window.EyesonGuard.ready);
  await page.evaluate(() => window.eyeson.default.emit({ type: "accept" }));
  const until = Date.now() + 3000; // two timeouts
  for (let i = 0; Date.now() < until; i++) {
    await page.mouse.move(10 + (i % 50) * 3, 20);
    await page.waitForTimeout(100);
  }
  assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "active");
  assert.deepEqual(await page.evaluate(() => window.eyeson.default.sent), []);
  await page.close();
});

test("a bad data attribute rejects ready with an error naming it", async () => {
  const { page } = await open(browser, `${server.url}/pages/bad-attribute.html`);
  const message = await page.evaluate(() => window.EyesonGuard.ready.then(() => "resolved", (e) => e.message));
  assert.match(message, /data-timeout-ms must be a number of milliseconds, got "ten minutes"/);
  await page.close();
});

test("a missing SDK is reported, not thrown elsewhere", async () => {
  const { page } = await open(browser, `${server.url}/pages/no-sdk.html`);
  const message = await page.evaluate(() => window.EyesonGuard.ready.then(() => "resolved", (e) => e.message));
  assert.match(message, /load the eyeson SDK's script before the drop-in/);
  await page.close();
});

test("without data attributes it only provides the class", async () => {
  const { page } = await open(browser, `${server.url}/pages/manual.html`);
  const result = await page.evaluate(async () => {
    await window.EyesonGuard.ready;
    const guard = new window.EyesonGuard.InactivityGuard(window.eyeson.default, { timeoutMs: 200, promptMs: 0 });
    guard.start();
    let typo;
    try {
      new window.EyesonGuard.InactivityGuard(window.eyeson.default, { timeout: 5 });
    } catch (e) {
      typo = e.message;
    }
    return { auto: window.EyesonGuard.guard, state: guard.state, typo };
  });
  assert.equal(result.auto, undefined);
  assert.equal(result.state, "active");
  assert.match(result.typo, /unknown option "timeout"/);
  await page.waitForFunction(() => window.eyeson.default.sent.length === 1, null, { timeout: 3000 });
  await page.close();
});

test("a guard the page keeps no reference to survives garbage collection", async () => {
  const { page, errors } = await open(browser, `${server.url}/pages/manual.html`);
  await page.evaluate(async () => {
    await window.EyesonGuard.ready;
    new window.EyesonGuard.InactivityGuard(window.eyeson.default, { timeoutMs: 1500, promptMs: 0 }).start();
  });
  // Collect repeatedly while the guard is armed (FinalizationRegistry runs asynchronously).
  for (let i = 0; i < 5; i++) {
    await page.evaluate(() => new Promise((r) => { window.gc(); setTimeout(r, 50); }));
  }
  await page.waitForFunction(() => window.eyeson.default.sent.length === 1, null, { timeout: 5000 });
  assert.deepEqual(errors.uncaught, []);
  await page.close();
});

// Opens `page`, arms its guard and waits for the dialog.
async function openDialog(page) {
  await page.evaluate(() => window.EyesonGuard.ready);
  await page.evaluate(() => window.eyeson.default.emit({ type: "accept" }));
  const dialog = page.locator("[data-eyeson-guard-dialog]").getByRole("alertdialog");
  await dialog.waitFor({ timeout: 5000 });
  return dialog;
}

for (const colorScheme of ["light", "dark"]) {
  test(`the open dialog has no axe-core violations (${colorScheme})`, async () => {
    const { page, errors } = await open(browser, `${server.url}/pages/dialog.html`);
    await page.emulateMedia({ colorScheme });
    await openDialog(page);
    await page.addScriptTag({ url: "/axe/axe.min.js" });
    const result = await page.evaluate(async () => {
      const r = await window.axe.run(document);
      // A node inside a shadow root is targeted by a list of selectors (host, then inside).
      const inShadow = (id) => r.passes.filter((p) => p.id === id).some((p) => p.nodes.some((n) => n.target.some(Array.isArray)));
      return {
        violations: r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")}`),
        checked: ["aria-dialog-name", "button-name", "color-contrast"].filter(inShadow),
      };
    });
    assert.deepEqual(result.violations, []);
    assert.deepEqual(result.checked, ["aria-dialog-name", "button-name", "color-contrast"], "axe checked inside the dialog's shadow root");
    assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "prompted");
    assert.deepEqual(errors.uncaught, []);
    await page.close();
  });
}

test("a key pressed in the dialog is activity: it closes and focus returns to the page", async () => {
  const { page } = await open(browser, `${server.url}/pages/dialog.html`);
  await page.evaluate(() => window.EyesonGuard.ready);
  await page.focus("#other");
  await openDialog(page);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "active");
  assert.equal(await page.locator("[data-eyeson-guard-dialog]").count(), 0);
  await page.keyboard.press("Shift+Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "other", "focus went back to the page's button, then on from there");
  await page.close();
});

test("without keydown as activity, the dialog keeps focus inside and answers Enter once", async () => {
  const { page } = await open(browser, `${server.url}/pages/manual.html`);
  await page.evaluate(async () => {
    await window.EyesonGuard.ready;
    const other = document.body.appendChild(document.createElement("button"));
    other.id = "other";
    other.textContent = "a page button";
    other.focus();
    window.actives = 0;
    window.guard = new window.EyesonGuard.InactivityGuard(window.eyeson.default, {
      events: ["mousemove"], timeoutMs: 120_000, promptMs: 119_500, onActive: () => window.actives++,
    });
    window.guard.start();
  });
  await page.locator("[data-eyeson-guard-dialog]").getByRole("alertdialog").waitFor({ timeout: 5000 });
  const onButton = () => page.evaluate(() => {
    const host = document.querySelector("[data-eyeson-guard-dialog]");
    return document.activeElement === host && host.shadowRoot.activeElement === host.shadowRoot.querySelector("button");
  });
  assert.ok(await onButton(), "focus moved to the button");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Shift+Tab");
  assert.ok(await onButton(), "Tab and Shift+Tab stay in the dialog");
  assert.equal(await page.evaluate(() => window.guard.state), "prompted");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => window.guard.state), "active");
  assert.equal(await page.evaluate(() => window.actives), 1, "Enter answers once (no second answer from the button's click)");
  assert.equal(await page.locator("[data-eyeson-guard-dialog]").count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement.id), "other", "focus is back on the page's button");
  await page.evaluate(() => window.guard.stop());
  await page.close();
});

test("the dialog opens on a page that enforces Trusted Types", async () => {
  const { page, errors } = await open(browser, `${server.url}/pages/trusted-types.html`);
  const dialog = await openDialog(page);
  assert.match(await dialog.innerText(), /Are you still there\?\s+You will leave the meeting in (\d+ s|\d+:\d\d)\./);
  await page.getByRole("button", { name: "I'm still here" }).click();
  assert.equal(await page.evaluate(() => window.EyesonGuard.guard.state), "active");
  assert.deepEqual(errors.uncaught, []);
  assert.deepEqual(errors.console.filter((m) => /Trusted/i.test(m)), []);
  await page.close();
});
