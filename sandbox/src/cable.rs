//! The ActionCable websocket (`links.websocket`): just enough of Rails'
//! protocol for the SDK to join at once instead of polling `GET /rooms/{key}`
//! every 5 s. Welcome, confirm each subscription, push `room_setup` on the
//! `RoomChannel`, ping every 3 s (the client reconnects after ~6 s of silence),
//! and push `RoomChannel` messages other users cause (`chat`) through the
//! outbox registered in [`AppState`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::room::room_json;
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(3);

pub(crate) async fn serve(
    mut socket: WebSocket,
    state: AppState,
    access_key: String,
    host: String,
) {
    if send(&mut socket, json!({"type": "welcome"})).await.is_err() {
        return;
    }
    let (tx, mut outbox) = mpsc::unbounded_channel::<Value>();
    let connection = state.register_cable(&access_key, tx);
    run(&mut socket, &state, &access_key, &host, &mut outbox).await;
    state.unregister_cable(&access_key, connection);
}

async fn run(
    socket: &mut WebSocket,
    state: &AppState,
    access_key: &str,
    host: &str,
    outbox: &mut mpsc::UnboundedReceiver<Value>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await; // the first tick is immediate
                       // Pushes go to the RoomChannel the client subscribed with (until then,
                       // the identifier the SDK uses).
    let mut room_channel = json!({"channel": "RoomChannel"}).to_string();
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(id) = room_identifier(text.as_str()) {
                        room_channel = id;
                    }
                    for reply in replies(state, access_key, host, text.as_str()) {
                        if send(socket, reply).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            Some(message) = outbox.recv() => {
                if send(socket, json!({"identifier": room_channel, "message": message})).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                if send(socket, json!({"type": "ping", "message": now})).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The identifier of a `subscribe` to the `RoomChannel`, if `text` is one.
fn room_identifier(text: &str) -> Option<String> {
    let command = serde_json::from_str::<Value>(text).ok()?;
    if command["command"] != "subscribe" {
        return None;
    }
    let identifier = command["identifier"].as_str()?;
    let channel = serde_json::from_str::<Value>(identifier).ok()?;
    (channel["channel"] == "RoomChannel").then(|| identifier.to_owned())
}

/// Answers a `subscribe` command; everything else (`message` performs such as
/// the SDK's own pings) needs no answer.
fn replies(state: &AppState, access_key: &str, host: &str, text: &str) -> Vec<Value> {
    let Ok(command) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    if command["command"] != "subscribe" {
        return Vec::new();
    }
    let identifier = command["identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut out = vec![json!({"identifier": identifier, "type": "confirm_subscription"})];
    let channel = serde_json::from_str::<Value>(&identifier).unwrap_or_default()["channel"].clone();
    if channel == "RoomChannel" {
        if let Ok(session) = state.with(|s| s.session(access_key)) {
            out.push(json!({
                "identifier": identifier,
                "message": {"type": "room_setup", "content": room_json(&session, host)},
            }));
        }
    }
    out
}

async fn send(socket: &mut WebSocket, value: Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}
