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
    "onStop",
    "speech",
    "aloneTimeoutMs",
    "crossTab",
    "systemIdle",
    "hardLimit",
    "hardLimitNoticeMs",
    "text",
    "onHardLimit"
);

/// Default soft limit while the local user is the only participant.
pub const DEFAULT_ALONE_MS: Millis = 600_000;
/// Default lead time of the hard-deadline notice.
pub const DEFAULT_NOTICE_MS: Millis = 300_000;

/// The built-in strings; `text` replaces any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    /// The dialog's heading.
    pub title: String,
    /// The dialog's text; `{time}` is the countdown.
    pub body: String,
    /// The dialog's button.
    pub button: String,
    /// The hard-deadline notice; `{time}` is the countdown.
    pub notice: String,
    /// The notice while the hard-limit service's alone deadline comes first
    /// (the meeting has had one participant); `{time}` is the countdown.
    pub alone_notice: String,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            title: "Are you still there?".into(),
            body: "You will leave the meeting in {time}.".into(),
            button: "I'm still here".into(),
            notice: "This meeting ends in {time}.".into(),
            alone_notice:
                "You are the only participant. This meeting ends in {time} unless someone joins."
                    .into(),
        }
    }
}

impl Text {
    /// Sets one string; the error names the key.
    pub fn set(&mut self, key: &str, value: Option<String>) -> Result<(), Invalid> {
        let Some(value) = value.filter(|v| !blank(v)) else {
            return Err(invalid(&["text.", key, " must be a non-empty string"]));
        };
        let needs_time = matches!(key, "body" | "notice" | "aloneNotice");
        if needs_time && time_at(&value).is_none() {
            return Err(invalid(&[
                "text.",
                key,
                " must contain {time} (where the countdown goes)",
            ]));
        }
        match key {
            "title" => self.title = value,
            "body" => self.body = value,
            "button" => self.button = value,
            "notice" => self.notice = value,
            "aloneNotice" => self.alone_notice = value,
            _ => {
                return Err(invalid(&[
                    "unknown text key \"",
                    key,
                    "\" (known keys: title, body, button, notice, aloneNotice)",
                ]))
            }
        }
        Ok(())
    }
}

/// Whether `s` is empty or only whitespace: `s.trim().is_empty()` without
/// core's Unicode tables, which cost 0.3 KB gz of wasm. These are the Unicode
/// White_Space code points, as in `char::is_whitespace` (tested against it).
fn blank(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t'..='\r' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
            | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
    })
}

/// `{time}`: `m:ss`, or whole seconds under a minute (`45 s`); rounded up,
/// so it never shows 0 while time is left.
pub fn format_time(remaining_ms: Millis) -> String {
    let seconds = remaining_ms.div_ceil(1000);
    let mut s = String::new();
    if seconds < 60 {
        push_number(&mut s, seconds);
        s.push_str(" s");
    } else {
        push_number(&mut s, seconds / 60);
        s.push(':');
        if seconds % 60 < 10 {
            s.push('0');
        }
        push_number(&mut s, seconds % 60);
    }
    s
}

fn push_number(s: &mut String, n: Millis) {
    // `to_string` on integers skips the `fmt` machinery (`write!` would
    // add kilobytes to the wasm).
    s.push_str(&alloc::string::ToString::to_string(&n));
}

/// Where `{time}` starts in `template`. A byte search: `str` patterns (and
/// slicing that can panic) would pull kilobytes of `core` into the wasm.
fn time_at(template: &str) -> Option<usize> {
    template.as_bytes().windows(6).position(|w| w == b"{time}")
}

/// Splits a template at `{time}`: the text before and after it.
pub fn split_time(template: &str) -> (&str, &str) {
    let parts =
        time_at(template).and_then(|at| Some((template.get(..at)?, template.get(at + 6..)?)));
    parts.unwrap_or((template, ""))
}

/// The alone limits: `given` is `None` when the option is absent, `Some(None)`
/// for `null`. The default applies only when it is shorter than the timeout;
/// an explicit value must be.
pub fn alone(normal: Limits, given: Option<Option<Millis>>) -> Result<Option<Limits>, Invalid> {
    let alone = match given {
        Some(None) => return Ok(None),
        None if DEFAULT_ALONE_MS >= normal.timeout() => return Ok(None),
        None => DEFAULT_ALONE_MS,
        Some(Some(ms)) if ms >= normal.timeout() => {
            return Err(invalid(&[
                "aloneTimeoutMs must be less than timeoutMs (it is the shorter limit while ",
                "the local user is alone; null turns it off)",
            ]))
        }
        Some(Some(ms)) => ms,
    };
    // The prompt window shrinks to at most half of the alone timeout.
    Ok(Limits::new(alone, normal.prompt().min(alone / 2)))
}

/// Validates the hard-limit service's base URL; returns it without a
/// trailing slash.
pub fn hard_limit_url(value: &str) -> Result<String, Invalid> {
    let bytes = value.as_bytes();
    let scheme = |s: &[u8]| bytes.len() > s.len() && bytes[..s.len()].eq_ignore_ascii_case(s);
    let host = if scheme(b"https://") {
        bytes.get(8)
    } else if scheme(b"http://") {
        bytes.get(7)
    } else {
        None
    };
    let ok = host.is_some_and(|&b| b != b'/') && !bytes.iter().any(u8::is_ascii_whitespace);
    if !ok {
        return Err(invalid(&[
            "hardLimit must be the http(s) base URL of an eyeson-hard-limit service, ",
            "e.g. \"https://limits.example.com\"",
        ]));
    }
    // Bytes, not `trim_end_matches`: its char search costs wasm for nothing.
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    Ok(value.get(..end).unwrap_or(value).into())
}

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
    /// The limits while alone (`None` = off).
    pub alone: Option<Limits>,
    /// Whether the local user speaking counts as presence.
    pub speech: bool,
    /// Whether activity in other tabs of the origin counts.
    pub cross_tab: bool,
    /// Whether to use the IdleDetector API.
    pub system_idle: bool,
    /// Base URL of the hard-limit service.
    pub hard_limit: Option<String>,
    /// Lead time of the hard-deadline notice (0 = none).
    pub notice_ms: Millis,
    /// The strings shown.
    pub text: Text,
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
    /// `onHardLimit(endMs, kind)`.
    pub on_hard_limit: Option<Function>,
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
        let flag_or = |name: &str, default: bool| -> Result<bool, Invalid> {
            let v = get(name);
            if v.is_undefined() {
                return Ok(default);
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

        let flag = |name: &str| flag_or(name, true);

        let timeout = number("timeoutMs", false)?.unwrap_or(DEFAULT_TIMEOUT_MS);
        let limits = limits(timeout, number("promptMs", true)?)?;
        let events = events(get("events"))?;
        let alone_given = if get("aloneTimeoutMs").is_null() {
            Some(None)
        } else {
            number("aloneTimeoutMs", false)?.map(Some)
        };
        let hard_limit = match get("hardLimit") {
            v if v.is_undefined() || v.is_null() => None,
            v => Some(hard_limit_url(&v.as_string().unwrap_or_default())?),
        };

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
                on_hard_limit: callback("onHardLimit")?,
            },
            alone: alone(limits, alone_given)?,
            speech: flag("speech")?,
            cross_tab: flag("crossTab")?,
            system_idle: flag_or("systemIdle", false)?,
            hard_limit,
            notice_ms: number("hardLimitNoticeMs", true)?.unwrap_or(DEFAULT_NOTICE_MS),
            text: text(get("text"))?,
        })
    }
}

fn text(value: JsValue) -> Result<Text, Invalid> {
    let mut text = Text::default();
    if value.is_undefined() {
        return Ok(text);
    }
    if !value.is_object() || Array::is_array(&value) {
        return Err(invalid(&[
            "text must be an object, e.g. { title: \"Bist du noch da?\" }",
        ]));
    }
    let object: &Object = value.unchecked_ref();
    for key in Object::keys(object).iter() {
        let key = key.as_string().unwrap_or_default();
        let v = Reflect::get(&value, &JsValue::from_str(&key)).unwrap_or(JsValue::UNDEFINED);
        text.set(&key, v.as_string())?;
    }
    Ok(text)
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
        assert_eq!(KNOWN.len(), 17);
        assert!(KNOWN_LIST.starts_with("timeoutMs, promptMs, events"));
    }

    #[test]
    fn time_is_m_ss_or_seconds_under_a_minute() {
        assert_eq!(format_time(299_001), "5:00");
        assert_eq!(format_time(299_000), "4:59");
        assert_eq!(format_time(60_000), "1:00");
        assert_eq!(format_time(59_001), "1:00");
        assert_eq!(format_time(59_000), "59 s");
        assert_eq!(format_time(1), "1 s");
        assert_eq!(format_time(0), "0 s");
        assert_eq!(format_time(3_600_000), "60:00");
        assert_eq!(split_time("in {time}."), ("in ", "."));
    }

    #[test]
    fn blank_is_trim_is_empty() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let s = alloc::format!("{c}{c}");
            assert_eq!(blank(&s), s.trim().is_empty(), "U+{:04X}", c as u32);
        }
        assert!(blank(""));
        assert!(!blank(" \u{a0}x "));
    }

    #[test]
    fn text_keys_are_checked() {
        let mut t = Text::default();
        assert!(t.set("title", Some("Bist du noch da?".into())).is_ok());
        assert_eq!(t.title, "Bist du noch da?");
        let err = t.set("tilte", Some("x".into())).unwrap_err();
        assert!(err.contains("unknown text key \"tilte\""), "{err}");
        let err = t.set("body", Some("Gleich vorbei.".into())).unwrap_err();
        assert!(err.contains("text.body must contain {time}"), "{err}");
        let err = t.set("notice", Some("bald".into())).unwrap_err();
        assert!(err.contains("text.notice must contain {time}"), "{err}");
        let err = t
            .set("aloneNotice", Some("Du bist allein.".into()))
            .unwrap_err();
        assert!(
            err.contains("text.aloneNotice must contain {time}"),
            "{err}"
        );
        let err = t.set("aloneNotice", None).unwrap_err();
        assert!(
            err.contains("text.aloneNotice must be a non-empty string"),
            "{err}"
        );
        let err = t.set("alonenotice", Some("{time}".into())).unwrap_err();
        assert!(
            err.contains("known keys: title, body, button, notice, aloneNotice"),
            "{err}"
        );
        assert!(t
            .set("aloneNotice", Some("Allein: Ende in {time}.".into()))
            .is_ok());
        assert_eq!(t.alone_notice, "Allein: Ende in {time}.");
        assert!(Text::default().alone_notice.contains("{time}"));
        assert!(t
            .set("button", Some("  ".into()))
            .unwrap_err()
            .contains("text.button"));
        assert!(t
            .set("button", None)
            .unwrap_err()
            .contains("non-empty string"));
        assert!(t.set("button", Some("Ja".into())).is_ok());
        assert!(
            t.set("title", Some("{time}".into())).is_ok(),
            "a title may show it too"
        );
    }

    #[test]
    fn alone_defaults_only_when_shorter_and_explicit_must_be() {
        let hour = limits(3_600_000, None).unwrap();
        let a = alone(hour, None).unwrap().unwrap();
        assert_eq!((a.timeout(), a.prompt()), (600_000, 60_000));
        let short = limits(30_000, None).unwrap();
        assert_eq!(alone(short, None), Ok(None), "the default never throws");
        assert_eq!(alone(hour, Some(None)), Ok(None));
        let a = alone(hour, Some(Some(10_000))).unwrap().unwrap();
        assert_eq!(
            (a.timeout(), a.prompt()),
            (10_000, 5_000),
            "prompt at most half"
        );
        let err = alone(short, Some(Some(30_000))).unwrap_err();
        assert!(
            err.contains("aloneTimeoutMs must be less than timeoutMs"),
            "{err}"
        );
    }

    #[test]
    fn hard_limit_must_be_an_http_url() {
        assert_eq!(
            hard_limit_url("https://limits.example.com/").as_deref(),
            Ok("https://limits.example.com")
        );
        assert_eq!(
            hard_limit_url("HTTP://127.0.0.1:8043").as_deref(),
            Ok("HTTP://127.0.0.1:8043")
        );
        for bad in [
            "",
            "limits.example.com",
            "ftp://x",
            "https://",
            "javascript:alert(1)",
            "https:///x",
            "https://a b",
        ] {
            let err = hard_limit_url(bad).unwrap_err();
            assert!(err.contains("hardLimit must be"), "{bad}: {err}");
        }
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
