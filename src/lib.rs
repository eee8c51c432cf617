//! # eyeson-guard
//!
//! Ends abandoned eyeson video meetings. This crate is the browser half: an
//! inactivity guard that wraps the eyeson JS SDK instance the app hands it,
//! asks "Are you still there?" when the local user has gone quiet, and sends
//! `{type: "session_termination"}` when nobody answers.
//!
//! Layout, from the pure core outwards:
//! - [`machine`]: the state machine (one wall-clock deadline, injected time,
//!   no browser types), tested natively.
//! - `options`: reading and validating the JS options object.
//! - `sdk`: the eyeson SDK binding and what its events mean.
//! - `activity` (+ `hot_path.js`): the activity listeners, the wake-up
//!   listeners (gloo-events) and the one timer (gloo-timers).
//! - `dialog`: the accessible "Are you still there?" dialog (web-sys).
//! - `guard`: wires them together; this file is the JavaScript face.
#![deny(missing_docs, missing_debug_implementations)]

extern crate alloc;

mod activity;
mod dialog;
mod guard;
pub mod machine;
pub mod options;
mod sdk;
#[cfg(all(feature = "tiny-runtime", target_arch = "wasm32"))]
mod tiny_alloc;

use wasm_bindgen::prelude::*;

use crate::guard::{Guard, Input};
use crate::machine::Phase;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** The guard's state. `terminated`: it sent `session_termination`; `stopped`: it stopped without sending. */
export type GuardState = "waiting" | "active" | "prompted" | "terminated" | "stopped";

/** Why a guard stopped without terminating: `stop()` was called, or the SDK reported the session's end. */
export type StopReason = "stop" | "exit" | "error" | "access_denied" | "transport_error" | "shutdown";

/** The part of the eyeson SDK the guard uses (`import eyeson from "eyeson"`, or `window.eyeson.default`). */
export interface EyesonSdk {
  onEvent(listener: (event: { type: string; [key: string]: unknown }) => void): void;
  offEvent(listener: (event: { type: string; [key: string]: unknown }) => void): void;
  send(message: { type: string; [key: string]: unknown }): void;
}

export interface InactivityGuardOptions {
  /** Time without activity before the session ends, in ms (1 to 2147483647). Default 3600000 (1 h). */
  timeoutMs?: number;
  /** The last part of `timeoutMs` in which "Are you still there?" is shown; 0 = no prompt. Must be less than `timeoutMs`. Default 60000, or half of `timeoutMs` when that is shorter. */
  promptMs?: number;
  /** Activity event types, listened for on `document` (capture, passive). Default `["mousemove", "keydown", "pointerdown", "wheel", "touchstart"]`. Mousemoves without movement never count. */
  events?: readonly string[];
  /** The page becoming visible (or focused) again counts as activity. Default true. */
  visibility?: boolean;
  /** Show the built-in accessible "Are you still there?" dialog during the prompt. Default true. */
  dialog?: boolean;
  /** The prompt window started; `remainingMs` until termination. */
  onPrompt?: (remainingMs: number) => void;
  /** Activity (or the dialog's button) ended the prompt. */
  onActive?: () => void;
  /** `session_termination` was sent. */
  onTerminate?: (reason: "idle") => void;
  /** The guard stopped without sending anything. */
  onStop?: (reason: StopReason) => void;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The SDK instance, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "EyesonSdk")]
    pub type EyesonSdkArg;
    /// The options object, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "InactivityGuardOptions")]
    pub type OptionsArg;
    /// A state name, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "GuardState")]
    pub type StateName;
}

/// Ends the local user's eyeson session after a period of inactivity.
///
/// ```js
/// const guard = new InactivityGuard(eyeson, { timeoutMs: 600_000 });
/// ```
#[wasm_bindgen]
#[derive(Debug)]
pub struct InactivityGuard {
    guard: Guard,
}

#[wasm_bindgen]
impl InactivityGuard {
    /// Validates the options and subscribes to the SDK; arms itself on the
    /// SDK's `accept` event (or on `start()`). Throws an `Error` naming the
    /// offending option.
    #[wasm_bindgen(constructor)]
    pub fn new(
        eyeson: &EyesonSdkArg,
        options: Option<OptionsArg>,
    ) -> Result<InactivityGuard, JsError> {
        let options: JsValue = options.map_or(JsValue::UNDEFINED, Into::into);
        Guard::new(eyeson, &options)
            .map(|guard| InactivityGuard { guard })
            .map_err(|e| JsError::new(&e))
    }

    /// Arms the guard now (a no-op if already armed). Throws if the guard
    /// has stopped or terminated: create a new one.
    pub fn start(&self) -> Result<(), JsError> {
        if matches!(self.guard.phase(), Phase::Stopped | Phase::Terminated) {
            return Err(JsError::new(
                "eyeson-guard: this guard has ended; create a new InactivityGuard",
            ));
        }
        self.guard.dispatch(Input::Start);
        Ok(())
    }

    /// Reports activity the guard cannot see: speaking, unmuting, chat, or a
    /// `postMessage` from an iframe. Ends a prompt.
    pub fn ping(&self) {
        self.guard.dispatch(Input::Ping);
    }

    /// Milliseconds until termination, computed from the deadline.
    #[wasm_bindgen(js_name = remainingMs)]
    pub fn remaining_ms(&self) -> f64 {
        self.guard.remaining() as f64
    }

    /// `"waiting" | "active" | "prompted" | "terminated" | "stopped"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> StateName {
        JsValue::from_str(self.guard.phase().as_str()).unchecked_into()
    }

    /// Removes every listener and timer and unsubscribes from the SDK.
    /// Never terminates the session.
    pub fn stop(&self) {
        self.guard.dispatch(Input::Stop);
    }
}
