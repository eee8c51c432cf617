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

use crate::activity::Sensor;
use crate::dialog::Dialog;
use crate::machine::{Machine, Millis, Phase, Transition};
use crate::options::{Callbacks, Options};
use crate::sdk::{self, Sdk, Signal};

fn console_error(message: &str, detail: &JsValue) {
    web_sys::console::error_2(&JsValue::from_str(message), detail);
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
    /// DOM listeners and the timer, while armed (dropping it removes them).
    sensor: Option<Sensor>,
    /// The open dialog (dropping it closes it).
    dialog: Option<Dialog>,
    /// The function handed to the SDK's `onEvent`. It outlives `stop()`, so
    /// that a late call from an SDK that copied its listener list finds a
    /// valid (and inert) function.
    sdk_handler: Option<Closure<dyn Fn(JsValue)>>,
    /// This guard, for the listeners it creates (they must not keep it alive).
    me: Weak<RefCell<Inner>>,
    keep_alive: Option<Rc<RefCell<Inner>>>,
    phase: Rc<Cell<Phase>>,
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
        let rc = Rc::new_cyclic(|me| {
            RefCell::new(Inner {
                machine: Machine::new(opts.limits),
                sdk,
                callbacks: opts.callbacks,
                events: opts.events,
                visibility: opts.visibility,
                dialog_enabled: opts.dialog,
                sensor: None,
                dialog: None,
                sdk_handler: None,
                me: me.clone(),
                keep_alive: None,
                phase: phase.clone(),
            })
        });
        let on_event = dispatcher(&Rc::downgrade(&rc));
        let handler = Closure::<dyn Fn(JsValue)>::new(move |event: JsValue| {
            on_event(Input::Sdk(sdk::classify_js(&event)))
        });
        // Nothing else holds the guard yet, so the borrow always succeeds.
        let subscribed = rc.try_borrow_mut().is_ok_and(|mut inner| {
            let ok = inner.sdk.subscribe(handler.as_ref().unchecked_ref());
            inner.sdk_handler = Some(handler);
            inner.keep_alive = ok.then(|| rc.clone());
            ok
        });
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

/// A function that feeds inputs to the guard while it exists (it holds only
/// a weak reference, so listeners never keep a guard alive).
fn dispatcher(weak: &Weak<RefCell<Inner>>) -> impl Fn(Input) + 'static {
    let weak = weak.clone();
    move |input: Input| {
        if let Some(rc) = weak.upgrade() {
            dispatch(&rc, input);
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
                    let answer = dispatcher(&self.me);
                    self.dialog = Dialog::open(Rc::new(move || answer(Input::Answer)));
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
                self.dialog = None;
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
        match self.sensor.as_ref().and_then(Sensor::take) {
            Some(at) => self.machine.activity(at),
            None => Transition::None,
        }
    }

    fn attach(&mut self) {
        let (report, recheck) = (dispatcher(&self.me), dispatcher(&self.me));
        self.sensor = Sensor::new(
            &self.events,
            Rc::new(move |at| report(Input::Report(at))),
            Rc::new(move |visible| recheck(Input::Recheck(visible))),
        );
    }

    /// Arms the one timer for the machine's next wake-up and refreshes the
    /// countdown.
    fn schedule(&mut self, now: Millis) {
        if let Some(dialog) = &self.dialog {
            dialog.show_remaining(self.machine.remaining(now));
        }
        if let (Some(sensor), Some(wake)) = (
            &mut self.sensor,
            self.machine.next_wake(now, self.dialog.is_some()),
        ) {
            sensor.arm(now, wake, self.machine.quiet_until());
        }
    }

    /// Removes every listener, the timer and the dialog; unsubscribes from
    /// the SDK. Returns the self-reference, to be dropped after the borrow.
    fn release(&mut self) -> Option<Rc<RefCell<Inner>>> {
        self.sensor = None;
        self.dialog = None;
        if let Some(handler) = &self.sdk_handler {
            self.sdk.unsubscribe(handler.as_ref().unchecked_ref());
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
