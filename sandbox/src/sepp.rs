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
//! - the core's [`Signal`]s are pushed the same way: `source_update` (the
//!   SDK's `podium`) and `voice_activity`.

use std::time::SystemTime;

use axum::extract::ws::{Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::meetings::{KeyError, Push, Signal, Terminate};
use crate::{sdp, AppState};

/// The code of a regular end (the SDK emits `exit` for it).
const TERM_CODE_BYE: u16 = 200;

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

/// The `call_terminated` push for a user whose meeting was shut down.
pub(crate) fn terminated(t: &Terminate) -> String {
    envelope(
        "call_terminated",
        &t.conf_id,
        &t.client_id,
        json!({"call_id": t.call_id, "term_code": TERM_CODE_BYE}),
    )
}

/// A core [`Signal`] as the SEPP message the SDK expects.
///
/// - `source_update` `{src, asrc, vsrc, dims}`: the SDK's `PodiumFacade`
///   computes `solo` from `src` (exactly one distinct source, the local
///   client id) and reads the audio and video positions (`asrc`, `vsrc`:
///   indexes into `src`) and the video rectangles (`dims`, one per `vsrc`
///   entry) unguarded, so all four are needed. Everyone gets both positions:
///   a user without a video position would have their camera turned off.
/// - `voice_activity` `{cid, on}`: the SDK looks `cid` up as a user id
///   (`GET /rooms/{key}/users/{cid}`) and emits `voice_activity {user, on}`.
pub(crate) fn push(signal: &Signal) -> String {
    let (kind, data) = match &signal.push {
        Push::Podium { sources } => {
            let positions: Vec<usize> = (0..sources.len()).collect();
            (
                "source_update",
                json!({"src": sources, "asrc": positions, "vsrc": positions, "dims": grid(sources.len())}),
            )
        }
        Push::VoiceActivity { user_id, on } => {
            ("voice_activity", json!({"cid": user_id, "on": on}))
        }
    };
    envelope(kind, &signal.conf_id, &signal.client_id, data)
}

/// The canvas the rectangles of [`grid`] tile.
const CANVAS: (u32, u32) = (1280, 720);

/// `n` video rectangles `{x, y, w, h}` tiling the canvas in a near-square
/// grid, row by row, as a stand-in for eyeson's automatic layout.
fn grid(n: usize) -> Vec<Value> {
    if n == 0 {
        return Vec::new();
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let columns = (1..=n).find(|c| c * c >= n).unwrap_or(n);
    let rows = n.div_ceil(columns);
    let (w, h) = (CANVAS.0 / columns, CANVAS.1 / rows);
    (0..n)
        .map(|i| json!({"x": (i % columns) * w, "y": (i / columns) * h, "w": w, "h": h}))
        .collect()
}

fn envelope(kind: &str, from: &str, to: &str, data: Value) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let msg_id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({"type": kind, "msg_id": format!("sandbox-{msg_id}"), "from": from, "to": to, "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(what: Push) -> Value {
        let s = Signal {
            access_key: "key".into(),
            client_id: "u1".into(),
            conf_id: "conf-1".into(),
            push: what,
        };
        serde_json::from_str(&push(&s)).unwrap()
    }

    /// The SDK's `PodiumFacade.isSolo`, for the check below.
    fn solo(data: &Value, client_id: &str) -> bool {
        let src: Vec<&str> = data["src"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<&&str> = src.iter().collect();
        unique.len() == 1 && src[0] == client_id
    }

    #[test]
    fn a_podium_is_a_source_update_from_the_conference_with_every_position() {
        let one = signal(Push::Podium {
            sources: vec!["u1".into()],
        });
        assert_eq!(one["type"], "source_update");
        assert_eq!(
            (one["from"].as_str(), one["to"].as_str()),
            (Some("conf-1"), Some("u1"))
        );
        assert_eq!(
            one["data"],
            json!({"src": ["u1"], "asrc": [0], "vsrc": [0], "dims": [{"x": 0, "y": 0, "w": 1280, "h": 720}]})
        );
        assert!(solo(&one["data"], "u1"));

        let two = signal(Push::Podium {
            sources: vec!["u1".into(), "u2".into()],
        });
        assert_eq!(two["data"]["asrc"], json!([0, 1]));
        assert_eq!(two["data"]["vsrc"], json!([0, 1]));
        assert_eq!(two["data"]["dims"].as_array().unwrap().len(), 2);
        assert!(!solo(&two["data"], "u1"));
        assert!(!solo(&two["data"], "u2"));
    }

    #[test]
    fn voice_activity_names_the_speaker_by_user_id() {
        let v = signal(Push::VoiceActivity {
            user_id: "u2".into(),
            on: true,
        });
        assert_eq!(v["type"], "voice_activity");
        assert_eq!(v["data"], json!({"cid": "u2", "on": true}));
        assert_eq!(v["to"], "u1", "addressed to the recipient, not the speaker");
    }

    #[test]
    fn the_grid_tiles_the_canvas_without_overlap() {
        assert!(grid(0).is_empty());
        for n in 1..=10usize {
            let rects = grid(n);
            assert_eq!(rects.len(), n);
            let area: u64 = rects
                .iter()
                .map(|r| r["w"].as_u64().unwrap() * r["h"].as_u64().unwrap())
                .sum();
            assert!(area <= 1280 * 720, "{n}: {area}");
            for r in &rects {
                assert!(r["x"].as_u64().unwrap() + r["w"].as_u64().unwrap() <= 1280);
                assert!(r["y"].as_u64().unwrap() + r["h"].as_u64().unwrap() <= 720);
            }
        }
        assert_eq!(
            grid(3),
            vec![
                json!({"x": 0, "y": 0, "w": 640, "h": 360}),
                json!({"x": 640, "y": 0, "w": 640, "h": 360}),
                json!({"x": 0, "y": 360, "w": 640, "h": 360}),
            ]
        );
    }
}
