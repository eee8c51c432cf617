//! The room answer: the JSON of `GET /rooms/{access_key}`, `POST /rooms`
//! and `POST /guests/{token}`, also pushed as `room_setup` on the
//! ActionCable socket. Its own module so that the REST and the ActionCable
//! adapters both use it without importing each other.

use base64::Engine;
use eyeson_api::paths;
use eyeson_api::wire::{Joined, Links};
use serde_json::{json, Value};

use crate::meetings::Session;

/// The room JSON for `session`: what the SDK needs to join, with every link
/// pointing back at the sandbox on `host`. The part the hard-limit service
/// reads too is the shared [`Joined`]; the SDK's extras are added to it.
pub(crate) fn room_json(session: &Session, host: &str) -> Value {
    let key = &session.access_key;
    let rooms = paths::ROOMS;
    let b64 = base64::engine::general_purpose::STANDARD;
    // The SDK only base64-decodes the token's payload and compares ids; it
    // never verifies a signature.
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(
        json!({"client_id": session.client_id, "conf_id": session.conf_id, "exp": 4_102_444_800u64}).to_string(),
    );
    let mut answer = json!(Joined {
        access_key: key.clone(),
        ready: true,
        room: session.room.clone(),
        links: Links {
            // eyeson's shapes: its meeting page for the access key, and a
            // page carrying the guest token as `?guest=`; both are the
            // sandbox's own meeting page (see `pages`).
            gui: format!("http://{host}/meeting/{key}"),
            guest_join: format!(
                "http://{host}/join?guest={}",
                session.room.guest_token.as_deref().unwrap_or_default()
            ),
            websocket: format!("ws://{host}/rt?access_key={key}"),
        },
    });
    answer["links"]["self"] = json!(format!("http://{host}{rooms}/{key}"));
    let extras = json!({
        "user": session.user,
        "team": {"name": "eyeson sandbox"},
        "options": {"show_names": true, "show_label": true, "widescreen": true, "sfu_mode": "ptp"},
        "broadcasts": [],
        "recording": null,
        "snapshots": [],
        "presentation": null,
        "signaling": {
            "type": "sepp",
            "options": {
                "client_id": session.client_id,
                "conf_id": session.conf_id,
                "auth_token": format!("{header}.{payload}.sandbox"),
                "endpoint": format!("ws://{host}/sig/{key}"),
                "stun_servers": [],
                "turn_servers": [],
            }
        }
    });
    if let (Value::Object(answer), Value::Object(extras)) = (&mut answer, extras) {
        answer.extend(extras);
    }
    answer
}
