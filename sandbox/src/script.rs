//! The fault layer: what a test scripts on top of the sandbox's ordinary
//! behaviour, so that a client can be tested against eyeson's bad days
//! without a second fake of eyeson.
//!
//! - Per route, a queue of [`Fault`]s the next matching requests get, one
//!   each: a forced status (a `429` carries `Retry-After`), an answer that
//!   never comes, a delay, a cut (truncated) body, a forced body; or a
//!   standing fault every request gets until it is cleared.
//! - `GET /rooms` capped to its first rooms (an always-partial list) or
//!   split into pages linked with `Link: rel="next"`.
//! - Webhook deliveries muted (a test that delivers by hand).
//! - A request log ([`Recorded`]), off unless asked for: method, raw path,
//!   the raw `Authorization` (kept in memory for assertions, never logged),
//!   form fields, status and times.
//!
//! The layer sits in front of the routes; a request without a fault passes
//! through untouched, so eyeson's own checks (API key, 404 for an unknown
//! room, 410 for an ended meeting) still answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use eyeson_api::wire::Room;
use serde_json::json;

/// The largest body the layer reads: axum's default for the handlers'
/// `Bytes`, so the layer refuses nothing they would take.
const BODY_LIMIT: usize = 2 << 20;

/// What one request gets instead of (or on top of) the ordinary answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The ordinary answer: lets a queue fail only some requests.
    Pass,
    /// This status with eyeson's error body; the state is untouched. A
    /// `429` carries `Retry-After` ([`Script::retry_after`]).
    Status(u16),
    /// This status and this JSON body instead of the ordinary answer (say
    /// `200` and `[]`: a transient empty list).
    Answer(u16, String),
    /// No answer ever; the request is logged with status 0, and the moment
    /// the client gives up (closes the connection) as `abandoned_at`.
    Hang,
    /// The ordinary answer, this much later.
    Delay(Duration),
    /// The ordinary answer's status and headers with the first half of its
    /// body: JSON cut off mid-way.
    Cut,
}

/// One request as the layer saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path as sent (still percent-encoded), without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The raw `Authorization` header (an API key: in memory only).
    pub authorization: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Form fields in order, decoded (empty for other bodies).
    pub form: Vec<(String, String)>,
    /// When it was answered (wall clock); for a hang, when it arrived.
    pub answered_at: SystemTime,
    /// The same moment, monotonic.
    pub answered_instant: Instant,
    /// The status answered; 0 for a hang.
    pub status: u16,
    /// For a hang: when the client gave up on it, if it has.
    pub abandoned_at: Option<Instant>,
}

/// A route a fault applies to: a method and a path whose `{…}` segments
/// match any segment (`/guests/{token}`) and whose other segments match the
/// raw (percent-encoded) path exactly (`/rooms/room%201`).
#[derive(Debug, Clone)]
struct Route {
    method: Method,
    path: String,
}

impl Route {
    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method != method {
            return false;
        }
        let (mut want, mut got) = (self.path.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == g || (w.starts_with('{') && w.ends_with('}')) => {}
                _ => return false,
            }
        }
    }
}

/// The scripted behaviour of one sandbox. Empty by default: the sandbox
/// behaves like eyeson.
#[derive(Debug)]
pub struct Script {
    faults: Vec<(Route, VecDeque<Fault>)>,
    standing: Vec<(Route, Fault)>,
    retry_after: Duration,
    list_cap: Option<usize>,
    page_size: Option<usize>,
    mute_webhooks: bool,
    record: bool,
    log: Vec<Recorded>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            faults: Vec::new(),
            standing: Vec::new(),
            retry_after: Duration::from_secs(1),
            list_cap: None,
            page_size: None,
            mute_webhooks: false,
            record: false,
            log: Vec::new(),
        }
    }
}

impl Script {
    /// The next requests matching `method` and `path` (see the module) get
    /// `faults`, one each, after any already queued for that route.
    pub fn push(&mut self, method: Method, path: &str, faults: impl IntoIterator<Item = Fault>) {
        let queue = match self
            .faults
            .iter_mut()
            .find(|(r, _)| r.method == method && r.path == path)
        {
            Some((_, q)) => q,
            None => {
                let route = Route {
                    method,
                    path: path.to_owned(),
                };
                self.faults.push((route, VecDeque::new()));
                &mut self.faults.last_mut().expect("just pushed").1
            }
        };
        queue.extend(faults);
    }

    /// Every request matching `method` and `path` gets `fault` (an outage,
    /// an answer the client cannot read) until it is cleared with `None`;
    /// queued faults come first.
    pub fn standing(&mut self, method: Method, path: &str, fault: Option<Fault>) {
        self.standing
            .retain(|(r, _)| !(r.method == method && r.path == path));
        if let Some(fault) = fault {
            let route = Route {
                method,
                path: path.to_owned(),
            };
            self.standing.push((route, fault));
        }
    }

    /// The `Retry-After` of a scripted `429` (whole seconds; default 1 s).
    pub fn retry_after(&mut self, after: Duration) {
        self.retry_after = after;
    }

    /// `GET /rooms` lists at most the first `n` running meetings (`None`:
    /// all): a list that is always partial.
    pub fn cap_list(&mut self, n: Option<usize>) {
        self.list_cap = n;
    }

    /// `GET /rooms` answers pages of `n` (`?page=K`, from 0), each but the
    /// last linking the next with `Link: </rooms?page=K+1>; rel="next"`.
    pub fn paginate(&mut self, n: Option<usize>) {
        self.page_size = n;
    }

    /// Whether webhook deliveries are dropped instead of POSTed.
    pub fn mute_webhooks(&mut self, on: bool) {
        self.mute_webhooks = on;
    }

    /// Whether deliveries are muted.
    pub fn webhooks_muted(&self) -> bool {
        self.mute_webhooks
    }

    /// Starts (or stops) logging requests.
    pub fn record(&mut self, on: bool) {
        self.record = on;
    }

    /// The requests logged so far, oldest first.
    pub fn requests(&self) -> &[Recorded] {
        &self.log
    }

    /// The fault for a request: the next queued for its route, else a
    /// standing one.
    fn take(&mut self, method: &Method, path: &str) -> Option<Fault> {
        self.faults
            .iter_mut()
            .filter(|(r, _)| r.matches(method, path))
            .find_map(|(_, q)| q.pop_front())
            .or_else(|| {
                self.standing
                    .iter()
                    .find(|(r, _)| r.matches(method, path))
                    .map(|(_, f)| f.clone())
            })
    }

    /// One page of `GET /rooms` as scripted, and the link to the next.
    pub(crate) fn list(
        &self,
        mut rooms: Vec<Room>,
        query: Option<&str>,
    ) -> (Vec<Room>, Option<String>) {
        rooms.truncate(self.list_cap.unwrap_or(usize::MAX));
        let Some(size) = self.page_size.filter(|s| *s > 0) else {
            return (rooms, None);
        };
        let page: usize = query
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("page=")))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let more = rooms.len() > page.saturating_add(1).saturating_mul(size);
        let rooms = rooms
            .into_iter()
            .skip(page.saturating_mul(size))
            .take(size)
            .collect();
        let next = more.then(|| format!("</rooms?page={}>; rel=\"next\"", page + 1));
        (rooms, next)
    }
}

/// A sandbox's script, shared by the layer, the adapters and the embedder.
pub(crate) type Shared = Arc<Mutex<Script>>;

/// Locks a script; a panic elsewhere does not disable the layer.
pub(crate) fn lock(script: &Shared) -> MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The middleware: records the request, applies its fault if one is queued.
pub(crate) async fn layer(State(script): State<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (record, fault) = {
        let mut s = lock(&script);
        (s.record, s.take(&parts.method, parts.uri.path()))
    };
    let recorded = record.then(|| Recorded {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        authorization: header(header::AUTHORIZATION),
        content_type: header(header::CONTENT_TYPE),
        form: form_fields(header(header::CONTENT_TYPE).as_deref(), &bytes),
        answered_at: SystemTime::now(),
        answered_instant: Instant::now(),
        status: 0,
        abandoned_at: None,
    });
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = match fault {
        None | Some(Fault::Pass) => next.run(request).await,
        Some(Fault::Status(status)) => scripted(status, lock(&script).retry_after),
        Some(Fault::Answer(status, body)) => (
            code(status),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(request).await
        }
        Some(Fault::Cut) => cut(next.run(request).await).await,
        Some(Fault::Hang) => {
            let index = recorded.map(|r| {
                let mut s = lock(&script);
                s.log.push(r);
                s.log.len() - 1
            });
            let _abandoned = index.map(|i| Abandoned(script.clone(), i));
            return std::future::pending().await;
        }
    };
    if let Some(mut r) = recorded {
        r.status = response.status().as_u16();
        r.answered_at = SystemTime::now();
        r.answered_instant = Instant::now();
        lock(&script).log.push(r);
    }
    response
}

/// Marks a hanging request abandoned when the server drops its future (the
/// client closed the connection).
struct Abandoned(Shared, usize);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.0).log.get_mut(self.1) {
            r.abandoned_at = Some(Instant::now());
        }
    }
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A forced status with eyeson's error body; `Retry-After` on a `429`.
fn scripted(status: u16, retry_after: Duration) -> Response {
    let mut response = (code(status), Json(json!({"error": "scripted fault"}))).into_response();
    if status == 429 {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs()),
        );
    }
    response
}

/// The ordinary answer with the first half of its body.
async fn cut(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
}

/// The form fields of a body, in order; none unless it is a form (or has
/// no type, like a bare `reqwest` body).
fn form_fields(content_type: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let form = content_type.is_none_or(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form || body.is_empty() {
        return Vec::new();
    }
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> Room {
        Room {
            id: id.into(),
            name: id.into(),
            ready: true,
            started_at: None,
            shutdown: false,
            guest_token: None,
        }
    }

    #[test]
    fn routes_match_templates_and_raw_segments() {
        let r = |path: &str| Route {
            method: Method::DELETE,
            path: path.into(),
        };
        assert!(r("/rooms/{id}").matches(&Method::DELETE, "/rooms/a%20b"));
        assert!(r("/rooms/a%20b").matches(&Method::DELETE, "/rooms/a%20b"));
        assert!(!r("/rooms/a b").matches(&Method::DELETE, "/rooms/a%20b"));
        assert!(!r("/rooms/{id}").matches(&Method::GET, "/rooms/x"));
        assert!(!r("/rooms/{id}").matches(&Method::DELETE, "/rooms/x/messages"));
        assert!(!r("/rooms").matches(&Method::DELETE, "/rooms/x"));
    }

    #[test]
    fn faults_are_taken_once_in_order_per_route() {
        let mut s = Script::default();
        s.push(
            Method::DELETE,
            "/rooms/a",
            [Fault::Status(503), Fault::Hang],
        );
        s.push(Method::DELETE, "/rooms/a", [Fault::Pass]);
        assert_eq!(s.take(&Method::DELETE, "/rooms/b"), None);
        assert_eq!(
            s.take(&Method::DELETE, "/rooms/a"),
            Some(Fault::Status(503))
        );
        assert_eq!(s.take(&Method::DELETE, "/rooms/a"), Some(Fault::Hang));
        assert_eq!(s.take(&Method::DELETE, "/rooms/a"), Some(Fault::Pass));
        assert_eq!(s.take(&Method::DELETE, "/rooms/a"), None);
    }

    #[test]
    fn a_standing_fault_stays_until_cleared_and_queued_ones_go_first() {
        let mut s = Script::default();
        s.standing(Method::GET, "/rooms", Some(Fault::Status(503)));
        s.push(Method::GET, "/rooms", [Fault::Pass]);
        assert_eq!(s.take(&Method::GET, "/rooms"), Some(Fault::Pass));
        assert_eq!(s.take(&Method::GET, "/rooms"), Some(Fault::Status(503)));
        assert_eq!(s.take(&Method::GET, "/rooms"), Some(Fault::Status(503)));
        s.standing(Method::GET, "/rooms", None);
        assert_eq!(s.take(&Method::GET, "/rooms"), None);
    }

    #[test]
    fn lists_are_capped_then_paged() {
        let rooms: Vec<Room> = (0..5).map(|i| room(&format!("r{i}"))).collect();
        let mut s = Script::default();
        assert_eq!(s.list(rooms.clone(), None).0.len(), 5);
        s.cap_list(Some(4));
        s.paginate(Some(3));
        let (first, next) = s.list(rooms.clone(), None);
        assert_eq!(first.len(), 3);
        assert_eq!(next.as_deref(), Some("</rooms?page=1>; rel=\"next\""));
        let (last, next) = s.list(rooms, Some("page=1"));
        assert_eq!(
            last.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r3"]
        );
        assert_eq!(next, None);
    }

    #[test]
    fn only_forms_are_decoded() {
        let body = b"url=https%3A%2F%2Fx&types=room_update";
        let fields = form_fields(Some("application/x-www-form-urlencoded"), body);
        assert_eq!(fields[0], ("url".to_owned(), "https://x".to_owned()));
        assert_eq!(fields[1].1, "room_update");
        assert!(form_fields(Some("application/json"), b"{}").is_empty());
    }
}
