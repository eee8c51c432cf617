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
use crate::cross_tab::CrossTab;
use crate::dialog::Dialog;
use crate::hard_limit::{Fetched, HardLimit, Kind};
use crate::machine::{Machine, Millis, Phase, Transition};
use crate::options::{Callbacks, Options, Text};
use crate::sdk::{self, Local, Sdk, Signal};
use crate::system_idle::{SystemIdle, SystemState, THRESHOLD_MS};

fn console_error(message: &str, detail: &JsValue) {
    web_sys::console::error_2(&JsValue::from_str(message), detail);
}

/// Reads the wall clock. `Date.now()` is looked up on every call, which is
/// also what lets browser tests simulate a laptop sleeping.
fn now() -> Millis {
    js_sys::Date::now() as Millis
}

/// What can happen to a guard.
#[derive(Clone, Debug)]
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
    /// Activity in another tab of this origin, at this time.
    Remote(f64),
    /// The IdleDetector's state changed.
    System(SystemState),
    /// A read of the hard-limit service finished.
    HardLimit(u32, Fetched),
    /// The hard-limit side's timers: `true` = read again, `false` = notice.
    HardLimitWake(bool),
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
    speech: bool,
    cross_tab_enabled: bool,
    system_idle_enabled: bool,
    text: Rc<Text>,
    /// Who the local user is (for `voice_activity`) and the room.
    local: Local,
    /// The local user is speaking.
    speaking: bool,
    system: SystemState,
    /// DOM listeners and the timer, while armed (dropping it removes them).
    sensor: Option<Sensor>,
    /// The other tabs, while armed.
    cross_tab: Option<CrossTab>,
    /// The IdleDetector, while armed.
    system_idle: Option<SystemIdle>,
    /// The hard-limit service link, until released.
    hard_limit: Option<HardLimit>,
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
    /// `onHardLimit`, which can coincide with any transition.
    hard_limit: Option<(Function, f64, Kind)>,
    release: Option<Rc<RefCell<Inner>>>,
}

impl Guard {
    /// Validates the arguments and subscribes to the SDK.
    pub fn new(eyeson: &JsValue, options: &JsValue) -> Result<Guard, String> {
        let sdk = Sdk::from_js(eyeson)?;
        let opts = Options::from_js(options)?;
        let phase = Rc::new(Cell::new(Phase::Waiting));
        // A guard created after the join finds the user and room on the SDK.
        let local = sdk.local();
        let rc = Rc::new_cyclic(|me: &Weak<RefCell<Inner>>| {
            let text = Rc::new(opts.text);
            let hard_limit = opts.hard_limit.map(|base| {
                let (deliver, wake) = (dispatcher(me), dispatcher(me));
                let mut h = HardLimit::new(
                    base,
                    opts.notice_ms,
                    opts.dialog,
                    text.clone(),
                    Rc::new(move |seq, fetched| deliver(Input::HardLimit(seq, fetched))),
                    Rc::new(move |poll| wake(Input::HardLimitWake(poll))),
                );
                h.set_room(local.room.clone(), local.guest.clone());
                h
            });
            RefCell::new(Inner {
                machine: Machine::new(opts.limits).with_alone(opts.alone),
                sdk,
                callbacks: opts.callbacks,
                events: opts.events,
                visibility: opts.visibility,
                dialog_enabled: opts.dialog,
                speech: opts.speech,
                cross_tab_enabled: opts.cross_tab,
                system_idle_enabled: opts.system_idle,
                text,
                local,
                speaking: false,
                system: SystemState::Off,
                cross_tab: None,
                system_idle: None,
                hard_limit,
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

    /// `(speaking, alone, systemIdle)`; `None` while the guard is busy.
    pub fn presence(&self) -> Option<(bool, bool, &'static str)> {
        self.inner.try_borrow().ok().map(|inner| inner.presence())
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
        let mut after = After::default();
        let mut reason = "stop";
        let mut transition = self.fold_recorded_activity();
        if transition == Transition::None {
            transition = match input {
                Input::Start | Input::Sdk(Signal::Arm) => self.machine.start(now),
                Input::Ping | Input::Answer => self.seen(now),
                Input::Report(at) => self.seen(at as Millis),
                Input::Remote(at) => self.machine.activity(at as Millis),
                Input::Recheck(visible) => match self.machine.check(now) {
                    Transition::None if visible && self.visibility => self.seen(now),
                    t => t,
                },
                Input::Sdk(Signal::Stop(why)) => {
                    reason = why;
                    self.machine.stop()
                }
                Input::Stop => self.machine.stop(),
                Input::Sdk(Signal::Solo(solo)) => {
                    // Becoming or ceasing to be alone is a participant
                    // change (the sandbox sends no `add_user`).
                    if solo != self.machine.is_solo() {
                        self.participants_changed(now);
                    }
                    self.machine.set_solo(now, solo)
                }
                Input::Sdk(Signal::Participants) => {
                    self.participants_changed(now);
                    Transition::None
                }
                Input::Sdk(Signal::Voice(speaker, on)) => {
                    if self.speech && self.local.is(&speaker) {
                        self.speaking = on;
                    }
                    self.update_hold(now, now)
                }
                Input::System(state) => {
                    let was_active = self.system == SystemState::Active;
                    self.system = state;
                    // "idle" means no input for the threshold: the user was
                    // last seen that long ago.
                    let seen = match state {
                        SystemState::Idle if was_active => now.saturating_sub(THRESHOLD_MS),
                        _ => now,
                    };
                    self.update_hold(now, seen)
                }
                Input::Sdk(Signal::Setup(local)) => {
                    let mut local = local;
                    local.merge(core::mem::take(&mut self.local));
                    self.local = local;
                    if let Some(h) = &mut self.hard_limit {
                        h.set_room(self.local.room.clone(), self.local.guest.clone());
                        // Our own join is a change too: the service counts
                        // us at its next check, and a notice of an alone
                        // end read before must not linger.
                        h.watch(now);
                    }
                    Transition::None
                }
                Input::Sdk(Signal::RoomChanged) | Input::HardLimitWake(true) => {
                    if let Some(h) = &mut self.hard_limit {
                        h.refresh();
                    }
                    Transition::None
                }
                Input::HardLimitWake(false) => {
                    if let Some(h) = &mut self.hard_limit {
                        h.update(now);
                    }
                    Transition::None
                }
                Input::HardLimit(seq, fetched) => {
                    self.hard_limit_read(seq, fetched, now, &mut after);
                    Transition::None
                }
                Input::Sdk(Signal::Ignore) => Transition::None,
            };
        }

        self.phase.set(self.machine.phase());
        match transition {
            Transition::Armed => self.attach(),
            Transition::Prompted { remaining } => {
                if self.dialog_enabled {
                    let answer = dispatcher(&self.me);
                    self.dialog = Dialog::open(Rc::new(move || answer(Input::Answer)), &self.text);
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

    /// Activity in this tab: moves the deadline and tells the other tabs.
    fn seen(&mut self, at: Millis) -> Transition {
        if let Some(tab) = &self.cross_tab {
            tab.share(at as f64);
        }
        self.machine.activity(at)
    }

    /// Speaking or being active on the computer holds the deadline.
    fn update_hold(&mut self, now: Millis, seen: Millis) -> Transition {
        let held = self.speaking || self.system == SystemState::Active;
        self.machine.hold(now, held, seen)
    }

    /// Someone joined or left: the service may start or end an alone period.
    fn participants_changed(&mut self, now: Millis) {
        if let Some(h) = &mut self.hard_limit {
            h.participants_changed(now);
        }
    }

    fn hard_limit_read(&mut self, seq: u32, fetched: Fetched, now: Millis, after: &mut After) {
        let Some(h) = &mut self.hard_limit else {
            return;
        };
        let (changed, complaint) = h.result(seq, fetched, now);
        if let Some(why) = complaint {
            web_sys::console::warn_2(
                &JsValue::from_str(
                    "eyeson-guard: cannot read this meeting's hard deadline (logged once):",
                ),
                &JsValue::from_str(&why),
            );
        }
        if let (Some((end, kind)), Some(f)) = (changed, &self.callbacks.on_hard_limit) {
            after.hard_limit = Some((f.clone(), end as f64, kind));
        }
    }

    /// What `guard.presence` reports.
    pub fn presence(&self) -> (bool, bool, &'static str) {
        (self.speaking, self.machine.is_solo(), self.system.as_str())
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
        if self.cross_tab_enabled {
            let remote = dispatcher(&self.me);
            self.cross_tab = CrossTab::open(Rc::new(move |at| remote(Input::Remote(at))));
        }
        if self.system_idle_enabled {
            let report = dispatcher(&self.me);
            match SystemIdle::start(Rc::new(move |state| report(Input::System(state)))) {
                Ok(detector) => self.system_idle = Some(detector),
                Err(state) => self.system = state,
            }
        }
    }

    /// Arms the one timer for the machine's next wake-up and refreshes the
    /// countdown.
    fn schedule(&mut self, now: Millis) {
        if let Some(dialog) = &self.dialog {
            dialog.show_remaining(self.machine.remaining(now));
        }
        let Some(sensor) = &mut self.sensor else {
            return;
        };
        // Events before this only need storing: they can change nothing,
        // and no post to the other tabs is due yet.
        let mut quiet = self.machine.quiet_until();
        if let Some(tab) = &self.cross_tab {
            quiet = quiet.min(tab.next_post() as Millis);
        }
        sensor.set_quiet_until(quiet);
        if let Some(wake) = self.machine.next_wake(now, self.dialog.is_some()) {
            sensor.arm(now, wake);
        }
    }

    /// Removes every listener, the timer and the dialog; unsubscribes from
    /// the SDK. Returns the self-reference, to be dropped after the borrow.
    fn release(&mut self) -> Option<Rc<RefCell<Inner>>> {
        self.sensor = None;
        self.dialog = None;
        self.cross_tab = None;
        self.system_idle = None;
        self.hard_limit = None;
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
        if let Some((f, end, kind)) = self.hard_limit {
            let kind = JsValue::from_str(kind.as_str());
            if let Err(e) = f.call2(&JsValue::UNDEFINED, &JsValue::from_f64(end), &kind) {
                console_error("eyeson-guard: onHardLimit threw:", &e);
            }
        }
        drop(self.release);
    }
}
