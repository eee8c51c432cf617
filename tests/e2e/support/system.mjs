// The whole system as real processes on 127.0.0.1, ports chosen at run time:
// the eyeson sandbox (and, once it lands, the hard-limit service), a webhook
// receiver, and polling helpers that wait for conditions with a timeout.
//
// Tests assert on the sandbox's GET /_sandbox/events, never on log text.
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtBinary, root, spawnProcess, waitFor } from "../../../scripts/lib/processes.mjs";
import { launch, serve } from "../../support/browser.mjs";

export { builtBinary, root, spawnProcess, waitFor };

/** A workspace binary built by `cargo build -p NAME` (debug profile). */
export function binary(name) {
  const path = builtBinary(name);
  if (!path) throw new Error(`${name} is not built: run \`cargo build -p ${name}\` first`);
  return path;
}

/** The sandbox on a free port; `{ url, apiKey, stop, ...api helpers }`. */
export async function startSandbox({ apiKey = "e2e-key", args = [] } = {}) {
  const proc = await spawnProcess(binary("eyeson-sandbox"), ["--listen", "127.0.0.1:0", ...args], {
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
 * A meeting of `roomId` started on the sandbox as an app starts one: `POST
 * /rooms` (with the API key), then the host opens `links.gui`, the meeting
 * page with the real SDK, in a fresh context of `browser` (launched with
 * fake media). Resolves once eyeson lists it as running, with `{ room, close
 * }`: `room` is its `GET /rooms` entry, the very room object eyeson's
 * `room_update` webhook carries; `close()` closes the host's context (the
 * host leaves).
 */
export async function runMeeting(sandbox, browser, roomId) {
  const joined = await sandbox.join(roomId, `host of ${roomId}`);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(joined.links.gui);
    await page.waitForSelector('main[data-state="joined"]', { timeout: 20000 });
    let room;
    await waitFor(
      async () => {
        const list = await sandbox.call("GET", "/rooms");
        room = list.status === 200 ? list.body.find((r) => r.id === roomId) : undefined;
        return room?.started_at;
      },
      { timeoutMs: 10000, what: `eyeson listing ${roomId} as running` },
    );
    return { room, close: () => context.close() };
  } catch (error) {
    await context.close();
    throw error;
  }
}

/**
 * POSTs a `room_update` for `room` (a room object, as `GET /rooms` lists it)
 * to `url`, signed with `apiKey` as eyeson signs its deliveries; resolves
 * with the receiver's status.
 */
export async function deliverRoomUpdate(url, apiKey, room) {
  const body = JSON.stringify({ timestamp: Math.floor(Date.now() / 1000), type: "room_update", room });
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-eyeson-signature": createHmac("sha256", apiKey).update(body).digest("hex") },
    body,
  });
  return res.status;
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

/** A port that was free a moment ago (for a service that must know its own URL up front). */
export async function freePort() {
  const server = createTcpServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A fresh directory, removed by the returned `remove()`. */
export function tempDir() {
  const path = mkdtempSync(join(tmpdir(), "eyeson-e2e-"));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * The hard-limit service (`bin`) pointed at `sandbox`, registering its own
 * webhook there; SQLite in `database`; `args` are further flags. Resolves once it is listening and the
 * sandbox has its webhook. Start it again with the same `port` and
 * `database` to test a restart.
 */
export async function startHardLimit(sandbox, { bin, database, port, adminPort, maxDuration = "6s", args = [] }) {
  port ??= await freePort();
  adminPort ??= await freePort();
  const url = `http://127.0.0.1:${port}`;
  // The meeting list and the metrics are on the admin listener only.
  const admin = `http://127.0.0.1:${adminPort}`;
  const proc = await spawnProcess(
    bin,
    [
      "--api-key", sandbox.apiKey,
      "--api-url", sandbox.url,
      "--listen", `127.0.0.1:${port}`,
      "--admin-listen", `127.0.0.1:${adminPort}`,
      "--database", `sqlite://${database}`,
      "--max-duration", maxDuration,
      "--webhook-url", `${url}/webhook`,
      "--reconcile-every", "2s",
      ...args,
    ],
    { RUST_LOG: "info" },
    { ready: /listening/ },
  );
  await waitFor(async () => (await sandbox.call("GET", "/webhooks")).body?.url === `${url}/webhook`, {
    timeoutMs: 10000,
    what: "the hard-limit service's webhook registration",
  });
  return {
    url,
    port,
    admin,
    adminPort,
    stop: proc.stop,
    output: proc.output,
    async meetings() {
      return (await fetch(`${admin}/meetings`)).json();
    },
  };
}

/**
 * The meeting pages (tests/e2e/pages, the built package at /pkg/, the real
 * SDK at /eyeson/) on a static server, and a Chromium whose camera and
 * microphone are fakes: what the browser tests of a file share.
 */
export async function startMeetingPages() {
  const web = await serve({
    "/pkg/": join(root, "pkg"),
    "/eyeson/": join(root, "node_modules/eyeson/dist"),
    "/e2e/": join(root, "tests/e2e/pages"),
  });
  const browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
  return { web, browser };
}

/** Closes what `startMeetingPages` started (either may be missing after a failed start). */
export async function stopMeetingPages({ web, browser }) {
  await browser?.close();
  await web?.close();
}
