//! eyeson for the service's tests: the eyeson sandbox (`eyeson-sandbox`)
//! in-process on 127.0.0.1:0, under the names the tests use.
//!
//! The sandbox answers as eyeson does (the raw API key in `Authorization`,
//! else 401/403; `DELETE /rooms/{id}` 204 then 404; one webhook per key;
//! guest joins need a running meeting's token and a name; messages need an
//! access key of a running meeting, `type=chat` and content). Its script
//! adds what a test needs on top: forced statuses per route (`0`: never
//! answer), capped or paged room lists, and the log of every request.
//! Meetings are started and ended by the tests ([`FakeEyeson::start_meeting`])
//! rather than by browsers, and its webhooks are muted: the tests deliver
//! by hand.
//!
//! Shared by the integration tests and the benchmarks (`examples/`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::SystemTime;

use eyeson_api::wire::{WebhookAnswer, WebhookTypes};
use eyeson_sandbox::config::Config;
use eyeson_sandbox::events::Kind;
use eyeson_sandbox::script::Fault;
use eyeson_sandbox::{Application, Control};
use reqwest::Method;
use serde_json::Value;

pub use eyeson_sandbox::script::Recorded;

/// A chat message the sandbox accepted.
#[derive(Clone, Debug)]
pub struct Message {
    /// The room.
    pub room: String,
    /// The start of the meeting it went to.
    pub started_at: String,
    /// The text.
    pub content: String,
    /// When it was accepted (wall clock, whole milliseconds).
    pub at: SystemTime,
}

/// The guest token the tests give a room's meetings (and `GET /rooms`
/// lists); the tests' deliveries carry the same.
pub fn guest_token_of(room: &str) -> String {
    format!("gt-{room}")
}

/// The sandbox. Dropping it stops the server.
pub struct FakeEyeson {
    /// Where it listens.
    pub addr: SocketAddr,
    control: Control,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A scripted status as the sandbox's fault: `0` never answers, a success
/// lets the ordinary answer through.
fn fault(status: u16) -> Fault {
    match status {
        0 => Fault::Hang,
        200..=299 => Fault::Pass,
        s => Fault::Status(s),
    }
}

impl FakeEyeson {
    /// Starts a sandbox that accepts only `key`.
    pub async fn start(key: &str) -> Self {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            api_key: key.to_owned(),
            sdk: None,
        };
        let app = Application::build(&config).await.unwrap();
        let addr = app.local_addr();
        let control = app.control();
        control.script(|s| {
            s.record(true);
            s.mute_webhooks(true);
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        FakeEyeson {
            addr,
            control,
            _stop: tx,
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A meeting starts running in `room` (listed by GET /rooms, ended by
    /// DELETE) with the guest token [`guest_token_of`] the room.
    pub fn start_meeting(&self, room: &str, started_at: &str) {
        let started = humantime::parse_rfc3339_weak(started_at).expect("an RFC 3339 started_at");
        let token = guest_token_of(room);
        self.control
            .act(|s, now| s.start_elsewhere(room, Some(&token), started, now));
    }

    /// The meeting in `room` ends without a delivery (GET /rooms stops listing it).
    pub fn end_meeting(&self, room: &str) {
        self.control.act(|s, now| s.end_elsewhere(room, now));
    }

    /// Whether a meeting runs in `room`.
    pub fn is_running(&self, room: &str) -> bool {
        self.control
            .with(|s| s.running().iter().any(|r| r.id == room))
    }

    /// The next DELETEs of `/rooms/{raw_segment}` answer these statuses (0: hang).
    pub fn script_delete(&self, raw_segment: &str, statuses: &[u16]) {
        let path = format!("/rooms/{raw_segment}");
        self.script(Method::DELETE, &path, statuses.iter().map(|s| fault(*s)));
    }

    /// The next GET /rooms answer these statuses (0: hang; 200: an empty list).
    pub fn script_rooms(&self, statuses: &[u16]) {
        let faults = statuses.iter().map(|s| match s {
            200 => Fault::Answer(200, "[]".into()),
            s => fault(*s),
        });
        self.script(Method::GET, "/rooms", faults);
    }

    /// Every GET /rooms answers `rooms` as given (an entry eyeson writes in
    /// a form the service does not parse); `None`: the running meetings again.
    pub fn list_raw(&self, rooms: Option<Value>) {
        let fault = rooms.map(|r| Fault::Answer(200, r.to_string()));
        self.control
            .script(|s| s.standing(Method::GET, "/rooms", fault));
    }

    /// The access keys handed out for `room`'s meetings (guest joins).
    pub fn access_keys(&self, room: &str) -> Vec<String> {
        self.control.with(|s| s.access_keys(room))
    }

    /// GET /rooms lists at most `n` of the running meetings (`None`: all).
    pub fn list_only(&self, n: Option<usize>) {
        self.control.script(|s| s.cap_list(n));
    }

    /// GET /rooms answers in pages of `n` (`?page=K`, from 0), each but the
    /// last with `Link: </rooms?page=K+1>; rel="next"`.
    pub fn paginate_rooms(&self, n: Option<usize>) {
        self.control.script(|s| s.paginate(n));
    }

    /// The next GET /webhooks answer these statuses before the default.
    pub fn script_webhooks(&self, statuses: &[u16]) {
        self.script(Method::GET, "/webhooks", statuses.iter().map(|s| fault(*s)));
    }

    /// Sets the registered webhook as GET /webhooks returns it (`id`, `url`,
    /// `types` as a list or one string), as another application would.
    pub fn set_webhook(&self, webhook: Option<Value>) {
        let hook = webhook.map(|w| {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let types = match &w["types"] {
                Value::String(s) => WebhookTypes::Joined(s.clone()),
                Value::Array(list) => WebhookTypes::List(list.iter().map(text).collect()),
                other => panic!("types must be a list or a string: {other}"),
            };
            WebhookAnswer {
                id: text(&w["id"]),
                url: text(&w["url"]),
                types,
                last_request_sent_at: w["last_request_sent_at"].as_str().map(str::to_owned),
                last_response_code: w["last_response_code"].as_str().map(str::to_owned),
            }
        });
        self.control.with(|s| s.set_webhook_answer(hook));
    }

    /// The registered webhook, as GET /webhooks answers it.
    pub fn webhook(&self) -> Option<Value> {
        self.control
            .with(|s| s.webhook().map(|w| serde_json::to_value(w).unwrap()))
    }

    /// The chat messages accepted so far.
    pub fn messages(&self) -> Vec<Message> {
        self.control.with(|s| {
            s.events()
                .iter()
                .filter(|e| e.kind == Kind::Chat)
                .map(|e| Message {
                    room: e.room_id.clone(),
                    started_at: e.started_at.clone().unwrap_or_default(),
                    content: e.content.clone().unwrap_or_default(),
                    at: humantime::parse_rfc3339(&e.at).expect("the sandbox's own time"),
                })
                .collect()
        })
    }

    /// The next guest joins answer these statuses (0: hang) before the
    /// default.
    pub fn script_guest(&self, statuses: &[u16]) {
        let faults = statuses.iter().map(|s| fault(*s));
        self.script(Method::POST, "/guests/{token}", faults);
    }

    /// The next messages answer these statuses (0: hang) before the default.
    pub fn script_message(&self, statuses: &[u16]) {
        let faults = statuses.iter().map(|s| fault(*s));
        self.script(Method::POST, "/rooms/{key}/messages", faults);
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
        self.control.script(|s| s.requests().to_vec())
    }

    /// The requests from the `from`th on (an incremental poll).
    pub fn requests_from(&self, from: usize) -> Vec<Recorded> {
        self.control
            .script(|s| s.requests().get(from..).unwrap_or_default().to_vec())
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

    /// A participant named `name` joins (`on`) or leaves the call of the
    /// meeting in `room` without a browser (the sandbox's bot).
    pub fn bot(&self, room: &str, name: &str, on: bool) {
        self.control.act(|s, now| {
            s.bot(room, name, on, now)
                .unwrap_or_else(|e| panic!("bot {name} in {room}: {e:?}"))
        });
    }

    /// The next GET /rooms/{room}/users answer with these faults.
    pub fn script_users(&self, room: &str, faults: impl IntoIterator<Item = Fault>) {
        self.script(Method::GET, &format!("/rooms/{room}/users"), faults);
    }

    fn script(&self, method: Method, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.control.script(|s| s.push(method, path, faults));
    }
}
