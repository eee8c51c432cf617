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

/// Who the local user is, as the SDK knows them: `room_setup` carries it,
/// and the SDK keeps it as `eyeson.user` / `eyeson.room` (for a guard
/// created after the join).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// The meeting's room id (what the hard-limit service tracks).
    pub room: Option<String>,
    /// The user's API id (`content.user.id`).
    pub user: Option<String>,
    /// The user's signalling client id (`signaling.options.client_id`).
    pub client: Option<String>,
    /// The room's guest token (`room.guest_token`): the hard-limit service
    /// shows the meeting's deadline only to whoever presents it.
    pub guest: Option<String>,
}

/// The ids a `voice_activity` event's `user` carries. The SDK builds that
/// user from the signalling client id (`id` = client id, `apiId` = the API
/// id the SDK looked up), so both are compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Speaker {
    /// `user.id`.
    pub id: Option<String>,
    /// `user.clientId`.
    pub client: Option<String>,
    /// `user.apiId`.
    pub api: Option<String>,
}

impl Local {
    /// Whether `speaker` is the local user. Unknown ids never match.
    pub fn is(&self, speaker: &Speaker) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        eq(&self.client, &speaker.id)
            || eq(&self.client, &speaker.client)
            || eq(&self.user, &speaker.api)
            || eq(&self.user, &speaker.id)
    }

    /// Fills what is unknown from `other`.
    pub fn merge(&mut self, other: Local) {
        self.room = self.room.take().or(other.room);
        self.user = self.user.take().or(other.user);
        self.client = self.client.take().or(other.client);
        self.guest = self.guest.take().or(other.guest);
    }
}

/// What an SDK event means for the guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The local user joined: arm the guard.
    Arm,
    /// The session ended or failed: stop without sending. The reason is
    /// passed to `onStop`.
    Stop(&'static str),
    /// `room_setup`: who the local user is and in which room.
    Setup(Local),
    /// A `room_update` that did not end the meeting (its limits may have
    /// changed).
    RoomChanged,
    /// `podium`: whether the local user is the only participant.
    Solo(bool),
    /// `add_user` / `remove_user`: the participant list changed (the SDK
    /// turns signalling's `memberlist` into one event per participant).
    Participants,
    /// `voice_activity`: someone started or stopped speaking.
    Voice(Speaker, bool),
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
        "room_update" => Signal::RoomChanged,
        "add_user" | "remove_user" => Signal::Participants,
        _ => Signal::Ignore,
    }
}

fn field(obj: &JsValue, name: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// A string or number id as a string (ids arrive as either).
fn id(value: JsValue) -> Option<String> {
    value
        .as_string()
        // Number → string in JS: Rust's float formatting would add kilobytes.
        .or_else(|| {
            value.as_f64()?;
            js_sys::Number::from(value)
                .to_string_with_radix(10)
                .ok()
                .map(String::from)
        })
        .filter(|s| !s.is_empty())
}

/// Reads the local user from a `room_setup` content or the SDK object (both
/// have `user` and `room`; only the content has `signaling`).
pub fn local_from(obj: &JsValue) -> Local {
    let user = field(obj, "user");
    let client = id(field(
        &field(&field(obj, "signaling"), "options"),
        "client_id",
    ))
    .or_else(|| id(field(&user, "clientId")));
    let room = field(obj, "room");
    Local {
        room: id(field(&room, "id")),
        user: id(field(&user, "apiId")).or_else(|| id(field(&user, "id"))),
        client,
        guest: id(field(&room, "guest_token")),
    }
}

/// Reads what the guard needs from an SDK event object.
pub fn classify_js(event: &JsValue) -> Signal {
    let Some(kind) = field(event, "type").as_string() else {
        return Signal::Ignore;
    };
    match kind.as_str() {
        "room_setup" => return Signal::Setup(local_from(&field(event, "content"))),
        "podium" => {
            return match field(event, "solo").as_bool() {
                Some(solo) => Signal::Solo(solo),
                None => Signal::Ignore,
            }
        }
        "voice_activity" => {
            let user = field(event, "user");
            let speaker = Speaker {
                id: id(field(&user, "id")),
                client: id(field(&user, "clientId")),
                api: id(field(&user, "apiId")),
            };
            return match field(event, "on").as_bool() {
                Some(on) => Signal::Voice(speaker, on),
                None => Signal::Ignore,
            };
        }
        _ => {}
    }
    let status = if kind == "connection" {
        field(event, "connectionStatus").as_string()
    } else {
        None
    };
    let shutdown = kind == "room_update" && field(&field(event, "content"), "shutdown").is_truthy();
    classify(&kind, status.as_deref(), shutdown)
}

impl Sdk {
    /// The local user and room, if the SDK already joined.
    pub fn local(&self) -> Local {
        local_from(self)
    }
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
            "chat",
        ] {
            assert_eq!(classify(kind, None, false), Signal::Ignore, "{kind}");
        }
        assert_eq!(classify("connection", Some("ready"), false), Signal::Ignore);
        assert_eq!(classify("connection", None, false), Signal::Ignore);
        assert_eq!(classify("room_update", None, false), Signal::RoomChanged);
        assert_eq!(classify("add_user", None, false), Signal::Participants);
        assert_eq!(classify("remove_user", None, false), Signal::Participants);
        assert_eq!(classify("exit ", None, false), Signal::Ignore);
    }

    fn some(s: &str) -> Option<String> {
        Some(s.into())
    }

    #[test]
    fn the_local_speaker_is_matched_by_client_or_api_id_only() {
        let local = Local {
            room: some("r1"),
            user: some("u1"),
            client: some("c1"),
            guest: some("g1"),
        };
        // What the SDK builds for a voice_activity: id = client id.
        let me = Speaker {
            id: some("c1"),
            client: some("c1"),
            api: some("u1"),
        };
        assert!(local.is(&me));
        assert!(local.is(&Speaker {
            id: some("c1"),
            ..Speaker::default()
        }));
        assert!(local.is(&Speaker {
            api: some("u1"),
            ..Speaker::default()
        }));
        let other = Speaker {
            id: some("c2"),
            client: some("c2"),
            api: some("u2"),
        };
        assert!(!local.is(&other));
        assert!(
            !Local::default().is(&Speaker::default()),
            "unknown never matches"
        );
        assert!(!local.is(&Speaker::default()));
    }

    #[test]
    fn merge_keeps_what_is_known() {
        let mut local = Local {
            room: some("r1"),
            ..Local::default()
        };
        local.merge(Local {
            room: some("r2"),
            user: some("u1"),
            client: None,
            guest: some("g2"),
        });
        assert_eq!(
            local,
            Local {
                room: some("r1"),
                user: some("u1"),
                client: None,
                guest: some("g2"),
            }
        );
    }
}
