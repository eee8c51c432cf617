//! The one scheduler: sleeps until the earliest deadline, claims what is
//! due, shuts it down.
//!
//! Like mini-redis's expiry task it does not poll: it asks the store for the
//! next wake-up time and `select!`s on a sleep until then on the service's
//! [`Clock`] (so a test's manual clock, moved past a deadline, wakes it), on a
//! [`crate::wake::Wake`] the webhook path pokes when a meeting is tracked (its
//! deadline may be the new earliest), on a finished shutdown (a concurrency
//! slot came free), and on the stop signal. It also looks after a minute of
//! real time at most, so a meeting written by another process on the same
//! database is noticed even without a poke.
//!
//! Claims are leases ([`MeetingStore::claim_due`]): a process that dies
//! mid-shutdown leaves a `stopping` row whose lease expires, and whoever
//! runs next claims it again. So a due meeting is never lost; the cost is
//! that a crash between eyeson's 204 and our commit repeats the call, which
//! then answers 404 ("already ended").

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::domain::{self, MeetingKey, ShutdownOutcome};
use crate::eyeson::{ApiError, EndResult, EyesonClient};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::store::{Claim, Guard, MeetingStore, Outcome, StoreError};
use crate::store_handle::Store;

/// An outcome on its way to the store, and where to say whether it applied.
type Finished = crate::group_commit::Pending<Outcome>;

/// Longest the scheduler sleeps without looking at the store.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How the scheduler shuts meetings down.
#[derive(Clone, Debug)]
pub struct Scheduler {
    /// The store.
    pub store: Store,
    /// The eyeson client.
    pub client: EyesonClient,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// Poked when a meeting is tracked.
    pub wake: Arc<crate::wake::Wake>,
    /// This process's lease owner id.
    pub owner: Arc<str>,
    /// Lease length.
    pub lease: Duration,
    /// Shutdown calls in flight at once.
    pub concurrency: usize,
    /// Log and record, call nothing.
    pub dry_run: bool,
    /// First wait before a deferred shutdown (retryable failures outlasted
    /// a claim) is claimed again; doubles per claim, capped
    /// ([`domain::retry_delay`]).
    pub retry_backoff: Duration,
    /// Test-only fault injection (none in production).
    pub faults: crate::fault::Faults,
    /// Cleared at once if the outcome writer ends (`/healthz` 503), before
    /// the scheduler finishes its calls in flight and returns.
    pub tasks_ok: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
enum StepError {
    Api(ApiError),
    Store(StoreError),
}

impl StepError {
    fn is_retryable(&self) -> bool {
        match self {
            StepError::Api(e) => e.is_retryable(),
            StepError::Store(_) => true,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Api(e) => e.fmt(f),
            StepError::Store(e) => e.fmt(f),
        }
    }
}

impl Scheduler {
    /// Runs until `stop` turns true, then waits for shutdowns in flight.
    /// Returns early (and the supervisor in [`crate::app`] stops the
    /// service) if its outcome writer ends: outcomes could no longer be
    /// recorded.
    pub async fn run(self, mut stop: Shutdown) {
        // Two bounds: `calls` on shutdown calls in flight (what eyeson
        // sees), `slots` on claims this process holds, up to twice as many:
        // a claim keeps its slot until its outcome is recorded, and with
        // one bound the calls would wait on commits when thousands of
        // deadlines fall together.
        let calls = Arc::new(Semaphore::new(self.concurrency));
        let slots = Arc::new(Semaphore::new(self.concurrency.saturating_mul(2)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (finisher, mut finisher_task) = self.start_finisher();
        let mut finisher_ended = false;
        loop {
            if stop.is_stopped() {
                break;
            }
            if finisher_task.is_finished() {
                finisher_ended = true;
                self.outcome_writer_ended();
                break;
            }
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free > 0 {
                let now = self.clock.now();
                match self
                    .store
                    .claim_due(now, self.lease, &self.owner, free as u32)
                    .await
                {
                    Ok(claims) => {
                        let full = claims.len() == free;
                        for claim in claims {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let me = self.clone();
                            let finisher = finisher.clone();
                            let calls = calls.clone();
                            let claimed = Instant::now();
                            tasks.spawn(async move {
                                me.enforce(claim, claimed, &calls, &finisher).await;
                                drop(permit);
                            });
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim due meetings; retrying in 1s");
                        if stop.sleep(Duration::from_secs(1)).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            // Full: only a finished shutdown (or the poll) can make room.
            let (wake_at, poll) = if free == 0 {
                (None, MAX_SLEEP)
            } else {
                match self.store.next_wake().await {
                    Ok(t) => (t, MAX_SLEEP),
                    Err(e) => {
                        tracing::error!(error = %e, "could not read the next deadline");
                        (None, Duration::from_secs(1))
                    }
                }
            };
            if wake_at.is_some_and(|t| t <= self.clock.now()) {
                continue;
            }
            let pause = wake_at.map_or(poll, |t| t.since(self.clock.now()).min(poll));
            tracing::debug!(?pause, "scheduler sleeping");
            tokio::select! {
                () = crate::clock::sleep_until_or(&*self.clock, wake_at, poll) => {}
                _ = self.wake.scheduler().notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = stop.stopped() => {}
                _ = &mut finisher_task => {
                    finisher_ended = true;
                    self.outcome_writer_ended();
                    break;
                }
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for shutdown calls in flight");
        }
        while tasks.join_next().await.is_some() {}
        drop(finisher);
        if !finisher_ended {
            let _ = finisher_task.await;
        }
    }

    fn outcome_writer_ended(&self) {
        self.tasks_ok
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tracing::error!(
            "the outcome writer ended; the scheduler finishes its calls in flight and stops"
        );
    }

    /// The outcome writer (see [`group_commit`](crate::group_commit)).
    fn start_finisher(&self) -> (mpsc::Sender<Finished>, tokio::task::JoinHandle<()>) {
        let (store, owner) = (self.store.clone(), self.owner.clone());
        crate::group_commit::start(
            &self.faults,
            "outcome-writer",
            move |outcomes: Vec<Outcome>| {
                let (store, owner) = (store.clone(), owner.clone());
                async move { store.finish(&owner, &outcomes).await }
            },
        )
    }

    /// Ends one meeting claimed at `claimed` (once one of the `calls` is
    /// free) and records the outcome.
    async fn enforce(
        &self,
        claim: Claim,
        claimed: Instant,
        calls: &Semaphore,
        finisher: &mpsc::Sender<Finished>,
    ) {
        // The whole shutdown (the wait for a call, every retry, every call
        // in flight) ends well inside the lease, counted from the claim:
        // once it expires the meeting may be claimed again (by another
        // process, or by this one), and two DELETEs must never be in flight
        // at once. What is cut short is deferred. `None`: the store failed;
        // nothing is recorded and the lease runs out.
        let budget = self
            .lease
            .saturating_sub(self.lease / 4)
            .saturating_sub(claimed.elapsed());
        let call = async {
            // Never closed: `run` owns it until every task has ended.
            let _call = calls.acquire().await.ok()?;
            self.outcome(&claim, claimed).await
        };
        let outcome = match tokio::time::timeout(budget, call).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => return,
            Err(_) => {
                tracing::warn!(room = %claim.key.room_id, ?budget, "shutdown cut short before the lease expires");
                ShutdownOutcome::Deferred
            }
        };
        let now = self.clock.now();
        metrics::shutdown(outcome);
        if matches!(
            outcome,
            ShutdownOutcome::ShutDown | ShutdownOutcome::AlreadyEnded
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
            ShutdownOutcome::DryRun => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "dry run: would shut down")
            }
            ShutdownOutcome::Refused | ShutdownOutcome::GaveUp => {}
            ShutdownOutcome::Deferred | ShutdownOutcome::Locked => {}
        }
        // Retryable failures and a locked key are never final: the claim is
        // released and the meeting claimed again after a bounded, growing
        // wait (one call per claim while locked: never a burst).
        let retry_at = outcome
            .is_deferred()
            .then(|| now.plus(domain::retry_delay(self.retry_backoff, claim.attempts)));
        if let Some(at) = retry_at {
            if outcome == ShutdownOutcome::Locked {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, attempts = claim.attempts, retry_at = %at, "eyeson answered 423: the API key is locked (usage limits exceeded); shutdown deferred");
            } else {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, attempts = claim.attempts, retry_at = %at, "shutdown deferred after retryable failures");
            }
        } else {
            metrics::attempts(claim.attempts);
        }
        let (reply, answer) = oneshot::channel();
        let record = Outcome {
            key: key.clone(),
            state: outcome.final_state(),
            at: now,
            attempts: claim.attempts,
            retry_at,
        };
        let recorded = match finisher.send((record, reply)).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err("outcome writer stopped".into())),
            Err(_) => Err("outcome writer stopped".into()),
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(room = %key.room_id, "lease lost before the outcome was recorded")
            }
            // The lease will expire and the meeting be claimed again; the
            // repeated call then answers 404 and the meeting is closed.
            Err(e) => {
                tracing::error!(error = %e, room = %key.room_id, "could not record shutdown outcome")
            }
        }
    }

    /// The outcome to record; `None` when the store failed and the lease
    /// should simply expire.
    async fn outcome(&self, claim: &Claim, claimed: Instant) -> Option<ShutdownOutcome> {
        let key = &claim.key;
        if self.dry_run {
            return Some(if claim.guard.newer_meeting {
                ShutdownOutcome::SkippedNewerMeeting
            } else {
                ShutdownOutcome::DryRun
            });
        }
        // Stop starting attempts half a lease after the claim, so the last
        // one (10 s timeout at most) ends well before another worker may
        // claim.
        let budget = self.lease / 2;
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_max_times(8)
            .with_jitter();
        // The first attempt uses the guard read with the claim; a retry
        // reads it again.
        let claimed_guard = std::sync::Mutex::new(Some(claim.guard));
        let result = (|| async {
            let known = claimed_guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.attempt(key, known).await
        })
            .retry(policy)
            .when(|e: &StepError| e.is_retryable() && claimed.elapsed() < budget)
            // Honour 429's Retry-After, capped so the budget still holds.
            .adjust(|e: &StepError, wait: Option<Duration>| match (e, wait) {
                (StepError::Api(ApiError::Throttled(Some(after))), Some(wait)) => {
                    Some(wait.max((*after).min(Duration::from_secs(5))))
                }
                (_, wait) => wait,
            })
            .notify(|e: &StepError, wait: Duration| {
                ::metrics::counter!(metrics::SHUTDOWN_RETRIES).increment(1);
                tracing::warn!(room = %key.room_id, error = %e, ?wait, "shutdown call failed; retrying");
            })
            .await;
        match result {
            Ok(outcome) => Some(outcome),
            // Logged once by `enforce`, with the retry time.
            Err(StepError::Api(e)) if e.is_locked() => Some(ShutdownOutcome::Locked),
            Err(StepError::Api(e)) if !e.is_retryable() => {
                tracing::error!(room = %key.room_id, error = %e, "eyeson refused the shutdown; not retrying");
                if matches!(e, ApiError::Status(401 | 403)) {
                    Some(ShutdownOutcome::Refused)
                } else {
                    Some(ShutdownOutcome::GaveUp)
                }
            }
            // The store, not eyeson, failed (the database is gone): giving
            // up would record `failed` for a meeting nobody tried to end.
            // Record nothing; the lease expires and the meeting is claimed
            // again once the store answers.
            Err(StepError::Store(e)) => {
                tracing::error!(room = %key.room_id, error = %e, "store unavailable during shutdown; the meeting will be claimed again after its lease");
                None
            }
            Err(e) => {
                tracing::error!(room = %key.room_id, error = %e, "shutdown failed; retries exhausted for this claim");
                Some(ShutdownOutcome::Deferred)
            }
        }
    }

    /// One attempt: check that eyeson has not reported the meeting ended
    /// (a shutdown delivery during a retry backoff: the room may already
    /// host a new meeting we have not heard of) and that no newer meeting
    /// runs in the room (a `DELETE /rooms/{id}` would end either), then
    /// call. `known`: the guard as the claim read it, for the first attempt.
    async fn attempt(
        &self,
        key: &MeetingKey,
        known: Option<Guard>,
    ) -> Result<ShutdownOutcome, StepError> {
        let guard = match known {
            Some(guard) => guard,
            None => self.store.guard(key).await.map_err(StepError::Store)?,
        };
        if domain::ended_by_cutoff(key, guard.cutoff) {
            return Ok(ShutdownOutcome::AlreadyEnded);
        }
        if guard.newer_meeting {
            return Ok(ShutdownOutcome::SkippedNewerMeeting);
        }
        match self.client.end_meeting(&key.room_id).await {
            Ok(EndResult::Ended) => Ok(ShutdownOutcome::ShutDown),
            Ok(EndResult::NotRunning) => Ok(ShutdownOutcome::AlreadyEnded),
            Err(e) => Err(StepError::Api(e)),
        }
    }
}
