//! The sensor of a running guard: the per-event activity recorder, the
//! wake-up listeners (visibility, focus, pageshow, resume) and the one timer.
//!
//! Everything here is an RAII value owned by the guard while it is armed:
//! dropping the [`Sensor`] removes every listener and clears the timer, so
//! `stop()` and termination cannot leave anything behind.

use alloc::rc::Rc;
use core::cell::Cell;

use gloo_events::{EventListener, EventListenerOptions, EventListenerPhase};
use gloo_timers::callback::Timeout;
use js_sys::Array;
use web_sys::Document;

use crate::machine::Millis;

/// The longest a browser timer can wait (`setTimeout` takes an i32); a
/// longer delay would fire at once and spin.
const MAX_DELAY: Millis = i32::MAX as Millis;

/// Called with the time of an activity event that may change the state.
pub type Report = Rc<dyn Fn(f64)>;
/// Called when the timer fires or the page wakes up; `true` if the page is
/// visible again (which may count as activity).
pub type Recheck = Rc<dyn Fn(bool)>;

/// Listens for activity and wake-ups until dropped.
pub struct Sensor {
    recorder: Recorder,
    _wake: [EventListener; 4],
    timer: Option<Timeout>,
    /// When the armed timer fires (ms since the epoch); 0 once it has fired.
    due: Rc<Cell<f64>>,
    recheck: Recheck,
}

impl core::fmt::Debug for Sensor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sensor")
    }
}

impl Sensor {
    /// Starts listening; `None` outside a page with a document.
    pub fn new(events: &Array, report: Report, recheck: Recheck) -> Option<Sensor> {
        let window = web_sys::window()?;
        let document = window.document()?;
        let woke = |document: &Document| {
            let (document, recheck) = (document.clone(), recheck.clone());
            move |_: &web_sys::Event| recheck(!document.hidden())
        };
        // The page's own events, like the activity listeners: capture,
        // passive. `focus`/`pageshow` target the window itself (bubble phase
        // there means "the window got focus", not any element).
        let capture = EventListenerOptions {
            phase: EventListenerPhase::Capture,
            passive: true,
        };
        let wake = [
            EventListener::new_with_options(
                &document,
                "visibilitychange",
                capture,
                woke(&document),
            ),
            EventListener::new_with_options(&document, "resume", capture, woke(&document)),
            EventListener::new(&window, "focus", woke(&document)),
            EventListener::new(&window, "pageshow", woke(&document)),
        ];
        Some(Sensor {
            recorder: Recorder::new(events, report),
            _wake: wake,
            timer: None,
            due: Rc::new(Cell::new(0.0)),
            recheck,
        })
    }

    /// The latest activity recorded without a report, if any; clears it.
    pub fn take(&self) -> Option<Millis> {
        let at = self.recorder.take();
        (at > 0.0).then_some(at as Millis)
    }

    /// Events before `at` are only recorded (see `hot_path.js`).
    pub fn set_quiet_until(&self, at: Millis) {
        self.recorder.set_quiet_until(at as f64);
    }

    /// (Re-)arms the one timer for `wake`.
    ///
    /// A timer already armed for an earlier instant is kept: it fires early,
    /// the guard finds nothing due and arms the later one. So a stream of
    /// `ping()`s or prompt-window events costs no timer work.
    pub fn arm(&mut self, now: Millis, wake: Millis) {
        let due = wake as f64;
        let armed = self.due.get();
        if self.timer.is_some() && armed > 0.0 && armed <= due {
            return;
        }
        self.due.set(due);
        let (fired, recheck) = (self.due.clone(), self.recheck.clone());
        // Replacing the Timeout clears the old one.
        self.timer = Some(Timeout::new(
            wake.saturating_sub(now).min(MAX_DELAY) as u32,
            move || {
                fired.set(0.0);
                recheck(false);
            },
        ));
    }
}

#[cfg(not(feature = "rust-hot-path"))]
pub(crate) use hot_path_js::Recorder;
#[cfg(feature = "rust-hot-path")]
pub(crate) use hot_path_rust::Recorder;

/// The shipped recorder: `hot_path.js` (see there for why it is JS).
#[cfg(not(feature = "rust-hot-path"))]
mod hot_path_js {
    use js_sys::{Array, Function};
    use wasm_bindgen::prelude::*;

    use super::Report;

    #[wasm_bindgen(module = "/src/hot_path.js")]
    extern "C" {
        type ActivityRecorder;

        #[wasm_bindgen(constructor)]
        fn new(events: &Array, report: &Function) -> ActivityRecorder;
        #[wasm_bindgen(method)]
        fn take(this: &ActivityRecorder) -> f64;
        #[wasm_bindgen(method, setter = quietUntil)]
        fn set_quiet_until(this: &ActivityRecorder, at: f64);
        #[wasm_bindgen(method)]
        fn detach(this: &ActivityRecorder);
    }

    /// The JS listeners and the Rust function they report to; detached on drop.
    pub struct Recorder {
        js: ActivityRecorder,
        _report: Closure<dyn Fn(f64)>,
    }

    impl Recorder {
        pub fn new(events: &Array, report: Report) -> Recorder {
            let report = Closure::<dyn Fn(f64)>::new(move |at| report(at));
            Recorder {
                js: ActivityRecorder::new(events, report.as_ref().unchecked_ref()),
                _report: report,
            }
        }

        pub fn take(&self) -> f64 {
            self.js.take()
        }

        pub fn set_quiet_until(&self, at: f64) {
            self.js.set_quiet_until(at);
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            self.js.detach();
        }
    }
}

/// The benchmark's comparison: the same recorder as Rust listeners.
#[cfg(feature = "rust-hot-path")]
mod hot_path_rust {
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::Cell;

    use gloo_events::{EventListener, EventListenerOptions, EventListenerPhase};
    use js_sys::Array;
    use wasm_bindgen::JsCast;
    use web_sys::MouseEvent;

    use super::Report;

    pub struct Recorder {
        last: Rc<Cell<f64>>,
        quiet_until: Rc<Cell<f64>>,
        _listeners: Vec<EventListener>,
    }

    impl Recorder {
        pub fn new(events: &Array, report: Report) -> Recorder {
            let (last, quiet_until) = (Rc::new(Cell::new(0.0)), Rc::new(Cell::new(0.0)));
            let options = EventListenerOptions {
                phase: EventListenerPhase::Capture,
                passive: true,
            };
            let document = web_sys::window().and_then(|w| w.document());
            let listeners = document.map_or_else(Vec::new, |document| {
                events
                    .iter()
                    .filter_map(|t| t.as_string())
                    .map(|kind| {
                        let moves = kind == "mousemove" || kind == "pointermove";
                        let (last, quiet, report) =
                            (last.clone(), quiet_until.clone(), report.clone());
                        EventListener::new_with_options(&document, kind, options, move |e| {
                            if moves {
                                let m: &MouseEvent = e.unchecked_ref();
                                if m.movement_x() == 0 && m.movement_y() == 0 {
                                    return;
                                }
                            }
                            let now = js_sys::Date::now();
                            if now < quiet.get() {
                                last.set(now);
                            } else {
                                report(now);
                            }
                        })
                    })
                    .collect()
            });
            Recorder {
                last,
                quiet_until,
                _listeners: listeners,
            }
        }

        pub fn take(&self) -> f64 {
            self.last.replace(0.0)
        }

        pub fn set_quiet_until(&self, at: f64) {
            self.quiet_until.set(at);
        }
    }
}
