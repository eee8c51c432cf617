// The per-event hot path: the only JavaScript in eyeson-guard's source.
//
// Why JavaScript: a mousemove fires up to hundreds of times a second, and a
// Rust listener pays a JS→wasm crossing per event plus one wasm→JS call each
// for the clock and both movement values. bench/run.mjs measures both builds
// in one run (figures in bench/README.md): this listener costs what a bare
// JS listener reading Date.now() costs; the Rust one (feature
// `rust-hot-path`) measurably more. So this only stores the time and calls
// into wasm (`report`) when the event could change something: at or after
// `quietUntil` (the prompt window, or any time while prompted).
const OPTIONS = { capture: true, passive: true }; // stopPropagation cannot hide activity

export class ActivityRecorder {
  constructor(events, report) {
    this.quietUntil = 0; // set by the guard (activity.rs)
    this.last = 0; // latest activity recorded without a report, 0 = none
    const seen = () => {
      const now = Date.now();
      if (now < this.quietUntil) this.last = now;
      else report(now);
    };
    // Some devices emit mousemoves that did not move: not activity.
    const moved = (e) => (e.movementX || e.movementY) && seen();
    this.on = events.map((t) => [t, t === "mousemove" || t === "pointermove" ? moved : seen]);
    for (const [t, f] of this.on) document.addEventListener(t, f, OPTIONS);
  }
  take() { const last = this.last; this.last = 0; return last; }
  detach() { for (const [t, f] of this.on) document.removeEventListener(t, f, OPTIONS); this.on = []; }
}
