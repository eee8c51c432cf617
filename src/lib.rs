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
//! - `cross_tab`: activity shared between tabs (`BroadcastChannel`).
//! - `system_idle`: OS presence (the IdleDetector API).
//! - `hard_limit` (+ `notice`): the meeting's hard deadline from the
//!   eyeson-hard-limit service, and the notice counting down to it.
//! - `promise`: one-shot promise callbacks without an async runtime.
//! - `guard`: wires them together; this file is the JavaScript face.
#![deny(missing_docs, missing_debug_implementations)]

extern crate alloc;

mod activity;
mod cross_tab;
mod dialog;
mod guard;
mod hard_limit;
pub mod machine;
mod notice;
pub mod options;
mod promise;
mod sdk;
mod system_idle;
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

/** Which end of the meeting `onHardLimit` reports: the service's hard `deadline` (its maximum duration), or its `alone` deadline (the meeting has had at most one participant for the service's `--alone-after`; it goes when someone joins). */
export type HardLimitKind = "deadline" | "alone";

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
  /** The local user speaking (the SDK's `voice_activity`) counts as presence: while they speak the deadline cannot pass, and the moment they stop counts as activity. Default true. */
  speech?: boolean;
  /** While the local user is the only participant, this shorter soft limit applies, from the last activity (the prompt window shrinks to at most half of it). Must be less than `timeoutMs`; `null` = off. Default 600000 (10 min), without effect when `timeoutMs` is not longer. */
  aloneTimeoutMs?: number | null;
  /** Activity in other tabs of this origin (other guards, or `shareActivity()`) counts. Default true. */
  crossTab?: boolean;
  /** OS-level presence through the IdleDetector API (Chromium; call `InactivityGuard.requestSystemIdle()` from a user gesture first): the user being active on the computer counts as presence like speaking; a locked screen never does. Default false. */
  systemIdle?: boolean;
  /** Base URL of an eyeson-hard-limit service: read this meeting's hard deadline (and its alone deadline, while one runs) from `GET {hardLimit}/meetings/{room_id}` (sending the room's `guest_token` from the SDK in the `X-Eyeson-Guest-Token` header: the service shows a meeting only to it) and show a notice before whichever comes first. Default none. */
  hardLimit?: string;
  /** Show the hard-deadline notice this long before the deadline (or the alone deadline, when that comes first), in ms; 0 = no notice. Default 300000 (5 min). */
  hardLimitNoticeMs?: number;
  /** Replaces the built-in strings. `{time}` becomes `m:ss`, or `45 s` under a minute; `body`, `notice` and `aloneNotice` must contain it. */
  text?: GuardText;
  /** The end the meeting is heading for became known or changed: `endMs` (ms since the epoch) is whichever of the service's deadline and alone deadline comes first (on a tie, the deadline), `kind` says which. It fires again when that changes, e.g. an alone deadline appears (`"alone"`) or goes because someone joined (back to `"deadline"`). */
  onHardLimit?: (endMs: number, kind: HardLimitKind) => void;
}

/** The guard's strings (defaults in English). */
export interface GuardText {
  /** Default "Are you still there?". */
  title?: string;
  /** Default "You will leave the meeting in {time}.". */
  body?: string;
  /** Default "I'm still here". */
  button?: string;
  /** The hard-deadline notice. Default "This meeting ends in {time}.". */
  notice?: string;
  /** The notice while the service's alone deadline comes first. Default "You are the only participant. This meeting ends in {time} unless someone joins.". */
  aloneNotice?: string;
}

/** What the guard knows about the local user's presence beyond input events. */
export interface Presence {
  /** The local user is speaking. */
  speaking: boolean;
  /** The local user is the only participant (`aloneTimeoutMs` applies). */
  alone: boolean;
  /** The IdleDetector: `off` (option off), `unavailable` (no API), `denied` (no permission), or the OS state. */
  systemIdle: "off" | "unavailable" | "denied" | "active" | "idle" | "locked";
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
    /// The presence object, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "Presence")]
    pub type PresenceObject;
    /// A promise of a boolean, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "Promise<boolean>")]
    pub type BoolPromise;
    /// A function that stops something, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "() => void")]
    pub type StopFunction;
}

/// Shares this tab's activity with the meeting's tab (same origin), for a
/// tab without a meeting: a document or tool page the user works in. Posts
/// at most once a second. Returns a function that stops it.
#[wasm_bindgen(js_name = shareActivity)]
pub fn share_activity() -> StopFunction {
    cross_tab::share_activity().unchecked_into()
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

    /// `{ speaking, alone, systemIdle }`: presence beyond input events.
    #[wasm_bindgen(getter)]
    pub fn presence(&self) -> PresenceObject {
        let (speaking, alone, system) = self.guard.presence().unwrap_or((false, false, "off"));
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"speaking".into(), &speaking.into());
        let _ = js_sys::Reflect::set(&o, &"alone".into(), &alone.into());
        let _ = js_sys::Reflect::set(&o, &"systemIdle".into(), &system.into());
        JsValue::from(o).unchecked_into()
    }

    /// Asks for the IdleDetector permission (`systemIdle`). Call it from a
    /// user gesture (a click): the browser's prompt needs one. Resolves to
    /// whether it was granted; `false` where the API is missing.
    #[wasm_bindgen(js_name = requestSystemIdle)]
    pub fn request_system_idle() -> BoolPromise {
        JsValue::from(system_idle::request()).unchecked_into()
    }

    /// Removes every listener and timer and unsubscribes from the SDK.
    /// Never terminates the session.
    pub fn stop(&self) {
        self.guard.dispatch(Input::Stop);
    }
}
