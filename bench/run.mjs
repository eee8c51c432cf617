// eyeson-guard benchmark: per-event cost, size, memory and precision, in one
// run of headless Chromium (Debian's /usr/bin/chromium via playwright-core).
//
//   npm run bench          # builds pkg/ first
//   node bench/run.mjs     # uses the pkg/ that is there
//
// Options (environment): BENCH_ROUNDS (default 40), BENCH_EVENTS (events per
// timed batch, default 1000), BENCH_REPS (batches per round, default 5), BENCH_QUICK=1 (fewer rounds/events, for a smoke run),
// BENCH_EXTRA=1 (two more listeners: store Date.now(), and + the movement filter).
// Prints a table and writes bench/results/latest.json.
import { createServer } from "node:http";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, extname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { execFileSync, execSync } from "node:child_process";
import os from "node:os";
import { build, transform } from "esbuild";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "pkg");
const mods = join(root, "node_modules");
const quick = process.env.BENCH_QUICK === "1";
const ROUNDS = Number(process.env.BENCH_ROUNDS || (quick ? 8 : 40));
const N = Number(process.env.BENCH_EVENTS || (quick ? 500 : 1000));
const REPS = Number(process.env.BENCH_REPS || (quick ? 3 : 5));
const DISCARD = quick ? 1 : 3; // warm-up rounds left out of the statistics
const MEM_EVENTS = quick ? 100_000 : 1_000_000;
const MEM_CYCLES = 1_000;
const PRECISION_RUNS = quick ? 5 : 20;

const log = (...a) => console.error("[bench]", ...a);
const versionOf = (name) => JSON.parse(readFileSync(join(mods, name, "package.json"), "utf8")).version;

if (!existsSync(join(pkg, "eyeson_guard.js"))) {
  console.error("pkg/ is missing: run `npm run bench` (or `node scripts/build.mjs`) first");
  process.exit(1);
}

// The comparison build: the same library with the per-event listener in Rust
// (feature `rust-hot-path`), so both listeners are measured in one run.
const variant = join(root, "bench/results/pkg-rust-hot-path");
function buildRustHotPath() {
  const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  log("building the rust-hot-path comparison build…");
  run("cargo", ["build", "--profile", "wasm-release", "--lib", "--target", "wasm32-unknown-unknown", "-p", "eyeson-guard", "--features", "tiny-runtime,rust-hot-path"]);
  const target = process.env.CARGO_TARGET_DIR || join(root, "target");
  run("wasm-bindgen", ["--target", "web", "--out-dir", variant, "--out-name", "eyeson_guard", join(target, "wasm32-unknown-unknown/wasm-release/eyeson_guard.wasm")]);
  const wasm = join(variant, "eyeson_guard_bg.wasm");
  run(join(mods, ".bin/wasm-opt"), ["-Oz", "--strip-debug", "--strip-producers", wasm, "-o", wasm]);
  // Put the shipped build's wasm back where cargo left it for scripts/build.mjs.
  run("cargo", ["build", "--profile", "wasm-release", "--lib", "--target", "wasm32-unknown-unknown", "-p", "eyeson-guard", "--features", "tiny-runtime"]);
}

// ---------------------------------------------------------------- sizes ---
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const filesUnder = (dir) =>
  readdirSync(dir, { recursive: true })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());

async function sizes() {
  const snippets = existsSync(join(pkg, "snippets"))
    ? filesUnder(join(pkg, "snippets")).filter((f) => f.endsWith(".js"))
    : [];
  const npmFiles = [join(pkg, "eyeson_guard_bg.wasm"), join(pkg, "eyeson_guard.js"), ...snippets];
  const files = npmFiles.map((f) => {
    const buf = readFileSync(f);
    return { file: relative(root, f), bytes: buf.length, gzip: gz(buf) };
  });
  // What a user's bundler would ship: the glue and its snippets bundled and minified.
  const min = await build({
    entryPoints: [join(pkg, "eyeson_guard.js")],
    bundle: true, minify: true, format: "esm", write: false, target: "es2020",
    legalComments: "none", logLevel: "silent",
  });
  const glueMin = Buffer.from(min.outputFiles[0].contents);
  const wasm = files[0];
  const dropIn = readFileSync(join(pkg, "drop-in.js"));
  const rit = join(mods, "react-idle-timer/dist/index.esm.mjs");
  const it = join(mods, "idle-timeout/dist/idle-timeout.esm.min.mjs");
  const ritBuf = readFileSync(rit), itBuf = readFileSync(it);
  return {
    npm: {
      files,
      bytes: files.reduce((s, f) => s + f.bytes, 0),
      gzip: files.reduce((s, f) => s + f.gzip, 0),
      glueMinified: { bytes: glueMin.length, gzip: gz(glueMin), note: "eyeson_guard.js + snippets, esbuild --bundle --minify" },
      gzipWithMinifiedGlue: wasm.gzip + gz(glueMin),
      budgetGzip: 26 * 1024,
    },
    dropIn: { file: "pkg/drop-in.js", bytes: dropIn.length, gzip: gz(dropIn), budgetGzip: 33 * 1024 },
    reactIdleTimer: { file: relative(root, rit), version: versionOf("react-idle-timer"), bytes: ritBuf.length, gzip: gz(ritBuf), note: "React itself not included" },
    idleTimeout: { file: relative(root, it), version: versionOf("idle-timeout"), bytes: itBuf.length, gzip: gz(itBuf) },
  };
}

// --------------------------------------------------------------- server ---
async function thirdPartyBundle() {
  const out = await build({
    entryPoints: [join(root, "bench/thirdparty.js")],
    bundle: true, format: "esm", minify: true, write: false, target: "es2020",
    define: {
      "process.env.NODE_ENV": '"production"',
      __REACT_VERSION__: JSON.stringify(versionOf("react")),
      __RIT_VERSION__: JSON.stringify(versionOf("react-idle-timer")),
      __IT_VERSION__: JSON.stringify(versionOf("idle-timeout")),
    },
    legalComments: "none", logLevel: "warning",
  });
  return Buffer.from(out.outputFiles[0].contents);
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };

function serve(bundle) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let body = null, type = "text/plain";
    if (path === "/" || path === "/index.html") {
      body = readFileSync(join(root, "bench/page.html")); type = TYPES[".html"];
    } else if (path === "/bench/thirdparty.bundle.js") {
      body = bundle; type = TYPES[".js"];
    } else if (path.startsWith("/pkg/") || path.startsWith("/bench/results/pkg-rust-hot-path/") || path === "/bench/page.js") {
      const file = normalize(join(root, path));
      if (file.startsWith(root + sep) && existsSync(file) && statSync(file).isFile()) {
        body = readFileSync(file); type = TYPES[extname(file)] || "application/octet-stream";
      }
    }
    if (!body && path === "/favicon.ico") { res.writeHead(204).end(); return; }
    if (!body) { res.writeHead(404).end("not found"); return; }
    // Cross-origin isolation gives performance.now() 5 µs resolution instead of 100 µs.
    res.writeHead(200, {
      "content-type": type,
      "cache-control": "no-store",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
      "cross-origin-resource-policy": "same-origin",
    });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ----------------------------------------------------------------- stats ---
const sorted = (a) => [...a].sort((x, y) => x - y);
function quantile(a, q) {
  const s = sorted(a);
  if (!s.length) return NaN;
  const i = (s.length - 1) * q, lo = Math.floor(i), hi = Math.ceil(i);
  return s[lo] + (s[hi] - s[lo]) * (i - lo);
}
const median = (a) => quantile(a, 0.5);

function perEventStats(raw) {
  const { names, times } = raw;
  const out = {};
  for (const kind of ["mousemove", "keydown"]) {
    const base = times.none[kind].slice(DISCARD);
    const perEvent = (ms) => (ms * 1000) / N;
    out[kind] = { baselineUsPerEvent: median(base.map(perEvent)), baselineFastestUsPerEvent: perEvent(Math.min(...base)), candidates: {} };
    for (const name of names) {
      if (name === "none") continue;
      const t = times[name][kind].slice(DISCARD);
      // Paired with the same round's no-listener time.
      const added = t.map((ms, r) => perEvent(ms - base[r]));
      out[kind].candidates[name] = {
        usPerEvent: median(added),
        p25: quantile(added, 0.25),
        p75: quantile(added, 0.75),
        // Cross-check that ignores slow phases of the machine: the fastest
        // batch of the whole run minus the fastest no-listener batch.
        fastestUsPerEvent: perEvent(Math.min(...t) - Math.min(...base)),
        dispatchUsPerEvent: median(t.map(perEvent)),
      };
    }
    const naive = out[kind].candidates.naive;
    for (const c of Object.values(out[kind].candidates)) {
      c.ratioToNaive = c.usPerEvent / naive.usPerEvent;
      c.fastestRatioToNaive = c.fastestUsPerEvent / naive.fastestUsPerEvent;
    }
  }
  return out;
}

// ------------------------------------------------------------------- run ---
const started = new Date();
buildRustHotPath();
const sizeFigures = await sizes();
const bundle = await thirdPartyBundle();
const server = await serve(bundle);
const url = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
});
const results = { date: started.toISOString() };
let rawTimes = null;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  // Not page.waitForFunction: it installs its own listeners in the page.
  await page.evaluate(async () => { while (!window.bench) await new Promise((r) => setTimeout(r, 10)); });
  const env = await page.evaluate(() => window.bench.setup());
  env.timerResolutionUs = await page.evaluate(() => window.bench.resolution());
  env.chromium = browser.version();
  env.node = process.version;
  env.cpus = os.cpus().length;
  env.cpuModel = os.cpus()[0]?.model;
  env.guardVersion = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version;
  try { env.commit = execSync("git rev-parse --short HEAD", { cwd: root }).toString().trim(); } catch {}
  results.env = env;
  log(`page up (${env.visibilityState}, crossOriginIsolated=${env.crossOriginIsolated}, performance.now() step ${env.timerResolutionUs.toFixed(1)} µs)`);

  const cdp = await page.context().newCDPSession(page);

  // Sanity: each candidate really attaches listeners, and detaching removes them.
  const listenerCount = async () => {
    let n = 0;
    for (const expr of ["document", "document.body", "window"]) {
      const { result } = await cdp.send("Runtime.evaluate", { expression: expr });
      const { listeners } = await cdp.send("DOMDebugger.getEventListeners", { objectId: result.objectId });
      n += listeners.filter((l) => l.type === "mousemove" || l.type === "keydown").length;
      await cdp.send("Runtime.releaseObject", { objectId: result.objectId });
    }
    return n;
  };
  const attachCheck = {};
  const idle = await listenerCount();
  for (const name of ["empty", "naive", "guard", "guard-rust-listener", "idle-timeout", "react-idle-timer"]) {
    await page.evaluate((n) => window.bench.attach(n), name);
    await page.evaluate(() => new Promise((r) => setTimeout(r, 10)));
    const on = await listenerCount();
    await page.evaluate(() => window.bench.detach());
    const off = await listenerCount();
    attachCheck[name] = { mousemoveKeydownListeners: on - idle, leftAfterDetach: off - idle };
    if (on - idle < 2) throw new Error(`${name}: expected mousemove+keydown listeners, found ${on - idle}`);
  }
  results.listenerCheck = { mousemoveKeydownListenersWithNoCandidate: idle, ...attachCheck };

  // 1. Per-event cost.
  log(`per-event cost: ${ROUNDS} rounds × ${REPS} batches × ${N} events…`);
  const raw = await page.evaluate((o) => window.bench.perEvent(o), { rounds: ROUNDS, n: N, reps: REPS, warmup: 200, seed: 12345, withExtra: process.env.BENCH_EXTRA === "1" });
  rawTimes = raw;
  results.perEvent = { rounds: ROUNDS, discardedRounds: DISCARD, eventsPerBatch: N, batchesPerRound: REPS, statistic: "per round: fastest batch minus the same round's fastest no-listener batch; then median over rounds", ...perEventStats(raw) };

  // 3. Memory.
  const heap = async () => {
    await cdp.send("HeapProfiler.collectGarbage");
    await page.evaluate(() => new Promise((r) => setTimeout(r, 50))); // FinalizationRegistry callbacks
    await cdp.send("HeapProfiler.collectGarbage");
    const { usedSize } = await cdp.send("Runtime.getHeapUsage");
    const wasm = await page.evaluate(() => window.bench.wasmMemoryBytes());
    return { jsHeapBytes: usedSize, wasmMemoryBytes: wasm };
  };
  const delta = (a, b) => ({ jsHeapBytes: b.jsHeapBytes - a.jsHeapBytes, wasmMemoryBytes: b.wasmMemoryBytes - a.wasmMemoryBytes });
  log(`memory: ${MEM_EVENTS} events, ${MEM_EVENTS} ping() calls, ${MEM_CYCLES} create/start/stop cycles…`);
  const memory = {};
  await page.evaluate(() => window.bench.memStart());
  await page.evaluate(() => window.bench.memEvents(10_000)); // warm-up
  let before = await heap();
  const evState = await page.evaluate((n) => window.bench.memEvents(n), MEM_EVENTS);
  let after = await heap();
  memory.events = { count: MEM_EVENTS, before, after, delta: delta(before, after), guard: evState };
  await page.evaluate(() => window.bench.memPings(10_000));
  before = await heap();
  const pingState = await page.evaluate((n) => window.bench.memPings(n), MEM_EVENTS);
  after = await heap();
  memory.pings = { count: MEM_EVENTS, before, after, delta: delta(before, after), guard: pingState };
  const sdkLeft = await page.evaluate(() => window.bench.memStop());
  memory.afterStop = { sdkHandlersLeft: sdkLeft, listenersLeft: (await listenerCount()) - idle };
  await page.evaluate((n) => window.bench.memCycles(n), 100); // warm-up
  // Three batches: growth in every batch is a leak, growth in the first only
  // is a high-water mark (wasm memory never shrinks).
  const batches = [];
  before = await heap();
  let prev = before, cyc;
  for (let b = 0; b < 3; b++) {
    cyc = await page.evaluate((n) => window.bench.memCycles(n), MEM_CYCLES);
    const now = await heap();
    batches.push(delta(prev, now));
    prev = now;
  }
  after = prev;
  memory.cycles = { count: MEM_CYCLES, before, after, delta: batches[0], laterBatches: batches.slice(1), ...cyc, listenersLeft: (await listenerCount()) - idle };
  // The same with guard.free() after stop(), in a fresh page: shows whether
  // the first batch's growth is the GC-finalised wrappers piling up.
  {
    await page.reload();
    await page.evaluate(async () => { while (!window.bench) await new Promise((r) => setTimeout(r, 10)); });
    await page.evaluate(() => window.bench.setup());
    await page.evaluate(() => window.bench.memCycles(100, true));
    const b0 = await heap();
    const r = await page.evaluate((n) => window.bench.memCycles(n, true), MEM_CYCLES);
    const b1 = await heap();
    memory.cyclesFreed = { count: MEM_CYCLES, before: b0, after: b1, delta: delta(b0, b1), ...r };
  }
  results.memory = memory;

  // 4. Precision.
  log(`precision: ${PRECISION_RUNS} terminations…`);
  const runs = await page.evaluate((o) => window.bench.precision(o), { runs: PRECISION_RUNS, minTimeoutMs: 300, stepMs: 25 });
  const late = runs.map((r) => r.latenessMs).filter((x) => x !== null);
  results.precision = {
    runs,
    p50: median(late), p95: quantile(late, 0.95), max: Math.max(...late), min: Math.min(...late),
    missed: runs.filter((r) => r.latenessMs === null).length,
    allSentOnce: runs.every((r) => r.sends === 1 && r.state === "terminated" && r.sdkHandlersLeft === 0),
    targetMs: 50,
  };
  results.size = sizeFigures;
  results.pageErrors = errors;
} finally {
  await browser.close();
  server.close();
}

// ---------------------------------------------------------------- report ---
const KB = (b) => `${(b / 1024).toFixed(2)} KB`;
const us = (x) => x.toFixed(3).padStart(7);
const pe = results.perEvent;
const label = {
  guard: "(a) eyeson-guard", "guard-rust-listener": "(a') same, listener in Rust", naive: "(b) naive (article)", "idle-timeout": `(c) idle-timeout ${results.env.versions["idle-timeout"]}`,
  "react-idle-timer": `(c) react-idle-timer ${results.env.versions["react-idle-timer"]}`, empty: "(d) empty listener",
  "js-now": "(x) JS: store Date.now()", "js-now+filter": "(x) JS: + movement filter",
};
const lines = [];
lines.push(`eyeson-guard benchmark — ${results.date} — ${results.env.chromium}, ${results.env.cpus} × ${results.env.cpuModel}`);
lines.push("");
lines.push(`1. Per-event cost (added µs per dispatched event vs no listener; median over ${pe.rounds - pe.discardedRounds} interleaved rounds of the fastest of ${pe.batchesPerRound} batches × ${pe.eventsPerBatch} events; [p25–p75] over rounds)`);
lines.push(`   no-listener dispatch: mousemove ${pe.mousemove.baselineUsPerEvent.toFixed(3)} µs, keydown ${pe.keydown.baselineUsPerEvent.toFixed(3)} µs`);
lines.push(`   ${"".padEnd(28)} ${"mousemove".padStart(16)} ${"keydown".padStart(16)}   ${"fastest-batch cross-check".padStart(27)}   spread p25–p75 (µs)`);
lines.push(`   ${"candidate".padEnd(28)} ${"µs".padStart(8)} ${"ratio".padStart(7)} ${"µs".padStart(8)} ${"ratio".padStart(7)}   ${"mm µs".padStart(7)} ${"ratio".padStart(6)} ${"kd µs".padStart(6)} ${"ratio".padStart(6)}   mousemove | keydown`);
for (const name of ["guard", "guard-rust-listener", "naive", "idle-timeout", "react-idle-timer", "empty", "js-now", "js-now+filter"]) {
  if (!pe.mousemove.candidates[name]) continue;
  const m = pe.mousemove.candidates[name], k = pe.keydown.candidates[name];
  lines.push(`   ${label[name].padEnd(28)} ${m.usPerEvent.toFixed(3).padStart(8)} ${(m.ratioToNaive.toFixed(2) + "×").padStart(7)} ${k.usPerEvent.toFixed(3).padStart(8)} ${(k.ratioToNaive.toFixed(2) + "×").padStart(7)}   ${m.fastestUsPerEvent.toFixed(3).padStart(7)} ${(m.fastestRatioToNaive.toFixed(2) + "×").padStart(6)} ${k.fastestUsPerEvent.toFixed(3).padStart(6)} ${(k.fastestRatioToNaive.toFixed(2) + "×").padStart(6)}   ${m.p25.toFixed(2)}–${m.p75.toFixed(2)} | ${k.p25.toFixed(2)}–${k.p75.toFixed(2)}`);
}
const s = results.size;
lines.push("");
lines.push("2. Size (gzip -9)");
for (const f of s.npm.files) lines.push(`   ${f.file.padEnd(60)} ${String(f.bytes).padStart(7)} B  ${KB(f.gzip).padStart(9)} gz`);
lines.push(`   ${"npm build total (wasm + glue + snippets)".padEnd(60)} ${String(s.npm.bytes).padStart(7)} B  ${KB(s.npm.gzip).padStart(9)} gz   budget ${KB(s.npm.budgetGzip)}: ${s.npm.gzip <= s.npm.budgetGzip ? "within" : "OVER"}`);
lines.push(`   ${"  glue + snippets minified (esbuild)".padEnd(60)} ${String(s.npm.glueMinified.bytes).padStart(7)} B  ${KB(s.npm.glueMinified.gzip).padStart(9)} gz   → wasm + minified glue ${KB(s.npm.gzipWithMinifiedGlue)} gz`);
lines.push(`   ${"drop-in (pkg/drop-in.js, wasm inlined)".padEnd(60)} ${String(s.dropIn.bytes).padStart(7)} B  ${KB(s.dropIn.gzip).padStart(9)} gz   budget ${KB(s.dropIn.budgetGzip)}: ${s.dropIn.gzip <= s.dropIn.budgetGzip ? "within" : "OVER"}`);
lines.push(`   ${`react-idle-timer ${s.reactIdleTimer.version} (${s.reactIdleTimer.file})`.padEnd(60)} ${String(s.reactIdleTimer.bytes).padStart(7)} B  ${KB(s.reactIdleTimer.gzip).padStart(9)} gz   (+ React)`);
lines.push(`   ${`idle-timeout ${s.idleTimeout.version} (${s.idleTimeout.file})`.padEnd(60)} ${String(s.idleTimeout.bytes).padStart(7)} B  ${KB(s.idleTimeout.gzip).padStart(9)} gz`);
const m = results.memory;
const d = (x) => `JS heap ${(x.jsHeapBytes >= 0 ? "+" : "")}${x.jsHeapBytes} B, wasm memory ${(x.wasmMemoryBytes >= 0 ? "+" : "")}${x.wasmMemoryBytes} B`;
lines.push("");
lines.push("3. Memory (after forced GC; deltas)");
lines.push(`   ${String(m.events.count).padStart(9)} DOM events on a started guard: ${d(m.events.delta)}  (guard ${m.events.guard.state})`);
lines.push(`   ${String(m.pings.count).padStart(9)} ping() calls (through wasm):   ${d(m.pings.delta)}  (${m.pings.guard.usPerPing.toFixed(3)} µs/ping)`);
lines.push(`   ${String(m.cycles.count).padStart(9)} create+start+stop cycles:     ${d(m.cycles.delta)}  (SDK handlers left ${m.cycles.sdkHandlersLeft}, DOM listeners left ${m.cycles.listenersLeft})`);
m.cycles.laterBatches.forEach((x, i) => lines.push(`   ${"".padStart(9)}   next 1,000 cycles (batch ${i + 2}):  ${d(x)}`));
lines.push(`   ${String(m.cyclesFreed.count).padStart(9)} cycles, each guard free()d:   ${d(m.cyclesFreed.delta)}  (fresh page)`);
lines.push(`   absolute after the cycles: JS heap ${KB(m.cycles.after.jsHeapBytes)}, wasm memory ${KB(m.cycles.after.wasmMemoryBytes)}`);
const p = results.precision;
lines.push("");
lines.push(`4. Precision (termination lateness, ${p.runs.length} runs, timeoutMs ${p.runs[0].timeoutMs}–${p.runs.at(-1).timeoutMs}, promptMs 0, ${results.env.visibilityState} tab)`);
lines.push(`   p50 ${p.p50} ms, p95 ${p.p95.toFixed(1)} ms, max ${p.max} ms (min ${p.min} ms); target ≤ ${p.targetMs} ms: ${p.max <= p.targetMs ? "met" : "MISSED"}; each sent exactly once: ${p.allSentOnce}`);
if (results.pageErrors.length) lines.push("", `page errors: ${results.pageErrors.join(" | ")}`);
const table = lines.join("\n");
console.log(table);

mkdirSync(join(root, "bench/results"), { recursive: true });
writeFileSync(join(root, "bench/results/latest.json"), JSON.stringify(results, null, 2) + "\n");
if (process.env.BENCH_RAW) writeFileSync(join(root, "bench/results/raw.json"), JSON.stringify(rawTimes) + "\n");
log("wrote bench/results/latest.json");
