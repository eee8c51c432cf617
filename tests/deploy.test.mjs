// The hard-limit service's deployment files (deploy/) and release
// artifacts (dist/, from `npm run release`):
// - every alert has a summary, a description and a runbook link to a
//   section that exists;
// - the systemd unit passes `systemd-analyze verify` and scores at most
//   1.5 ("OK") in `systemd-analyze security`;
// - every metric an alert or a dashboard panel uses is one the service
//   really exports (scraped from the running debug binary, with eyeson
//   played by the sandbox, eyeson-sandbox as a process);
// - the release tarball and the OCI image, when built: their contents,
//   the image's configuration, and the very binary they ship, run.
// promtool's own checks and unit tests of the rules run in scripts/test.sh.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { launch } from "./support/browser.mjs";
import { builtBinary, deliverRoomUpdate, root, runMeeting, spawnProcess, startSandbox, tempDir, waitFor } from "./e2e/support/system.mjs";

const deploy = (file) => join(root, "deploy", file);
const HARD_LIMIT = builtBinary("eyeson-hard-limit");
const NO_BINARY = HARD_LIMIT ? false : "needs the eyeson-hard-limit binary (cargo build -p eyeson-hard-limit)";
// The scrape runs the service against the sandbox.
const NO_SERVICE = NO_BINARY || (builtBinary("eyeson-sandbox") ? false : "needs the eyeson-sandbox binary (cargo build -p eyeson-sandbox)");
const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const KEY = "deploy-test-key";

// The release artifacts, if `npm run release` built them.
const version = /^version = "(.+)"$/m.exec(readFileSync(join(root, "hard-limit/Cargo.toml"), "utf8"))[1];
const release = `eyeson-hard-limit-${version}-x86_64-unknown-linux-musl`;
const tarball = join(root, "dist", `${release}.tar.gz`);
const layout = join(root, "dist", "oci");
const NO_TARBALL = existsSync(tarball) ? false : `dist/${release}.tar.gz is not built: run \`npm run release\` (a ~10 minute musl build) to test it`;
const NO_IMAGE = existsSync(join(layout, "index.json")) ? false : "dist/oci is not built: run `npm run release` to test the image";

/** The rules of alerts.yml, each as { name, text } (the YAML block of one alert). */
function alerts() {
  const text = readFileSync(deploy("alerts.yml"), "utf8");
  return text.split(/\n(?=      - alert: )/).slice(1).map((block) => ({ name: /- alert: (\S+)/.exec(block)[1], text: block }));
}

/** GitHub's anchors for the headings of a Markdown file. */
function anchors(file) {
  return new Set(
    [...readFileSync(file, "utf8").matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1].trim().toLowerCase().replace(/[^\w\- ]/g, "").replace(/ /g, "-"),
    ),
  );
}

test("every alert has a summary, a description and a runbook section that exists", () => {
  const list = alerts();
  assert.ok(list.length >= 10, `${list.length} alerts`);
  const sections = anchors(deploy("RUNBOOK.md"));
  for (const { name, text } of list) {
    assert.match(text, /\n {10}summary: "[^"]{10,}"/, `${name}: summary`);
    assert.match(text, /\n {10}description: "[^"]{20,}"/, `${name}: description`);
    const url = /\n {10}runbook_url: "([^"]+)"/.exec(text)?.[1];
    assert.ok(url, `${name}: runbook_url`);
    assert.ok(url.startsWith("https://github.com/eyeson-guard/eyeson-guard/blob/main/deploy/RUNBOOK.md#"), url);
    const anchor = url.split("#")[1];
    assert.equal(anchor, name.toLowerCase(), `${name}: its own section`);
    assert.ok(sections.has(anchor), `${name}: RUNBOOK.md has no section #${anchor}`);
  }
  // And the unit tests exercise each alert.
  const tests = readFileSync(deploy("alerts.test.yml"), "utf8");
  for (const { name } of list) assert.match(tests, new RegExp(`alertname: ${name}\\n`), `${name} is tested`);
});

test("the unit: hardened as required, no secret in it", () => {
  const unit = readFileSync(deploy("eyeson-hard-limit.service"), "utf8");
  for (const line of [
    "Type=notify", "WatchdogSec=30s", "DynamicUser=yes", "StateDirectory=eyeson-hard-limit",
    "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute=yes", "UMask=0077", "EnvironmentFile=/etc/eyeson-hard-limit/env",
  ]) {
    assert.ok(unit.split("\n").includes(line), `the unit has ${line}`);
  }
  assert.doesNotMatch(unit, /^Environment=.*(API_KEY|TOKEN|postgres:\/\/)/m, "secrets only in the environment file");
});

test("the unit passes systemd-analyze verify", { skip: !has("systemd-analyze") ? "needs systemd-analyze (Debian's systemd)" : NO_BINARY }, () => {
  // verify insists that ExecStart exists: the same unit, pointed at the
  // built binary (the one line that differs).
  const dir = tempDir();
  try {
    const unit = readFileSync(deploy("eyeson-hard-limit.service"), "utf8");
    const local = unit.replace(/^ExecStart=\/usr\/local\/bin\/eyeson-hard-limit$/m, `ExecStart=${HARD_LIMIT}`);
    assert.notEqual(local, unit);
    const path = join(dir.path, "eyeson-hard-limit.service");
    writeFileSync(path, local);
    const r = spawnSync("systemd-analyze", ["verify", path], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), "", "no warning (an unknown key is only a warning)");
  } finally {
    dir.remove();
  }
});

test("the unit scores at most 1.5 (OK) in systemd-analyze security", { skip: !has("systemd-analyze") && "needs systemd-analyze (Debian's systemd)" }, () => {
  const r = spawnSync("systemd-analyze", ["security", "--offline=yes", deploy("eyeson-hard-limit.service")], { encoding: "utf8" });
  const m = /Overall exposure level for eyeson-hard-limit\.service: ([\d.]+) (\w+)/.exec(r.stdout);
  assert.ok(m, r.stdout + r.stderr);
  const score = Number(m[1]);
  console.log(`# systemd-analyze security: ${score} ${m[2]}`);
  assert.ok(score <= 1.5, `exposure ${score} ${m[2]}`);
  assert.equal(m[2], "OK");
});

// eyeson for the scrape: the sandbox, its meeting page in Chromium.
let sandbox, browser, meeting, service, db, exported;

async function startService() {
  sandbox = await startSandbox({ apiKey: KEY });
  db = tempDir();
  service = await spawnProcess(
    HARD_LIMIT,
    [
      "--api-key", KEY, "--api-url", sandbox.url,
      "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
      "--database", `sqlite://${join(db.path, "hl.db")}`,
      "--max-duration", "30m", "--reconcile-every", "1h", "--warn-before", "5m",
    ],
    { RUST_LOG: "info" },
    { ready: /listening addr=(\S+) admin=(\S+)/ },
  );
  return { public: `http://${service.match[1]}`, admin: `http://${service.match[2]}` };
}

/** Every metric family a Prometheus scrape of the service names. */
async function scrapeFamilies(admin) {
  const text = await (await fetch(`${admin}/metrics`)).text();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
}

before(async () => {
  if (NO_SERVICE) return;
  const urls = await startService();
  browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
  // A meeting running on the sandbox, announced as 31 minutes old: due at
  // once; its shutdown (a DELETE the sandbox accepts) records the lateness
  // histogram (a histogram appears only once observed). The sandbox starts
  // a meeting when its host joins, so the age is the one field of eyeson's
  // delivery the test sets itself.
  meeting = await runMeeting(sandbox, browser, "deploy-room");
  const startedAt = new Date(Date.now() - 31 * 60_000).toISOString();
  assert.equal(await deliverRoomUpdate(`${urls.public}/webhook`, KEY, { ...meeting.room, started_at: startedAt }), 204);
  await waitFor(async () => (await scrapeFamilies(urls.admin)).has("hard_limit_enforcement_lateness_seconds"), {
    what: "the shutdown's lateness in /metrics",
  });
  const deletes = (await sandbox.events()).filter((e) => e.kind === "api_delete").map((e) => [e.room_id, e.status]);
  assert.deepEqual(deletes, [["deploy-room", 204]], "the shutdown was a DELETE eyeson accepted");
  exported = await scrapeFamilies(urls.admin);
});

after(async () => {
  await meeting?.close();
  await browser?.close();
  await service?.stop();
  await sandbox?.stop();
  db?.remove();
});

/** Metric names in PromQL expressions (histogram series reduced to their family). */
function metricNames(exprs) {
  const names = new Set();
  for (const expr of exprs) {
    for (const m of expr.matchAll(/\b(hard_limit_[a-z_]+|up)\b(?=\s*[{[)\s]|$)/g)) {
      names.add(m[1].replace(/_(bucket|sum|count)$/, ""));
    }
  }
  return names;
}

test("every metric the alerts and the dashboard use is one the service exports", { skip: NO_SERVICE }, () => {
  const ruleExprs = alerts().map(({ text }) => /expr: (\|\n(?:\s{10}.*\n?)+|.*)/.exec(text)[1]);
  const dashboard = JSON.parse(readFileSync(deploy("grafana-dashboard.json"), "utf8"));
  const panelExprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
  const used = metricNames([...ruleExprs, ...panelExprs]);
  used.delete("up"); // Prometheus' own
  assert.ok(used.size >= 12, [...used].join(", "));
  const missing = [...used].filter((name) => !exported.has(name));
  assert.deepEqual(missing, [], `not exported by the service: ${missing.join(", ")}`);
});

test("the dashboard: meetings, deadlines, lateness, outcomes, warnings and health, per replica", () => {
  const dashboard = JSON.parse(readFileSync(deploy("grafana-dashboard.json"), "utf8"));
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join("\n");
  for (const name of [
    "hard_limit_meetings{", "hard_limit_meetings_due_next_hour", "hard_limit_enforcement_lateness_seconds_bucket",
    "hard_limit_shutdowns_total", "hard_limit_webhook_deliveries_total", "hard_limit_warnings_total",
    "hard_limit_store_writable", "hard_limit_background_tasks_ok",
  ]) {
    assert.ok(exprs.includes(name), `a panel shows ${name}`);
  }
  for (const p of dashboard.panels) {
    for (const t of p.targets) assert.match(t.expr, /instance=~"\$instance"/, `${p.title}: filtered by replica`);
  }
  assert.ok(dashboard.templating.list.some((v) => v.name === "instance" && v.multi), "a replica picker");
});

/** Files of a tarball, and one file's bytes. */
const tarList = (file, flags = "-tzf") => execFileSync("tar", [flags, file], { encoding: "utf8" }).trim().split("\n");
const tarRead = (file, member, flags = "-xzOf") => execFileSync("tar", [flags, file, member], { maxBuffer: 1 << 28 });

/** Starts an extracted binary on 127.0.0.1 with its own store; resolves with its public URL. */
async function runsAndAnswers(bin, env = {}) {
  const dir = tempDir();
  let proc;
  try {
    proc = await spawnProcess(bin, [], {
      ...env,
      EYESON_API_KEY: KEY, EYESON_API_URL: sandbox?.url ?? "http://127.0.0.1:9",
      LISTEN_ADDR: "127.0.0.1:0", ADMIN_LISTEN: "127.0.0.1:0",
      DATABASE_URL: `sqlite://${join(dir.path, "hl.db")}`, RECONCILE_EVERY: "1h", RUST_LOG: "info",
    }, { ready: /listening addr=(\S+) admin=(\S+)/ });
    const res = await fetch(`http://${proc.match[1]}/healthz`);
    assert.equal(res.status, 200);
  } finally {
    await proc?.stop();
    dir.remove();
  }
}

test("the release tarball: static binary, unit, env example, rules, dashboard, runbook, licenses, INSTALL", { skip: NO_TARBALL }, async () => {
  const files = tarList(tarball).filter((f) => !f.endsWith("/")).map((f) => f.slice(release.length + 1)).sort();
  assert.deepEqual(files, [
    "INSTALL.md", "LICENSE-APACHE", "LICENSE-MIT", "RUNBOOK.md", "alerts.test.yml", "alerts.yml",
    "eyeson-hard-limit", "eyeson-hard-limit.env.example", "eyeson-hard-limit.service", "grafana-dashboard.json",
  ]);
  for (const f of ["eyeson-hard-limit.service", "alerts.yml", "LICENSE-MIT", "LICENSE-APACHE", "RUNBOOK.md"]) {
    assert.ok(tarRead(tarball, `${release}/${f}`).equals(readFileSync(join(root, f.startsWith("LICENSE") ? f : `deploy/${f}`))), `${f} as in the repository`);
  }
  const dir = tempDir();
  try {
    execFileSync("tar", ["-xzf", tarball, "-C", dir.path]);
    const bin = join(dir.path, release, "eyeson-hard-limit");
    const kind = execFileSync("file", ["-b", bin], { encoding: "utf8" });
    assert.match(kind, /static(-pie)? linked|statically linked/, kind);
    assert.match(kind, /stripped/, kind);
    assert.doesNotMatch(kind, /not stripped/, kind);
    console.log(`# release tarball ${readFileSync(tarball).length} bytes, binary ${readFileSync(bin).length} bytes`);
    await runsAndAnswers(bin);
  } finally {
    dir.remove();
  }
});

/** A blob of the OCI layout by its digest. */
const blob = (digest) => join(layout, "blobs", ...digest.split(":"));

test("the OCI image: FROM scratch, the binary alone, non-root, /data, labels; its binary runs", { skip: NO_IMAGE }, async (t) => {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
  const entry = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === version);
  assert.ok(entry, `a manifest tagged ${version}`);
  const manifest = JSON.parse(readFileSync(blob(entry.digest), "utf8"));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), "utf8"));
  assert.equal(config.os, "linux");
  assert.equal(config.architecture, "amd64");
  const c = config.config;
  assert.match(c.User, /^[1-9]\d*:[1-9]\d*$/, "a numeric user, not root");
  assert.deepEqual(c.Entrypoint, ["/eyeson-hard-limit"]);
  assert.equal(c.Cmd, undefined);
  assert.deepEqual(Object.keys(c.ExposedPorts), ["8042/tcp"]);
  assert.deepEqual(Object.keys(c.Volumes), ["/data"]);
  assert.equal(c.WorkingDir, "/data");
  assert.ok(c.Env.includes("DATABASE_URL=sqlite:///data/hard-limit.db"), c.Env);
  assert.ok(c.Env.includes("ADMIN_LISTEN=127.0.0.1:8044"), "the admin listener on loopback by default");
  assert.ok(!c.Env.some((e) => /API_KEY|TOKEN/.test(e)), "no secret baked in");
  for (const label of ["title", "description", "version", "revision", "created", "licenses", "source", "url", "vendor"]) {
    assert.ok(c.Labels[`org.opencontainers.image.${label}`], `label org.opencontainers.image.${label}`);
  }
  assert.equal(c.Labels["org.opencontainers.image.version"], version);
  assert.equal(c.Labels["org.opencontainers.image.licenses"], "MIT OR Apache-2.0");
  // FROM scratch: one layer, holding the binary and /data, nothing else.
  assert.equal(manifest.layers.length, 1);
  const layer = blob(manifest.layers[0].digest);
  const members = tarList(layer);
  // The root directory's own entry ("./") aside.
  const files = members.map((f) => f.replace(/^\.\//, "").replace(/\/$/, "")).filter((f) => f && f !== ".").sort();
  assert.deepEqual(files, ["data", "eyeson-hard-limit"]);
  const listing = execFileSync("tar", ["-tvzf", layer], { encoding: "utf8" });
  assert.match(listing, /^drwx------ 65532\/65532 .* \.?\/?data\/?$/m, listing);
  const size = manifest.layers[0].size + manifest.config.size;
  console.log(`# OCI image: ${manifest.layers[0].size} bytes compressed layer, ${size} bytes with its config`);
  // The very binary the image holds, run on 127.0.0.1 with the image's
  // environment (addresses and store moved to test places).
  const dir = tempDir();
  try {
    const bin = join(dir.path, "eyeson-hard-limit");
    writeFileSync(bin, tarRead(layer, members.find((f) => f.replace(/^\.\//, "") === "eyeson-hard-limit")));
    chmodSync(bin, 0o755);
    // FROM scratch has no libc, no loader: the binary must need neither.
    const kind = execFileSync("file", ["-b", bin], { encoding: "utf8" });
    assert.match(kind, /static(-pie)? linked|statically linked/, kind);
    const env = Object.fromEntries(c.Env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
    await runsAndAnswers(bin, { ...env, TMPDIR: dir.path });
  } finally {
    dir.remove();
  }
  t.diagnostic("`podman run` of the image is not tested here: these machines refuse it (crun cannot set RLIMIT_NOFILE/RLIMIT_NPROC); its configuration and its binary are");
});

test("the OCI image under podman run", { skip: "podman run is refused on these machines (crun: setrlimit RLIMIT_NOFILE / RLIMIT_NPROC: Operation not permitted); the image's configuration and the binary it holds are tested above" }, () => {});
