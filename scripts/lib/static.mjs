// Static files for the demo and the browser tests: a URL path is looked up
// under the longest matching route prefix, never outside its folder.
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css",
  ".json": "application/json",
};

/**
 * Answers `path` (already decoded) from `routes` ({ "/prefix/": "/dir" }):
 * 200 with the file and `headers`, or 404. A folder serves its index.html.
 */
export async function sendStatic(res, routes, path, headers = {}) {
  const prefix = Object.keys(routes)
    .sort((a, b) => b.length - a.length)
    .find((p) => path.startsWith(p));
  const rel = prefix === undefined ? null : normalize(path.slice(prefix.length) || ".");
  if (rel === null || rel.startsWith("..")) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  const file = join(routes[prefix], rel === "." || rel.endsWith("/") ? join(rel, "index.html") : rel);
  let body;
  try {
    body = await readFile(file);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", ...headers });
  res.end(body);
}
