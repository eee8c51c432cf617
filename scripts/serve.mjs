// Serves the demo (www/) and the built package (pkg/) on 127.0.0.1.
// PORT picks the port (default 8080). Ctrl-C stops it.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, normalize } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const routes = { "/pkg/": join(root, "pkg"), "/": join(root, "www") };
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const prefix = Object.keys(routes).find((p) => path.startsWith(p));
  const rel = normalize(path.slice(prefix.length) || "index.html");
  if (rel.startsWith("..")) return res.writeHead(404).end();
  try {
    const file = join(routes[prefix], rel.endsWith("/") ? rel + "index.html" : rel);
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream", "cache-control": "no-store" });
    res.end(body);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
});

const port = Number(process.env.PORT || 8080);
server.listen(port, "127.0.0.1", () => {
  console.log(`\neyeson-guard demo: http://127.0.0.1:${server.address().port}/   (Ctrl-C stops)\n`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
