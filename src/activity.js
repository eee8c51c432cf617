// The per-event hot path of eyeson-guard, kept in JavaScript on purpose.
//
// A mousemove fires up to hundreds of times a second. Crossing into wasm for
// each one costs more than everything else the guard does, so the listener
// only reads the clock and stores it. It calls into wasm (`report`) only when
// the event could change something: once the time passes `quietUntil` (the
// start of the prompt window, or 0 while prompted). The state machine in
// Rust folds the stored `last` timestamp in whenever it runs, so activity
// moves the deadline without a timer being cleared or armed per event.

export class ActivitySensor {
  constructor(events, report, recheck) {
    this.quietUntil = 0; // events before this instant are only recorded
    this.last = 0; // latest recorded activity (ms since the epoch), 0 = none
    this.timer = 0;
    this.due = 0; // when the armed timer fires (ms since the epoch)
    this.controller = new AbortController();
    this.fire = () => {
      this.timer = 0;
      recheck(false);
    };
    const signal = this.controller.signal;
    // Capture phase on document, like react-idle-timer: components that stop
    // propagation cannot hide activity. Passive: never delays scrolling.
    const options = { capture: true, passive: true, signal };
    const seen = () => {
      const now = Date.now();
      if (now < this.quietUntil) this.last = now;
      else report(now);
    };
    // Some devices emit mousemoves that did not move: they are not activity.
    const moved = (e) => {
      if (e.movementX || e.movementY) seen();
    };
    for (const type of events) {
      document.addEventListener(type, type === "mousemove" || type === "pointermove" ? moved : seen, options);
    }
    // A page that slept or was hidden re-checks its deadline as soon as it
    // runs again, without waiting for input.
    const woke = () => recheck(document.visibilityState === "visible");
    document.addEventListener("visibilitychange", woke, options);
    document.addEventListener("resume", woke, options);
    window.addEventListener("focus", woke, { signal });
    window.addEventListener("pageshow", woke, { signal });
  }

  // Takes the recorded activity (0 if none since the last take).
  take() {
    const last = this.last;
    this.last = 0;
    return last;
  }

  // The one timer. A timer already armed for an earlier instant is kept: it
  // fires early, the guard finds nothing due and arms the later one. So a
  // stream of ping()s or prompt-window events costs no timer work.
  arm(delay, quietUntil) {
    this.quietUntil = quietUntil;
    const due = Date.now() + delay;
    if (this.timer && this.due <= due) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(this.fire, delay);
  }

  detach() {
    this.controller.abort();
    clearTimeout(this.timer);
    this.timer = 0;
    this.quietUntil = 0;
  }
}
