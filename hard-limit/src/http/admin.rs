//! The admin listener (`--admin-listen`): what operators see and do.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the operator console (one page from the binary; no token needed to load it, every call it makes needs one) |
//! | `GET /meetings?limit=N&cursor=C` | tracked meetings (open, and finished within the last hour), at most 1000 a page, `Link: rel="next"` to the next |
//! | `GET /metrics` | Prometheus text |
//!
//! Every request first passes [`admin_guard`]'s checks (its own Host, no
//! other origin, JSON for changes). With `--admin-token`, every route but
//! the console's page and script needs `Authorization: Bearer <token>`,
//! compared in constant time; otherwise 401 with `WWW-Authenticate:
//! Bearer`.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;

use super::admin_guard::{self, Admit, FailureThrottle};
use super::{ApiError, MeetingJson, FINISHED_LISTED_FOR};
use crate::clock::Clock;
use crate::domain::{
    AloneAfter, DeadlineChange, DeadlineRefused, MeetingKey, RoomId, Rule, Timestamp,
};
use crate::limits::LimitsHandle;
use crate::secrets::AdminToken;
use crate::store::{Caller, DeadlineMoved, LimitKind, RoomHistory, RuleChange};
use crate::store_handle::Store;

/// What the admin handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The store.
    pub store: Store,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// `--admin-token`, if set.
    pub token: Option<AdminToken>,
    /// Pokes this process's scheduler and warner after a deadline moved.
    pub wake: Arc<crate::wake::Wake>,
    /// The limits in force.
    pub limits: Arc<LimitsHandle>,
    /// The address the admin listener is bound to (its own `Host`).
    pub listen: SocketAddr,
    /// `--admin-host`: further names its `Host` may carry.
    pub hosts: Arc<[String]>,
    /// Failed authentications per address.
    pub failures: Arc<FailureThrottle>,
    /// Refused requests, for the log.
    pub refusals: Arc<admin_guard::RefusalLog>,
    /// False once a background task ended (shared with `/healthz`).
    pub tasks_ok: Arc<std::sync::atomic::AtomicBool>,
}

/// The admin listener's router.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(console))
        .route("/console.js", get(console_script))
        .route("/metrics", get(render_metrics))
        .route("/meetings", get(list_meetings))
        .route("/meetings/{room_id}/history", get(history))
        .route("/meetings/{room_id}/extend", post(extend))
        .route("/meetings/{room_id}/end", post(end))
        .route("/limits", get(list_limits))
        .route(
            "/limits/rooms/{room_id}",
            put(put_room_limit).delete(delete_room_limit),
        )
        .route(
            "/limits/prefixes/{prefix}",
            put(put_prefix_limit).delete(delete_prefix_limit),
        )
        // An empty key does not match the routes above: name it rather
        // than answer "no such endpoint".
        .route("/limits/rooms/", put(empty_key).delete(empty_key))
        .route("/limits/prefixes/", put(empty_key).delete(empty_key))
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        // On every route, the fallback included.
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn empty_key(req: Request) -> ApiError {
    let field = if req.uri().path().starts_with("/limits/rooms/") {
        "room_id"
    } else {
        "prefix"
    };
    ApiError::bad(format!(
        "{field}: must not be empty (it is the last part of the path)"
    ))
}

/// Whether `presented` is the token, in constant time (see
/// [`crate::domain::secrets_match`]).
pub fn token_matches(expected: &AdminToken, presented: &str) -> bool {
    crate::domain::secrets_match(expected.expose().as_bytes(), presented.as_bytes())
}

/// The checks before every admin handler: [`admin_guard::check`], then
/// the token (but for the console's page and script), slowed down per
/// address after failures.
async fn guard(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = admin_guard::check(req.method(), req.headers(), app.listen, &app.hosts) {
        ::metrics::counter!(crate::metrics::ADMIN_REFUSED, "reason" => refusal.reason())
            .increment(1);
        // A page that keeps sending cannot flood the log: one line a
        // minute at most, with the count (the metric counts each).
        if let Some(count) = app.refusals.count(std::time::Instant::now()) {
            tracing::warn!(caller = %peer, reason = refusal.reason(), path = %req.uri().path(), count, "admin requests refused (another Host or origin, or a change that is not JSON)");
        }
        let status = match refusal {
            admin_guard::Refusal::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        };
        return (status, Json(json!({"error": refusal.message()}))).into_response();
    }
    let public = matches!(req.uri().path(), "/" | "/console.js");
    let Some(token) = app.token.as_ref().filter(|_| !public) else {
        return next.run(req).await;
    };
    let now = std::time::Instant::now();
    if let Admit::Wait { retry_after, log } = app.failures.admit(peer.ip(), now) {
        ::metrics::counter!(crate::metrics::ADMIN_REFUSED, "reason" => "throttled").increment(1);
        ::metrics::counter!(crate::metrics::ADMIN_AUTH_FAILURES).increment(1);
        if let Some(count) = log {
            tracing::warn!(caller = %peer.ip(), count, "failed admin authentications from this address; it is slowed down");
        }
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(secs))],
            Json(json!({"error": "too many failed authentications from this address; try again shortly"})),
        )
            .into_response();
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    if presented.is_some_and(|p| token_matches(token, p)) {
        return next.run(req).await;
    }
    ::metrics::counter!(crate::metrics::ADMIN_AUTH_FAILURES).increment(1);
    if let Some(count) = app.failures.failed(peer.ip(), now) {
        tracing::warn!(caller = %peer.ip(), count, "failed admin authentications from this address (missing or wrong token)");
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"eyeson-hard-limit admin\""),
        )],
        Json(
            json!({"error": "the admin token is missing or wrong (Authorization: Bearer <token>)"}),
        ),
    )
        .into_response()
}

/// The console: one static page, compiled in.
async fn console() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONSOLE_CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        include_str!("console.html"),
    )
        .into_response()
}

/// The console's policy: its script is a file of this origin (no inline
/// script, no eval), it talks to this origin only, and no other page may
/// frame it.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's script, compiled in.
async fn console_script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        include_str!("console.js"),
    )
        .into_response()
}

/// A body, or the JSON error for one that is too large (the 2 MiB default)
/// or could not be read.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("the body is larger than 2 MiB")
        } else {
            ApiError::bad("the body could not be read")
        }
    })
}

/// The recorder's metrics, then this service's meetings by state from
/// memory ([`crate::meeting_gauges`]), then the health and due-work gauges
/// computed now. (Rendered here rather than through the process-wide
/// recorder, so services sharing a process do not show each other's.)
///
/// The due-work gauges cost two indexed reads (the earliest due row, a
/// count that stops at [`DUE_SOON_CAP`]), not a count of the store; each
/// is bounded at 1 s and left out of the answer when the store does not
/// answer in time (the health gauges say why).
async fn render_metrics(State(app): State<AdminState>) -> Response {
    use std::fmt::Write;
    let mut text = app.metrics.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    app.store.gauges().render(&mut text);
    let gauge = |text: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    let tasks_ok = app.tasks_ok.load(std::sync::atomic::Ordering::SeqCst);
    gauge(
        &mut text,
        crate::metrics::TASKS_OK,
        "1 while every background task runs, 0 once one ended (the service is stopping)",
        u64::from(tasks_ok),
    );
    // As /healthz: after a failed write, a probe write decides.
    let writable = tokio::time::timeout(Duration::from_secs(2), app.store.recheck_writes())
        .await
        .unwrap_or(false);
    gauge(
        &mut text,
        crate::metrics::STORE_WRITABLE,
        "1 when the last write to the store (or a probe write after a failed one) committed, else 0",
        u64::from(writable),
    );
    let now = app.clock.now();
    let bound = Duration::from_secs(1);
    let (next, due) = tokio::join!(
        tokio::time::timeout(bound, app.store.next_wake()),
        tokio::time::timeout(
            bound,
            app.store
                .count_due_before(now.plus(Duration::from_secs(3600)), DUE_SOON_CAP)
        ),
    );
    if let Ok(Ok(next)) = next {
        let overdue = next.map_or(Duration::ZERO, |t| now.since(t));
        let _ = writeln!(
            text,
            "# HELP {name} Seconds since the earliest running deadline or expired shutdown lease passed unclaimed (0: nothing overdue)\n# TYPE {name} gauge\n{name} {}",
            overdue.as_secs_f64(),
            name = crate::metrics::OVERDUE
        );
    }
    if let Ok(Ok(due)) = due {
        gauge(
            &mut text,
            crate::metrics::DUE_NEXT_HOUR,
            "Running meetings whose deadline falls within the next hour, overdue ones included (counted up to 10000)",
            due,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// The most `hard_limit_meetings_due_next_hour` counts: beyond it, a
/// scrape would pay for every due row.
pub const DUE_SOON_CAP: u32 = 10_000;

/// Most meetings in one `/meetings` answer (and the default): about
/// 120 KB of JSON. More come page by page (`Link: rel="next"`), so a
/// caller cannot make the service build megabyte answers.
pub const MAX_PAGE: u32 = 1000;

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A page cursor: the last meeting of the previous page, as
/// `<started_at ms>.<room id in hex>` (opaque to callers, URL-safe).
fn encode_cursor(key: &MeetingKey) -> String {
    let mut out = format!("{}.", key.started_at.0);
    for b in key.room_id.as_str().bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn decode_cursor(cursor: &str) -> Option<MeetingKey> {
    let (start, hex) = cursor.split_once('.')?;
    let started_at = Timestamp(start.parse().ok()?);
    if hex.len() % 2 != 0 || hex.len() > 2048 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let room_id = RoomId::parse(std::str::from_utf8(&bytes).ok()?).ok()?;
    Some(MeetingKey {
        room_id,
        started_at,
    })
}

async fn list_meetings(
    State(app): State<AdminState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad(
            "limit must be a whole number (cursor: as given in the Link header)",
        ));
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::bad("cursor is not valid (use the one from the Link header)")
        })?),
    };
    let since = app.clock.now().minus(FINISHED_LISTED_FOR);
    let meetings = app.store.list(since, after.as_ref(), limit).await?;
    // A full page may have a next one: link to it (RFC 8288).
    let next = (meetings.len() == limit as usize)
        .then(|| meetings.last().map(|m| encode_cursor(&m.key)))
        .flatten();
    // The limit that applied: the deadline it gave (before any operator
    // moved it) minus the start, grace included.
    let planned: std::collections::HashMap<MeetingKey, Timestamp> =
        match meetings.iter().map(|m| m.key.started_at).min() {
            Some(oldest) => app
                .store
                .planned_deadlines(oldest)
                .await?
                .into_iter()
                .collect(),
            None => Default::default(),
        };
    let body: Vec<serde_json::Value> = meetings
        .into_iter()
        .map(|m| {
            let first = planned.get(&m.key).copied();
            let limit = first.unwrap_or(m.deadline).since(m.key.started_at);
            let alone = m.alone;
            let mut v = serde_json::to_value(MeetingJson::from(m)).unwrap_or_default();
            v["limit"] = show(limit).into();
            v["moved"] = first.is_some().into();
            v["participants"] = alone.participants.into();
            v["alone_since"] = alone.since.map(Timestamp::to_rfc3339).into();
            v["ended_alone"] = alone.ended.into();
            v
        })
        .collect();
    let mut response = Json(body).into_response();
    if let Some(cursor) = next {
        let link = format!("</meetings?limit={limit}&cursor={cursor}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

fn room_from(
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<RoomId, ApiError> {
    let Ok(Path(room)) = room else {
        return Err(ApiError::bad("room_id: invalid room id in the path"));
    };
    RoomId::parse(&room).map_err(|_| ApiError::bad("room_id: invalid room id in the path"))
}

/// The body of `/extend` and `/end`. `started_at` (optional) names the
/// meeting the caller saw: if the room's open meeting is another one (that
/// one ended and a new one started), nothing changes (409).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    by: Option<String>,
    until: Option<String>,
    started_at: Option<String>,
}

const EXTEND_SHAPE: &str =
    r#"the body must be JSON: {"by": "15m"} or {"until": "2026-01-01T12:00:00Z"}"#;

fn parse_body(body: &Bytes, shape: &'static str) -> Result<MoveBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(MoveBody::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("{shape} ({e})")))
}

fn parse_time(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(value).ok_or_else(|| {
        ApiError::bad(format!(
            "{field}: {value:?} is not an ISO-8601 UTC time like 2026-01-01T12:00:00Z"
        ))
    })
}

/// The change `/extend` asks for.
fn extension(body: &MoveBody) -> Result<DeadlineChange, ApiError> {
    match (&body.by, &body.until) {
        (Some(by), None) => {
            let d = humantime::parse_duration(by.trim()).map_err(|e| {
                ApiError::bad(format!(
                    "by: {by:?} is not a duration like 15m or 1h30m ({e})"
                ))
            })?;
            crate::domain::limit_in_range(d)
                .map_err(|range| ApiError::bad(format!("by: {by:?} {range}")))?;
            Ok(DeadlineChange::By(d))
        }
        (None, Some(until)) => Ok(DeadlineChange::Until(parse_time("until", until)?)),
        (Some(_), Some(_)) => Err(ApiError::bad("give one of by and until, not both")),
        (None, None) => Err(ApiError::bad(EXTEND_SHAPE)),
    }
}

async fn extend(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let room = room_from(room)?;
    let body = parse_body(&self::body(body)?, EXTEND_SHAPE)?;
    let change = extension(&body)?;
    move_deadline(&app, peer, room, &body, change).await
}

async fn end(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let room = room_from(room)?;
    let body = parse_body(
        &self::body(body)?,
        r#"the body must be empty or JSON: {"started_at": "<the meeting's start>"}"#,
    )?;
    if body.by.is_some() || body.until.is_some() {
        return Err(ApiError::bad("end takes no by or until (use /extend)"));
    }
    move_deadline(&app, peer, room, &body, DeadlineChange::Now).await
}

async fn move_deadline(
    app: &AdminState,
    peer: SocketAddr,
    room: RoomId,
    body: &MoveBody,
    change: DeadlineChange,
) -> Result<Response, ApiError> {
    let expected = body
        .started_at
        .as_deref()
        .map(|s| parse_time("started_at", s))
        .transpose()?;
    let caller = Caller {
        addr: peer.to_string(),
    };
    let moved = app
        .store
        .move_deadline(&room, expected, change, app.clock.now(), &caller)
        .await?;
    match moved {
        DeadlineMoved::NoOpenMeeting => Err(ApiError::NotFound("no open meeting in this room")),
        DeadlineMoved::OtherMeeting(m) => Err(ApiError::Conflict(
            format!(
                "started_at: the room's open meeting started at {}, not at the one given",
                m.key.started_at.to_rfc3339()
            )
            .into(),
        )),
        DeadlineMoved::NotRunning(m) => Err(ApiError::Conflict(
            format!(
                "the meeting is {}: its shutdown is under way and its deadline can no longer move",
                m.state.as_str()
            )
            .into(),
        )),
        DeadlineMoved::Refused(why, m) => {
            let field = match change {
                DeadlineChange::By(_) => "by",
                _ => "until",
            };
            Err(ApiError::bad(match why {
                DeadlineRefused::InThePast => format!(
                    "{field}: the new deadline would be in the past (the deadline is {})",
                    m.deadline.to_rfc3339()
                ),
                DeadlineRefused::TooFar => format!(
                    "{field}: the new deadline would be more than {} from now (the deadline is {})",
                    humantime::format_duration(crate::domain::MAX_DURATION),
                    m.deadline.to_rfc3339()
                ),
            }))
        }
        DeadlineMoved::Moved { meeting, old } => {
            // This process's scheduler and warner re-plan now (an extension
            // re-arms the warning); on PostgreSQL the commit's NOTIFY wakes
            // every other replica's.
            app.wake.poke();
            let action = if change == DeadlineChange::Now {
                "end"
            } else {
                "extend"
            };
            tracing::info!(room = %room, started_at = %meeting.key.started_at, old = %old, new = %meeting.deadline, caller = %caller.addr, action, "deadline moved by an operator");
            let status = if change == DeadlineChange::Now {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let mut body = serde_json::to_value(MeetingJson::from(meeting))
                .map_err(|_| ApiError::bad("unrepresentable meeting"))?;
            body["old_deadline"] = old.to_rfc3339().into();
            Ok((status, Json(body)).into_response())
        }
    }
}

/// Most meetings a history shows.
const HISTORY_MEETINGS: u32 = 50;

async fn history(
    State(app): State<AdminState>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let room = room_from(room)?;
    let RoomHistory {
        meetings,
        actions,
        alone,
    } = app.store.history(&room, HISTORY_MEETINGS).await?;
    let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let action_json = |a: &crate::store::ActionRecord| {
        json!({
            "at": a.at.to_rfc3339(),
            "event": a.action,
            "started_at": iso(a.started_at),
            "old_deadline": iso(a.old_deadline),
            "new_deadline": iso(a.new_deadline),
            "detail": a.detail,
            "caller": a.caller,
        })
    };
    let meetings: Vec<serde_json::Value> = meetings
        .iter()
        .map(|m| {
            // The meeting's own transitions and the operator actions on it,
            // in time order.
            let mut events = vec![
                (m.view.key.started_at, json!({"at": m.view.key.started_at.to_rfc3339(), "event": "started"})),
                (m.tracked_at, json!({"at": m.tracked_at.to_rfc3339(), "event": "tracked"})),
            ];
            for a in actions.iter().filter(|a| a.started_at == Some(m.view.key.started_at)) {
                events.push((a.at, action_json(a)));
            }
            // The alone rule's story: each period ("alone"), its end by a
            // check ("company"), by a join right before the DELETE
            // ("alone_cancelled") or the end ("ended_alone" below).
            for e in alone.iter().filter(|e| e.started_at == m.view.key.started_at && e.event != "ended") {
                let event = if e.event == "cancelled" { "alone_cancelled" } else { e.event.as_str() };
                events.push((e.at, json!({"at": e.at.to_rfc3339(), "event": event, "participants": e.participants})));
            }
            if let Some(f) = m.finished_at {
                let event = if m.view.alone.ended { "ended_alone" } else { m.view.state.as_str() };
                events.push((f, json!({"at": f.to_rfc3339(), "event": event})));
            } else if m.view.state == crate::domain::MeetingState::Stopping {
                events.push((m.updated_at, json!({"at": m.updated_at.to_rfc3339(), "event": "stopping", "attempts": m.attempts})));
            }
            events.sort_by_key(|(at, _)| *at);
            json!({
                "started_at": m.view.key.started_at.to_rfc3339(),
                "deadline": m.view.deadline.to_rfc3339(),
                "state": m.view.state.as_str(),
                "tracked_at": m.tracked_at.to_rfc3339(),
                "finished_at": iso(m.finished_at),
                "attempts": m.attempts,
                "events": events.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "room_id": room.as_str(),
        "meetings": meetings,
        "actions": actions.iter().map(action_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn show(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// An alone setting as `GET /limits` and the `PUT` answers show it:
/// `"off"` or a duration.
fn show_alone(a: crate::domain::AloneAfter) -> String {
    a.to_string()
}

/// The limits in force on this process (reloaded first if another
/// process changed them): `rooms` and `prefixes` are the rules that set a
/// limit; `alone_after` the alone rule's default and the rules that set it
/// (`"off"` or a duration).
async fn list_limits(State(app): State<AdminState>) -> Response {
    let policy = app.limits.policy().await;
    let l = &policy.limits;
    let map = |v: Vec<(&str, String)>| -> serde_json::Map<String, serde_json::Value> {
        v.into_iter()
            .map(|(k, d)| (k.to_owned(), d.into()))
            .collect()
    };
    let limits = |v: Vec<(&str, Duration)>| map(v.into_iter().map(|(k, d)| (k, show(d))).collect());
    let alone = |v: Vec<(&str, Rule)>| {
        map(v
            .into_iter()
            .filter_map(|(k, r)| Some((k, show_alone(r.alone_after?))))
            .collect())
    };
    Json(json!({
        "default": show(l.default_limit()),
        "grace": show(policy.grace),
        "rooms": limits(l.rooms()),
        "prefixes": limits(l.prefixes()),
        "alone_after": {
            "default": l.default_alone_after().map_or_else(|| "off".to_owned(), show),
            "rooms": alone(l.room_rules()),
            "prefixes": alone(l.prefix_rules()),
        },
    }))
    .into_response()
}

/// What a `PUT /limits/...` body may hold.
const LIMIT_SHAPE: &str = r#"the body must be a JSON object with "limit" (a duration like "2h", or null for the default), "alone_after" (a duration like "30m", null or "off" to turn the alone rule off, "inherit" for the default), or both: {"limit": "2h", "alone_after": "30m"}"#;

/// A `PUT /limits/...` body: the parts it names change, the others stay.
fn rule_change(body: &Bytes) -> Result<RuleChange, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("{LIMIT_SHAPE} ({e})")))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(ApiError::bad(LIMIT_SHAPE));
    };
    if let Some(other) = fields.keys().find(|k| *k != "limit" && *k != "alone_after") {
        return Err(ApiError::bad(format!(
            "unknown field {other:?}: expected limit and/or alone_after"
        )));
    }
    let text = |field: &str, v: &serde_json::Value, shape: &str| match v {
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Null => Ok(None),
        other => Err(ApiError::bad(format!("{field}: {other} is not {shape}"))),
    };
    let limit = match fields.get("limit") {
        None => None,
        Some(v) => Some(match text("limit", v, r#"a duration like "2h" or null"#)? {
            None => None,
            Some(t) => {
                let d = humantime::parse_duration(t.trim()).map_err(|e| {
                    ApiError::bad(format!(
                        "limit: {t:?} is not a duration like 45m or 2h ({e})"
                    ))
                })?;
                crate::domain::limit_in_range(d)
                    .map_err(|range| ApiError::bad(format!("limit: {t:?} {range}")))?;
                Some(d)
            }
        }),
    };
    let alone_after = match fields.get("alone_after") {
        None => None,
        Some(v) => Some(
            match text(
                "alone_after",
                v,
                r#"a duration like "30m", null, "off" or "inherit""#,
            )? {
                None => Some(AloneAfter::Off),
                Some(t) if t.trim() == "inherit" => None,
                Some(t) => Some(
                    crate::domain::parse_alone_after(&t)
                        .map_err(|e| ApiError::bad(format!("alone_after: {t:?} {e}")))?,
                ),
            },
        ),
    };
    if limit.is_none() && alone_after.is_none() {
        return Err(ApiError::bad(format!(
            "neither limit nor alone_after given: {LIMIT_SHAPE}"
        )));
    }
    Ok(RuleChange { limit, alone_after })
}

/// Longest prefix accepted (room ids are short; this only bounds storage).
const MAX_PREFIX: usize = 256;

fn limit_key(
    kind: LimitKind,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    match kind {
        LimitKind::Room => Ok(room_from(key)?.as_str().to_owned()),
        LimitKind::Prefix => {
            let Ok(Path(p)) = key else {
                return Err(ApiError::bad("prefix: invalid prefix in the path"));
            };
            if p.is_empty() || p.len() > MAX_PREFIX || p.chars().any(char::is_control) {
                return Err(ApiError::bad(
                    "prefix: must be 1 to 256 characters without control characters",
                ));
            }
            Ok(p)
        }
    }
}

async fn set_limit(
    app: AdminState,
    peer: SocketAddr,
    kind: LimitKind,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Option<Bytes>,
) -> Result<Response, ApiError> {
    let key = limit_key(kind, key)?;
    let change = body.as_ref().map(rule_change).transpose()?;
    let caller = Caller {
        addr: peer.to_string(),
    };
    let changed = app
        .store
        .set_limit(kind, &key, change, app.clock.now(), &caller)
        .await?;
    // This process applies it at once; others on their NOTIFY (PostgreSQL)
    // or within the reload interval.
    app.limits.mark_stale();
    let _ = app.limits.policy().await;
    let (previous, current) = (
        changed.previous.unwrap_or_default(),
        changed.current.unwrap_or_default(),
    );
    tracing::info!(kind = kind.as_str(), key = %key, limit = ?current.limit, alone_after = ?current.alone_after, caller = %caller.addr, "limit rule changed by an operator");
    if change.is_none() && changed.previous.is_none() {
        return Err(ApiError::NotFound("no such limit"));
    }
    Ok(Json(json!({
        "kind": kind.as_str(),
        "key": key,
        "limit": current.limit.map(show),
        "alone_after": current.alone_after.map(show_alone),
        "previous": previous.limit.map(show),
        "previous_alone_after": previous.alone_after.map(show_alone),
    }))
    .into_response())
}

async fn put_room_limit(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    set_limit(app, peer, LimitKind::Room, key, Some(self::body(body)?)).await
}

async fn delete_room_limit(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    set_limit(app, peer, LimitKind::Room, key, None).await
}

async fn put_prefix_limit(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    set_limit(app, peer, LimitKind::Prefix, key, Some(self::body(body)?)).await
}

async fn delete_prefix_limit(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    set_limit(app, peer, LimitKind::Prefix, key, None).await
}
