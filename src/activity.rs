//! Binding to `activity.js`: the DOM listeners, the one timer and the
//! visibility/focus/pageshow/resume wake-ups. See that file for why the
//! per-event path is JavaScript.

use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/activity.js")]
extern "C" {
    /// Listens for activity on `document` until `detach()`.
    #[derive(Debug)]
    pub type ActivitySensor;

    /// `report(now)` is called for events at or after `quietUntil`;
    /// `recheck(visible)` when the timer fires or the page wakes up
    /// (`visible`: the page is visible again, which may count as activity).
    #[wasm_bindgen(constructor)]
    pub fn new(events: &Array, report: &Function, recheck: &Function) -> ActivitySensor;

    /// The latest activity recorded without a report, 0 if none; clears it.
    #[wasm_bindgen(method)]
    pub fn take(this: &ActivitySensor) -> f64;

    /// (Re-)arms the one timer and sets the recording threshold.
    #[wasm_bindgen(method)]
    pub fn arm(this: &ActivitySensor, delay: f64, quiet_until: f64);

    /// Removes every listener and the timer.
    #[wasm_bindgen(method)]
    pub fn detach(this: &ActivitySensor);
}
