//! The HTTP surface: routes, the read-only endpoints, and the error type.
//!
//! | route | what |
//! |---|---|
//! | `POST /webhook` | eyeson's deliveries ([`crate::webhook`]) |
//! | `GET /healthz` | 200 when the store answers and its last write committed, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `GET /meetings?limit=N&cursor=C` | tracked meetings (open, and finished within the last hour), at most 1000 a page, `Link: rel="next"` to the next |
//! | `GET /meetings/{room_id}` | the room's open meeting and deadline, 404 if none; CORS-enabled |

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::AppState;
use crate::domain::{MeetingKey, RoomId, Timestamp};
use crate::metrics;
use crate::store::{MeetingStore, MeetingView, StoreError};
use crate::webhook;

/// Finished meetings stay listed this long.
pub const FINISHED_LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/meetings", get(list_meetings))
        .route(
            "/meetings/{room_id}",
            get(room_meeting).options(room_meeting_preflight),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        .with_state(state)
}

/// An error answer: a status and a short message. Internal details go to
/// the log, never to the client.
#[derive(Debug)]
pub enum ApiError {
    /// 404.
    NotFound(&'static str),
    /// 400.
    BadRequest(&'static str),
    /// 500/503: the store failed.
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failed while answering a request");
                (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// A meeting as `/meetings` shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MeetingJson {
    /// Room id.
    pub room_id: String,
    /// ISO-8601 start.
    pub started_at: String,
    /// ISO-8601 deadline.
    pub deadline: String,
    /// `running`, `stopping`, `shut_down`, `ended`, `skipped` or `failed`.
    pub state: String,
}

impl From<MeetingView> for MeetingJson {
    fn from(m: MeetingView) -> Self {
        MeetingJson {
            room_id: m.key.room_id.as_str().to_owned(),
            started_at: m.key.started_at.to_rfc3339(),
            deadline: m.deadline.to_rfc3339(),
            state: m.state.as_str().to_owned(),
        }
    }
}

async fn healthz(State(app): State<AppState>) -> Response {
    // A dead background task (scheduler, reconciler, webhook writer): the
    // service is stopping, and until then it cannot keep its promises.
    if !app.tasks_ok.load(std::sync::atomic::Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "a background task stopped; the service is stopping"})),
        )
            .into_response();
    }
    // A store that answers reads but refuses writes (read-only, full)
    // loses nothing only by answering 503 to every delivery: not healthy.
    // After a failed write the check commits a probe write itself, so an
    // idle service recovers without waiting for traffic.
    let writable = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        app.store.recheck_writes(),
    )
    .await
    .unwrap_or(false);
    if !writable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the last write to the store failed"})),
        )
            .into_response();
    }
    // Bounded: a database that does not answer is as unhealthy as one that
    // refuses (a load balancer's probe should not hang).
    match tokio::time::timeout(std::time::Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => "ok\n".into_response(),
        Ok(Err(e)) => ApiError::Store(e).into_response(),
        Err(_) => {
            tracing::error!("store did not answer the health check within 2s");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn render_metrics(State(app): State<AppState>) -> Response {
    match app.store.count_by_state().await {
        Ok(counts) => metrics::meetings(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count meetings for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        app.metrics.render(),
    )
        .into_response()
}

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
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::BadRequest(
            "limit must be a whole number (cursor: as given in the Link header)",
        ));
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or(ApiError::BadRequest(
            "cursor is not valid (use the one from the Link header)",
        ))?),
    };
    let since = app.clock.now().minus(FINISHED_LISTED_FOR);
    let meetings = app.store.list(since, after.as_ref(), limit).await?;
    // A full page may have a next one: link to it (RFC 8288).
    let next = (meetings.len() == limit as usize)
        .then(|| meetings.last().map(|m| encode_cursor(&m.key)))
        .flatten();
    let body: Vec<MeetingJson> = meetings.into_iter().map(MeetingJson::from).collect();
    let mut response = Json(body).into_response();
    if let Some(cursor) = next {
        let link = format!("</meetings?limit={limit}&cursor={cursor}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

async fn room_meeting(
    State(app): State<AppState>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let answer = async {
        // A path that does not decode (say `%FF`) is answered here, not by
        // axum's rejection, so the 400 carries the CORS headers too.
        let Ok(Path(room)) = room else {
            return Err(ApiError::BadRequest("invalid room id"));
        };
        let room = RoomId::parse(&room).map_err(|_| ApiError::BadRequest("invalid room id"))?;
        match app.store.current_for_room(&room).await? {
            Some(m) => Ok(Json(MeetingJson::from(m))),
            None => Err(ApiError::NotFound("no open meeting in this room")),
        }
    }
    .await;
    cors(answer.into_response())
}

async fn room_meeting_preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}
