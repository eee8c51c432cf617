// The whole system on one machine, one command: builds, starts the eyeson
// sandbox, the hard-limit service (when its crate is in the workspace) and a
// web server for www/, then prints the URL to open. Ctrl-C stops everything.
//
//   node scripts/demo.mjs            build, then run against the local sandbox
//   node scripts/demo.mjs --no-build run what is built
//
// Environment:
//   EYESON_API_KEY   set it to use the real eyeson instead of the sandbox
//   EYESON_API_URL   the real API base (default https://api.eyeson.team)
//   PUBLIC_URL       with the real eyeson: where eyeson can reach the
//                    hard-limit service's /webhook (without it the
//                    hard-limit service is left out)
//   DEMO_PORT, SANDBOX_PORT, HARD_LIMIT_PORT   (8080, 8043, 8042; 0 picks a
//                    free port, except for the hard-limit service, whose
//                    webhook URL must be known before it starts)
//   HARD_LIMIT       the demo's hard limit (default 2m)
//
// The hard-limit service runs with its alone rule on at demo sizes (ALONE):
// a meeting with one participant for 90 s is ended, the chat warning and the
// page notice come 60 s before (the guard's notice window, hardLimitNoticeMs
// in www/index.html), and participants are checked every 5 s, so a second
// tab cancels both within a few seconds.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtBinary, root, spawnProcess } from "./lib/processes.mjs";
import { sendStatic } from "./lib/static.mjs";

const say = (text) => console.log(`\x1b[1m[demo]\x1b[0m ${text}`);
const env = process.env;
const real = Boolean(env.EYESON_API_KEY);
const apiKey = env.EYESON_API_KEY || "sandbox-key";
const ports = {
  web: Number(env.DEMO_PORT || 8080),
  sandbox: Number(env.SANDBOX_PORT || 8043),
  hardLimit: Number(env.HARD_LIMIT_PORT || 8042),
  hardLimitAdmin: Number(env.HARD_LIMIT_ADMIN_PORT || 8044),
};
const ALONE = { after: 90, warn: 60, every: 5 }; // seconds
const withHardLimit = existsSync(join(root, "hard-limit/Cargo.toml")) && (!real || Boolean(env.PUBLIC_URL));
const running = [];
let stopping = false;

function run(cmd, args) {
  say(`${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal})`);
}

async function main() {
  if (!process.argv.includes("--no-build")) {
    run("sh", ["scripts/setup.sh"]);
    run("node", ["scripts/build.mjs"]);
    const packages = ["-p", "eyeson-sandbox", ...(withHardLimit ? ["-p", "eyeson-hard-limit"] : [])];
    run("cargo", ["build", ...packages]);
  }

  let api = env.EYESON_API_URL || "https://api.eyeson.team";
  if (!real) {
    const bin = builtBinary("eyeson-sandbox");
    if (!bin) throw new Error("eyeson-sandbox is not built: run without --no-build");
    const sandbox = await spawnProcess(bin, [
      "--listen", `127.0.0.1:${ports.sandbox}`, "--api-key", apiKey,
    ]);
    running.push(sandbox);
    api = sandbox.match[1];
    say(`eyeson sandbox: ${api}  (what happened: ${api}/_sandbox/events)`);
  } else {
    say(`the real eyeson: ${api}`);
  }

  let hardLimit = null;
  if (withHardLimit) {
    const bin = builtBinary("eyeson-hard-limit");
    if (!bin) throw new Error("eyeson-hard-limit is not built: run without --no-build");
    const dir = mkdtempSync(join(tmpdir(), "eyeson-demo-"));
    const publicUrl = real ? env.PUBLIC_URL.replace(/\/$/, "") : `http://127.0.0.1:${ports.hardLimit}`;
    try {
      const proc = await spawnProcess(
        bin,
        [
          "--api-key", apiKey,
          "--api-url", api,
          "--listen", `127.0.0.1:${ports.hardLimit}`,
          "--admin-listen", `127.0.0.1:${ports.hardLimitAdmin}`,
          "--database", `sqlite://${join(dir, "hard-limit.db")}`,
          "--max-duration", env.HARD_LIMIT || "2m",
          "--webhook-url", `${publicUrl}/webhook`,
          "--alone-after", `${ALONE.after}s`,
          "--warn-before", `${ALONE.warn}s`,
          "--presence-every", `${ALONE.every}s`,
        ],
        {},
        { ready: /listening/ },
      );
      running.push({ stop: async () => { await proc.stop(); rmSync(dir, { recursive: true, force: true }); } });
      hardLimit = `http://127.0.0.1:${ports.hardLimit}`;
      say(`hard-limit service: ${hardLimit}  (limit ${env.HARD_LIMIT || "2m"}); operator console: http://127.0.0.1:${ports.hardLimitAdmin}/`);
      say(
        `alone rule: a meeting with one participant for ${ALONE.after} s is ended. Try it: join alone; ` +
          `after about ${ALONE.after - ALONE.warn} s a chat warning and a notice on the page appear; ` +
          `open a second tab and join the same room to cancel the end: the notice goes within ${ALONE.every} s. ` +
          "Stay active meanwhile: the page's guard ends a tab idle for 20 s while alone",
      );
    } catch (e) {
      say(`hard-limit service not started: ${e.message.split("\n")[0]}`);
    }
  } else {
    say("hard-limit service: not in this workspace yet (issue 3); the demo runs without it");
  }

  const server = await startWeb({ api, hardLimit });
  running.push({ stop: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }) });
  const web = `http://127.0.0.1:${server.address().port}`;
  console.log(`\n  Open ${web}/  (in two tabs for two users; Ctrl-C stops)\n`);
}

/** www/ and pkg/ and the SDK, plus the join, which needs the API key. */
function startWeb({ api, hardLimit }) {
  const routes = {
    "/pkg/": join(root, "pkg"),
    "/eyeson/": join(root, "node_modules/eyeson/dist"),
    "/": join(root, "www"),
  };
  const json = (res, status, body) =>
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(body));

  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      if (path === "/api/join" && req.method === "POST") {
        // The API key stays here, on the server: the page only gets an access key.
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const { room = "demo", name = "guest" } = JSON.parse(Buffer.concat(chunks).toString() || "{}");
        const r = await fetch(`${api}/rooms`, {
          method: "POST",
          headers: { authorization: apiKey },
          body: new URLSearchParams({ id: room, "user[name]": name }),
        });
        const answer = await r.json();
        if (!r.ok) return json(res, 502, { error: `POST /rooms answered ${r.status}`, answer });
        // hard_limit: the service's public URL; the guard reads the
        // meeting's deadline from it (GET /meetings/{room_id}, CORS, with the
        // room's guest token in X-Eyeson-Guest-Token).
        return json(res, 200, {
          api, access_key: answer.access_key, room_id: answer.room.id, sandbox: !real, hard_limit: hardLimit,
        });
      }
      await sendStatic(res, routes, path, { "cache-control": "no-store" });
    } catch (e) {
      if (e instanceof URIError) return res.writeHead(400, { "content-type": "text/plain" }).end("bad URL\n");
      json(res, 502, { error: String(e.message || e) });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(ports.web, "127.0.0.1", () => resolve(server));
  });
}

async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  say("stopping");
  for (const p of running.reverse()) await p.stop().catch(() => {});
  process.exit(code);
}

for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stopAll(0));
main().catch((e) => {
  console.error(e.message || e);
  stopAll(1);
});
