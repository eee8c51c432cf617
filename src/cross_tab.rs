//! Activity shared between the tabs of one origin, over a `BroadcastChannel`.
//!
//! A tab posts the time of its latest activity at most once a second; the
//! per-event hot path only stores times (the recorder's `quietUntil` is set
//! to the next instant a post is allowed, so one event a second reaches
//! Rust). Each guard still decides and terminates for its own tab only.

use alloc::rc::Rc;
use core::cell::{Cell, RefCell};

use gloo_events::EventListener;
use js_sys::Function;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::activity::{Recorder, Report};
use crate::options::DEFAULT_EVENTS;

const CHANNEL: &str = "eyeson-guard:activity";
/// The least time between two posts of one tab.
const POST_EVERY_MS: f64 = 1_000.0;

/// A tab's end of the channel; closed on drop.
pub struct CrossTab {
    channel: BroadcastChannel,
    _message: EventListener,
    /// The earliest time the next post may go out.
    next_post: Cell<f64>,
}

impl core::fmt::Debug for CrossTab {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CrossTab")
    }
}

impl CrossTab {
    /// Joins the channel; `remote` gets other tabs' activity times (never
    /// later than now). `None` where `BroadcastChannel` is missing.
    pub fn open(remote: Report) -> Option<CrossTab> {
        let channel = BroadcastChannel::new(CHANNEL).ok()?;
        let message = EventListener::new(&channel, "message", move |event| {
            // A BroadcastChannel's "message" is always a MessageEvent.
            let at = event
                .unchecked_ref::<MessageEvent>()
                .data()
                .as_f64()
                .filter(|at| at.is_finite() && *at > 0.0);
            if let Some(at) = at {
                // Another tab's clock is this machine's clock; a time in the
                // future is a bug or a forgery and counts as now at most.
                remote(at.min(js_sys::Date::now()));
            }
        });
        Some(CrossTab {
            channel,
            _message: message,
            next_post: Cell::new(0.0),
        })
    }

    /// Posts `at` unless a post went out less than a second before.
    pub fn share(&self, at: f64) {
        if at < self.next_post.get() {
            return;
        }
        self.next_post.set(at + POST_EVERY_MS);
        let _ = self.channel.post_message(&JsValue::from_f64(at));
    }

    /// Activity before this time would not be posted.
    pub fn next_post(&self) -> f64 {
        self.next_post.get()
    }
}

impl Drop for CrossTab {
    fn drop(&mut self) {
        self.channel.close();
    }
}

/// A tab without a meeting reporting its activity to the meeting's tab.
struct Sharer {
    recorder: Recorder,
    tab: CrossTab,
    _visible: EventListener,
}

/// `shareActivity()`: returns the function that stops sharing (idempotent).
pub fn share_activity() -> Function {
    let state: Rc<RefCell<Option<Sharer>>> = Rc::new(RefCell::new(None));
    let weak = Rc::downgrade(&state);
    let seen: Report = Rc::new(move |at| {
        let Some(state) = weak.upgrade() else { return };
        let Ok(state) = state.try_borrow() else {
            return;
        };
        if let Some(s) = state.as_ref() {
            s.tab.share(at);
            s.recorder.set_quiet_until(s.tab.next_post());
        }
    });
    let events = DEFAULT_EVENTS
        .iter()
        .map(|e| JsValue::from_str(e))
        .collect();
    let document = web_sys::window().and_then(|w| w.document());
    let tab = CrossTab::open(Rc::new(|_| {}));
    if let (Some(document), Some(tab)) = (document, tab) {
        let visible = {
            let (seen, document) = (seen.clone(), document.clone());
            EventListener::new(&document.clone(), "visibilitychange", move |_| {
                if !document.hidden() {
                    seen(js_sys::Date::now());
                }
            })
        };
        if let Ok(mut slot) = state.try_borrow_mut() {
            *slot = Some(Sharer {
                recorder: Recorder::new(&events, seen),
                tab,
                _visible: visible,
            });
        }
    }
    let stop = Closure::<dyn FnMut()>::new(move || {
        // Dropping the sharer removes its listeners and closes the channel.
        let sharer = state.try_borrow_mut().ok().and_then(|mut s| s.take());
        drop(sharer);
    });
    stop.into_js_value().unchecked_into()
}
