//! `POST /webhook`: read at most 64 KiB → verify the HMAC over the raw
//! bytes → parse → check freshness → decide ([`domain::plan`]) → commit
//! ([`Ingest`]) → wake the scheduler → 204. Nothing touches state before
//! the signature is checked. [`verify_signature`] and [`parse_delivery`]
//! are public for the fuzz target.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eyeson_api::wire::{DeliveryFields, RoomFields, ROOM_UPDATE};
use eyeson_api::SIGNATURE_HEADER;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::domain::{self, GuestToken, IgnoreReason, Plan, RoomId, RoomUpdate, Timestamp};
use crate::limits::LimitsHandle;
use crate::metrics;
use crate::secrets::ApiKey;
use crate::store::{Applied, NewForward};
use crate::store_handle::Store;

/// Largest accepted delivery body.
pub const MAX_BODY: usize = 64 * 1024;

/// Lowercase hex HMAC-SHA256 of a body under a key, as eyeson signs.
pub use eyeson_api::sign;

/// Why a delivery was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `X-Eyeson-Signature` header.
    MissingSignature,
    /// The header is not the HMAC of the body under the API key.
    BadSignature,
    /// Body over [`MAX_BODY`].
    TooLarge,
    /// The body could not be read.
    Unreadable,
    /// Not JSON, or a required field is missing or has the wrong type.
    Malformed(&'static str),
    /// The signed timestamp is too far from now (a replay).
    Stale,
    /// `room.started_at` is too far ahead ([`domain::max_start_ahead`]).
    FutureStart,
    /// The body did not arrive within `--body-read-timeout`.
    BodyTimeout,
}

impl Rejection {
    /// The HTTP status, the metrics `reason` label, and the message.
    pub fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use Rejection::*;
        let (reason, message) = match self {
            MissingSignature => ("missing_signature", "missing X-Eyeson-Signature header"),
            BadSignature => ("bad_signature", "signature does not match the body"),
            TooLarge => ("too_large", "body larger than 64 KiB"),
            Unreadable => ("unreadable", "body could not be read"),
            Malformed(what) => ("malformed", what),
            Stale => ("stale", "delivery timestamp outside the accepted window"),
            FutureStart => (
                "future_start",
                "room.started_at is further in the future than the accepted window",
            ),
            BodyTimeout => ("body_timeout", "body not received in time"),
        };
        let status = match self {
            MissingSignature | BadSignature | Stale => StatusCode::UNAUTHORIZED,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Malformed(_) | Unreadable | FutureStart => StatusCode::BAD_REQUEST,
        };
        (status, reason, message)
    }
}

/// Checks `X-Eyeson-Signature` with [`eyeson_api::verify`] (constant time).
pub fn verify_signature(key: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), Rejection> {
    let header = header.ok_or(Rejection::MissingSignature)?;
    eyeson_api::verify(key, body, header)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// A delivery, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The signed `timestamp`.
    pub timestamp: Timestamp,
    /// What it says.
    pub event: Event,
}

/// The part of a delivery the service acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A `room_update`.
    RoomUpdate(RoomUpdate),
    /// Any other type: acknowledged and ignored.
    Other,
}

/// Parses a delivery: a missing or mistyped field is [`Rejection::Malformed`].
pub fn parse_delivery(body: &[u8]) -> Result<Delivery, Rejection> {
    use Rejection::Malformed;
    let env: DeliveryFields =
        serde_json::from_slice(body).map_err(|_| Malformed("body is not a JSON object"))?;
    let ts = env.timestamp.ok_or(Malformed("timestamp is missing"))?;
    let ts = (ts.as_i64())
        .or_else(|| ts.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .ok_or(Malformed("timestamp is not a number of seconds"))?;
    let timestamp = Timestamp::from_unix_seconds(ts);
    let kind = env.kind.ok_or(Malformed("type is missing"))?;
    if kind.as_str().ok_or(Malformed("type is not a string"))? != ROOM_UPDATE {
        let event = Event::Other;
        return Ok(Delivery { timestamp, event });
    }
    let room = env.room.ok_or(Malformed("room is missing"))?;
    let room: RoomFields =
        serde_json::from_value(room).map_err(|_| Malformed("room is not an object with an id"))?;
    let id = room
        .id
        .as_str()
        .ok_or(Malformed("room.id is not a string"))?;
    let room_id = RoomId::parse(id)
        .map_err(|_| Malformed("room.id is empty, too long or has control characters"))?;
    let started_at = match room.started_at {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Timestamp::parse_rfc3339(&s).ok_or(Malformed("room.started_at is not ISO-8601 UTC"))?,
        ),
        Some(_) => return Err(Malformed("room.started_at is not a string or null")),
    };
    let shutdown = match room.shutdown {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(Malformed("room.shutdown is not a boolean")),
    };
    // Only the warning needs the guest token: a bad one is dropped, never
    // a reason to lose the meeting's limit.
    let guest_token = match room.guest_token {
        Some(Value::String(s)) => GuestToken::parse(&s),
        _ => None,
    };
    Ok(Delivery {
        timestamp,
        event: Event::RoomUpdate(RoomUpdate {
            room_id,
            started_at,
            shutdown,
            event_time: timestamp,
            guest_token,
        }),
    })
}

/// Whether `timestamp` is within `max_age` of now, either way (zero: always).
pub fn is_fresh(timestamp: Timestamp, now: Timestamp, max_age: Duration) -> bool {
    if max_age.is_zero() {
        return true;
    }
    let max = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    now.0.saturating_sub(timestamp.0).unsigned_abs() <= max
}

/// Group commit (`group_commit.rs`) for deliveries and their
/// forwards: one fsync serves many, and a 204 still means "committed".
#[derive(Clone, Debug)]
pub struct Ingest {
    writer: crate::group_commit::Writer<(Plan, Option<NewForward>), Applied>,
}

impl Ingest {
    /// Starts the writer task.
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        wake: Arc<crate::wake::Wake>,
        faults: &crate::fault::Faults,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let commit = move |batch: Vec<(Plan, Option<NewForward>)>| {
            let (store, clock, wake) = (store.clone(), clock.clone(), wake.clone());
            async move {
                let n = batch.len();
                let (plans, forwards): (Vec<Plan>, Vec<_>) = batch.into_iter().unzip();
                let forwards: Vec<NewForward> = forwards.into_iter().flatten().collect();
                let results = store
                    .apply_deliveries(&plans, &forwards, clock.now())
                    .await
                    .inspect_err(|e| {
                        tracing::error!(error = %e, deliveries = n, "could not commit deliveries")
                    })?;
                if results.contains(&Applied::Tracked) {
                    wake.poke();
                }
                if !forwards.is_empty() {
                    wake.poke_forwarder();
                }
                Ok(results)
            }
        };
        let (writer, task) = crate::group_commit::start(faults, "ingest-writer", commit);
        (Ingest { writer }, task)
    }

    /// Commits one plan and its forward; resolves once both are durable.
    pub async fn submit(&self, plan: Plan, forward: Option<NewForward>) -> Result<Applied, ()> {
        crate::group_commit::submit(&self.writer, (plan, forward))
            .await
            .map_err(|_| ())
    }
}

/// What the webhook handler needs (a part of the public listener's state).
#[derive(Clone, Debug)]
pub struct WebhookState {
    /// The group-commit writer for deliveries.
    pub ingest: Ingest,
    /// The limits in force.
    pub limits: Arc<LimitsHandle>,
    /// For the signature check.
    pub api_key: ApiKey,
    /// Replay window for deliveries.
    pub webhook_max_age: Duration,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// A webhook body must arrive within this.
    pub body_read_timeout: Duration,
    /// Whether acknowledged deliveries are forwarded (`--forward-to`).
    pub forward: bool,
}

/// How a delivery was answered: the HTTP answer and the metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Committed (204), for this reason.
    Accepted(Applied),
    /// Nothing to do (204): not a `room_update`.
    OtherType,
    /// Nothing to do (204): a room without a started meeting.
    NotStarted,
    /// Refused (4xx).
    Rejected(Rejection),
    /// The store failed (503; eyeson retries).
    StoreFailed,
}

impl Answer {
    /// The `outcome` and `reason` labels.
    pub fn labels(self) -> (&'static str, &'static str) {
        use Answer::*;
        match self {
            Accepted(Applied::Tracked) => ("accepted", "tracked"),
            Accepted(Applied::AlreadyKnown) => ("accepted", "duplicate"),
            Accepted(Applied::LateForEndedMeeting) => ("accepted", "late_for_ended_meeting"),
            Accepted(Applied::Ended(_)) => ("accepted", "ended"),
            Accepted(Applied::Ignored) => ("accepted", "not_started"),
            NotStarted => ("ignored", "not_started"),
            OtherType => ("ignored", "other_type"),
            Rejected(r) => ("rejected", r.parts().1),
            StoreFailed => ("error", "store"),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Answer::Accepted(_) | Answer::OtherType | Answer::NotStarted => {
                return StatusCode::NO_CONTENT.into_response();
            }
            Answer::Rejected(r) => (r.parts().0, r.parts().2),
            Answer::StoreFailed => (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the delivery; retry",
            ),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// The handler.
pub async fn receive(State(app): State<WebhookState>, headers: HeaderMap, body: Body) -> Response {
    let answer = (handle(&app, &headers, body).await).unwrap_or_else(Answer::Rejected);
    let (outcome, reason) = answer.labels();
    metrics::delivery(outcome, reason);
    if let Answer::Rejected(_) = answer {
        tracing::debug!(reason, "webhook delivery rejected");
    }
    answer.into_response()
}

async fn handle(app: &WebhookState, headers: &HeaderMap, body: Body) -> Result<Answer, Rejection> {
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let declared = header(CONTENT_LENGTH.as_str())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Rejection::TooLarge);
    }
    // A client that trickles its body holds a slot: bounded.
    let bytes = tokio::time::timeout(app.body_read_timeout, read_body(body))
        .await
        .map_err(|_| Rejection::BodyTimeout)??;
    let key = app.api_key.expose().as_bytes();
    verify_signature(key, &bytes, header(SIGNATURE_HEADER))?;
    let delivery = parse_delivery(&bytes)?;
    let now = app.clock.now();
    if !is_fresh(delivery.timestamp, now, app.webhook_max_age) {
        return Err(Rejection::Stale);
    }
    let (plan, ignored) = match delivery.event {
        Event::Other => (Plan::Ignore(IgnoreReason::NotStarted), Answer::OtherType),
        Event::RoomUpdate(update) => {
            let ahead = domain::max_start_ahead(app.webhook_max_age);
            if (update.started_at).is_some_and(|s| domain::starts_in_the_future(s, now, ahead)) {
                return Err(Rejection::FutureStart);
            }
            let plan = domain::plan(&update, &*app.limits.policy().await);
            (plan, Answer::NotStarted)
        }
    };
    // Only what is acknowledged (verified, fresh, well-formed) is forwarded.
    let text = |name: &str| header(name).map(|v| String::from_utf8_lossy(v).into_owned());
    let forward = app.forward.then(|| NewForward {
        lane: crate::lanes::lane_of(&bytes),
        signature: text(SIGNATURE_HEADER).unwrap_or_default(),
        content_type: text(CONTENT_TYPE.as_str()),
        body: bytes,
    });
    let is_ignore = matches!(plan, Plan::Ignore(_));
    if is_ignore && forward.is_none() {
        return Ok(ignored);
    }
    Ok(match app.ingest.submit(plan, forward).await {
        Ok(_) if is_ignore => ignored,
        Ok(applied) => Answer::Accepted(applied),
        Err(()) => Answer::StoreFailed,
    })
}

/// Reads at most [`MAX_BODY`] bytes; a broken stream is [`Rejection::Unreadable`].
async fn read_body(mut body: Body) -> Result<Vec<u8>, Rejection> {
    use axum::body::HttpBody;
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|_| Rejection::Unreadable)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY {
                return Err(Rejection::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Rejection::{BadSignature, MissingSignature};

    #[test]
    fn signature_roundtrip_and_rejections() {
        let body = br#"{"timestamp":1,"type":"x"}"#;
        let sig = sign(b"key", body);
        assert_eq!(sig.len(), 64);
        let (sig, upper) = (sig.as_bytes(), sig.to_uppercase());
        let mut tampered = body.to_vec();
        tampered[14] = b'2';
        for (key, body, header, expected) in [
            (&b"key"[..], &body[..], Some(sig), Ok(())),
            (b"key", body, Some(upper.as_bytes()), Ok(())),
            (b"other", body, Some(sig), Err(BadSignature)),
            (b"key", body, None, Err(MissingSignature)),
            (b"key", body, Some(b"zz"), Err(BadSignature)),
            (b"key", &tampered, Some(sig), Err(BadSignature)),
        ] {
            assert_eq!(verify_signature(key, body, header), expected);
        }
    }

    /// The timestamp and room update of a `room_update` body.
    fn room_update(body: &[u8]) -> (Timestamp, RoomUpdate) {
        let d = parse_delivery(body).unwrap();
        let Event::RoomUpdate(u) = d.event else {
            panic!("not a room_update: {d:?}")
        };
        (d.timestamp, u)
    }

    #[test]
    fn parses_both_documented_deliveries() {
        let (t, u) = room_update(br#"{"timestamp":1637738200,"type":"room_update","room":{"id":"demo","name":"John","ready":true,"started_at":"2021-11-24T07:16:37.748Z","shutdown":false,"guest_token":"g"}}"#);
        assert_eq!(t, Timestamp(1_637_738_200_000));
        assert_eq!(u.started_at, Some(Timestamp(1_637_738_197_748)));
        assert!(!u.shutdown);
        let (_, u) = room_update(br#"{"timestamp":1609493400,"type":"room_update","room":{"id":"63ede350b20526000f64376b","name":"eyeson room","ready":false,"started_at":null,"shutdown":true,"sip":{}}}"#);
        assert_eq!((u.started_at, u.shutdown), (None, true));
    }

    #[test]
    fn parses_what_the_shared_writer_sends() {
        // The sandbox writes deliveries with this type.
        use eyeson_api::wire::{Delivery as Written, Room};
        let body = |started_at: Option<&str>, shutdown: bool, guest_token: Option<&str>| {
            let room = Room {
                id: "a b".into(),
                name: "Standup".into(),
                ready: !shutdown,
                started_at: started_at.map(Into::into),
                shutdown,
                guest_token: guest_token.map(Into::into),
            };
            let (timestamp, kind) = (1_637_738_200, ROOM_UPDATE.into());
            let written = Written {
                timestamp,
                kind,
                room,
            };
            serde_json::to_vec(&written).unwrap()
        };
        let start = "2021-11-24T07:16:37.748Z";
        let (t, u) = room_update(&body(Some(start), false, Some("gt-abc")));
        assert_eq!(t, Timestamp(1_637_738_200_000));
        assert_eq!(u.room_id.as_str(), "a b");
        assert_eq!(u.started_at, Some(Timestamp(1_637_738_197_748)));
        assert!(!u.shutdown && u.guest_token.is_some());
        let (_, u) = room_update(&body(None, true, None));
        let got = (u.started_at, u.shutdown, u.guest_token);
        assert_eq!(got, (None, true, None));
    }

    #[test]
    fn other_types_need_no_room() {
        let d =
            parse_delivery(br#"{"timestamp":1,"type":"recording_update","recording":{}}"#).unwrap();
        assert_eq!(d.event, Event::Other);
    }

    #[test]
    fn malformed_deliveries_name_the_field() {
        let update = |room| format!(r#"{{"timestamp":1,"type":"room_update","room":{room}}}"#);
        let rooms = [
            ("{}", "id"),
            (r#"{"id":""}"#, "room.id"),
            (r#"{"id":"a","started_at":"soon"}"#, "started_at"),
            (r#"{"id":"a","shutdown":"yes"}"#, "shutdown"),
        ];
        let bodies = [
            ("not json", "JSON"),
            (r#"{"type":"room_update","room":{"id":"a"}}"#, "timestamp"),
            (r#"{"timestamp":1,"room":{"id":"a"}}"#, "type"),
            (r#"{"timestamp":1,"type":"room_update"}"#, "room"),
            ("[1,2]", "JSON"),
        ];
        let rooms = rooms.map(|(room, field)| (update(room), field));
        for (body, field) in bodies
            .map(|(b, f)| (b.to_owned(), f))
            .into_iter()
            .chain(rooms)
        {
            let body = body.as_bytes();
            match parse_delivery(body) {
                Err(Rejection::Malformed(m)) => assert!(m.contains(field), "{m} / {field}"),
                other => panic!("{other:?} for {}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn freshness_window() {
        let now = Timestamp(1_000_000_000);
        let ten = Duration::from_secs(600);
        assert!(is_fresh(Timestamp(now.0 - 600_000), now, ten));
        assert!(!is_fresh(Timestamp(now.0 - 600_001), now, ten));
        assert!(!is_fresh(Timestamp(now.0 + 600_001), now, ten));
        assert!(is_fresh(Timestamp(0), now, Duration::ZERO));
        assert!(!is_fresh(Timestamp(i64::MIN), now, ten));
        assert!(!is_fresh(Timestamp(i64::MAX), Timestamp(i64::MIN), ten));
    }
}
