// Shared by the Playwright tests: a static server on 127.0.0.1 (port chosen
// at run time) and Debian's Chromium driven by playwright-core. Nothing is
// downloaded: no `npx playwright install`.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css",
  ".json": "application/json",
};

/** Serves `routes` ({ "/prefix/": "/dir" }); `headers(path)` adds response headers. */
export async function serve(routes, headers = () => ({})) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(routes)
      .sort((a, b) => b.length - a.length)
      .find((p) => path.startsWith(p));
    const rel = prefix === undefined ? null : normalize(path.slice(prefix.length));
    if (rel === null || rel.startsWith("..")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const file = join(routes[prefix], rel.endsWith("/") || rel === "." ? "index.html" : rel);
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", ...headers(path) });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
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
