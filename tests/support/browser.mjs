// Shared by the Playwright tests: a static server on 127.0.0.1 (port chosen
// at run time) and Debian's Chromium driven by playwright-core. Nothing is
// downloaded: no `npx playwright install`.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { sendStatic } from "../../scripts/lib/static.mjs";

/** Serves `routes` ({ "/prefix/": "/dir" }); `headers(path)` adds response headers. */
export async function serve(routes, headers = () => ({})) {
  const server = createServer(async (req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    await sendStatic(res, routes, path, headers(path));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/**
 * The tests' one fake eyeson SDK (fake-eyeson.js, an ES module) as the real
 * SDK's <script> leaves it: a classic script that sets `window.eyeson =
 * { __esModule: true, default: new FakeEyeson() }` while the page is parsed,
 * so that it is there before the drop-in looks (a module script runs only
 * after parsing). Written to a temporary folder `dir`: route "/fake/" to it
 * and pages load /fake/eyeson.js; `remove()` deletes it.
 */
export async function fakeEyesonScript() {
  const source = await readFile(new URL("./fake-eyeson.js", import.meta.url), "utf8");
  const dir = await mkdtemp(join(tmpdir(), "fake-eyeson-"));
  const body = source.replace(/^export /gm, "");
  const script = `(function () {\n${body}\nwindow.eyeson = { __esModule: true, default: new FakeEyeson() };\n})();\n`;
  await writeFile(join(dir, "eyeson.js"), script);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

/** Opens `url`, collecting uncaught page errors and console errors. */
export async function open(browser, url) {
  const page = await browser.newPage();
  const errors = { uncaught: [], console: [] };
  page.on("pageerror", (e) => errors.uncaught.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.console.push(m.text()));
  await page.goto(url);
  return { page, errors };
}
