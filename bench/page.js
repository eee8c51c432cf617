// The benchmark page. Loaded by bench/run.mjs; every measurement runs inside
// one page.evaluate call and returns plain numbers, so Playwright's own
// polling never runs while something is being timed.
import init, { InactivityGuard } from "/pkg/eyeson_guard.js";
// The same library built with the per-event listener in Rust (feature
// `rust-hot-path`, built by run.mjs): the measurement behind src/hot_path.js.
import initRust, { InactivityGuard as RustListenerGuard } from "/bench/results/pkg-rust-hot-path/eyeson_guard.js";
import * as third from "/bench/thirdparty.bundle.js";

const LONG = 3_600_000; // 1 h: the guard and the others never fire during timing
const target = document.getElementById("target");

// A fake eyeson SDK: onEvent/offEvent/send, recording what the guard does.
function fakeSdk(onSend) {
  const handlers = new Set();
  return {
    handlers,
    sends: [],
    onEvent(fn) { handlers.add(fn); },
    offEvent(fn) { handlers.delete(fn); },
    send(msg) { this.sends.push(msg); if (onSend) onSend(msg); },
  };
}

// ---- candidates: attach() returns detach() --------------------------------
const EVENTS = ["mousemove", "keydown", "pointerdown", "wheel", "touchstart"];

const candidates = {
  // No listener at all: the dispatch cost every other figure is relative to.
  none: () => () => {},
  // (d) the floor: an empty listener (capture + passive on document, like the guard).
  empty: () => {
    const f = () => {};
    const o = { capture: true, passive: true };
    for (const t of EVENTS) document.addEventListener(t, f, o);
    return () => { for (const t of EVENTS) document.removeEventListener(t, f, o); };
  },
  // (b) the naive JS of eyeson's "Stop Meetings on Inactivity" article:
  // clearTimeout + setTimeout on every event, listeners on document.
  naive: () => {
    let timer;
    const reset = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {}, LONG);
    };
    for (const t of EVENTS) document.addEventListener(t, reset);
    reset();
    return () => {
      for (const t of EVENTS) document.removeEventListener(t, reset);
      clearTimeout(timer);
    };
  },
  // (a) eyeson-guard as built in pkg/: dialog off, long timeout, started.
  guard: () => {
    const g = new InactivityGuard(fakeSdk(), { timeoutMs: LONG, dialog: false });
    g.start();
    if (g.state !== "active") throw new Error(`guard state ${g.state} after start()`);
    return () => { g.stop(); g.free(); };
  },
  // (a') the same with the per-event listener in Rust (gloo-events, web-sys).
  "guard-rust-listener": () => {
    const g = new RustListenerGuard(fakeSdk(), { timeoutMs: LONG, dialog: false });
    g.start();
    if (g.state !== "active") throw new Error(`guard state ${g.state} after start()`);
    return () => { g.stop(); g.free(); };
  },
  // (c) the published npm packages.
  "idle-timeout": () => third.attachIdleTimeout(LONG),
  "react-idle-timer": () => third.attachReactIdleTimer(LONG),
};

// Optional (BENCH_EXTRA=1): where the guard's cost above the floor goes.
const extra = {
  // A listener that only stores Date.now().
  "js-now": () => {
    let last = 0;
    const f = () => { last = Date.now(); };
    const o = { capture: true, passive: true };
    for (const t of EVENTS) document.addEventListener(t, f, o);
    return () => { for (const t of EVENTS) document.removeEventListener(t, f, o); window.__sink = last; };
  },
  // The same plus the zero-movement filter on mousemove.
  "js-now+filter": () => {
    let last = 0;
    const f = () => { last = Date.now(); };
    const m = (e) => { if (e.movementX || e.movementY) last = Date.now(); };
    const o = { capture: true, passive: true };
    for (const t of EVENTS) document.addEventListener(t, t === "mousemove" ? m : f, o);
    return () => { for (const t of EVENTS) document.removeEventListener(t, t === "mousemove" ? m : f, o); window.__sink = last; };
  },
};

// ---- events: created once, re-dispatched (dispatch allows reuse) ----------
function makeMoves(n) {
  // Positions change on every event (idle-timeout drops moves whose pageX/pageY
  // did not change) and movement is non-zero (eyeson-guard drops phantom moves).
  return Array.from({ length: n }, (_, i) => new MouseEvent("mousemove", {
    bubbles: true, movementX: 1, movementY: 1,
    clientX: 1 + (i % 397), clientY: 1 + ((i * 7) % 293), view: window,
  }));
}
function makeKeys(n) {
  return Array.from({ length: n }, () => new KeyboardEvent("keydown", {
    bubbles: true, key: "a", code: "KeyA", view: window,
  }));
}

function dispatchAll(events) {
  const t0 = performance.now();
  for (let i = 0; i < events.length; i++) target.dispatchEvent(events[i]);
  return performance.now() - t0;
}

// A small deterministic PRNG for the per-round order.
function rng(seed) {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
}
function shuffle(a, rand) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
const tick = () => new Promise((r) => setTimeout(r, 0));

let wasmExports;

window.bench = {
  async setup() {
    wasmExports = await init();
    await initRust();
    return {
      userAgent: navigator.userAgent,
      visibilityState: document.visibilityState,
      crossOriginIsolated: self.crossOriginIsolated,
      versions: third.versions,
      wasmMemoryBytes: wasmExports.memory.buffer.byteLength,
    };
  },

  // Timer resolution of performance.now() in this page (µs).
  resolution() {
    let min = Infinity;
    for (let k = 0; k < 200; k++) {
      const a = performance.now();
      let b = a;
      while (b === a) b = performance.now();
      min = Math.min(min, b - a);
    }
    return min * 1000;
  },

  // Per-event cost. Every round attaches each candidate in a shuffled order,
  // warms it up, times `reps` batches of `n` mousemoves and `n` keydowns
  // (alternating), keeps the fastest batch of each kind, and detaches it.
  // Returns raw milliseconds per batch: times[name][kind][round].
  async perEvent({ rounds, n, reps, warmup, seed, withExtra }) {
    if (withExtra) Object.assign(candidates, extra);
    const moves = makeMoves(n), keys = makeKeys(n);
    const warmMoves = makeMoves(warmup), warmKeys = makeKeys(warmup);
    const names = Object.keys(candidates);
    const times = Object.fromEntries(names.map((k) => [k, { mousemove: [], keydown: [] }]));
    const rand = rng(seed);
    for (let r = 0; r < rounds; r++) {
      for (const name of shuffle([...names], rand)) {
        const detach = candidates[name]();
        await tick(); // let React run anything it deferred
        dispatchAll(warmMoves);
        dispatchAll(warmKeys);
        // The fastest of `reps` batches: noise from other processes, GC and
        // interrupts only ever adds time.
        let mm = Infinity, kd = Infinity;
        for (let k = 0; k < reps; k++) {
          mm = Math.min(mm, dispatchAll(moves));
          kd = Math.min(kd, dispatchAll(keys));
        }
        times[name].mousemove.push(mm);
        times[name].keydown.push(kd);
        detach();
        await tick();
      }
    }
    return { names, times };
  },

  // Attach one candidate and leave it attached (for listener counting).
  attach(name) {
    window.__detach = candidates[name]();
  },
  detach() {
    window.__detach();
    window.__detach = null;
  },

  wasmMemoryBytes() {
    return wasmExports.memory.buffer.byteLength;
  },

  // ---- memory --------------------------------------------------------------
  memStart() {
    const sdk = fakeSdk();
    const g = new InactivityGuard(sdk, { timeoutMs: LONG, dialog: false });
    g.start();
    window.__mem = { g, sdk, moves: makeMoves(1000), keys: makeKeys(100) };
    return g.state;
  },
  // `count` DOM events on the started guard: 10 mousemoves to 1 keydown.
  memEvents(count) {
    const { g, moves, keys } = window.__mem;
    let sent = 0;
    while (sent < count) {
      for (let i = 0; i < moves.length && sent < count; i++, sent++) {
        target.dispatchEvent(moves[i]);
        if (i % 10 === 9 && sent + 1 < count) { target.dispatchEvent(keys[(i / 10) | 0]); sent++; }
      }
    }
    return { state: g.state, remainingMs: g.remainingMs() };
  },
  // `count` explicit ping() calls: each one crosses into wasm and runs the machine.
  memPings(count) {
    const { g } = window.__mem;
    const t0 = performance.now();
    for (let i = 0; i < count; i++) g.ping();
    const ms = performance.now() - t0;
    return { state: g.state, remainingMs: g.remainingMs(), usPerPing: (ms * 1000) / count };
  },
  memStop() {
    const { g, sdk } = window.__mem;
    g.stop();
    g.free();
    const left = sdk.handlers.size;
    window.__mem = null;
    return left;
  },
  // `count` guards created, started and stopped (by default not freed: left
  // to the GC, as an app that drops its guard would). Returns SDK handlers
  // left behind.
  // With `free`, each guard is also freed right away (guard.free()).
  memCycles(count, free = false) {
    const sdk = fakeSdk();
    const states = new Set();
    for (let i = 0; i < count; i++) {
      const g = new InactivityGuard(sdk, { timeoutMs: LONG, dialog: false });
      g.start();
      g.stop();
      states.add(g.state);
      if (free) g.free();
    }
    return { sdkHandlersLeft: sdk.handlers.size, sends: sdk.sends.length, states: [...states] };
  },

  // ---- precision -----------------------------------------------------------
  // Sequential runs: a guard with promptMs 0; lateness = the time send() was
  // called minus (the time just before start() + timeoutMs).
  async precision({ runs, minTimeoutMs, stepMs }) {
    const out = [];
    for (let i = 0; i < runs; i++) {
      const timeoutMs = minTimeoutMs + stepMs * i;
      let sentAt = 0;
      let resolve;
      const done = new Promise((r) => (resolve = r));
      const sdk = fakeSdk(() => { sentAt = Date.now(); resolve(); });
      const g = new InactivityGuard(sdk, { timeoutMs, promptMs: 0, dialog: false });
      const startedAt = Date.now();
      g.start();
      const guardTimeout = setTimeout(resolve, timeoutMs + 5000);
      await done;
      clearTimeout(guardTimeout);
      out.push({
        timeoutMs,
        latenessMs: sentAt ? sentAt - (startedAt + timeoutMs) : null,
        sends: sdk.sends.length,
        state: g.state,
        sdkHandlersLeft: sdk.handlers.size,
        visibilityState: document.visibilityState,
      });
      g.free();
      await tick();
    }
    return out;
  },
};
