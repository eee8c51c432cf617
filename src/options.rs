//! Reading and validating the JavaScript options object.
//!
//! Every mistake becomes an `Error` that names the option, because a typo
//! that silently kept the 1 h default would leave meetings running for hours.
//! The numeric rules are plain functions tested natively; the JS reading is
//! a thin layer above them.

use alloc::string::String;
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::machine::{Limits, Millis};

/// Default soft limit: one hour without activity.
pub const DEFAULT_TIMEOUT_MS: Millis = 3_600_000;
/// Default prompt window; shortened to half the timeout for timeouts under
/// two minutes, so `{ timeoutMs: 30_000 }` alone is valid.
pub const DEFAULT_PROMPT_MS: Millis = 60_000;
/// `setTimeout` cannot wait longer than 2^31 - 1 ms.
pub const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;
/// Activity events listened for when `events` is not given.
pub const DEFAULT_EVENTS: [&str; 5] =
    ["mousemove", "keydown", "pointerdown", "wheel", "touchstart"];

/// Declares the option names once: `KNOWN` for the check, `KNOWN_LIST` for
/// the unknown-option error (joined at compile time: a run-time join or
/// split would add kilobytes to the wasm).
macro_rules! option_names {
    ($first:literal $(, $rest:literal)*) => {
        const KNOWN: &[&str] = &[$first $(, $rest)*];
        const KNOWN_LIST: &str = concat!($first $(, ", ", $rest)*);
    };
}
option_names!(
    "timeoutMs",
    "promptMs",
    "events",
    "visibility",
    "dialog",
    "onPrompt",
    "onActive",
    "onTerminate",
    "onStop"
);

/// Validated options.
#[derive(Debug)]
pub struct Options {
    /// Timeout and prompt window.
    pub limits: Limits,
    /// Activity event types (a non-empty array of strings).
    pub events: Array,
    /// Whether the page becoming visible again counts as activity.
    pub visibility: bool,
    /// Whether to show the built-in dialog during the prompt.
    pub dialog: bool,
    /// Optional callbacks.
    pub callbacks: Callbacks,
}

/// The optional user callbacks.
#[derive(Debug, Default, Clone)]
pub struct Callbacks {
    /// `onPrompt(remainingMs)`.
    pub on_prompt: Option<Function>,
    /// `onActive()`.
    pub on_active: Option<Function>,
    /// `onTerminate(reason)`.
    pub on_terminate: Option<Function>,
    /// `onStop(reason)`.
    pub on_stop: Option<Function>,
}

/// An error message; becomes a JS `Error` at the boundary.
pub type Invalid = String;

fn invalid(parts: &[&str]) -> Invalid {
    let mut s = String::from("eyeson-guard: ");
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Validates a millisecond option given as a JS number.
pub fn millis(name: &str, value: f64, allow_zero: bool) -> Result<Millis, Invalid> {
    let ok = (0.0..=MAX_TIMEOUT_MS).contains(&value);
    // Below 1 ms a timeout truncates to 0, which only `promptMs` may be.
    if !ok || (!allow_zero && value < 1.0) {
        let lower = if allow_zero { "0" } else { "1" };
        return Err(invalid(&[
            name,
            " must be a finite number of milliseconds from ",
            lower,
            " to 2147483647 (the longest a browser timer can wait)",
        ]));
    }
    // Sub-millisecond fractions make no difference to a timer.
    Ok(value as Millis)
}

/// Combines timeout and prompt; `prompt = None` means "not given".
pub fn limits(timeout: Millis, prompt: Option<Millis>) -> Result<Limits, Invalid> {
    let prompt_ms = prompt.unwrap_or(DEFAULT_PROMPT_MS.min(timeout / 2));
    Limits::new(timeout, prompt_ms).ok_or_else(|| {
        invalid(&[
            "promptMs must be less than timeoutMs (the prompt is the last part of the timeout; ",
            "0 disables it)",
        ])
    })
}

impl Options {
    /// Reads and validates `options` (`undefined`/`null` = all defaults).
    pub fn from_js(options: &JsValue) -> Result<Options, Invalid> {
        let obj: Object = if options.is_undefined() || options.is_null() {
            Object::new()
        } else if options.is_object() && !Array::is_array(options) {
            options.clone().unchecked_into()
        } else {
            return Err(invalid(&[
                "options must be an object, e.g. { timeoutMs: 600000 }",
            ]));
        };

        for key in Object::keys(&obj).iter() {
            let key = key.as_string().unwrap_or_default();
            if !KNOWN.contains(&key.as_str()) {
                return Err(invalid(&[
                    "unknown option \"",
                    &key,
                    "\" (known options: ",
                    KNOWN_LIST,
                    ")",
                ]));
            }
        }

        let get =
            |name: &str| Reflect::get(&obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
        let number = |name: &str, allow_zero: bool| -> Result<Option<Millis>, Invalid> {
            let v = get(name);
            if v.is_undefined() {
                return Ok(None);
            }
            match v.as_f64() {
                Some(n) => millis(name, n, allow_zero).map(Some),
                None => Err(invalid(&[name, " must be a number of milliseconds"])),
            }
        };
        let flag = |name: &str| -> Result<bool, Invalid> {
            let v = get(name);
            if v.is_undefined() {
                return Ok(true);
            }
            v.as_bool()
                .ok_or_else(|| invalid(&[name, " must be true or false"]))
        };
        let callback = |name: &str| -> Result<Option<Function>, Invalid> {
            let v = get(name);
            if v.is_undefined() || v.is_null() {
                return Ok(None);
            }
            v.dyn_into::<Function>()
                .map(Some)
                .map_err(|_| invalid(&[name, " must be a function"]))
        };

        let timeout = number("timeoutMs", false)?.unwrap_or(DEFAULT_TIMEOUT_MS);
        let limits = limits(timeout, number("promptMs", true)?)?;
        let events = events(get("events"))?;

        Ok(Options {
            limits,
            events,
            visibility: flag("visibility")?,
            dialog: flag("dialog")?,
            callbacks: Callbacks {
                on_prompt: callback("onPrompt")?,
                on_active: callback("onActive")?,
                on_terminate: callback("onTerminate")?,
                on_stop: callback("onStop")?,
            },
        })
    }
}

fn events(value: JsValue) -> Result<Array, Invalid> {
    if value.is_undefined() {
        return Ok(DEFAULT_EVENTS
            .iter()
            .map(|e| JsValue::from_str(e))
            .collect());
    }
    let bad = || {
        invalid(&[
            "events must be a non-empty array of event names, e.g. [\"mousemove\", \"keydown\"]",
        ])
    };
    if !Array::is_array(&value) {
        return Err(bad());
    }
    let array: Array = value.unchecked_into();
    if array.length() == 0
        || !array
            .iter()
            .all(|e| e.as_string().is_some_and(|s| !s.is_empty()))
    {
        return Err(bad());
    }
    // A copy: later changes to the caller's array must not change the guard.
    Ok(array.slice(0, array.length()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_accepts_the_timer_range() {
        assert_eq!(millis("timeoutMs", 1.0, false), Ok(1));
        assert_eq!(
            millis("timeoutMs", 2_147_483_647.0, false),
            Ok(2_147_483_647)
        );
        assert_eq!(millis("promptMs", 0.0, true), Ok(0));
        assert_eq!(millis("timeoutMs", 1500.9, false), Ok(1500));
    }

    #[test]
    fn millis_errors_name_the_option() {
        for bad in [
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2_147_483_648.0,
        ] {
            let err = millis("timeoutMs", bad, false).unwrap_err();
            assert!(err.starts_with("eyeson-guard: timeoutMs must be"), "{err}");
        }
        assert!(millis("timeoutMs", 0.0, false)
            .unwrap_err()
            .contains("from 1 to"));
        // 0.5 used to become a 0 ms timeout whose error blamed promptMs
        // (seen while writing the fuzz target's properties).
        assert!(millis("timeoutMs", 0.5, false)
            .unwrap_err()
            .starts_with("eyeson-guard: timeoutMs must be"));
        assert_eq!(millis("promptMs", 0.5, true), Ok(0));
        assert!(millis("promptMs", -0.5, true)
            .unwrap_err()
            .contains("promptMs"));
    }

    #[test]
    fn the_error_lists_exactly_the_known_options() {
        assert_eq!(KNOWN_LIST, KNOWN.join(", "));
        assert_eq!(KNOWN.len(), 9);
        assert!(KNOWN_LIST.starts_with("timeoutMs, promptMs, events"));
    }

    #[test]
    fn default_prompt_fits_short_timeouts() {
        assert_eq!(limits(3_600_000, None).unwrap().prompt(), 60_000);
        assert_eq!(limits(30_000, None).unwrap().prompt(), 15_000);
        assert_eq!(limits(1, None).unwrap().prompt(), 0);
        assert_eq!(limits(30_000, Some(0)).unwrap().prompt(), 0);
    }

    #[test]
    fn explicit_prompt_must_be_shorter_than_the_timeout() {
        let err = limits(30_000, Some(30_000)).unwrap_err();
        assert!(
            err.contains("promptMs must be less than timeoutMs"),
            "{err}"
        );
        assert!(limits(30_000, Some(29_999)).is_ok());
    }
}
