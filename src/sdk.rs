//! The eyeson JS SDK as the app hands it to us, and what its events mean.
//!
//! The SDK is never imported here: the app passes its instance (`import
//! eyeson from "eyeson"`, or `window.eyeson.default` after the SDK's script
//! tag), so one build serves bundlers, script tags and tests alike.

use alloc::string::String;
use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The eyeson SDK singleton (or anything shaped like it).
    #[derive(Debug, Clone)]
    pub type Sdk;

    /// Adds a listener; the SDK calls listeners without try/catch.
    #[wasm_bindgen(method, js_name = onEvent, catch)]
    fn on_event(this: &Sdk, listener: &Function) -> Result<(), JsValue>;

    /// Removes one listener. Never call it without an argument: that removes
    /// every listener, including the SDK's own.
    #[wasm_bindgen(method, js_name = offEvent, catch)]
    fn off_event(this: &Sdk, listener: &Function) -> Result<(), JsValue>;

    /// Throws when the session is not connected or already terminated.
    #[wasm_bindgen(method, catch)]
    fn send(this: &Sdk, message: &JsValue) -> Result<(), JsValue>;
}

impl Sdk {
    /// Checks that `value` looks like the SDK; the error says what to pass.
    pub fn from_js(value: &JsValue) -> Result<Sdk, String> {
        let has = |obj: &JsValue, name: &str| {
            obj.is_object()
                && Reflect::get(obj, &JsValue::from_str(name)).is_ok_and(|f| f.is_function())
        };
        if has(value, "onEvent") && has(value, "offEvent") && has(value, "send") {
            return Ok(value.clone().unchecked_into());
        }
        let namespace = value.is_object()
            && Reflect::get(value, &JsValue::from_str("default")).is_ok_and(|d| has(&d, "onEvent"));
        Err(String::from(if namespace {
            "eyeson-guard: the first argument is the SDK's module namespace; pass window.eyeson.default (the SDK's script tag exports the SDK as `default`)"
        } else {
            "eyeson-guard: the first argument must be the eyeson SDK instance (import eyeson from \"eyeson\", or window.eyeson.default), an object with onEvent, offEvent and send"
        }))
    }

    /// Subscribes `listener`; false if the SDK threw.
    pub fn subscribe(&self, listener: &Function) -> bool {
        self.on_event(listener).is_ok()
    }

    /// Unsubscribes `listener`, ignoring errors (the SDK may be destroyed).
    pub fn unsubscribe(&self, listener: &Function) {
        let _ = self.off_event(listener);
    }

    /// Sends `{type: "session_termination"}`. The SDK throws if the session
    /// never connected or was already ended; that is reported, never thrown
    /// into the caller (which may be the SDK's own event loop).
    pub fn terminate_session(&self) -> Result<(), JsValue> {
        let message = js_sys::Object::new();
        let _ = Reflect::set(&message, &"type".into(), &"session_termination".into());
        self.send(&message)
    }
}

/// What an SDK event means for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The local user joined: arm the guard.
    Arm,
    /// The session ended or failed: stop without sending. The reason is
    /// passed to `onStop`.
    Stop(&'static str),
    /// Anything else, including the transient `disconnect`/`reconnect`,
    /// `warning`/`clear_warning` and `offline`.
    Ignore,
}

/// Classifies an SDK event from its `type`, its `connectionStatus` (for
/// `connection` events) and its `content.shutdown` (for `room_update`).
pub fn classify(kind: &str, connection_status: Option<&str>, shutdown: bool) -> Signal {
    match kind {
        "accept" => Signal::Arm,
        "exit" => Signal::Stop("exit"),
        "error" => Signal::Stop("error"),
        "connection" => match connection_status {
            Some("access_denied") => Signal::Stop("access_denied"),
            Some("transport_error") => Signal::Stop("transport_error"),
            _ => Signal::Ignore,
        },
        "room_update" if shutdown => Signal::Stop("shutdown"),
        _ => Signal::Ignore,
    }
}

/// Reads the fields `classify` needs from an SDK event object.
pub fn classify_js(event: &JsValue) -> Signal {
    let field = |obj: &JsValue, name: &str| Reflect::get(obj, &JsValue::from_str(name)).ok();
    if !event.is_object() {
        return Signal::Ignore;
    }
    let Some(kind) = field(event, "type").and_then(|t| t.as_string()) else {
        return Signal::Ignore;
    };
    let status = if kind == "connection" {
        field(event, "connectionStatus").and_then(|s| s.as_string())
    } else {
        None
    };
    let shutdown = kind == "room_update"
        && field(event, "content")
            .filter(|c| c.is_object())
            .and_then(|c| field(&c, "shutdown"))
            .is_some_and(|s| s.is_truthy());
    classify(&kind, status.as_deref(), shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_arms() {
        assert_eq!(classify("accept", None, false), Signal::Arm);
    }

    #[test]
    fn terminal_events_stop() {
        assert_eq!(classify("exit", None, false), Signal::Stop("exit"));
        assert_eq!(classify("error", None, false), Signal::Stop("error"));
        assert_eq!(
            classify("connection", Some("access_denied"), false),
            Signal::Stop("access_denied")
        );
        assert_eq!(
            classify("connection", Some("transport_error"), false),
            Signal::Stop("transport_error")
        );
        assert_eq!(
            classify("room_update", None, true),
            Signal::Stop("shutdown")
        );
    }

    #[test]
    fn transient_and_unrelated_events_are_ignored() {
        for kind in [
            "disconnect",
            "reconnect",
            "warning",
            "clear_warning",
            "offline",
            "podium",
            "chat",
        ] {
            assert_eq!(classify(kind, None, false), Signal::Ignore, "{kind}");
        }
        assert_eq!(classify("connection", Some("ready"), false), Signal::Ignore);
        assert_eq!(classify("connection", None, false), Signal::Ignore);
        assert_eq!(classify("room_update", None, false), Signal::Ignore);
        assert_eq!(classify("exit ", None, false), Signal::Ignore);
    }
}
