//! The REST adapter: routes, eyeson's error answers, CORS, the request log
//! line, and the script's fault layer in front of the routes.
//!
//! `GET /rooms/{x}`, the SDK's `DELETE /rooms/{access_key}` and the API-key
//! `DELETE /rooms/{room_id}` share one path shape; like eyeson, the
//! `Authorization` header tells them apart.

use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use eyeson_api::paths;
use eyeson_api::wire::{GuestJoinForm, MessageForm, RegisterWebhookForm};
use serde::Deserialize;
use serde_json::json;

use crate::meetings::{BotError, KeyError, MessageError, RoomError, VoiceError};
use crate::request::Params;
use crate::room::room_json;
use crate::state::AppState;
use crate::{cable, pages, script, sepp};

/// eyeson's error answers, as `{"error": "…"}`.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No `Authorization` header.
    Unauthorized,
    /// A wrong API key.
    Forbidden,
    NotFound(&'static str),
    /// The access key's meeting was shut down.
    Gone,
    /// No meeting runs for the guest token.
    GoneGuest,
    BadRequest(&'static str),
    /// The request does not fit the current state.
    Conflict(&'static str),
    /// The API key is locked (eyeson: usage limits exceeded).
    Locked,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "missing API key"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "invalid API key"),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what),
            ApiError::Gone => (StatusCode::GONE, "the meeting has ended"),
            ApiError::GoneGuest => (
                StatusCode::GONE,
                "no meeting is running for this guest token",
            ),
            ApiError::BadRequest(what) => (StatusCode::BAD_REQUEST, what),
            ApiError::Conflict(what) => (StatusCode::CONFLICT, what),
            ApiError::Locked => (
                StatusCode::LOCKED,
                "the API key is locked (usage limits exceeded)",
            ),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::Unknown => ApiError::NotFound("unknown room"),
            RoomError::Gone => ApiError::Gone,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unknown => ApiError::NotFound("unknown access key"),
            KeyError::Gone => ApiError::Gone,
            KeyError::Locked => ApiError::Locked,
        }
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(paths::ROOMS, get(list_rooms).post(create_room))
        .route(paths::ROOM_ROUTE, get(get_room).delete(delete_room))
        .route(paths::ROOM_USERS_ROUTE, get(room_users))
        .route("/rooms/{key}/users/{user_id}", get(get_user))
        .route(paths::MESSAGES_ROUTE, post(post_message))
        .route(paths::GUEST_ROUTE, post(guest_join))
        .route(paths::WEBHOOKS, get(get_webhook).post(post_webhook))
        .route(paths::WEBHOOK_ROUTE, delete(delete_webhook))
        .route("/rt", get(cable_socket))
        .route("/sig/{key}", get(sepp_socket))
        .route("/_sandbox/events", get(events))
        .route("/_sandbox/voice", post(voice))
        .route("/_sandbox/lock", post(lock))
        .route("/_sandbox/faults", post(faults))
        .route("/_sandbox/bots", post(bots))
        .route("/meeting/{key}", get(pages::meeting))
        .route("/join", get(pages::join))
        .route("/_sandbox/meeting.js", get(pages::script))
        .route("/_sandbox/eyeson.js", get(pages::sdk))
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        .layer(middleware::from_fn_with_state(
            state.script.clone(),
            script::layer,
        ))
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One line per request. The query string is left out (it carries tokens)
/// and access keys in the path are shortened (they are credentials).
async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), redact(request.uri().path()));
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} {} {}ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

/// Shortens every path segment shaped like one of the sandbox's keys (24
/// letters and digits) to its first four characters: `/rooms/AbCd…`.
fn redact(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.len() == 24 && seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                format!("{}…", &seg[..4])
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn keys_are_shortened_and_room_ids_kept() {
        assert_eq!(redact("/rooms/abcdefghijklmnopqrstuvwx"), "/rooms/abcd…");
        assert_eq!(
            redact("/rooms/abcdefghijklmnopqrstuvwx/users/ABCDEFGHIJKLMNOPQRSTUVWX"),
            "/rooms/abcd…/users/ABCD…"
        );
        assert_eq!(redact("/rooms/standup"), "/rooms/standup");
        assert_eq!(
            redact("/sig/abcdefghijklmnopqrstuvw-"),
            "/sig/abcdefghijklmnopqrstuvw-"
        );
    }
}

/// The SDK runs on the page's origin and calls the sandbox cross-origin.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let asked = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            asked.unwrap_or(HeaderValue::from_static("*")),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(request).await
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// Checks the `Authorization` header (the raw key, no `Bearer`): `401`
/// without, `403` a wrong key, `423` the right one while it is locked.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    check_key(state, headers)?;
    if state.with(|s| s.locked()) {
        return Err(ApiError::Locked);
    }
    Ok(())
}

/// The API key's `401`/`403` alone.
fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?;
    if state.with(|s| given.as_bytes() == s.api_key().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The host the client reached us on, for the links we hand out.
pub(crate) fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8043")
        .to_owned()
}

/// The request's parameters: the query string merged with a form or JSON
/// body, the body winning (see [`crate::request::params`]). Every handler
/// that takes parameters extracts them so; a bad request is its handler's
/// to report, after the API key (eyeson answers 401 before 400).
struct Given(Result<Params, &'static str>);

impl Given {
    fn params(self) -> Result<Params, ApiError> {
        self.0.map_err(ApiError::BadRequest)
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Given {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let given = match Bytes::from_request(req, state).await {
            Ok(body) => crate::request::params(query.as_deref(), content_type.as_deref(), &body),
            Err(_) => Err("the body could not be read"),
        };
        Ok(Given(given))
    }
}

async fn create_room(
    State(state): State<AppState>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let form = given.params()?;
    let user = form
        .get("user[name]")
        .filter(|n| !n.is_empty())
        .ok_or(ApiError::BadRequest("user[name] is required"))?;
    let room_id = form.get("id").filter(|id| !id.is_empty());
    let name = form.get("name").filter(|n| !n.is_empty());
    let session = state
        .with(|s| s.create_or_join(room_id.map(String::as_str), name.map(String::as_str), user));
    Ok((
        StatusCode::CREATED,
        Json(room_json(&session, &host(&headers))),
    )
        .into_response())
}

/// `GET /rooms`: the running meetings, as the script shapes the list (a
/// cap, pages linked with `Link: rel="next"`).
async fn list_rooms(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let running = state.with(|s| s.running());
    let (rooms, next) = state.script(|s| s.list(running, query.as_deref()));
    let mut response = Json(rooms).into_response();
    if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn get_room(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = state.with(|s| s.session(&key))?;
    Ok(Json(room_json(&session, &host(&headers))).into_response())
}

async fn delete_room(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = SystemTime::now();
    if headers.contains_key(header::AUTHORIZATION) {
        // The core refuses a locked key itself, to log the 423 as `api_delete`.
        check_key(&state, &headers)?;
        let (status, effects) = state.with(|s| s.api_delete(&key, now));
        state.apply(effects);
        return match status {
            204 => Ok(StatusCode::NO_CONTENT.into_response()),
            423 => Err(ApiError::Locked),
            _ => Err(ApiError::NotFound("no meeting is running in this room")),
        };
    }
    let effects = state.with(|s| s.key_delete(&key, now))?;
    state.apply(effects);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /guests/{guest_token}` (form `name`): joins the running meeting as
/// a guest; `201` with the room JSON, `410` when no meeting runs for the
/// token, `400` without a name.
async fn guest_join(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    let form = given.params()?;
    let name = form
        .get(GuestJoinForm::NAME)
        .filter(|n| !n.trim().is_empty())
        .ok_or(ApiError::BadRequest("name is required"))?;
    let session = state
        .with(|s| s.guest_join(&token, name, SystemTime::now()))
        .map_err(|e| match e {
            KeyError::Locked => ApiError::Locked,
            KeyError::Unknown | KeyError::Gone => ApiError::GoneGuest,
        })?;
    Ok((
        StatusCode::CREATED,
        Json(room_json(&session, &host(&headers))),
    )
        .into_response())
}

/// `POST /rooms/{access_key}/messages` (form `type=chat`, `content`): `201`
/// once pushed to every connected SDK of the meeting.
async fn post_message(
    State(state): State<AppState>,
    Path(key): Path<String>,
    given: Given,
) -> Result<Response, ApiError> {
    let form = given.params()?;
    let (push, event) = state
        .with(|s| {
            s.message(
                &key,
                form.get(MessageForm::TYPE).map(String::as_str),
                form.get(MessageForm::CONTENT).map(String::as_str),
                SystemTime::now(),
            )
        })
        .map_err(|e| match e {
            MessageError::Key(k) => ApiError::from(k),
            MessageError::Invalid(what) => ApiError::BadRequest(what),
        })?;
    let reached = state.push_cable(&push);
    state.with(|s| s.chat_reached(event, reached));
    Ok(StatusCode::CREATED.into_response())
}

async fn get_user(
    State(state): State<AppState>,
    Path((key, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match state.with(|s| s.user(&key, &user_id))? {
        Some(user) => Ok(Json(user).into_response()),
        None => Err(ApiError::NotFound("unknown user")),
    }
}

/// `GET /rooms/{room_id}/users?online=true|false` (API key): the
/// participants of the room's pending or running meeting, or those
/// connected now. `400` a bad `online`; `404` a room that never had a
/// meeting; `410` its last meeting ended.
async fn room_users(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let given = given.params()?;
    let online = crate::request::online(&given).map_err(ApiError::BadRequest)?;
    let users = state.with(|s| s.room_users(&room_id, online))?;
    Ok(Json(users).into_response())
}

async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    match state.with(|s| s.webhook().cloned()) {
        Some(hook) => Ok(Json(hook).into_response()),
        None => Err(ApiError::NotFound("no webhook registered")),
    }
}

async fn post_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let form = given.params()?;
    let url = form
        .get(RegisterWebhookForm::URL)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or(ApiError::BadRequest("url must be an http(s) URL"))?;
    let types = form
        .get(RegisterWebhookForm::TYPES)
        .map(String::as_str)
        .unwrap_or_default();
    if types.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "types is required (one comma-separated string)",
        ));
    }
    let hook = state.with(|s| s.set_webhook(url, types));
    Ok((StatusCode::CREATED, Json(hook)).into_response())
}

async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    if state.with(|s| s.delete_webhook(&id)) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound("unknown webhook"))
    }
}

async fn events(State(state): State<AppState>) -> Response {
    Json(state.with(|s| s.events().to_vec())).into_response()
}

/// The testing control: the user behind `access_key` starts (`on`) or stops
/// speaking; everyone in their call gets SEPP `voice_activity`. No API key,
/// like the event log: the demo page drives it with an access key.
async fn voice(State(state): State<AppState>, given: Given) -> Result<Response, ApiError> {
    let given = given.params()?;
    let (key, on) = crate::request::voice(&given).map_err(ApiError::BadRequest)?;
    let effects = state
        .with(|s| s.voice(&key, on, SystemTime::now()))
        .map_err(|e| match e {
            VoiceError::Key(k) => ApiError::from(k),
            VoiceError::NotInCall => ApiError::Conflict("the user is not in the call"),
        })?;
    state.apply(effects);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The testing control `POST /_sandbox/lock` (`api_key`, `on`): every call
/// of the key's account answers 423 while it is locked, as eyeson's does
/// once usage limits are exceeded. `204`; `400` a bad field; `403` not the
/// sandbox's key.
async fn lock(State(state): State<AppState>, given: Given) -> Result<Response, ApiError> {
    let given = given.params()?;
    let (key, on) = crate::request::lock(&given).map_err(ApiError::BadRequest)?;
    state
        .with(|s| s.set_locked(&key, on, SystemTime::now()))
        .map_err(|_| ApiError::Forbidden)?;
    tracing::info!(locked = on, "API key lock changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The testing control `POST /_sandbox/faults` (API key; `method`,
/// `path`, `faults`, `standing`, see [`crate::request::faults`]): the next
/// requests of the route get the faults, or all of them a standing one.
/// `204`; `400` a bad field; `401`/`403` the API key.
async fn faults(
    State(state): State<AppState>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    check_key(&state, &headers)?;
    let given = given.params()?;
    let r = crate::request::faults(&given).map_err(ApiError::BadRequest)?;
    tracing::info!(method = %r.method, path = %redact(&r.path), faults = r.faults.len(), "faults scripted");
    state.script(|s| {
        if r.standing {
            s.standing(r.method, &r.path, r.faults.into_iter().next());
        } else {
            s.push(r.method, &r.path, r.faults);
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The testing control `POST /_sandbox/bots` (API key; `room_id`, `name`,
/// `on`): a named participant in the call of the room's meeting without a
/// browser, or out of it again. `204`; `400` a bad field; `401`/`403` the
/// API key; `404` unknown room; `410` its meeting ended; `423` joining
/// while locked; `409` already in the call (`on`) or not in it.
async fn bots(
    State(state): State<AppState>,
    headers: HeaderMap,
    given: Given,
) -> Result<Response, ApiError> {
    check_key(&state, &headers)?;
    let given = given.params()?;
    let r = crate::request::bot(&given).map_err(ApiError::BadRequest)?;
    let effects = state
        .with(|s| s.bot(&r.room_id, &r.name, r.on, SystemTime::now()))
        .map_err(|e| match e {
            BotError::Room(room) => ApiError::from(room),
            BotError::Locked => ApiError::Locked,
            BotError::AlreadyInCall => {
                ApiError::Conflict("a bot of that name is already in the call")
            }
            BotError::NotInCall => ApiError::Conflict("no bot of that name is in the call"),
        })?;
    state.apply(effects);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct CableQuery {
    access_key: String,
}

async fn cable_socket(
    State(state): State<AppState>,
    Query(q): Query<CableQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state.with(|s| s.session(&q.access_key))?;
    let host = host(&headers);
    Ok(ws
        .protocols(["actioncable-v1-json"])
        .on_upgrade(move |socket| cable::serve(socket, state, q.access_key, host)))
}

async fn sepp_socket(
    State(state): State<AppState>,
    Path(key): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state.with(|s| s.session(&key))?;
    Ok(ws.on_upgrade(move |socket| sepp::serve(socket, state, key)))
}
