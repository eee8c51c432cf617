//! The running guard: connects the pure [`Machine`] to the browser.
//!
//! Every input (an SDK event, reported activity, a timer or wake-up, a call
//! from the app) goes through [`dispatch`]: the machine decides under a short
//! `RefCell` borrow, DOM and timer updates happen there too, and everything
//! that can call back into user code (the SDK's `send`, user callbacks) runs
//! after the borrow ends. So a callback may call `ping()` or `stop()`, and a
//! re-entrant event can never hit a borrowed `RefCell` and panic.
//!
//! Lifetime: while subscribed to the SDK, `Inner` holds a strong reference
//! to itself (`keep_alive`), so a guard the app did not keep a variable for
//! is not garbage-collected mid-meeting. Stopping or terminating breaks that
//! cycle; the closures hold only weak references.

use alloc::rc::{Rc, Weak};
use alloc::string::String;
use core::cell::{Cell, RefCell};

use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;

use crate::activity::ActivitySensor;
use crate::dialog::GuardDialog;
use crate::machine::{Machine, Millis, Phase, Transition};
use crate::options::{Callbacks, Options};
use crate::sdk::{self, Sdk, Signal};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str, detail: &JsValue);
}

/// Reads the wall clock. `Date.now()` is looked up on every call, which is
/// also what lets browser tests simulate a laptop sleeping.
fn now() -> Millis {
    js_sys::Date::now() as Millis
}

/// What can happen to a guard.
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// `guard.start()`.
    Start,
    /// `guard.ping()`: activity reported by the app.
    Ping,
    /// An activity event at or after the sensor's `quietUntil`, at this time.
    Report(f64),
    /// The timer fired or the page woke up; `true` if it became visible.
    Recheck(bool),
    /// An event from the SDK.
    Sdk(Signal),
    /// The dialog's button, Escape or Enter.
    Answer,
    /// `guard.stop()`.
    Stop,
}

/// Shared state of one guard.
#[derive(Debug)]
pub struct Guard {
    inner: Rc<RefCell<Inner>>,
    /// The machine's phase, readable even while `inner` is borrowed (a page
    /// listener may read `guard.state` when the dialog moves focus).
    phase: Rc<Cell<Phase>>,
}

#[derive(Debug)]
struct Inner {
    machine: Machine,
    sdk: Sdk,
    callbacks: Callbacks,
    events: Array,
    visibility: bool,
    dialog_enabled: bool,
    sensor: Option<ActivitySensor>,
    dialog: Option<GuardDialog>,
    handlers: Option<Handlers>,
    keep_alive: Option<Rc<RefCell<Inner>>>,
    phase: Rc<Cell<Phase>>,
}

/// The JS functions handed to the SDK and the DOM; they outlive `stop()` so
/// that a late call from a caller that copied its listener list finds a
/// valid (and inert) function.
#[derive(Debug)]
struct Handlers {
    sdk_event: Closure<dyn Fn(JsValue)>,
    report: Closure<dyn Fn(f64)>,
    recheck: Closure<dyn Fn(bool)>,
    answer: Closure<dyn Fn()>,
}

/// Side effects that may run user code, executed after the borrow ends.
#[derive(Default)]
struct After {
    send_to: Option<Sdk>,
    callback: Option<(&'static str, Function, JsValue)>,
    release: Option<Rc<RefCell<Inner>>>,
}

impl Guard {
    /// Validates the arguments and subscribes to the SDK.
    pub fn new(eyeson: &JsValue, options: &JsValue) -> Result<Guard, String> {
        let sdk = Sdk::from_js(eyeson)?;
        let opts = Options::from_js(options)?;
        let phase = Rc::new(Cell::new(Phase::Waiting));
        let rc = Rc::new(RefCell::new(Inner {
            machine: Machine::new(opts.limits),
            sdk,
            callbacks: opts.callbacks,
            events: opts.events,
            visibility: opts.visibility,
            dialog_enabled: opts.dialog,
            sensor: None,
            dialog: None,
            handlers: None,
            keep_alive: None,
            phase: phase.clone(),
        }));
        let handlers = Handlers::new(Rc::downgrade(&rc));
        let subscribed = {
            let mut inner = rc.borrow_mut();
            let ok = inner
                .sdk
                .subscribe(handlers.sdk_event.as_ref().unchecked_ref());
            inner.handlers = Some(handlers);
            inner.keep_alive = ok.then(|| rc.clone());
            ok
        };
        if !subscribed {
            return Err("eyeson-guard: the SDK's onEvent threw; is it the eyeson SDK?".into());
        }
        Ok(Guard { inner: rc, phase })
    }

    /// Feeds an input through the machine and carries out its effects.
    pub fn dispatch(&self, input: Input) {
        dispatch(&self.inner, input);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Milliseconds until termination, from the deadline.
    pub fn remaining(&self) -> Millis {
        match self.inner.try_borrow_mut() {
            Ok(mut inner) => {
                inner.fold_recorded_activity();
                inner.machine.remaining(now())
            }
            Err(_) => 0,
        }
    }
}

fn dispatch(rc: &Rc<RefCell<Inner>>, input: Input) {
    // A busy guard means this input was triggered by the guard's own DOM
    // change (e.g. focus moving to the dialog): not user activity.
    let after = match rc.try_borrow_mut() {
        Ok(mut inner) => inner.apply(input),
        Err(_) => return,
    };
    after.run();
}

impl Handlers {
    fn new(weak: Weak<RefCell<Inner>>) -> Handlers {
        let input = |weak: &Weak<RefCell<Inner>>| {
            let weak = weak.clone();
            move |input: Input| {
                if let Some(rc) = weak.upgrade() {
                    dispatch(&rc, input);
                }
            }
        };
        let (on_sdk, on_report, on_recheck, on_dialog) =
            (input(&weak), input(&weak), input(&weak), input(&weak));
        Handlers {
            sdk_event: Closure::new(move |event: JsValue| {
                on_sdk(Input::Sdk(sdk::classify_js(&event)))
            }),
            report: Closure::new(move |at: f64| on_report(Input::Report(at))),
            recheck: Closure::new(move |visible: bool| on_recheck(Input::Recheck(visible))),
            answer: Closure::new(move || on_dialog(Input::Answer)),
        }
    }
}

impl Inner {
    fn apply(&mut self, input: Input) -> After {
        let now = now();
        let mut reason = "stop";
        let mut transition = self.fold_recorded_activity();
        if transition == Transition::None {
            transition = match input {
                Input::Start | Input::Sdk(Signal::Arm) => self.machine.start(now),
                Input::Ping | Input::Answer => self.machine.activity(now),
                Input::Report(at) => self.machine.activity(at as Millis),
                Input::Recheck(visible) => match self.machine.check(now) {
                    Transition::None if visible && self.visibility => self.machine.activity(now),
                    t => t,
                },
                Input::Sdk(Signal::Stop(why)) => {
                    reason = why;
                    self.machine.stop()
                }
                Input::Stop => self.machine.stop(),
                Input::Sdk(Signal::Ignore) => Transition::None,
            };
        }

        self.phase.set(self.machine.phase());
        let mut after = After::default();
        match transition {
            Transition::Armed => self.attach(),
            Transition::Prompted { remaining } => {
                if self.dialog_enabled {
                    if let Some(h) = &self.handlers {
                        self.dialog = GuardDialog::open(h.answer.as_ref().unchecked_ref());
                    }
                }
                after.callback = self.callbacks.on_prompt.clone().map(|f| {
                    (
                        "eyeson-guard: onPrompt threw:",
                        f,
                        JsValue::from_f64(remaining as f64),
                    )
                });
            }
            Transition::Resumed => {
                if let Some(d) = self.dialog.take() {
                    d.close();
                }
                after.callback = self
                    .callbacks
                    .on_active
                    .clone()
                    .map(|f| ("eyeson-guard: onActive threw:", f, JsValue::UNDEFINED));
            }
            Transition::Terminate => {
                after.send_to = Some(self.sdk.clone());
                after.callback = self.callbacks.on_terminate.clone().map(|f| {
                    (
                        "eyeson-guard: onTerminate threw:",
                        f,
                        JsValue::from_str("idle"),
                    )
                });
                after.release = self.release();
            }
            Transition::Stopped => {
                after.callback = self
                    .callbacks
                    .on_stop
                    .clone()
                    .map(|f| ("eyeson-guard: onStop threw:", f, JsValue::from_str(reason)));
                after.release = self.release();
            }
            Transition::None => {}
        }
        self.schedule(now);
        after
    }

    /// Folds in the activity the JS sensor recorded without reporting it.
    fn fold_recorded_activity(&mut self) -> Transition {
        match &self.sensor {
            Some(sensor) => match sensor.take() {
                at if at > 0.0 => self.machine.activity(at as Millis),
                _ => Transition::None,
            },
            None => Transition::None,
        }
    }

    fn attach(&mut self) {
        if let Some(h) = &self.handlers {
            self.sensor = Some(ActivitySensor::new(
                &self.events,
                h.report.as_ref().unchecked_ref(),
                h.recheck.as_ref().unchecked_ref(),
            ));
        }
    }

    /// Arms the one timer for the machine's next wake-up and refreshes the
    /// countdown.
    fn schedule(&mut self, now: Millis) {
        if let Some(dialog) = &self.dialog {
            dialog.show_remaining(self.machine.remaining(now));
        }
        if let (Some(sensor), Some(wake)) = (
            &self.sensor,
            self.machine.next_wake(now, self.dialog.is_some()),
        ) {
            sensor.arm(
                wake.saturating_sub(now) as f64,
                self.machine.quiet_until() as f64,
            );
        }
    }

    /// Removes every listener, the timer and the dialog; unsubscribes from
    /// the SDK. Returns the self-reference, to be dropped after the borrow.
    fn release(&mut self) -> Option<Rc<RefCell<Inner>>> {
        if let Some(sensor) = self.sensor.take() {
            sensor.detach();
        }
        if let Some(d) = self.dialog.take() {
            d.close();
        }
        if let Some(h) = &self.handlers {
            self.sdk.unsubscribe(h.sdk_event.as_ref().unchecked_ref());
        }
        // A final guard holds nothing of the app's until it is collected.
        self.callbacks = Callbacks::default();
        self.events = Array::new();
        self.keep_alive.take()
    }
}

impl After {
    fn run(self) {
        if let Some(sdk) = self.send_to {
            if let Err(e) = sdk.terminate_session() {
                console_error(
                    "eyeson-guard: the eyeson SDK refused session_termination:",
                    &e,
                );
            }
        }
        if let Some((message, f, arg)) = self.callback {
            if let Err(e) = f.call1(&JsValue::UNDEFINED, &arg) {
                console_error(message, &e);
            }
        }
        drop(self.release);
    }
}
