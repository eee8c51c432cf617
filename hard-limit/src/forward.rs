//! Forwarding (`--forward-to`): eyeson keeps one webhook per API key, so
//! the service passes every delivery it acknowledged on to the app that
//! embeds eyeson, byte for byte with its `X-Eyeson-Signature`. Deliveries
//! are written to the outbox with their plan, before the 204, and go out
//! in order per [lane](crate::lanes), from a [`runner`](crate::runner) job
//! of their own (a stalled receiver holds nothing else up).
//!
//! Retries ([`judge`], [`backoff`]): 408, 429, 5xx and no answer are retried
//! until `--forward-retention` has passed (then `expired`); other answers
//! (4xx, and 3xx: redirects are never followed) [`REFUSED_AFTER`] times in
//! all, so a redeploy loses nothing, then dropped (`refused`).

use std::time::Duration;

use reqwest::Url;

use crate::domain::Timestamp;
use crate::metrics;
use crate::runner::{Applied, Ask, Failure, Job, Spec, StepError};
use crate::store::{ForwardClaim, ForwardRecord, StoreError};
use crate::store_handle::Store;
use crate::supervisor::Task;

/// Attempts (in all) after which a receiver's 4xx (other than 408/429) or
/// 3xx drops the entry.
pub const REFUSED_AFTER: i64 = 3;

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long one forward may take (connect included).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The delay after `attempts` failed tries: [`BACKOFF_MIN`] doubling, up to
/// [`BACKOFF_MAX`], scaled by `jitter` (0.5..=1.0: lanes that failed
/// together do not retry together).
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

/// A jitter factor in 0.5..=1.0.
fn jitter() -> f64 {
    0.5 + (crate::runner::random() % 1_000_001) as f64 / 2_000_000.0
}

/// The forwarding job: one send per claim (a later claim of the lane's
/// head retries, after [`backoff`]).
#[derive(Clone, Debug)]
pub struct Forwarder {
    pub(crate) store: Store,
    pub(crate) target: Url,
    pub(crate) http: reqwest::Client,
    /// How long an entry is tried.
    pub(crate) retention: Duration,
}

/// How one claim of an entry ended: the `outcome` label, and when and why
/// it is tried again (`None`: it leaves the outbox).
#[derive(Debug)]
pub struct Forwarded {
    label: &'static str,
    retry: Option<(Duration, String)>,
}

impl Forwarder {
    /// Forwards to `target`, each entry until `retention` has passed.
    pub fn new(store: Store, target: Url, retention: Duration) -> reqwest::Result<Self> {
        tracing::info!(target = %crate::secrets::loggable_url(target.as_str()), "forwarding every acknowledged delivery");
        // No redirects (a 3xx is an answer, never followed to another
        // origin), bounded time per send.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SEND_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("eyeson-hard-limit/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Forwarder {
            store,
            target,
            http,
            retention,
        })
    }

    async fn send(&self, claim: &ForwardClaim) -> Sent {
        let mut req = self
            .http
            .post(self.target.clone())
            .header(eyeson_api::SIGNATURE_HEADER, claim.signature.as_str())
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

    /// A send that failed and is retried after [`backoff`].
    fn retry(claim: &ForwardClaim, sent: Sent) -> Forwarded {
        let delay = backoff(claim.attempts, jitter());
        let error = match sent {
            Sent::Status(s) => format!("HTTP {s}"),
            Sent::NoAnswer => "no answer".to_owned(),
        };
        // Only an entry's first failure is worth a line (a dead receiver).
        if claim.attempts == 1 {
            tracing::warn!(lane = %claim.lane, answer = %error, retry_in = ?delay,
                "forwarding a delivery failed; retrying");
        } else {
            tracing::debug!(lane = %claim.lane, answer = %error, attempts = claim.attempts, retry_in = ?delay,
                "forwarding a delivery failed again");
        }
        Forwarded {
            label: "retried",
            retry: Some((delay, error)),
        }
    }
}

impl Job for Forwarder {
    type Claim = ForwardClaim;
    type Outcome = Forwarded;
    type Record = ForwardRecord;
    const SPEC: Spec = Spec {
        // Notices retries coming due and other replicas' entries unpoked.
        poll: Duration::from_secs(1),
        tick: Some(Duration::from_secs(10)),
        ..Spec::new(Task::Forwarder, "forward", None)
    };

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<ForwardClaim>, StoreError> {
        (self.store)
            .claim_forwards(ask.now, ask.lease, ask.owner, ask.limit)
            .await
    }

    fn room(claim: &ForwardClaim) -> &str {
        crate::lanes::lock_key(&claim.lane)
    }

    /// Sends the entry unless it expired, and judges the answer.
    async fn attempt(&self, claim: &ForwardClaim, _n: usize) -> Result<Forwarded, StepError> {
        let done = |label| Forwarded { label, retry: None };
        if expired(claim.received_at, claim.claimed_at, self.retention) {
            tracing::warn!(lane = %claim.lane, received_at = %claim.received_at, attempts = claim.attempts - 1,
                "dropped a delivery to forward: not delivered within --forward-retention");
            return Ok(done("expired"));
        }
        let sent = self.send(claim).await;
        Ok(match judge(sent, claim.attempts) {
            Verdict::Delivered => done("delivered"),
            Verdict::Refused => {
                tracing::warn!(lane = %claim.lane, answer = ?sent, attempts = claim.attempts,
                    "dropped a delivery to forward: the receiver refused it");
                done("refused")
            }
            Verdict::Retry => Self::retry(claim, sent),
        })
    }

    /// Not reached (attempts do not fail, and [`SEND_TIMEOUT`] bounds
    /// them); were it, the entry is retried like a send without answer.
    fn failed(&self, claim: &ForwardClaim, _failure: Failure) -> Forwarded {
        Self::retry(claim, Sent::NoAnswer)
    }

    /// Each send is bounded by [`SEND_TIMEOUT`], and a slow receiver still
    /// gets the delivery it is reading.
    fn budget(&self, _lease: Duration) -> Option<Duration> {
        None
    }

    fn conclude(&self, claim: &ForwardClaim, outcome: Forwarded, _now: Timestamp) -> ForwardRecord {
        ::metrics::counter!(metrics::FORWARDS, "outcome" => outcome.label).increment(1);
        let (retry_in, error) = outcome.retry.unzip();
        ForwardRecord {
            id: claim.id,
            attempts: claim.attempts,
            retry_in,
            error,
        }
    }

    async fn commit(&self, owner: &str, records: &[ForwardRecord], now: Timestamp) -> Applied {
        self.store.finish_forwards(owner, records, now).await
    }

    async fn tick(&self) {
        if let Ok(n) = self.store.pending_forwards().await {
            ::metrics::gauge!(metrics::FORWARDS_PENDING).set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes_with_jitter() {
        // Jitter never goes below half nor above the full delay.
        for (attempts, jitter, secs) in [
            (1, 1.0, 1),
            (2, 1.0, 2),
            (5, 1.0, 16),
            (9, 1.0, 256),
            (10, 1.0, 300),
            (i64::MAX, 1.0, 300),
            (0, 1.0, 1),
            (3, 0.5, 2),
            (3, 0.0, 2),
            (3, 7.0, 4),
        ] {
            assert_eq!(backoff(attempts, jitter), Duration::from_secs(secs));
        }
        assert_eq!(BACKOFF_MAX, Duration::from_secs(300));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn entries_expire_once_the_retention_has_passed() {
        let day = Duration::from_secs(24 * 3600);
        let received = Timestamp(1_000_000);
        let just_before = received.plus(day).minus(Duration::from_millis(1));
        assert!(!expired(received, received, day));
        assert!(!expired(received, just_before, day));
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
            let last = judge(Sent::Status(s), REFUSED_AFTER);
            assert_eq!(last, Verdict::Refused, "{s}");
        }
    }
}
