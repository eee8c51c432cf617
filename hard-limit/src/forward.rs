//! Forwarding (`--forward-to`): eyeson keeps one webhook per API key, so
//! when the app that embeds eyeson has its own, the service registers
//! itself for both sets of types and passes every delivery it acknowledges
//! on to the app, byte for byte with its `X-Eyeson-Signature`, so the app's
//! own verification keeps working.
//!
//! - **Durable first.** The webhook handler writes the delivery to the
//!   outbox (`forward_outbox`) in the same transaction as its plan, before
//!   the 204 ([`crate::webhook::Ingest`]); a restart loses nothing.
//! - **Only what was acknowledged.** Deliveries whose signature does not
//!   verify, that are stale (a replay) or malformed are refused (4xx) and
//!   not forwarded: the service is no relay for anyone but eyeson.
//! - **In order per lane** ([`lane_of`]): a room's deliveries (its
//!   `room_update`s, and `recording_update`/`snapshot_update` naming the
//!   room) share the lane `room:<id>`; other deliveries get one lane per
//!   type. Only a lane's oldest entry is ever claimed, so a later delivery
//!   never overtakes an earlier one that has not been delivered or dropped.
//! - **Off the hard limit's path.** The [`Forwarder`] is its own task with
//!   its own bounded concurrency and HTTP timeouts; a stalled receiver holds
//!   its leases and nothing else.
//! - **Shared by replicas.** Entries are claimed under a lease (`FOR UPDATE
//!   SKIP LOCKED` and the database's clock on PostgreSQL); each is sent by
//!   one replica at a time, at least once.
//! - **Retries** ([`judge`], [`backoff`]): 2xx is delivered; 408, 429, 5xx,
//!   timeouts and connection errors are retried with jittered exponential
//!   backoff (1 s doubling, capped at 5 min) until `--forward-retention`
//!   has passed since the delivery was received, then dropped (`expired`).
//!   Other answers (4xx, and 3xx: redirects are never followed) are tried
//!   [`REFUSED_AFTER`] times in all, so a receiver being redeployed does not
//!   lose deliveries, then dropped (`refused`) rather than holding up the
//!   room's later deliveries for the whole retention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::domain::{RoomId, Timestamp};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::store::{ForwardClaim, ForwardRecord, ForwardStore};
use crate::store_handle::Store;

// Lanes of a room start with `ROOM_LANE` (the rest is the room id); the
// store, which locks a room's lane with the room, defines both.
pub use crate::store::{lock_key, ROOM_LANE};

/// Lanes of deliveries that name no room start with this; the rest is the
/// delivery's `type`.
pub const TYPE_LANE: &str = "type:";

/// Attempts (in all) after which a receiver's 4xx (other than 408/429) or
/// 3xx drops the entry.
pub const REFUSED_AFTER: i64 = 3;

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long one forward may take (connect included).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the forwarder looks for due entries without a poke (retries
/// coming due, entries other replicas wrote).
const POLL: Duration = Duration::from_secs(1);

/// How often the pending gauge is recounted.
const COUNT_EVERY: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct LaneFields {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    room: Option<Named>,
    recording: Option<WithRoom>,
    snapshot: Option<WithRoom>,
}

#[derive(Deserialize)]
struct WithRoom {
    room: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    id: Option<serde_json::Value>,
}

/// The lane of a delivery body: `room:<id>` from `room.id`, else from
/// `recording.room.id` or `snapshot.room.id`; else `type:<type>` (one lane
/// per type). An id that is not a valid room id counts as absent.
pub fn lane_of(body: &[u8]) -> String {
    let Ok(fields) = serde_json::from_slice::<LaneFields>(body) else {
        return format!("{TYPE_LANE}unknown");
    };
    let id = |n: Option<Named>| match n?.id? {
        serde_json::Value::String(s) => RoomId::parse(&s).ok(),
        _ => None,
    };
    let room = id(fields.room)
        .or_else(|| id(fields.recording.and_then(|r| r.room)))
        .or_else(|| id(fields.snapshot.and_then(|s| s.room)));
    match room {
        Some(room) => format!("{ROOM_LANE}{}", room.as_str()),
        None => match fields.kind {
            Some(serde_json::Value::String(t)) if !t.is_empty() && t.len() <= 64 => {
                format!("{TYPE_LANE}{t}")
            }
            _ => format!("{TYPE_LANE}unknown"),
        },
    }
}

/// The delay before the next try after `attempts` failed tries (1 or
/// more): [`BACKOFF_MIN`] doubling, capped at [`BACKOFF_MAX`], scaled by
/// `jitter` (clamped to 0.5..=1.0) so lanes that failed together do not
/// retry together.
pub fn backoff(attempts: i64, jitter: f64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let full = BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    full.mul_f64(jitter.clamp(0.5, 1.0))
}

/// Whether an entry received at `received_at` is past `retention` at `now`.
pub fn expired(received_at: Timestamp, now: Timestamp, retention: Duration) -> bool {
    now >= received_at.plus(retention)
}

/// What a send achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The receiver answered this status.
    Status(u16),
    /// No answer: connection refused or reset, timeout.
    NoAnswer,
}

/// What to do with an entry after a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: remove it.
    Delivered,
    /// Try again after a backoff.
    Retry,
    /// The receiver refuses it: remove it.
    Refused,
}

/// Judges a send that was the entry's `attempts`-th try.
pub fn judge(sent: Sent, attempts: i64) -> Verdict {
    match sent {
        Sent::Status(s) if (200..300).contains(&s) => Verdict::Delivered,
        Sent::NoAnswer => Verdict::Retry,
        Sent::Status(s) if s == 408 || s == 429 || s >= 500 => Verdict::Retry,
        Sent::Status(_) if attempts < REFUSED_AFTER => Verdict::Retry,
        Sent::Status(_) => Verdict::Refused,
    }
}

/// A URL as it may be logged: scheme, host, port and path; never a query
/// string, fragment or user info (any of them may carry a token).
pub fn loggable_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                out.push_str(&format!(":{port}"));
            }
            out.push_str(u.path());
            if u.query().is_some() {
                out.push_str("?…");
            }
            out
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// A jitter factor in 0.5..=1.0 (no crate for randomness: a fresh
/// `RandomState` is randomly keyed).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let r = RandomState::new().hash_one(std::time::SystemTime::now());
    0.5 + (r % 1_000_001) as f64 / 2_000_000.0
}

type Finished = crate::group_commit::Pending<ForwardRecord>;

/// The forwarding task.
#[derive(Clone, Debug)]
pub struct Forwarder {
    /// The store (its outbox).
    pub store: Store,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// The app's receiver.
    pub target: Url,
    /// The HTTP client (no redirects, [`SEND_TIMEOUT`]).
    pub http: reqwest::Client,
    /// This process's lease owner id.
    pub owner: Arc<str>,
    /// How long a claim is owned.
    pub lease: Duration,
    /// How long an entry is tried.
    pub retention: Duration,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Poked when deliveries to forward were committed.
    pub wake: Arc<Notify>,
    /// Test-only fault injection (none in production).
    pub faults: crate::fault::Faults,
    /// Cleared at once if the forward writer ends (`/healthz` 503).
    pub tasks_ok: Arc<AtomicBool>,
}

/// The client forwards go out with: no redirects (a 3xx is an answer, never
/// followed to another origin), bounded time per send.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("eyeson-hard-limit/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Forwarder {
    /// Runs until the stop signal, then waits for sends in flight (each
    /// bounded by [`SEND_TIMEOUT`]). Returns early (and the supervisor stops
    /// the service) if its writer ends.
    pub async fn run(self, mut stop: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (writer, mut writer_task) = self.start_writer();
        let mut writer_ended = false;
        let mut counted_at: Option<tokio::time::Instant> = None;
        tracing::info!(target = %loggable_url(self.target.as_str()), "forwarding every acknowledged delivery");
        loop {
            if stop.is_stopped() {
                break;
            }
            if writer_task.is_finished() {
                writer_ended = true;
                self.writer_ended();
                break;
            }
            while tasks.try_join_next().is_some() {}
            if counted_at.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                counted_at = Some(tokio::time::Instant::now());
                if let Ok(n) = self.store.pending_forwards().await {
                    metrics::forwards_pending(n);
                }
            }
            let free = slots.available_permits();
            if free > 0 {
                match self
                    .store
                    .claim_forwards(self.clock.now(), self.lease, &self.owner, free as u32)
                    .await
                {
                    Ok(claims) => {
                        let full = claims.len() == free;
                        for claim in claims {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let me = self.clone();
                            let writer = writer.clone();
                            tasks.spawn(async move {
                                me.forward(claim, &writer).await;
                                drop(permit);
                            });
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim deliveries to forward; retrying in 1s");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = stop.stopped() => {}
                _ = &mut writer_task => {
                    writer_ended = true;
                    self.writer_ended();
                    break;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(writer);
        if !writer_ended {
            let _ = writer_task.await;
        }
    }

    fn writer_ended(&self) {
        self.tasks_ok.store(false, Ordering::SeqCst);
        tracing::error!("the forward writer ended; the forwarder finishes its sends and stops");
    }

    fn start_writer(&self) -> (mpsc::Sender<Finished>, tokio::task::JoinHandle<()>) {
        let (store, owner, clock) = (self.store.clone(), self.owner.clone(), self.clock.clone());
        crate::group_commit::start(
            &self.faults,
            "forward-writer",
            move |records: Vec<ForwardRecord>| {
                let (store, owner, clock) = (store.clone(), owner.clone(), clock.clone());
                async move { store.finish_forwards(&owner, &records, clock.now()).await }
            },
        )
    }

    /// Sends one claimed entry (unless it expired) and records the outcome.
    async fn forward(&self, claim: ForwardClaim, writer: &mpsc::Sender<Finished>) {
        let (outcome, record) = if expired(claim.received_at, claim.claimed_at, self.retention) {
            tracing::warn!(lane = %claim.lane, received_at = %claim.received_at, attempts = claim.attempts - 1,
                "dropped a delivery to forward: not delivered within --forward-retention");
            ("expired", None)
        } else {
            let sent = self.send(&claim).await;
            match judge(sent, claim.attempts) {
                Verdict::Delivered => ("delivered", None),
                Verdict::Refused => {
                    tracing::warn!(lane = %claim.lane, answer = ?sent, attempts = claim.attempts,
                        "dropped a delivery to forward: the receiver refused it");
                    ("refused", None)
                }
                Verdict::Retry => {
                    let delay = backoff(claim.attempts, jitter());
                    let error = match sent {
                        Sent::Status(s) => format!("HTTP {s}"),
                        Sent::NoAnswer => "no answer".to_owned(),
                    };
                    // The first failure of an entry is worth a line; its
                    // retries are not (a dead receiver would flood the log).
                    if claim.attempts == 1 {
                        tracing::warn!(lane = %claim.lane, answer = %error, retry_in = ?delay,
                            "forwarding a delivery failed; retrying");
                    } else {
                        tracing::debug!(lane = %claim.lane, answer = %error, attempts = claim.attempts, retry_in = ?delay,
                            "forwarding a delivery failed again");
                    }
                    ("retried", Some((delay, error)))
                }
            }
        };
        metrics::forward(outcome);
        let record = ForwardRecord {
            id: claim.id,
            attempts: claim.attempts,
            retry_in: record.as_ref().map(|(d, _)| *d),
            error: record.map(|(_, e)| e),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if writer.send((record, reply)).await.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::warn!(lane = %claim.lane,
                "a forward's outcome was not recorded: its lease had expired (it may be sent again)"),
            Ok(Err(e)) => tracing::error!(error = %e, lane = %claim.lane,
                "could not record a forward's outcome (it is sent again after the lease)"),
            Err(_) => {}
        }
    }

    async fn send(&self, claim: &ForwardClaim) -> Sent {
        let mut req = self
            .http
            .post(self.target.clone())
            .header(crate::webhook::SIGNATURE_HEADER, claim.signature.as_str())
            .body(claim.body.clone());
        if let Some(ct) = &claim.content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct.as_str());
        }
        match req.send().await {
            Ok(resp) => Sent::Status(resp.status().as_u16()),
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "forward got no answer");
                Sent::NoAnswer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_follow_the_room_wherever_the_delivery_names_it() {
        assert_eq!(
            lane_of(br#"{"type":"room_update","room":{"id":"r1"}}"#),
            "room:r1"
        );
        assert_eq!(
            lane_of(br#"{"type":"recording_update","recording":{"id":"x","room":{"id":"r1"}}}"#),
            "room:r1"
        );
        assert_eq!(
            lane_of(br#"{"type":"snapshot_update","snapshot":{"room":{"id":"r2"}}}"#),
            "room:r2"
        );
        // No room named: one lane per type.
        assert_eq!(
            lane_of(br#"{"type":"recording_update","recording":{"id":"x"}}"#),
            "type:recording_update"
        );
        assert_eq!(
            lane_of(br#"{"type":"snapshot_update","snapshot":{"room":{"id":7}}}"#),
            "type:snapshot_update"
        );
        assert_eq!(lane_of(br#"{"type":42}"#), "type:unknown");
        assert_eq!(lane_of(b"not json"), "type:unknown");
        assert_eq!(lock_key("room:r1"), "r1");
        assert_eq!(lock_key("type:recording_update"), "type:recording_update");
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes_with_jitter() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 1.0), Duration::from_secs(16));
        assert_eq!(backoff(9, 1.0), Duration::from_secs(256));
        assert_eq!(backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(i64::MAX, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(2));
        // Jitter never goes below half nor above the full delay.
        assert_eq!(backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(3, 7.0), Duration::from_secs(4));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn entries_expire_once_the_retention_has_passed() {
        let day = Duration::from_secs(24 * 3600);
        let received = Timestamp(1_000_000);
        assert!(!expired(received, received, day));
        assert!(!expired(
            received,
            received.plus(day).minus(Duration::from_millis(1)),
            day
        ));
        assert!(expired(received, received.plus(day), day));
        assert!(expired(Timestamp(0), Timestamp(i64::MAX), Duration::MAX));
    }

    #[test]
    fn answers_are_judged() {
        assert_eq!(judge(Sent::Status(200), 1), Verdict::Delivered);
        assert_eq!(judge(Sent::Status(204), 9), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(judge(Sent::Status(s), 100), Verdict::Retry, "{s}");
        }
        assert_eq!(judge(Sent::NoAnswer, 100), Verdict::Retry);
        // 4xx and 3xx: a few tries (a redeploy), then refused.
        for s in [301, 302, 400, 401, 404, 410] {
            assert_eq!(judge(Sent::Status(s), 1), Verdict::Retry, "{s}");
            assert_eq!(
                judge(Sent::Status(s), REFUSED_AFTER),
                Verdict::Refused,
                "{s}"
            );
        }
    }

    #[test]
    fn logged_urls_keep_no_query_or_credentials() {
        assert_eq!(
            loggable_url("https://user:pw@app.example.com:8443/hook?token=s3cret#x"),
            "https://app.example.com:8443/hook?…"
        );
        assert_eq!(
            loggable_url("https://app.example.com/eyeson-hook"),
            "https://app.example.com/eyeson-hook"
        );
        assert_eq!(loggable_url("::"), "(not a URL)");
    }
}
