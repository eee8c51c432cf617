//! The HTTP surface. The public listener (`--listen`): `POST /webhook`
//! ([`crate::webhook`]), `GET /healthz`, and `GET /meetings/{room_id}`, a
//! room's open meeting for whoever shows its guest token (CORS-enabled).
//! The admin listener (`--admin-listen`): everything that shows more than
//! one room or changes something, in [`admin`].

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::domain::{meeting_visible, RoomId};
use crate::store::{MeetingView, StoreError};
use crate::store_handle::Store;
use crate::webhook::{self, WebhookState};

pub mod admin;
pub mod admin_guard;

/// Finished meetings stay listed this long.
pub const FINISHED_LISTED_FOR: Duration = Duration::from_secs(3600);

/// What the public listener's handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PublicState {
    /// The store (reads).
    pub store: Store,
    /// The webhook handler's part.
    pub webhook: WebhookState,
    /// False once a background task ended: `/healthz` answers 503.
    pub tasks_ok: Arc<AtomicBool>,
    /// `--public-deadlines`: show meetings without a guest token to anyone.
    pub public_deadlines: bool,
}

/// The header for a room's guest token (not the URL: it ends up in logs).
pub const GUEST_TOKEN_HEADER: &str = "x-eyeson-guest-token";

impl FromRef<PublicState> for WebhookState {
    fn from_ref(s: &PublicState) -> Self {
        s.webhook.clone()
    }
}

/// The public listener's router.
pub fn public_router(state: PublicState) -> Router {
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route(
            "/meetings/{room_id}",
            get(room_meeting).options(room_meeting_preflight),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        .with_state(state)
}

/// An error answer: a status and a short message (details go to the log).
#[derive(Debug)]
pub enum ApiError {
    /// 404.
    NotFound(&'static str),
    /// 400, naming what was wrong.
    BadRequest(Cow<'static, str>),
    /// 409.
    Conflict(String),
    /// 413.
    TooLarge(&'static str),
    /// 503: the store failed.
    Store(StoreError),
}

impl ApiError {
    /// A 400 with a fixed or a built message.
    pub fn bad(m: impl Into<Cow<'static, str>>) -> Self {
        ApiError::BadRequest(m.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message): (_, Cow<'static, str>) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.into()),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.into()),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.into()),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failed while answering a request");
                (StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
            }
        };
        json_error(status, message)
    }
}

/// `{"error": message}` with `status`: every error answer's shape.
pub(crate) fn json_error(status: StatusCode, message: impl Serialize) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Whether the store takes writes: after a failed one, a probe (2 s) decides.
pub(crate) async fn writable(store: &Store) -> bool {
    tokio::time::timeout(Duration::from_secs(2), store.recheck_writes())
        .await
        .unwrap_or(false)
}

/// A meeting as `/meetings` shows it.
#[derive(Debug, Serialize)]
pub struct MeetingJson {
    /// Room id.
    pub room_id: String,
    /// ISO-8601 start.
    pub started_at: String,
    /// ISO-8601 deadline.
    pub deadline: String,
    /// `running`, `stopping`, `shut_down`, `ended`, `skipped` or `failed`.
    pub state: String,
    /// ISO-8601 end by the alone rule while its clock runs, else `null`.
    pub alone_deadline: Option<String>,
}

impl From<MeetingView> for MeetingJson {
    fn from(m: MeetingView) -> Self {
        MeetingJson {
            room_id: m.key.room_id.as_str().to_owned(),
            started_at: m.key.started_at.to_rfc3339(),
            deadline: m.deadline.to_rfc3339(),
            state: m.state.as_str().to_owned(),
            alone_deadline: m
                .alone
                .deadline
                .filter(|_| m.state.is_open())
                .map(|t| t.to_rfc3339()),
        }
    }
}

async fn healthz(State(app): State<PublicState>) -> Response {
    let unavailable = |m| json_error(StatusCode::SERVICE_UNAVAILABLE, m);
    if !app.tasks_ok.load(Ordering::SeqCst) {
        return unavailable("a background task stopped; the service is stopping");
    }
    // A store that refuses writes (read-only, full) cannot take deliveries.
    if !writable(&app.store).await {
        return unavailable("the last write to the store failed");
    }
    // Bounded: a probe should not hang.
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => "ok\n".into_response(),
        Ok(Err(e)) => ApiError::Store(e).into_response(),
        Err(_) => {
            tracing::error!("store did not answer the health check within 2s");
            unavailable("store unavailable")
        }
    }
}

/// CORS for a meeting page on any origin; `no-store` (it depends on a token).
fn cors(mut r: Response) -> Response {
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    r
}

async fn room_meeting(
    State(app): State<PublicState>,
    headers: HeaderMap,
    room: Result<Path<String>, PathRejection>,
) -> Response {
    // Whatever hides a meeting answers as a room without one.
    let unknown = || ApiError::NotFound("no open meeting in this room");
    let answer = async {
        // A bad path is answered here, so the 400 carries CORS headers too.
        let room = room
            .ok()
            .and_then(|Path(room)| RoomId::parse(&room).ok())
            .ok_or_else(|| ApiError::bad("invalid room id"))?;
        let presented = headers.get(GUEST_TOKEN_HEADER).map(HeaderValue::as_bytes);
        if presented.is_none() && !app.public_deadlines {
            return Err(unknown());
        }
        match app.store.current_for_room(&room).await? {
            Some(m) if meeting_visible(m.guest_token.as_ref(), presented, app.public_deadlines) => {
                Ok(Json(MeetingJson::from(m.view)))
            }
            _ => Err(unknown()),
        }
    };
    cors(answer.await.into_response())
}

async fn room_meeting_preflight() -> Response {
    let allow = [(header::ACCESS_CONTROL_ALLOW_HEADERS, GUEST_TOKEN_HEADER)];
    cors((StatusCode::NO_CONTENT, allow).into_response())
}
