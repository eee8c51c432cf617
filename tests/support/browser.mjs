// Shared by the Playwright tests: a static server on 127.0.0.1 (port chosen
// at run time) and Debian's Chromium driven by playwright-core. Nothing is
// downloaded: no `npx playwright install`.
import { createServer } from "node:http";
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
