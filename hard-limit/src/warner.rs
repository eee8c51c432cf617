//! The in-meeting warning (`--warn-before`): at `deadline − warn` the
//! participants are told, once per meeting and deadline, in the meeting's
//! chat.
//!
//! It runs like the [`crate::scheduler`], beside it: sleep until the next
//! warning is due ([`MeetingStore::next_warning`]) or a poke
//! ([`crate::wake::Wake`]), claim what is due under a lease
//! ([`MeetingStore::claim_warnings`], `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), then for each claim: join the running meeting as a guest
//! with the room's guest token (`POST /guests/{guest_token}`, which cannot
//! start a meeting, unlike `POST /rooms`) and post the chat message. Outcomes
//! are group-committed and apply only while the claim holds the lease.
//!
//! Exactly once: a claim records the deadline it is for; a warning is due
//! again only if the deadline changes (an extension re-arms it) or the claim
//! lapsed (a crashed replica, or a deferred retry). The price, as for
//! shutdowns: a crash between eyeson's answer and our commit repeats the
//! message after the lease. Never for a meeting that ended: only `running`
//! meetings whose deadline is ahead are claimed, the room's shutdown cutoff
//! and newer meetings are checked before each attempt, and a 410 (the
//! meeting ended) is recorded and not retried.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::domain::{self, GuestToken, WarningOutcome};
use crate::eyeson::{AccessKey, ApiError, EyesonClient, GuestJoin, Posted};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::store::{MeetingStore, StoreError, WarnClaim, WarnRecord};
use crate::store_handle::Store;
use crate::wake::Wake;

/// An outcome on its way to the store, and where to say whether it applied.
type Finished = crate::group_commit::Pending<WarnRecord>;

/// Longest the warner sleeps without looking at the store (meetings written
/// or extended by another process on SQLite are noticed by then).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What the warner says and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// How long before the deadline.
    pub before: Duration,
    /// The guest's display name.
    pub name: String,
    /// The chat message.
    pub text: String,
}

/// How the warner warns meetings.
#[derive(Clone, Debug)]
pub struct Warner {
    /// The store.
    pub store: Store,
    /// The eyeson client.
    pub client: EyesonClient,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// Poked when a meeting is tracked or a deadline may have moved.
    pub wake: Arc<Wake>,
    /// This process's lease owner id.
    pub owner: Arc<str>,
    /// Lease length (as for shutdowns).
    pub lease: Duration,
    /// Warnings in flight at once.
    pub concurrency: usize,
    /// Log and record, call nothing.
    pub dry_run: bool,
    /// First wait before a deferred warning is claimed again.
    pub retry_backoff: Duration,
    /// When, as whom, what.
    pub warning: Arc<Warning>,
    /// Test-only fault injection (none in production).
    pub faults: crate::fault::Faults,
    /// Cleared at once if the warning writer ends (`/healthz` 503).
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

impl Warner {
    /// Runs until the stop signal, then waits for warnings in flight.
    /// Returns early (and the supervisor stops the service) if its writer
    /// ends.
    pub async fn run(self, mut stop: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (writer, mut writer_task) = self.start_writer();
        let mut writer_ended = false;
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
            let free = slots.available_permits();
            if free > 0 {
                let now = self.clock.now();
                match self
                    .store
                    .claim_warnings(
                        now,
                        self.warning.before,
                        self.lease,
                        &self.owner,
                        free as u32,
                    )
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
                                me.warn(claim, &writer).await;
                                drop(permit);
                            });
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim due warnings; retrying in 1s");
                        if stop.sleep(Duration::from_secs(1)).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let (wake_at, poll) = if free == 0 {
                (None, MAX_SLEEP)
            } else {
                let now = self.clock.now();
                match self.store.next_warning(now, self.warning.before).await {
                    Ok(t) => (t, MAX_SLEEP),
                    Err(e) => {
                        tracing::error!(error = %e, "could not read the next warning time");
                        (None, Duration::from_secs(1))
                    }
                }
            };
            if wake_at.is_some_and(|t| t <= self.clock.now()) {
                continue;
            }
            tokio::select! {
                () = crate::clock::sleep_until_or(&*self.clock, wake_at, poll) => {}
                _ = self.wake.warner().notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = stop.stopped() => {}
                _ = &mut writer_task => {
                    writer_ended = true;
                    self.writer_ended();
                    break;
                }
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for warnings in flight");
        }
        while tasks.join_next().await.is_some() {}
        drop(writer);
        if !writer_ended {
            let _ = writer_task.await;
        }
    }

    fn writer_ended(&self) {
        self.tasks_ok
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tracing::error!(
            "the warning writer ended; the warner finishes its calls in flight and stops"
        );
    }

    /// The outcome writer (see [`group_commit`](crate::group_commit)).
    fn start_writer(&self) -> (mpsc::Sender<Finished>, tokio::task::JoinHandle<()>) {
        let (store, owner) = (self.store.clone(), self.owner.clone());
        crate::group_commit::start(
            &self.faults,
            "warning-writer",
            move |records: Vec<WarnRecord>| {
                let (store, owner) = (store.clone(), owner.clone());
                async move { store.finish_warnings(&owner, &records).await }
            },
        )
    }

    /// Warns one claimed meeting and records the outcome.
    async fn warn(&self, claim: WarnClaim, writer: &mpsc::Sender<Finished>) {
        // Everything ends well inside the lease, so two warnings for one
        // claim are never in flight at once; what is cut short is deferred.
        let budget = self.lease.saturating_sub(self.lease / 4);
        let outcome = match tokio::time::timeout(budget, self.outcome(&claim)).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => return,
            Err(_) => {
                tracing::warn!(room = %claim.key.room_id, ?budget, "warning cut short before the lease expires");
                WarningOutcome::Deferred
            }
        };
        let now = self.clock.now();
        metrics::warning(outcome);
        let key = &claim.key;
        match outcome {
            WarningOutcome::Sent => {
                let due = claim.deadline.minus(self.warning.before);
                metrics::warning_lateness((now.0 - due.0) as f64 / 1000.0);
                tracing::info!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "meeting warned")
            }
            WarningOutcome::MeetingEnded => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "not warned: the meeting had ended")
            }
            WarningOutcome::NoGuestToken => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, "not warned: no guest token is known for the meeting")
            }
            WarningOutcome::SkippedNewerMeeting => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "not warned: a newer meeting runs in the room")
            }
            WarningOutcome::DryRun => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "dry run: would warn")
            }
            WarningOutcome::Failed | WarningOutcome::Deferred => {}
        }
        let retry_at = (outcome == WarningOutcome::Deferred)
            .then(|| now.plus(domain::retry_delay(self.retry_backoff, claim.attempts)));
        if let Some(at) = retry_at {
            tracing::warn!(room = %key.room_id, attempts = claim.attempts, retry_at = %at, "warning deferred after retryable failures");
        }
        let (reply, answer) = oneshot::channel();
        let record = WarnRecord {
            key: key.clone(),
            deadline: claim.deadline,
            attempts: claim.attempts,
            outcome,
            at: now,
            retry_at,
        };
        let recorded = match writer.send((record, reply)).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err("warning writer stopped".into())),
            Err(_) => Err("warning writer stopped".into()),
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(room = %key.room_id, "warning lease lost (or the deadline moved) before the outcome was recorded")
            }
            Err(e) => {
                tracing::error!(error = %e, room = %key.room_id, "could not record the warning outcome")
            }
        }
    }

    /// The outcome to record; `None` when the store failed and the lease
    /// should simply expire.
    async fn outcome(&self, claim: &WarnClaim) -> Option<WarningOutcome> {
        let Some(token) = &claim.guest_token else {
            return Some(WarningOutcome::NoGuestToken);
        };
        if self.dry_run {
            return Some(match self.guard(claim).await {
                Ok(Some(o)) => o,
                _ => WarningOutcome::DryRun,
            });
        }
        let budget = self.lease / 2;
        let started = Instant::now();
        // The access key of a join that worked is reused by the retries:
        // a failed message does not make the bot join twice.
        let joined: Mutex<Option<AccessKey>> = Mutex::new(None);
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_max_times(8)
            .with_jitter();
        let key = &claim.key;
        let result = (|| self.attempt(claim, token, &joined))
            .retry(policy)
            .when(|e: &StepError| e.is_retryable() && started.elapsed() < budget)
            .adjust(|e: &StepError, wait: Option<Duration>| match (e, wait) {
                (StepError::Api(ApiError::Throttled(Some(after))), Some(wait)) => {
                    Some(wait.max((*after).min(Duration::from_secs(5))))
                }
                (_, wait) => wait,
            })
            .notify(|e: &StepError, wait: Duration| {
                ::metrics::counter!(metrics::WARNING_RETRIES).increment(1);
                tracing::warn!(room = %key.room_id, error = %e, ?wait, "warning call failed; retrying");
            })
            .await;
        match result {
            Ok(outcome) => Some(outcome),
            // A locked key may be unlocked before the deadline: deferred
            // (one call per claim), not failed.
            Err(StepError::Api(e)) if e.is_locked() => {
                tracing::warn!(room = %key.room_id, "eyeson answered 423: the API key is locked (usage limits exceeded); warning deferred");
                Some(WarningOutcome::Deferred)
            }
            Err(StepError::Api(e)) if !e.is_retryable() => {
                tracing::error!(room = %key.room_id, error = %e, "eyeson refused the warning; not retrying");
                Some(WarningOutcome::Failed)
            }
            Err(StepError::Store(e)) => {
                tracing::error!(room = %key.room_id, error = %e, "store unavailable during a warning; it will be claimed again after its lease");
                None
            }
            Err(e) => {
                tracing::error!(room = %key.room_id, error = %e, "warning failed; retries exhausted for this claim");
                Some(WarningOutcome::Deferred)
            }
        }
    }

    /// Whether the meeting must not be warned: eyeson reported it ended (a
    /// shutdown cutoff covers it) or a newer meeting runs in the room (the
    /// guest token would join that one).
    async fn guard(&self, claim: &WarnClaim) -> Result<Option<WarningOutcome>, StepError> {
        let key = &claim.key;
        let guard = self.store.guard(key).await.map_err(StepError::Store)?;
        if domain::ended_by_cutoff(key, guard.cutoff) {
            return Ok(Some(WarningOutcome::MeetingEnded));
        }
        if guard.newer_meeting {
            return Ok(Some(WarningOutcome::SkippedNewerMeeting));
        }
        Ok(None)
    }

    /// One attempt: the guards, the guest join (unless an earlier attempt
    /// of this claim joined), the message.
    async fn attempt(
        &self,
        claim: &WarnClaim,
        token: &GuestToken,
        joined: &Mutex<Option<AccessKey>>,
    ) -> Result<WarningOutcome, StepError> {
        if let Some(o) = self.guard(claim).await? {
            return Ok(o);
        }
        let known = joined.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let access = match known {
            Some(k) => k,
            None => match self
                .client
                .join_as_guest(token, &self.warning.name)
                .await
                .map_err(StepError::Api)?
            {
                GuestJoin::Joined(k) => {
                    *joined.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
                    k
                }
                GuestJoin::MeetingEnded => return Ok(WarningOutcome::MeetingEnded),
            },
        };
        match self
            .client
            .post_chat(&access, &self.warning.text)
            .await
            .map_err(StepError::Api)?
        {
            Posted::Sent => Ok(WarningOutcome::Sent),
            Posted::MeetingEnded => Ok(WarningOutcome::MeetingEnded),
        }
    }
}
