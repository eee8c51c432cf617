//! The SEPP signalling websocket (`signaling.options.endpoint`): JSON
//! messages `{type, msg_id, from, to, data}`.
//!
//! - `call_start` / `call_resume` → the user is in the call; answered with
//!   `call_accepted` / `call_resumed` carrying an SDP answer derived from the
//!   offer ([`crate::sdp`]).
//! - `call_terminate` → the user left (`reason: terminate`).
//! - the socket closing without it → the user left (`reason: disconnect`).
//! - when the meeting is shut down, `call_terminated` (code 200) is pushed
//!   through the outbox registered in [`AppState`].
//! - the core's [`Signal`](crate::meetings::Signal)s are pushed the same
//!   way (encoded in [`crate::signal`]): `source_update` (the
//!   SDK's `podium`) and `voice_activity`.

use std::time::SystemTime;

use axum::extract::ws::{Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::meetings::KeyError;
use crate::signal::envelope;
use crate::{sdp, state::AppState};

pub(crate) async fn serve(mut socket: WebSocket, state: AppState, access_key: String) {
    let (tx, mut outbox) = mpsc::unbounded_channel::<String>();
    let connection = state.register_signalling(&access_key, tx);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = handle(&state, &access_key, text.as_str()) {
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            Some(push) = outbox.recv() => {
                if socket.send(Message::Text(push.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    if state.unregister_signalling(&access_key, connection) {
        let effects = state.with(|s| s.disconnect(&access_key, SystemTime::now()));
        state.apply(effects);
    }
}

/// Handles one client message; returns the reply, if any.
fn handle(state: &AppState, access_key: &str, text: &str) -> Option<String> {
    let message: Value = serde_json::from_str(text).ok()?;
    let kind = message["type"].as_str()?;
    let now = SystemTime::now();
    match kind {
        "call_start" | "call_resume" => {
            let offer = message["data"]["sdp"]["sdp"].as_str().unwrap_or_default();
            let outcome = state.with(|s| {
                let (call_id, effects) = s.call_start(access_key, now)?;
                let session = s.session(access_key)?;
                let (ufrag, pwd) = (s.token(8), s.token(24));
                Ok::<_, KeyError>((call_id, effects, session, ufrag, pwd))
            });
            match outcome {
                Ok((call_id, effects, session, ufrag, pwd)) => {
                    state.apply(effects);
                    let reply = if kind == "call_start" {
                        "call_accepted"
                    } else {
                        "call_resumed"
                    };
                    let answer = sdp::answer(offer, &ufrag, &pwd);
                    Some(envelope(
                        reply,
                        &session.conf_id,
                        &session.client_id,
                        json!({"call_id": call_id, "sdp": {"type": "answer", "sdp": answer}}),
                    ))
                }
                Err(error) => {
                    let code = error.status();
                    let to = message["from"].as_str().unwrap_or_default();
                    let from = message["to"].as_str().unwrap_or_default();
                    Some(envelope(
                        "call_rejected",
                        from,
                        to,
                        json!({"reject_code": code}),
                    ))
                }
            }
        }
        "call_terminate" => {
            let effects = state.with(|s| s.call_terminate(access_key, now));
            state.apply(effects);
            None
        }
        other => {
            tracing::debug!(kind = other, "SEPP message ignored");
            None
        }
    }
}
