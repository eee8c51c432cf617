//! OS-level presence through the IdleDetector API (Chromium, behind a
//! permission).
//!
//! Bound by hand: web-sys has no binding for `IdleDetector` (it is not in
//! its WebIDL set, stable or unstable). Every call is `catch`, so a browser
//! without the API (a `ReferenceError`) simply reports "unavailable".

use alloc::boxed::Box;
use alloc::rc::Rc;
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::AbortController;

use gloo_events::EventListener;

use crate::promise::settle;

/// The IdleDetector threshold (the API's minimum is 60 s).
pub const THRESHOLD_MS: u64 = 60_000;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = web_sys::EventTarget)]
    #[derive(Clone)]
    type IdleDetector;

    #[wasm_bindgen(constructor, catch)]
    fn new() -> Result<IdleDetector, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn start(this: &IdleDetector, options: &JsValue) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, getter, js_name = userState)]
    fn user_state(this: &IdleDetector) -> Option<String>;
    #[wasm_bindgen(method, getter, js_name = screenState)]
    fn screen_state(this: &IdleDetector) -> Option<String>;
    #[wasm_bindgen(static_method_of = IdleDetector, js_name = requestPermission, catch)]
    fn request_permission() -> Result<Promise, JsValue>;
}

/// What `presence.systemIdle` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemState {
    /// The `systemIdle` option is off (or not started yet).
    Off,
    /// No IdleDetector in this browser (or it failed to start).
    Unavailable,
    /// The permission was not granted.
    Denied,
    /// The user used the computer within the threshold.
    Active,
    /// No input for the threshold.
    Idle,
    /// The screen is locked: never presence.
    Locked,
}

impl SystemState {
    /// The `presence.systemIdle` string.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Off => "off",
            SystemState::Unavailable => "unavailable",
            SystemState::Denied => "denied",
            SystemState::Active => "active",
            SystemState::Idle => "idle",
            SystemState::Locked => "locked",
        }
    }

    /// From the detector's `userState` and `screenState`.
    pub fn from_states(user: Option<&str>, screen: Option<&str>) -> SystemState {
        match (user, screen) {
            (_, Some("locked")) => SystemState::Locked,
            (Some("active"), _) => SystemState::Active,
            (Some("idle"), _) => SystemState::Idle,
            _ => SystemState::Unavailable,
        }
    }
}

/// A running detector; stopped on drop.
pub struct SystemIdle {
    abort: Option<AbortController>,
    _change: EventListener,
}

impl core::fmt::Debug for SystemIdle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SystemIdle")
    }
}

fn read(detector: &IdleDetector) -> SystemState {
    SystemState::from_states(
        detector.user_state().as_deref(),
        detector.screen_state().as_deref(),
    )
}

impl SystemIdle {
    /// Starts a detector; `report` gets every state, the first one once the
    /// start succeeded or failed. A failure to start (no API) is returned,
    /// not reported: the caller is busy now.
    pub fn start(report: Rc<dyn Fn(SystemState)>) -> Result<SystemIdle, SystemState> {
        let Ok(detector) = IdleDetector::new() else {
            return Err(SystemState::Unavailable);
        };
        let abort = AbortController::new().ok();
        let options = Object::new();
        let _ = Reflect::set(&options, &"threshold".into(), &(THRESHOLD_MS as f64).into());
        if let Some(abort) = &abort {
            let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        }
        let change = {
            let (report, detector) = (report.clone(), detector.clone());
            EventListener::new(&detector.clone(), "change", move |_| {
                report(read(&detector))
            })
        };
        match detector.start(&options) {
            Ok(started) => settle(
                &started,
                Box::new(move |result| {
                    report(match result {
                        Ok(_) => read(&detector),
                        Err(e)
                            if Reflect::get(&e, &"name".into())
                                .ok()
                                .and_then(|n| n.as_string())
                                .as_deref()
                                == Some("NotAllowedError") =>
                        {
                            SystemState::Denied
                        }
                        Err(_) => SystemState::Unavailable,
                    })
                }),
            ),
            Err(_) => return Err(SystemState::Unavailable),
        }
        Ok(SystemIdle {
            abort,
            _change: change,
        })
    }
}

impl Drop for SystemIdle {
    fn drop(&mut self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

/// `InactivityGuard.requestSystemIdle()`: asks for the permission (needs a
/// user gesture); resolves to whether it was granted. Never rejects.
pub fn request() -> Promise {
    let Ok(asked) = IdleDetector::request_permission() else {
        return Promise::resolve(&JsValue::FALSE);
    };
    Promise::new(&mut |resolve, _| {
        settle(
            &asked,
            Box::new(move |result| {
                let granted = result.is_ok_and(|s| s.as_string().as_deref() == Some("granted"));
                let _ = resolve.call1(&JsValue::UNDEFINED, &granted.into());
            }),
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_screen_is_never_presence() {
        assert_eq!(
            SystemState::from_states(Some("active"), Some("locked")),
            SystemState::Locked
        );
        assert_eq!(
            SystemState::from_states(Some("active"), Some("unlocked")),
            SystemState::Active
        );
        assert_eq!(
            SystemState::from_states(Some("idle"), Some("unlocked")),
            SystemState::Idle
        );
        assert_eq!(
            SystemState::from_states(None, None),
            SystemState::Unavailable
        );
    }
}
