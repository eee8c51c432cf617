//! The admin listener (`--admin-listen`): the console, metrics, meetings
//! and limits (answers in the README, "Endpoints"). Every request passes
//! [`admin_guard`]'s checks; with `--admin-token`, every route but the
//! console's page and script needs `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::fmt::{Display, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::admin_guard::{self, Admit, FailureThrottle, Refusal, RefusalLog};
use super::{json_error, writable, ApiError, MeetingJson, FINISHED_LISTED_FOR};
use crate::clock::Clock;
use crate::domain::{
    AloneAfter, DeadlineChange, DeadlineRefused, MeetingKey, MeetingState, RoomId, Rule, Timestamp,
};
use crate::limits::LimitsHandle;
use crate::metrics::{ADMIN_AUTH_FAILURES, ADMIN_REFUSED};
use crate::secrets::AdminToken;
use crate::store::{ActionRecord, Caller, DeadlineMoved, LimitKind, MeetingView, RuleChange};
use crate::store_handle::Store;
use crate::wake::Wake;

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
    pub wake: Arc<Wake>,
    /// The limits in force.
    pub limits: Arc<LimitsHandle>,
    /// The address the admin listener is bound to (its own `Host`).
    pub listen: SocketAddr,
    /// `--admin-host`: further names its `Host` may carry.
    pub hosts: Arc<[String]>,
    /// Failed authentications per address.
    pub failures: Arc<FailureThrottle>,
    /// Refused requests, for the log.
    pub refusals: Arc<RefusalLog>,
    /// False once a background task ended (shared with `/healthz`).
    pub tasks_ok: Arc<AtomicBool>,
}

/// The admin listener's router (`::<true>`: the `/end` and prefix variants).
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(console))
        .route("/console.js", get(console_script))
        .route("/metrics", get(render_metrics))
        .route("/meetings", get(list_meetings))
        .route("/meetings/{room_id}/history", get(history))
        .route("/meetings/{room_id}/extend", post(move_deadline::<false>))
        .route("/meetings/{room_id}/end", post(move_deadline::<true>))
        .route("/limits", get(list_limits))
        .merge(limit_rules::<false>())
        .merge(limit_rules::<true>())
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        // On every route, the fallback included.
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

type PathArg = Result<Path<String>, PathRejection>;
type BodyArg = Result<Bytes, BytesRejection>;

/// A room's (`PREFIX` false) or a prefix's rule routes, and a 400 for an empty key.
fn limit_rules<const PREFIX: bool>() -> Router<AdminState> {
    let (base, field) = match PREFIX {
        true => ("/limits/prefixes/", "prefix"),
        false => ("/limits/rooms/", "room_id"),
    };
    let empty = move || async move {
        ApiError::bad(format!(
            "{field}: must not be empty (it is the last part of the path)"
        ))
    };
    let rule = put(set_limit::<PREFIX>).delete(set_limit::<PREFIX>);
    let router = Router::new().route(&format!("{base}{{{field}}}"), rule);
    router.route(base, put(empty).delete(empty))
}

/// [`admin_guard::check`], then the token, slowed down after failures.
async fn guard(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = admin_guard::check(req.method(), req.headers(), app.listen, &app.hosts) {
        ::metrics::counter!(ADMIN_REFUSED, "reason" => refusal.reason()).increment(1);
        if let Some(count) = admin_guard::lock(&app.refusals).count(Instant::now()) {
            tracing::warn!(caller = %peer, reason = refusal.reason(), path = %req.uri().path(), count, "admin requests refused (another Host or origin, or a change that is not JSON)");
        }
        let status = if refusal == Refusal::ContentType {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::FORBIDDEN
        };
        return json_error(status, refusal.message());
    }
    let public = matches!(req.uri().path(), "/" | "/console.js");
    let Some(token) = app.token.as_ref().filter(|_| !public) else {
        return next.run(req).await;
    };
    let now = Instant::now();
    if let Admit::Wait { retry_after, log } = app.failures.admit(peer.ip(), now) {
        ::metrics::counter!(ADMIN_REFUSED, "reason" => "throttled").increment(1);
        ::metrics::counter!(ADMIN_AUTH_FAILURES).increment(1);
        if let Some(count) = log {
            tracing::warn!(caller = %peer.ip(), count, "failed admin authentications from this address; it is slowed down");
        }
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let error = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; try again shortly",
        );
        return ([(header::RETRY_AFTER, HeaderValue::from(secs))], error).into_response();
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let token = token.expose().as_bytes();
    if presented.is_some_and(|p| crate::domain::secrets_match(token, p.as_bytes())) {
        return next.run(req).await;
    }
    ::metrics::counter!(ADMIN_AUTH_FAILURES).increment(1);
    if let Some(count) = app.failures.failed(peer.ip(), now) {
        tracing::warn!(caller = %peer.ip(), count, "failed admin authentications from this address (missing or wrong token)");
    }
    let error = json_error(
        StatusCode::UNAUTHORIZED,
        "the admin token is missing or wrong (Authorization: Bearer <token>)",
    );
    let challenge = "Bearer realm=\"eyeson-hard-limit admin\"";
    ([(header::WWW_AUTHENTICATE, challenge)], error).into_response()
}

/// The console's policy: this origin's scripts only, no eval, no framing.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's page and script, compiled in.
async fn console() -> impl IntoResponse {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, include_str!("console.html"))
}

async fn console_script() -> impl IntoResponse {
    let headers = [
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (headers, include_str!("console.js"))
}

/// A body, or the JSON error for one over 2 MiB or unreadable.
fn body(b: BodyArg) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("the body is larger than 2 MiB")
        } else {
            ApiError::bad("the body could not be read")
        }
    })
}

/// The recorder's metrics, the meetings by state, then health and due-work
/// gauges computed now (here, so services sharing a process do not show
/// each other's). A due-work gauge whose read takes over 1 s is left out.
async fn render_metrics(State(app): State<AdminState>) -> impl IntoResponse {
    use crate::metrics::{DUE_NEXT_HOUR, OVERDUE, STORE_WRITABLE, TASKS_OK};
    let mut text = app.metrics.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    app.store.gauges().render(&mut text);
    let mut gauge = |name: &str, help: &str, value: &dyn Display| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        TASKS_OK,
        "1 while every background task runs, 0 once one ended (the service is stopping)",
        &u64::from(app.tasks_ok.load(Ordering::SeqCst)),
    );
    gauge(
        STORE_WRITABLE,
        "1 when the last write to the store (or a probe write after a failed one) committed, else 0",
        &u64::from(writable(&app.store).await),
    );
    let now = app.clock.now();
    let bound = Duration::from_secs(1);
    let hour_ahead = now.plus(Duration::from_secs(3600));
    let (next, due) = tokio::join!(
        tokio::time::timeout(bound, app.store.next_wake()),
        tokio::time::timeout(bound, app.store.count_due_before(hour_ahead, DUE_SOON_CAP)),
    );
    if let Ok(Ok(next)) = next {
        let overdue = next.map_or(Duration::ZERO, |t| now.since(t));
        gauge(
            OVERDUE,
            "Seconds since the earliest running deadline or expired shutdown lease passed unclaimed (0: nothing overdue)",
            &overdue.as_secs_f64(),
        );
    }
    if let Ok(Ok(due)) = due {
        gauge(
            DUE_NEXT_HOUR,
            "Running meetings whose deadline falls within the next hour, overdue ones included (counted up to 10000)",
            &due,
        );
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text)
}

/// The most `hard_limit_meetings_due_next_hour` counts (a scrape's cost).
pub const DUE_SOON_CAP: u32 = 10_000;

/// Most meetings in one `/meetings` page (and the default): about 120 KB.
pub const MAX_PAGE: u32 = 1000;

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A page cursor: `<started_at ms>.<room id in hex>` of the last meeting.
fn encode_cursor(key: &MeetingKey) -> String {
    let room = key.room_id.as_str();
    let hex: String = room.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{}.{hex}", key.started_at.0)
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

fn meeting_json(m: MeetingView) -> Value {
    serde_json::to_value(MeetingJson::from(m)).unwrap_or_default()
}

async fn list_meetings(
    State(app): State<AdminState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::bad("limit must be a whole number (cursor: as given in the Link header)")
    })?;
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let bad_cursor = || ApiError::bad("cursor is not valid (use the one from the Link header)");
    let after = (q.cursor.map(|c| decode_cursor(&c).ok_or_else(bad_cursor))).transpose()?;
    let since = app.clock.now().minus(FINISHED_LISTED_FOR);
    let meetings = app.store.list(since, after.as_ref(), limit).await?;
    // A full page may have a next one (RFC 8288).
    let next = meetings.last().filter(|_| meetings.len() == limit as usize);
    let link = next.and_then(|m| {
        let link = format!("</meetings?limit={limit}&cursor={}>", encode_cursor(&m.key));
        HeaderValue::from_str(&format!("{link}; rel=\"next\"")).ok()
    });
    // The limit that applied: the first deadline minus the start.
    let planned: HashMap<MeetingKey, Timestamp> =
        match meetings.iter().map(|m| m.key.started_at).min() {
            Some(oldest) => HashMap::from_iter(app.store.planned_deadlines(oldest).await?),
            None => HashMap::new(),
        };
    let body: Vec<Value> = meetings
        .into_iter()
        .map(|m| {
            let first = planned.get(&m.key).copied();
            let limit = first.unwrap_or(m.deadline).since(m.key.started_at);
            let alone = m.alone;
            let mut v = meeting_json(m);
            v["limit"] = show(limit).into();
            v["moved"] = first.is_some().into();
            v["participants"] = alone.participants.into();
            v["alone_since"] = alone.since.map(Timestamp::to_rfc3339).into();
            v["ended_alone"] = alone.ended.into();
            v
        })
        .collect();
    Ok((link.map(|v| [(header::LINK, v)]), Json(body)).into_response())
}

fn room_from(room: PathArg) -> Result<RoomId, ApiError> {
    room.ok()
        .and_then(|Path(room)| RoomId::parse(&room).ok())
        .ok_or_else(|| ApiError::bad("room_id: invalid room id in the path"))
}

/// `/extend`'s and `/end`'s body; `started_at` names the meeting seen (else 409).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    by: Option<String>,
    until: Option<String>,
    started_at: Option<String>,
}

const EXTEND_SHAPE: &str =
    r#"the body must be JSON: {"by": "15m"} or {"until": "2026-01-01T12:00:00Z"}"#;
const END_SHAPE: &str =
    r#"the body must be empty or JSON: {"started_at": "<the meeting's start>"}"#;

fn parse_time(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(value).ok_or_else(|| {
        ApiError::bad(format!(
            "{field}: {value:?} is not an ISO-8601 UTC time like 2026-01-01T12:00:00Z"
        ))
    })
}

/// `text` as a duration in the range a limit (or an extension) may take.
fn limit_duration(field: &str, text: &str, like: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        ApiError::bad(format!(
            "{field}: {text:?} is not a duration like {like} ({e})"
        ))
    })?;
    crate::domain::limit_in_range(d)
        .map_err(|range| ApiError::bad(format!("{field}: {text:?} {range}")))?;
    Ok(d)
}

/// `/extend` (`END` false) or `/end` for the room's open meeting.
async fn move_deadline<const END: bool>(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    room: PathArg,
    body: BodyArg,
) -> Result<Response, ApiError> {
    let room = room_from(room)?;
    let body = self::body(body)?;
    let body: MoveBody = if body.iter().all(u8::is_ascii_whitespace) {
        MoveBody::default()
    } else {
        let shape = if END { END_SHAPE } else { EXTEND_SHAPE };
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("{shape} ({e})")))?
    };
    let change = match (END, &body.by, &body.until) {
        (true, None, None) => DeadlineChange::Now,
        (true, ..) => return Err(ApiError::bad("end takes no by or until (use /extend)")),
        (false, Some(by), None) => DeadlineChange::By(limit_duration("by", by, "15m or 1h30m")?),
        (false, None, Some(until)) => DeadlineChange::Until(parse_time("until", until)?),
        (false, Some(_), Some(_)) => {
            return Err(ApiError::bad("give one of by and until, not both"))
        }
        (false, None, None) => return Err(ApiError::bad(EXTEND_SHAPE)),
    };
    let expected = body
        .started_at
        .as_deref()
        .map(|s| parse_time("started_at", s))
        .transpose()?;
    let addr = peer.to_string();
    let caller = Caller { addr };
    let moved = (app.store).move_deadline(&room, expected, change, app.clock.now(), &caller);
    let error = match moved.await? {
        DeadlineMoved::Moved { meeting, old } => {
            // Other replicas are woken by the commit's NOTIFY (PostgreSQL).
            app.wake.poke();
            let (action, status) = if END {
                ("end", StatusCode::ACCEPTED)
            } else {
                ("extend", StatusCode::OK)
            };
            tracing::info!(room = %room, started_at = %meeting.key.started_at, old = %old, new = %meeting.deadline, caller = %caller.addr, action, "deadline moved by an operator");
            let mut body = meeting_json(meeting);
            body["old_deadline"] = old.to_rfc3339().into();
            return Ok((status, Json(body)).into_response());
        }
        DeadlineMoved::NoOpenMeeting => ApiError::NotFound("no open meeting in this room"),
        DeadlineMoved::OtherMeeting(m) => ApiError::Conflict(format!(
            "started_at: the room's open meeting started at {}, not at the one given",
            m.key.started_at.to_rfc3339()
        )),
        DeadlineMoved::NotRunning(m) => ApiError::Conflict(format!(
            "the meeting is {}: its shutdown is under way and its deadline can no longer move",
            m.state.as_str()
        )),
        DeadlineMoved::Refused(why, m) => {
            let field = match change {
                DeadlineChange::By(_) => "by",
                _ => "until",
            };
            let would_be = match why {
                DeadlineRefused::InThePast => "in the past".to_owned(),
                DeadlineRefused::TooFar => format!(
                    "more than {} from now",
                    humantime::format_duration(crate::domain::MAX_DURATION)
                ),
            };
            ApiError::bad(format!(
                "{field}: the new deadline would be {would_be} (the deadline is {})",
                m.deadline.to_rfc3339()
            ))
        }
    };
    Err(error)
}

/// Most meetings a history shows.
const HISTORY_MEETINGS: u32 = 50;

async fn history(State(app): State<AdminState>, room: PathArg) -> Result<Json<Value>, ApiError> {
    let room = room_from(room)?;
    let h = app.store.history(&room, HISTORY_MEETINGS).await?;
    let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let action_json = |a: &ActionRecord| {
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
    let event = |at: Timestamp, event: &str| (at, json!({"at": at.to_rfc3339(), "event": event}));
    let meetings: Vec<Value> = (h.meetings.iter())
        .map(|m| {
            // Its transitions and operator actions, in time order.
            let start = m.view.key.started_at;
            let mut events = vec![event(start, "started"), event(m.tracked_at, "tracked")];
            let own = h.actions.iter().filter(|a| a.started_at == Some(start));
            events.extend(own.map(|a| (a.at, action_json(a))));
            // Alone periods: "alone", then "company", "alone_cancelled" (a
            // join right before the DELETE) or "ended_alone" (below).
            let periods = h.alone.iter().filter(|e| e.started_at == start);
            for e in periods.filter(|e| e.event != "ended") {
                let name = match e.event.as_str() {
                    "cancelled" => "alone_cancelled",
                    other => other,
                };
                let (at, mut v) = event(e.at, name);
                v["participants"] = e.participants.into();
                events.push((at, v));
            }
            if let Some(f) = m.finished_at {
                let ended_alone = m.view.alone.ended.then_some("ended_alone");
                events.push(event(f, ended_alone.unwrap_or(m.view.state.as_str())));
            } else if m.view.state == MeetingState::Stopping {
                let (at, mut v) = event(m.updated_at, "stopping");
                v["attempts"] = m.attempts.into();
                events.push((at, v));
            }
            events.sort_by_key(|(at, _)| *at);
            json!({
                "started_at": start.to_rfc3339(),
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
        "actions": h.actions.iter().map(action_json).collect::<Vec<_>>(),
    })))
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The limits in force (reloaded first if another process changed them).
async fn list_limits(State(app): State<AdminState>) -> Json<Value> {
    let policy = app.limits.policy().await;
    let l = &policy.limits;
    let limits = |v: Vec<(&str, Duration)>| -> Map<String, Value> {
        v.into_iter()
            .map(|(k, d)| (k.into(), show(d).into()))
            .collect()
    };
    let alone = |v: Vec<(&str, Rule)>| -> Map<String, Value> {
        v.into_iter()
            .filter_map(|(k, r)| Some((k.into(), r.alone_after?.to_string().into())))
            .collect()
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
}

const LIMIT_SHAPE: &str = r#"the body must be a JSON object with "limit" (a duration like "2h", or null for the default), "alone_after" (a duration like "30m", null or "off" to turn the alone rule off, "inherit" for the default), or both: {"limit": "2h", "alone_after": "30m"}"#;

/// A `PUT /limits/...` body: the parts it names change.
fn rule_change(body: &Bytes) -> Result<RuleChange, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("{LIMIT_SHAPE} ({e})")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad(LIMIT_SHAPE));
    };
    if let Some(other) = fields.keys().find(|k| *k != "limit" && *k != "alone_after") {
        return Err(ApiError::bad(format!(
            "unknown field {other:?}: expected limit and/or alone_after"
        )));
    }
    // A field's text: absent (None), null (Some(None)) or a string.
    let text = |field: &str, shape: &str| {
        let text = fields.get(field).map(|v| match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(ApiError::bad(format!("{field}: {other} is not {shape}"))),
        });
        text.transpose()
    };
    let limit = match text("limit", r#"a duration like "2h" or null"#)? {
        Some(Some(t)) => Some(Some(limit_duration("limit", &t, "45m or 2h")?)),
        Some(None) => Some(None),
        None => None,
    };
    let shape = r#"a duration like "30m", null, "off" or "inherit""#;
    let alone_after = match text("alone_after", shape)? {
        None => None,
        Some(None) => Some(Some(AloneAfter::Off)),
        Some(Some(t)) if t.trim() == "inherit" => Some(None),
        Some(Some(t)) => {
            Some(Some(crate::domain::parse_alone_after(&t).map_err(|e| {
                ApiError::bad(format!("alone_after: {t:?} {e}"))
            })?))
        }
    };
    if limit.is_none() && alone_after.is_none() {
        return Err(ApiError::bad(format!(
            "neither limit nor alone_after given: {LIMIT_SHAPE}"
        )));
    }
    Ok(RuleChange { limit, alone_after })
}

/// Longest prefix accepted (this only bounds storage).
const MAX_PREFIX: usize = 256;

/// `PUT` or `DELETE` of a room's (`PREFIX` false) or a prefix's rule.
async fn set_limit<const PREFIX: bool>(
    State(app): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    key: PathArg,
    body: BodyArg,
) -> Result<Json<Value>, ApiError> {
    let body = (method != Method::DELETE)
        .then(|| self::body(body))
        .transpose()?;
    let (kind, key) = if PREFIX {
        let Ok(Path(p)) = key else {
            return Err(ApiError::bad("prefix: invalid prefix in the path"));
        };
        if p.is_empty() || p.len() > MAX_PREFIX || p.chars().any(char::is_control) {
            return Err(ApiError::bad(
                "prefix: must be 1 to 256 characters without control characters",
            ));
        }
        (LimitKind::Prefix, p)
    } else {
        (LimitKind::Room, room_from(key)?.as_str().to_owned())
    };
    let change = body.as_ref().map(rule_change).transpose()?;
    let addr = peer.to_string();
    let caller = Caller { addr };
    let changed = (app.store).set_limit(kind, &key, change, app.clock.now(), &caller);
    let changed = changed.await?;
    if change.is_none() && changed.previous.is_none() {
        return Err(ApiError::NotFound("no such limit"));
    }
    // Others apply it on their NOTIFY (PostgreSQL) or reload.
    app.limits.mark_stale();
    let _ = app.limits.policy().await;
    let previous = changed.previous.unwrap_or_default();
    let current = changed.current.unwrap_or_default();
    tracing::info!(kind = kind.as_str(), key = %key, limit = ?current.limit, alone_after = ?current.alone_after, caller = %caller.addr, "limit rule changed by an operator");
    let alone = |a: Option<AloneAfter>| a.map(|a| a.to_string());
    Ok(Json(json!({
        "kind": kind.as_str(),
        "key": key,
        "limit": current.limit.map(show),
        "alone_after": alone(current.alone_after),
        "previous": previous.limit.map(show),
        "previous_alone_after": alone(previous.alone_after),
    })))
}
