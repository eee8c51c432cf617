//! The hard limit itself: at each meeting's deadline, `DELETE /rooms/{id}`.
//!
//! A [`Job`] on the [`runner`](crate::runner): it sleeps until the earliest
//! deadline ([`Engine::next_wake`](crate::store::Engine::next_wake)),
//! claims what is due under a lease ([`Store::claim_due`], which reads
//! each room's guard with the claim), re-checks before each attempt that
//! eyeson has not reported the meeting ended and that no newer meeting
//! runs in the room (a `DELETE` would end either), and calls, retrying
//! 429/5xx/timeouts. A replica holds up to twice `--shutdown-concurrency`
//! claims so that calls go on while outcomes wait for their commit.
//!
//! The alone rule's end goes the same way: a meeting's `alone_deadline`
//! (set by the [`presence`](crate::presence) check) is claimed like a
//! deadline when it comes first, and right before the `DELETE` the
//! participants are read once more: if someone joined (or the rule was
//! turned off for the room), nothing is called and the meeting runs on with
//! its alone clock reset ([`ShutdownOutcome::AloneCancelled`]).
//!
//! Exactly once: a crash leaves a `stopping` row whose lease expires and is
//! claimed again; a crash between eyeson's 204 and our commit repeats the
//! call, which then answers 404 ("already ended").

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{self, ShutdownOutcome};
use crate::eyeson::{ApiError, EndResult, EyesonClient};
use crate::metrics;
use crate::presence::Headcount;
use crate::runner::{Ask, Failure, Job, StepError};
use crate::store::{Claim, Outcome, StoreError};
use crate::store_handle::Store;

/// How the scheduler shuts meetings down.
#[derive(Clone, Debug)]
pub struct Scheduler {
    /// The store.
    pub store: Store,
    /// The eyeson client.
    pub client: EyesonClient,
    /// Log and record, call nothing.
    pub dry_run: bool,
    /// First wait before a deferred shutdown (retryable failures outlasted
    /// a claim) is claimed again; doubles per claim, capped
    /// ([`domain::retry_delay`]).
    pub retry_backoff: Duration,
    /// Counts the participants before an alone end.
    pub headcount: Arc<Headcount>,
    /// `--presence-every`: after an alone end is cancelled, the next check.
    pub presence_every: Duration,
}

impl Job for Scheduler {
    type Claim = Claim;
    type Outcome = ShutdownOutcome;
    type Record = Outcome;

    const TASK: &'static str = "scheduler";
    const WRITER: &'static str = "outcome-writer";
    const WHAT: &'static str = "shutdown";
    // With one bound, calls waited on commits when thousands of deadlines
    // fell together.
    const CLAIMS_PER_CALL: usize = 2;
    const RETRIES: Option<&'static str> = Some(metrics::SHUTDOWN_RETRIES);

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<Claim>, StoreError> {
        self.store
            .claim_due(ask.now, ask.lease, ask.owner, ask.limit)
            .await
    }

    async fn next_due(
        &self,
        _now: domain::Timestamp,
    ) -> Result<Option<domain::Timestamp>, StoreError> {
        self.store.next_wake().await
    }

    fn room(claim: &Claim) -> &str {
        claim.key.room_id.as_str()
    }

    /// Checks that eyeson has not reported the meeting ended (a shutdown
    /// delivery during a retry backoff: the room may already host a new
    /// meeting we have not heard of) and that no newer meeting runs in the
    /// room, then calls. The first attempt uses the guard read with the
    /// claim; a retry reads it again.
    async fn attempt(&self, claim: &Claim, n: usize) -> Result<ShutdownOutcome, StepError> {
        let key = &claim.key;
        if self.dry_run {
            return Ok(if claim.guard.newer_meeting {
                ShutdownOutcome::SkippedNewerMeeting
            } else {
                ShutdownOutcome::DryRun
            });
        }
        let guard = match n {
            0 => claim.guard,
            _ => self.store.guard(key).await.map_err(StepError::Store)?,
        };
        if domain::ended_by_cutoff(key, guard.cutoff) {
            return Ok(ShutdownOutcome::AlreadyEnded);
        }
        if guard.newer_meeting {
            return Ok(ShutdownOutcome::SkippedNewerMeeting);
        }
        let mut ended = ShutdownOutcome::ShutDown;
        if claim.alone {
            // The last look: a join (or the rule turned off, or no users
            // list) since the last check cancels the end; the deadline
            // still applies. A failed count is retried like a failed
            // DELETE; it never ends the meeting.
            let alone = self.headcount.still_alone(&key.room_id).await;
            if !alone.map_err(StepError::Api)? {
                return Ok(ShutdownOutcome::AloneCancelled);
            }
            ended = ShutdownOutcome::EndedAlone;
        }
        match self.client.end_meeting(&key.room_id).await {
            Ok(EndResult::Ended) => Ok(ended),
            Ok(EndResult::NotRunning) => Ok(ShutdownOutcome::AlreadyEnded),
            Err(e) => Err(StepError::Api(e)),
        }
    }

    fn failed(&self, _claim: &Claim, failure: Failure) -> ShutdownOutcome {
        match failure {
            // Logged once by `conclude`, with the retry time.
            Failure::Locked => ShutdownOutcome::Locked,
            Failure::Refused(ApiError::Status(401 | 403)) => ShutdownOutcome::Refused,
            Failure::Refused(_) => ShutdownOutcome::GaveUp,
            Failure::Exhausted | Failure::CutShort => ShutdownOutcome::Deferred,
        }
    }

    fn conclude(&self, claim: &Claim, outcome: ShutdownOutcome, now: domain::Timestamp) -> Outcome {
        metrics::shutdown(outcome);
        if matches!(
            outcome,
            ShutdownOutcome::ShutDown | ShutdownOutcome::AlreadyEnded | ShutdownOutcome::EndedAlone
        ) {
            let late = now.0 - claim.deadline.0;
            metrics::lateness(late as f64 / 1000.0);
        }
        let key = &claim.key;
        match outcome {
            ShutdownOutcome::ShutDown => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "meeting shut down")
            }
            ShutdownOutcome::AlreadyEnded => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "meeting had ended already")
            }
            ShutdownOutcome::SkippedNewerMeeting => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "not shut down: a newer meeting runs in the room")
            }
            ShutdownOutcome::EndedAlone => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, alone_deadline = %claim.deadline, "meeting ended: alone for --alone-after")
            }
            ShutdownOutcome::AloneCancelled => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "alone end cancelled: someone joined (or the rule is off for the room); the alone clock is reset")
            }
            ShutdownOutcome::DryRun => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "dry run: would shut down")
            }
            ShutdownOutcome::Refused | ShutdownOutcome::GaveUp => {}
            ShutdownOutcome::Deferred | ShutdownOutcome::Locked => {}
        }
        // Retryable failures and a locked key are never final: the claim is
        // released and the meeting claimed again after a bounded, growing
        // wait (one call per claim while locked: never a burst).
        let retry_at = match outcome {
            o if o.is_deferred() => {
                Some(now.plus(domain::retry_delay(self.retry_backoff, claim.attempts)))
            }
            // The next participants check.
            ShutdownOutcome::AloneCancelled => Some(now.plus(self.presence_every)),
            _ => None,
        };
        if let Some(at) = retry_at.filter(|_| outcome.is_deferred()) {
            if outcome == ShutdownOutcome::Locked {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, attempts = claim.attempts, retry_at = %at, "eyeson answered 423: the API key is locked (usage limits exceeded); shutdown deferred");
            } else {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, attempts = claim.attempts, retry_at = %at, "shutdown deferred after retryable failures");
            }
        } else {
            metrics::attempts(claim.attempts);
        }
        Outcome {
            key: key.clone(),
            state: outcome.final_state(),
            at: now,
            attempts: claim.attempts,
            retry_at,
            ended_alone: outcome == ShutdownOutcome::EndedAlone,
            participants: None,
        }
    }

    async fn commit(
        &self,
        owner: &str,
        records: &[Outcome],
        _now: domain::Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.store.finish(owner, records).await
    }
}
