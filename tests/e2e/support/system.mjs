// The whole system as real processes on 127.0.0.1, ports chosen at run time:
// the eyeson sandbox (and, once it lands, the hard-limit service), a webhook
// receiver, and polling helpers that wait for conditions with a timeout.
//
// Tests assert on the sandbox's GET /_sandbox/events, never on log text.
import { spawn } from "node:child_process";
import { createHmac, timingSafeEqual } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");

/** A workspace binary built by `cargo build -p <package>` (debug profile). */
export function binary(name) {
  const target = process.env.CARGO_TARGET_DIR || join(root, "target");
  const path = join(target, "debug", name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`cargo build -p ${name}\` first`);
  }
  return path;
}

/**
 * Starts `bin` with `args` and extra `env`, and resolves once a line of its
 * stdout matches `ready` (a RegExp), with `{ match, stop, output }`. `stop()`
 * sends SIGTERM (SIGKILL after 3 s) and resolves when it has exited.
 * Rejects if the process exits or stays silent for `timeoutMs` first; the
 * rejection carries the end of its stderr.
 */
export function spawnProcess(bin, args, env = {}, { ready = /listening on (\S+)/, timeoutMs = 15000 } = {}) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  const keep = (line) => {
    output.push(line);
    if (output.length > 200) output.shift();
  };
  createInterface({ input: child.stderr }).on("line", keep);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
  };
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      stop();
      reject(new Error(`${bin} ${why}\n${output.slice(-30).join("\n")}`));
    };
    const timer = setTimeout(() => fail(`printed no ready line within ${timeoutMs} ms`), timeoutMs);
    exited.then(({ code, signal }) => fail(`exited (code ${code}, signal ${signal}) before it was ready`));
    createInterface({ input: child.stdout }).on("line", (line) => {
      keep(line);
      const match = line.match(ready);
      if (match) {
        clearTimeout(timer);
        resolve({ match, stop, output, child });
      }
    });
  });
}

/** The sandbox on a free port; `{ url, apiKey, stop, ...api helpers }`. */
export async function startSandbox({ apiKey = "e2e-key" } = {}) {
  const proc = await spawnProcess(binary("eyeson-sandbox"), ["--listen", "127.0.0.1:0"], {
    EYESON_API_KEY: apiKey,
    RUST_LOG: "info",
  });
  const url = proc.match[1];
  const call = async (method, path, { form, key = apiKey } = {}) => {
    const headers = key ? { authorization: key } : {};
    const body = form ? new URLSearchParams(form) : undefined;
    const res = await fetch(url + path, { method, headers, body });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  return {
    url,
    apiKey,
    stop: proc.stop,
    output: proc.output,
    call,
    /** POST /rooms: creates or joins the meeting of `room`; the answer's JSON. */
    async join(room, user) {
      const res = await call("POST", "/rooms", { form: { id: room, "user[name]": user } });
      if (res.status !== 201) throw new Error(`POST /rooms answered ${res.status}`);
      return res.body;
    },
    async registerWebhook(hookUrl, types = "room_update") {
      const res = await call("POST", "/webhooks", { form: { url: hookUrl, types } });
      if (res.status !== 201) throw new Error(`POST /webhooks answered ${res.status}`);
      return res.body;
    },
    async events() {
      return (await call("GET", "/_sandbox/events", { key: null })).body;
    },
    /** Waits until `predicate(events)` holds; resolves with the events. */
    async waitForEvents(predicate, { timeoutMs = 15000, what = "events" } = {}) {
      let last = [];
      await waitFor(
        async () => {
          last = await this.events();
          return predicate(last);
        },
        { timeoutMs, what: () => `${what}; events so far:\n${JSON.stringify(last, null, 1)}` },
      );
      return last;
    },
  };
}

/**
 * Polls `condition` (sync or async) every `intervalMs` until it is truthy;
 * rejects after `timeoutMs` naming `what` (a string or a function giving one).
 */
export async function waitFor(condition, { timeoutMs = 15000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * A webhook receiver on a free port that checks eyeson's signature
 * (`X-Eyeson-Signature` = lowercase hex HMAC-SHA256 of the raw body, keyed
 * with the API key) and answers 204, or 401 for a bad signature.
 * Stands in for the hard-limit service until it lands.
 */
export async function startWebhookReceiver(apiKey) {
  const deliveries = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const expected = createHmac("sha256", apiKey).update(raw).digest("hex");
      const given = String(req.headers["x-eyeson-signature"] || "");
      const valid = given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
      let body = null;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {}
      deliveries.push({ valid, signature: given, body, contentType: req.headers["content-type"] });
      res.writeHead(valid ? 204 : 401).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/eyeson/webhook`,
    deliveries,
    close: () => new Promise((r) => server.close(r)),
  };
}
