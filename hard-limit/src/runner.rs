//! The one leased-job runner, under the scheduler, warner, presence check
//! and forwarder: sleep until something is due (on the service's
//! [`Clock`], a poke, a finished claim, or [`Spec::poll`] at most), claim
//! it under a lease, work on each claim with retries, group-commit the
//! outcomes.
//!
//! A process that dies mid-work leaves leases that expire and are claimed
//! again: nothing due is lost, but a crash between a call and its commit
//! repeats the call. So that two calls for one item are never in flight at
//! once, a claim's work ends within [`Job::budget`] and its retries stop
//! after half the lease.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::eyeson::ApiError;
use crate::fault::Faults;
use crate::group_commit::Writer;
use crate::stop::StopSignal;
use crate::store::StoreError;
use crate::supervisor::Task;

/// Longest a job sleeps without looking at the store, by default.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A random number, for lease owner ids and jitter (a fresh `RandomState`
/// is randomly keyed: no crate for randomness).
pub(crate) fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Per record of a batch, whether it applied (its lease still held).
pub type Applied = Result<Vec<bool>, StoreError>;

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// eyeson answered badly or not at all.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed: nothing is recorded and the lease runs out.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a claim's work ended without an outcome ([`Job::failed`]).
#[derive(Debug)]
pub enum Failure {
    /// eyeson answered 423: the API key is locked (later may help).
    Locked,
    /// eyeson refused (4xx but 423/429, or an answer that does not parse).
    Refused(ApiError),
    /// Retryable failures outlasted the claim's retry budget.
    Exhausted,
    /// The claim's time ([`Job::budget`]) ran out.
    CutShort,
}

/// How a job runs.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Its task: its name, and its and its writer's fault names.
    pub task: Task,
    /// What one item's work is called in logs ("shutdown").
    pub what: &'static str,
    /// Longest sleep without looking at the store.
    pub poll: Duration,
    /// Claims held per call in flight: more than one lets calls go on while
    /// earlier outcomes wait for their commit.
    pub claims_per_call: usize,
    /// The counter of retries inside a claim; `None`: one attempt per claim.
    pub retries: Option<&'static str>,
    /// How often [`Job::tick`] runs (first at start); `None`: never.
    pub tick: Option<Duration>,
}

impl Spec {
    /// `task`'s job, one claim per call, polling every [`MAX_SLEEP`].
    pub const fn new(task: Task, what: &'static str, retries: Option<&'static str>) -> Self {
        Spec {
            task,
            what,
            poll: MAX_SLEEP,
            claims_per_call: 1,
            retries,
            tick: None,
        }
    }
}

/// One kind of leased background work.
pub trait Job: Send + Sync + 'static {
    /// One item claimed under a lease.
    type Claim: Send + Sync + 'static;
    /// What working on one claim achieved.
    type Outcome: Send + 'static;
    /// What is written to the store for it.
    type Record: Send + 'static;

    /// How it runs.
    const SPEC: Spec;

    /// Claims what is due, as [`Ask`]ed.
    fn claim(
        &self,
        ask: Ask<'_>,
    ) -> impl Future<Output = Result<Vec<Self::Claim>, StoreError>> + Send;

    /// When the next item is due (`None`: only a poke or the poll tells).
    fn next_due(
        &self,
        _now: Timestamp,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// The room a claim is for (logs).
    fn room(claim: &Self::Claim) -> &str;

    /// One attempt at a claim; `n` counts the claim's attempts from 0.
    fn attempt(
        &self,
        claim: &Self::Claim,
        n: usize,
    ) -> impl Future<Output = Result<Self::Outcome, StepError>> + Send;

    /// The outcome when the attempts end in `failure`.
    fn failed(&self, claim: &Self::Claim, failure: Failure) -> Self::Outcome;

    /// How long a claim's work may take (3/4 of the lease, well before
    /// another worker may claim it); `None`: attempts are bounded otherwise.
    fn budget(&self, lease: Duration) -> Option<Duration> {
        Some(lease.saturating_sub(lease / 4))
    }

    /// The record of an outcome reached at `now` (and its metrics and logs).
    fn conclude(&self, claim: &Self::Claim, outcome: Self::Outcome, now: Timestamp)
        -> Self::Record;

    /// Writes a batch of records in one transaction.
    fn commit(
        &self,
        owner: &str,
        records: &[Self::Record],
        now: Timestamp,
    ) -> impl Future<Output = Applied> + Send;

    /// Periodic chores ([`Spec::tick`]).
    fn tick(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A claim's terms: up to `limit` items due at `now`, leased to `owner`
/// for `lease`.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub(crate) now: Timestamp,
    pub(crate) lease: Duration,
    pub(crate) owner: &'a str,
    pub(crate) limit: u32,
}

/// What every runner of this process shares: the lease owner id and
/// length, the clock.
#[derive(Clone, Debug)]
pub struct Context {
    pub(crate) owner: Arc<str>,
    pub(crate) lease: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// Test-only fault injection (none in production).
    pub(crate) faults: Faults,
    /// Cleared at once if an outcome writer ends (`/healthz` 503).
    pub(crate) tasks_ok: Arc<AtomicBool>,
}

/// A job, and how it runs.
#[derive(Debug)]
pub struct Runner<J> {
    job: Arc<J>,
    cx: Context,
    concurrency: usize,
    wake: Arc<Notify>,
}

impl<J: Job> Runner<J> {
    /// `job` with `concurrency` calls in flight at once, woken by `wake`.
    pub fn new(job: J, cx: Context, concurrency: usize, wake: Arc<Notify>) -> Self {
        Runner {
            job: Arc::new(job),
            cx,
            concurrency,
            wake,
        }
    }

    /// Runs until `stop`, then waits for the claims in flight; ends early
    /// (and the service stops) if its outcome writer ends.
    pub async fn run(self, mut stop: StopSignal) {
        let (me, spec) = (Arc::new(self), J::SPEC);
        // `calls` bounds calls in flight, `slots` claims held until recorded.
        let calls = Arc::new(Semaphore::new(me.concurrency));
        let slots = me.concurrency.saturating_mul(spec.claims_per_call);
        let slots = Arc::new(Semaphore::new(slots));
        let mut tasks = JoinSet::new();
        let (writer, mut writer_task) = me.start_writer();
        let mut writer_ended = false;
        let mut ticked: Option<Instant> = None;
        while !stop.is_stopped() {
            if writer_task.is_finished() {
                writer_ended = true;
                break;
            }
            while tasks.try_join_next().is_some() {}
            let tick = |every| ticked.is_none_or(|t: Instant| t.elapsed() >= every);
            if spec.tick.is_some_and(tick) {
                ticked = Some(Instant::now());
                me.job.tick().await;
            }
            let free = slots.available_permits();
            if free > 0 {
                let ask = Ask {
                    now: me.cx.clock.now(),
                    lease: me.cx.lease,
                    owner: &me.cx.owner,
                    limit: free as u32,
                };
                match me.job.claim(ask).await {
                    Ok(claims) => {
                        let full = claims.len() == free;
                        for claim in claims {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let (me, calls, writer) = (me.clone(), calls.clone(), writer.clone());
                            let claimed = Instant::now();
                            tasks.spawn(async move {
                                me.settle(claim, claimed, &calls, &writer).await;
                                drop(permit);
                            });
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(task = spec.task.name(), error = %e, "could not claim what is due; retrying in 1s");
                        if stop.sleep(Duration::from_secs(1)).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            // Full: only a finished claim (or the poll) can make room.
            let (due, poll) = match free {
                0 => (None, spec.poll),
                _ => match me.job.next_due(me.cx.clock.now()).await {
                    Ok(t) => (t, spec.poll),
                    Err(e) => {
                        tracing::error!(task = spec.task.name(), error = %e, "could not read when the next {} is due", spec.what);
                        (None, Duration::from_secs(1))
                    }
                },
            };
            let now = me.cx.clock.now();
            if due.is_some_and(|t| t <= now) {
                continue;
            }
            let pause = due.map_or(poll, |t| t.since(now).min(poll));
            tracing::debug!(?pause, "{} sleeping", spec.task.name());
            tokio::select! {
                () = crate::clock::sleep_until_or(&*me.cx.clock, due, poll) => {}
                _ = me.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = stop.stopped() => {}
                _ = &mut writer_task => {
                    writer_ended = true;
                    break;
                }
            }
        }
        if writer_ended {
            me.cx.tasks_ok.store(false, Ordering::SeqCst);
            tracing::error!(
                "the {} ended; the {} finishes its calls in flight and stops",
                spec.task.faults()[1],
                spec.task.name()
            );
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for {} calls in flight", spec.what);
        }
        while tasks.join_next().await.is_some() {}
        drop(writer);
        if !writer_ended {
            let _ = writer_task.await;
        }
    }

    /// The outcome writer (see [`group_commit`](crate::group_commit)).
    fn start_writer(&self) -> (Writer<J::Record, bool>, JoinHandle<()>) {
        let (job, cx) = (self.job.clone(), self.cx.clone());
        let name = J::SPEC.task.faults()[1];
        crate::group_commit::start(&self.cx.faults, name, move |records| {
            let (job, cx) = (job.clone(), cx.clone());
            async move { job.commit(&cx.owner, &records, cx.clock.now()).await }
        })
    }

    /// Works on one item claimed at `claimed` (with one of the `calls`) and
    /// records the outcome.
    async fn settle(
        &self,
        claim: J::Claim,
        claimed: Instant,
        calls: &Semaphore,
        writer: &Writer<J::Record, bool>,
    ) {
        let what = J::SPEC.what;
        let work = async {
            // Never closed: `run` owns it until every task has ended.
            let _call = calls.acquire().await.ok()?;
            self.outcome(&claim, claimed).await
        };
        let outcome = match self.job.budget(self.cx.lease) {
            None => work.await,
            Some(budget) => {
                let budget = budget.saturating_sub(claimed.elapsed());
                match tokio::time::timeout(budget, work).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::warn!(room = %J::room(&claim), ?budget, "{what} cut short before the lease expires");
                        Some(self.job.failed(&claim, Failure::CutShort))
                    }
                }
            }
        };
        // `None`: the store failed; the lease runs out, the item is claimed again.
        let Some(outcome) = outcome else { return };
        let record = self.job.conclude(&claim, outcome, self.cx.clock.now());
        let room = J::room(&claim);
        match crate::group_commit::submit(writer, record).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(room = %room, "{what} lease lost (or what it was for changed) before the outcome was recorded; it may be done again")
            }
            Err(e) => {
                tracing::error!(error = %e, room = %room, "could not record the {what} outcome; it is claimed again after its lease")
            }
        }
    }

    /// The attempts at one claim, retried while retryable and under half
    /// the lease; `None` when the store failed.
    async fn outcome(&self, claim: &J::Claim, claimed: Instant) -> Option<J::Outcome> {
        let (what, room) = (J::SPEC.what, J::room(claim));
        let result = match J::SPEC.retries {
            None => self.job.attempt(claim, 0).await,
            Some(counter) => {
                let n = AtomicUsize::new(0);
                let budget = self.cx.lease / 2;
                let policy = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_factor(2.0)
                    .with_max_times(8)
                    .with_jitter();
                (|| self.job.attempt(claim, n.fetch_add(1, Ordering::Relaxed)))
                    .retry(policy)
                    .when(|e: &StepError| {
                        let retryable = match e {
                            StepError::Api(e) => e.is_retryable(),
                            StepError::Store(_) => true,
                        };
                        retryable && claimed.elapsed() < budget
                    })
                    // Honour 429's Retry-After, capped so the budget holds.
                    .adjust(|e: &StepError, wait: Option<Duration>| match (e, wait) {
                        (StepError::Api(ApiError::Throttled(Some(after))), Some(wait)) => {
                            Some(wait.max((*after).min(Duration::from_secs(5))))
                        }
                        (_, wait) => wait,
                    })
                    .notify(|e: &StepError, wait: Duration| {
                        ::metrics::counter!(counter).increment(1);
                        tracing::warn!(room = %room, error = %e, ?wait, "{what} call failed; retrying");
                    })
                    .await
            }
        };
        let failure = match result {
            Ok(outcome) => return Some(outcome),
            // The job says (a locked key may be unlocked before long).
            Err(StepError::Api(e)) if e.is_locked() => Failure::Locked,
            Err(StepError::Api(e)) if !e.is_retryable() => {
                tracing::error!(room = %room, error = %e, "eyeson refused the {what}; not retrying");
                Failure::Refused(e)
            }
            // Not eyeson's answer: nothing is recorded, the lease runs out.
            Err(StepError::Store(e)) => {
                tracing::error!(room = %room, error = %e, "store unavailable during a {what}; it will be claimed again after its lease");
                return None;
            }
            Err(e) => {
                tracing::error!(room = %room, error = %e, "{what} failed; retries exhausted for this claim");
                Failure::Exhausted
            }
        };
        Some(self.job.failed(claim, failure))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::SystemClock;

    /// A job in a few lines: each item's attempts follow a script.
    #[derive(Debug, Default)]
    struct Scripted {
        todo: Mutex<Vec<u32>>,
        attempts: Mutex<Vec<(u32, usize)>>,
        records: Mutex<Vec<(u32, &'static str)>>,
    }

    impl Job for Scripted {
        type Claim = u32;
        type Outcome = &'static str;
        type Record = (u32, &'static str);
        // Fault names must be the supervisor's: borrow the scheduler's.
        const SPEC: Spec = Spec::new(Task::Scheduler, "scripted call", Some("test_retries_total"));

        async fn claim(&self, ask: Ask<'_>) -> Result<Vec<u32>, StoreError> {
            let mut todo = self.todo.lock().unwrap();
            let n = todo.len().min(ask.limit as usize);
            Ok(todo.drain(..n).collect())
        }

        fn room(_: &u32) -> &str {
            "room"
        }

        async fn attempt(&self, item: &u32, n: usize) -> Result<&'static str, StepError> {
            self.attempts.lock().unwrap().push((*item, n));
            let api = |s| Err(StepError::Api(ApiError::Status(s)));
            let pause = match item {
                5 | 6 => 1200,
                7.. => 10_000,
                _ => 0,
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match item {
                1 => Ok("done"),
                2 if n == 0 => api(503),
                2 => Ok("done on retry"),
                3 => api(400),
                4 => api(423),
                5 => api(503),
                6 => Err(StepError::Store(StoreError::Corrupt("gone".into()))),
                _ => Ok("never"),
            }
        }

        fn failed(&self, _: &u32, failure: Failure) -> &'static str {
            match failure {
                Failure::Locked => "locked",
                Failure::Refused(_) => "refused",
                Failure::Exhausted => "exhausted",
                Failure::CutShort => "cut short",
            }
        }

        fn conclude(&self, item: &u32, outcome: &'static str, _: Timestamp) -> (u32, &'static str) {
            (*item, outcome)
        }

        async fn commit(&self, _: &str, records: &[(u32, &'static str)], _: Timestamp) -> Applied {
            self.records.lock().unwrap().extend_from_slice(records);
            Ok(vec![true; records.len()])
        }
    }

    #[tokio::test]
    async fn each_claim_is_attempted_retried_classified_and_recorded() {
        let job = Scripted {
            todo: Mutex::new((1..=7).collect()),
            ..Scripted::default()
        };
        let cx = Context {
            owner: "me".into(),
            // Retries stop after 1 s, a claim's work after 1.5 s.
            lease: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            faults: Faults::default(),
            tasks_ok: Arc::new(AtomicBool::new(true)),
        };
        let runner = Runner::new(job, cx.clone(), 8, Arc::new(Notify::new()));
        let job = runner.job.clone();
        let (stopper, stop) = crate::stop::signal();
        let task = tokio::spawn(runner.run(stop));
        let started = Instant::now();
        while job.records.lock().unwrap().len() < 6 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopper.stop();
        task.await.unwrap();
        let mut records = job.records.lock().unwrap().clone();
        records.sort();
        // 6: the store failed, so nothing is recorded (the lease runs out).
        assert_eq!(
            records,
            [
                (1, "done"),
                (2, "done on retry"),
                (3, "refused"),
                (4, "locked"),
                (5, "exhausted"),
                (7, "cut short"),
            ]
        );
        let attempts = job.attempts.lock().unwrap().clone();
        // Only a retryable failure within the retry budget is tried again.
        for (item, tries) in [(1, 1), (2, 2), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1)] {
            let seen: Vec<usize> = attempts
                .iter()
                .filter(|(i, _)| *i == item)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(seen, (0..tries).collect::<Vec<_>>(), "item {item}");
        }
        assert!(cx.tasks_ok.load(Ordering::SeqCst));
    }
}
