//! A fake eyeson REST API on 127.0.0.1 (an axum server on port 0).
//!
//! It behaves like eyeson where the service depends on it: a set of running
//! meetings that `GET /rooms` lists and `DELETE /rooms/{id}` ends (204, then
//! 404), one webhook per key that `POST /webhooks` replaces. It records
//! every request (method, raw path, raw `Authorization`, form fields, time)
//! so tests assert exactly what was called, and it answers 401 to any other
//! `Authorization` than the raw key. Scripted answers per room override the
//! default (`503` then default; `0` means "never answer").
//!
//! The in-meeting calls check what eyeson checks: `POST /guests/{token}`
//! needs a token of a room whose meeting runs (else 410) and a `name`
//! (else 400), and gives an access key for that meeting; `POST
//! /rooms/{access_key}/messages` needs a key it gave (else 404) whose
//! meeting still runs (else 410), `type=chat` and a non-empty `content`
//! (else 400). They need no API key (the token and the access key are the
//! credentials). A meeting's guest token is [`guest_token_of`] its room.
//!
//! Shared by the integration tests and the benchmarks (`examples/`).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use eyeson_api::wire::{
    GuestJoinForm, Joined, Links, MessageForm, RegisterWebhookForm, Room, WebhookAnswer,
};
use serde_json::{json, Value};

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path as sent (still percent-encoded).
    pub path: String,
    /// The raw `Authorization` header.
    pub authorization: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Form fields in order, decoded.
    pub form: Vec<(String, String)>,
    /// When the fake answered (wall clock).
    pub answered_at: SystemTime,
    /// When the fake answered (monotonic).
    pub answered_instant: Instant,
    /// The status it answered.
    pub status: u16,
    /// For a hanging request (status 0): when the client gave up on it
    /// (closed the connection), if it has.
    pub abandoned_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    key: String,
    requests: Vec<Recorded>,
    /// Running meetings: room id → started_at (ISO string).
    running: HashMap<String, String>,
    /// Scripted statuses for DELETE /rooms/{raw path segment}.
    delete_script: HashMap<String, VecDeque<u16>>,
    /// Scripted statuses for GET /rooms.
    rooms_script: VecDeque<u16>,
    /// Scripted statuses for GET /webhooks.
    webhooks_script: VecDeque<u16>,
    webhook: Option<Value>,
    webhook_seq: u32,
    /// GET /rooms lists at most this many running meetings (by room id): an
    /// always-partial list.
    list_only: Option<usize>,
    /// GET /rooms answers pages of this many, linked with `Link: rel="next"`.
    page_size: Option<usize>,
    /// The `Link` header of the answer being built.
    link: Option<String>,
    /// Access keys handed out: key → (room, started_at of its meeting).
    access_keys: HashMap<String, (String, String)>,
    /// Chat messages accepted.
    messages: Vec<Message>,
    /// Scripted statuses for the next guest joins (any token).
    guest_script: VecDeque<u16>,
    /// Scripted statuses for the next messages (any key).
    message_script: VecDeque<u16>,
}

/// A chat message the fake accepted.
#[derive(Clone, Debug)]
pub struct Message {
    /// The room.
    pub room: String,
    /// The start of the meeting it went to.
    pub started_at: String,
    /// The text.
    pub content: String,
    /// When it was accepted (wall clock).
    pub at: SystemTime,
}

/// The guest token the fake gives a room's meetings (and lists in `GET
/// /rooms`); the tests' deliveries carry the same.
pub fn guest_token_of(room: &str) -> String {
    format!("gt-{room}")
}

/// The fake. Dropping it stops the server.
pub struct FakeEyeson {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    // `Url::query_pairs` is the form-urlencoded decoder reqwest already links.
    let text = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeEyeson {
    /// Starts a fake that accepts only `key`.
    pub async fn start(key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            key: key.to_owned(),
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(shared, method, uri, headers, body).await }
            },
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        FakeEyeson {
            addr,
            state,
            _stop: tx,
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A meeting starts running in `room` (listed by GET /rooms, ended by DELETE).
    pub fn start_meeting(&self, room: &str, started_at: &str) {
        self.state
            .lock()
            .unwrap()
            .running
            .insert(room.to_owned(), started_at.to_owned());
    }

    /// The meeting in `room` ends without a delivery (GET /rooms stops listing it).
    pub fn end_meeting(&self, room: &str) {
        self.state.lock().unwrap().running.remove(room);
    }

    /// Whether a meeting runs in `room`.
    pub fn is_running(&self, room: &str) -> bool {
        self.state.lock().unwrap().running.contains_key(room)
    }

    /// The next DELETEs of `/rooms/{raw_segment}` answer these statuses (0: hang).
    pub fn script_delete(&self, raw_segment: &str, statuses: &[u16]) {
        self.state
            .lock()
            .unwrap()
            .delete_script
            .entry(raw_segment.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// The next GET /rooms answer these statuses (0: hang; 200: an empty list).
    pub fn script_rooms(&self, statuses: &[u16]) {
        self.state.lock().unwrap().rooms_script.extend(statuses);
    }

    /// GET /rooms lists at most `n` of the running meetings (`None`: all).
    pub fn list_only(&self, n: Option<usize>) {
        self.state.lock().unwrap().list_only = n;
    }

    /// GET /rooms answers in pages of `n` (`?page=K`, from 0), each but the
    /// last with `Link: </rooms?page=K+1>; rel="next"`.
    pub fn paginate_rooms(&self, n: Option<usize>) {
        self.state.lock().unwrap().page_size = n;
    }

    /// The next GET /webhooks answer these statuses before the default.
    pub fn script_webhooks(&self, statuses: &[u16]) {
        self.state.lock().unwrap().webhooks_script.extend(statuses);
    }

    /// Sets the registered webhook as GET /webhooks returns it.
    pub fn set_webhook(&self, webhook: Option<Value>) {
        self.state.lock().unwrap().webhook = webhook;
    }

    /// The registered webhook.
    pub fn webhook(&self) -> Option<Value> {
        self.state.lock().unwrap().webhook.clone()
    }

    /// The chat messages accepted so far.
    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().unwrap().messages.clone()
    }

    /// The next guest joins answer these statuses (0: hang) before the
    /// default.
    pub fn script_guest(&self, statuses: &[u16]) {
        self.state.lock().unwrap().guest_script.extend(statuses);
    }

    /// The next messages answer these statuses (0: hang) before the default.
    pub fn script_message(&self, statuses: &[u16]) {
        self.state.lock().unwrap().message_script.extend(statuses);
    }

    /// All guest joins (`POST /guests/...`).
    pub fn guest_joins(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.starts_with("/guests/"))
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests with this method and raw path.
    pub fn calls(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .collect()
    }

    /// All DELETE /rooms/... requests.
    pub fn deletes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::DELETE && r.path.starts_with("/rooms/"))
            .collect()
    }
}

async fn handle(
    shared: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = decode_form(&body);
    let (status, answer, hang, link) = {
        let mut st = shared.lock().unwrap();
        // In-meeting calls carry their credential in the path.
        let in_meeting = path.starts_with("/guests/")
            || (path.starts_with("/rooms/") && path.ends_with("/messages"));
        if !in_meeting && authorization.as_deref() != Some(st.key.as_str()) {
            (401, json!({"error": "unauthorized"}), false, None)
        } else {
            let (status, answer, hang) = route(&mut st, &method, &path, uri.query(), &form);
            (status, answer, hang, st.link.take())
        }
    };
    // A hanging request is recorded as received (status 0), then never answered.
    let index = {
        let mut st = shared.lock().unwrap();
        st.requests.push(Recorded {
            method,
            path,
            authorization,
            content_type,
            form,
            answered_at: SystemTime::now(),
            answered_instant: Instant::now(),
            status: if hang { 0 } else { status },
            abandoned_at: None,
        });
        st.requests.len() - 1
    };
    if hang {
        // The server drops this future when the client closes the
        // connection: that moment is recorded.
        struct Abandoned(Arc<Mutex<State>>, usize);
        impl Drop for Abandoned {
            fn drop(&mut self) {
                if let Ok(mut st) = self.0.lock() {
                    st.requests[self.1].abandoned_at = Some(Instant::now());
                }
            }
        }
        let _guard = Abandoned(shared.clone(), index);
        std::future::pending::<()>().await;
    }
    let code = StatusCode::from_u16(status).unwrap();
    if status == 204 {
        return code.into_response();
    }
    if status == 429 {
        return (code, [("retry-after", "1")], axum::Json(answer)).into_response();
    }
    if let Some(link) = link {
        return (code, [("link", link)], axum::Json(answer)).into_response();
    }
    (code, axum::Json(answer)).into_response()
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    form: &[(String, String)],
) -> (u16, Value, bool) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["rooms"]) => {
            if let Some(s) = st.rooms_script.pop_front() {
                if s == 200 {
                    // A scripted 200: an empty list (a transient answer).
                    return (200, json!([]), false);
                }
                return (s, json!({"error": "scripted"}), s == 0);
            }
            let mut running: Vec<(&String, &String)> = st.running.iter().collect();
            running.sort();
            running.truncate(st.list_only.unwrap_or(usize::MAX));
            let mut list: Vec<Value> = running
                .into_iter()
                .map(|(id, started)| {
                    json!(Room {
                        id: id.clone(),
                        name: id.clone(),
                        ready: true,
                        started_at: Some(started.clone()),
                        shutdown: false,
                        guest_token: Some(guest_token_of(id)),
                    })
                })
                .collect();
            if let Some(size) = st.page_size {
                let page: usize = query
                    .and_then(|q| q.strip_prefix("page="))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let more = list.len() > (page + 1) * size;
                list = list.into_iter().skip(page * size).take(size).collect();
                if more {
                    st.link = Some(format!("</rooms?page={}>; rel=\"next\"", page + 1));
                }
            }
            (200, Value::Array(list), false)
        }
        ("DELETE", ["rooms", raw]) => {
            let scripted = st.delete_script.get_mut(*raw).and_then(VecDeque::pop_front);
            match scripted {
                Some(0) => (0, Value::Null, true),
                Some(s) if !(200..300).contains(&s) => (s, json!({"error": "scripted"}), false),
                _ => {
                    let room = percent_decode(raw);
                    if st.running.remove(&room).is_some() {
                        (204, Value::Null, false)
                    } else {
                        (404, json!({"error": "not found"}), false)
                    }
                }
            }
        }
        ("POST", ["guests", token]) => {
            if let Some(s) = st.guest_script.pop_front() {
                return (s, json!({"error": "scripted"}), s == 0);
            }
            let token = percent_decode(token);
            let Some(name) = form
                .iter()
                .find(|(k, _)| k == GuestJoinForm::NAME)
                .map(|(_, v)| v.clone())
                .filter(|n| !n.trim().is_empty())
            else {
                return (400, json!({"error": "name is required"}), false);
            };
            let meeting = st
                .running
                .iter()
                .find(|(room, _)| guest_token_of(room) == token)
                .map(|(r, s)| (r.clone(), s.clone()));
            let Some((room, started)) = meeting else {
                return (410, json!({"error": "meeting is not running"}), false);
            };
            let key = format!("ak-{}", st.access_keys.len() + 1);
            st.access_keys
                .insert(key.clone(), (room.clone(), started.clone()));
            let mut answer = json!(Joined {
                access_key: key.clone(),
                ready: true,
                links: Links {
                    gui: format!("https://app.eyeson.team/?{key}"),
                    guest_join: format!("https://app.eyeson.team/?guest={token}"),
                    websocket: "wss://example.invalid/rt".into(),
                },
                room: Room {
                    id: room.clone(),
                    name: room,
                    ready: true,
                    started_at: Some(started),
                    shutdown: false,
                    guest_token: Some(token),
                },
            });
            answer["user"] = json!({"id": format!("u-{key}"), "name": name, "guest": true});
            (201, answer, false)
        }
        ("POST", ["rooms", key, "messages"]) => {
            if let Some(s) = st.message_script.pop_front() {
                return (s, json!({"error": "scripted"}), s == 0);
            }
            let Some((room, started)) = st.access_keys.get(&percent_decode(key)).cloned() else {
                return (404, json!({"error": "unknown access key"}), false);
            };
            if st.running.get(&room) != Some(&started) {
                return (410, json!({"error": "meeting has ended"}), false);
            }
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            if field(MessageForm::TYPE).as_deref() != Some(MessageForm::CHAT) {
                return (400, json!({"error": "type must be chat"}), false);
            }
            let Some(content) = field(MessageForm::CONTENT).filter(|c| !c.trim().is_empty()) else {
                return (400, json!({"error": "content is required"}), false);
            };
            st.messages.push(Message {
                room,
                started_at: started,
                content,
                at: SystemTime::now(),
            });
            (201, Value::Null, false)
        }
        ("GET", ["webhooks"]) => match (st.webhooks_script.pop_front(), &st.webhook) {
            (Some(s), _) => (s, json!({"error": "scripted"}), false),
            (None, Some(w)) => (200, w.clone(), false),
            (None, None) => (404, json!({"error": "not found"}), false),
        },
        ("POST", ["webhooks"]) => {
            let url = form
                .iter()
                .find(|(k, _)| k == RegisterWebhookForm::URL)
                .map(|(_, v)| v.clone());
            let types = form
                .iter()
                .find(|(k, _)| k == RegisterWebhookForm::TYPES)
                .map(|(_, v)| v.clone());
            match (url, types) {
                (Some(url), Some(types)) => {
                    st.webhook_seq += 1;
                    let w = json!(WebhookAnswer {
                        id: format!("wh{}", st.webhook_seq),
                        url,
                        types: types.split(',').map(str::to_owned).collect(),
                        last_request_sent_at: None,
                        last_response_code: None,
                    });
                    st.webhook = Some(w.clone());
                    (201, w, false)
                }
                _ => (400, json!({"error": "url and types required"}), false),
            }
        }
        ("DELETE", ["webhooks", id]) => {
            let matches = st
                .webhook
                .as_ref()
                .and_then(|w| w.get("id"))
                .and_then(Value::as_str)
                == Some(*id);
            if matches {
                st.webhook = None;
                (204, Value::Null, false)
            } else {
                (404, json!({"error": "not found"}), false)
            }
        }
        _ => (404, json!({"error": "no such endpoint"}), false),
    }
}
