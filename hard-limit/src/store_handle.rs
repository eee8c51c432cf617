//! [`Store`]: the one store handle the service holds. It wraps the
//! configured [`Engine`] from outside: every write returns what it changed
//! ([`Written`]), and this handle applies that once the write committed,
//! to the per-state counts of `/metrics` ([`crate::meeting_gauges`]) and
//! to the write-health flag of `/healthz`. The store itself knows neither.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Leader;
use crate::domain::{DeadlineChange, MeetingKey, MeetingState, Plan, RoomId, Timestamp};
use crate::meeting_gauges::MeetingGauges;
use crate::store::{
    self, AdminStore, Applied, Caller, Claim, Closing, DeadlineMoved, Engine, ForwardClaim,
    ForwardRecord, ForwardStore, Guard, LimitKind, LimitRule, MeetingStore, MeetingView,
    NewForward, Outcome, PgStore, RoomHistory, RoomMeeting, SqliteStore, StoreError, WarnClaim,
    WarnRecord, Written,
};

/// The configured engine behind one cheap-to-clone handle, with the gauges
/// and the write-health flag its writes keep.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// Whether the last write that changed something committed.
    write_ok: Arc<AtomicBool>,
    /// Meetings by state, kept from this handle's writes.
    gauges: Arc<MeetingGauges>,
    /// The chores leader election, on PostgreSQL.
    leader: Option<Arc<Leader>>,
}

impl<E: Engine> From<E> for Store {
    fn from(engine: E) -> Self {
        Store::new(Arc::new(engine))
    }
}

impl Store {
    fn new(engine: Arc<dyn Engine>) -> Self {
        let leader =
            (engine.as_any().downcast_ref::<PgStore>()).map(|pg| Arc::new(Leader::new(pg)));
        Store {
            engine,
            write_ok: Arc::new(AtomicBool::new(true)),
            gauges: Arc::default(),
            leader,
        }
    }

    /// Opens (creating if needed) and migrates the store a URL names.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Store::new(store::connect(url).await?))
    }

    /// The SQLite engine, if that is the one (for its test hooks).
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        self.engine.as_any().downcast_ref()
    }

    /// The PostgreSQL engine, if that is the one.
    pub fn postgres(&self) -> Option<&PgStore> {
        self.engine.as_any().downcast_ref()
    }

    /// Gives up the chores lock, closes the connections (after the last
    /// user is done).
    pub async fn close(&self) {
        if let Some(leader) = &self.leader {
            leader.release().await;
        }
        self.engine.close().await
    }

    /// Whether the last write that changed something committed: false from
    /// a failed write until a later one commits a change (for `/healthz`: a
    /// read-only or full store answers reads but loses nothing only by
    /// refusing deliveries, so it is not healthy).
    pub fn last_write_ok(&self) -> bool {
        self.write_ok.load(Ordering::SeqCst)
    }

    /// After a failed write: commits a probe write, and if it works marks
    /// the store writable again (so an idle service recovers without
    /// traffic). Without a failed write it does nothing.
    pub async fn recheck_writes(&self) -> bool {
        if self.last_write_ok() {
            return true;
        }
        self.write(self.engine.probe_write().await).is_ok()
    }

    /// Meetings by state as this process knows them: every write through
    /// this handle (and its clones) keeps them current
    /// ([`crate::meeting_gauges`]).
    pub fn gauges(&self) -> &Arc<MeetingGauges> {
        &self.gauges
    }

    /// Applies what a write did: a commit's state changes go to the gauges;
    /// a commit that changed something sets the health flag, an error
    /// clears it. A commit that changed nothing proves nothing (an empty
    /// transaction commits on a full disk too).
    fn write<T>(&self, result: Result<Written<T>, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(w) => {
                self.gauges.apply(&w.delta);
                if w.recount {
                    self.gauges.request_recount();
                }
                if w.changed && !self.write_ok.swap(true, Ordering::SeqCst) {
                    tracing::info!("the store accepts writes again");
                }
                Ok(w.value)
            }
            // A constraint the input broke says nothing of the store's
            // health (the handlers validate first; this is the backstop).
            Err(e) if e.is_constraint_violation() => Err(e),
            Err(e) => {
                if self.write_ok.swap(false, Ordering::SeqCst) {
                    tracing::error!(error = %e, "a write to the store failed; /healthz answers 503 until one succeeds");
                }
                Err(e)
            }
        }
    }

    /// Inserts many meetings at once, in one transaction, behind the
    /// gauges' back (benchmarks and tests; the service itself goes
    /// through [`MeetingStore::apply`]).
    pub async fn bulk_insert(
        &self,
        rows: &[(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.engine.bulk_insert(rows, now).await
    }

    /// Test hook: moves an open meeting's deadline (as an operator's
    /// extension would). Returns whether a meeting was changed. Not for
    /// production use.
    #[doc(hidden)]
    pub async fn set_deadline_for_tests(
        &self,
        key: &MeetingKey,
        deadline: Timestamp,
    ) -> Result<bool, StoreError> {
        self.engine.set_deadline_for_tests(key, deadline).await
    }

    /// Test hook: the stored warning of a meeting, as `(warn_state,
    /// warn_for)`. Not for production use.
    #[doc(hidden)]
    pub async fn warning_for_tests(
        &self,
        key: &MeetingKey,
    ) -> Result<Option<(Option<String>, Option<i64>)>, StoreError> {
        self.engine.warning_for_tests(key).await
    }

    /// Whether this process runs the singleton chores (reconciliation,
    /// pruning, webhook registration): always on SQLite (one host); on
    /// PostgreSQL, the one replica holding the chores advisory lock.
    /// ([`crate::cluster::Leader`]).
    pub async fn chores_leader(&self) -> bool {
        match &self.leader {
            Some(leader) => leader.leads().await,
            None => true,
        }
    }

    /// Applies a batch of deliveries' plans and writes the deliveries to
    /// forward into the outbox, in one transaction: once it returns `Ok`,
    /// both are durable.
    pub async fn apply_deliveries(
        &self,
        plans: &[Plan],
        forwards: &[NewForward],
        now: Timestamp,
    ) -> Result<Vec<Applied>, StoreError> {
        self.write(self.engine.apply_deliveries(plans, forwards, now).await)
    }
}

impl AdminStore for Store {
    async fn move_deadline(
        &self,
        room: &RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<DeadlineMoved, StoreError> {
        self.write(
            (self.engine)
                .move_deadline(room, expected_start, change, now, caller)
                .await,
        )
    }
    async fn history(&self, room: &RoomId, limit: u32) -> Result<RoomHistory, StoreError> {
        self.engine.history(room, limit).await
    }
    async fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> Result<Vec<(MeetingKey, Timestamp)>, StoreError> {
        self.engine.planned_deadlines(started_since).await
    }
    async fn limit_rules(&self) -> Result<Vec<LimitRule>, StoreError> {
        self.engine.limit_rules().await
    }
    async fn set_limit(
        &self,
        kind: LimitKind,
        key: &str,
        limit: Option<Duration>,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<Option<Duration>, StoreError> {
        self.write(self.engine.set_limit(kind, key, limit, now, caller).await)
    }
}

impl ForwardStore for Store {
    async fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ForwardClaim>, StoreError> {
        self.write(self.engine.claim_forwards(now, lease, owner, limit).await)
    }
    async fn finish_forwards(
        &self,
        owner: &str,
        records: &[ForwardRecord],
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish_forwards(owner, records, now).await)
    }
    async fn pending_forwards(&self) -> Result<u64, StoreError> {
        self.engine.pending_forwards().await
    }
}

impl MeetingStore for Store {
    async fn apply(&self, plans: &[Plan], now: Timestamp) -> Result<Vec<Applied>, StoreError> {
        self.apply_deliveries(plans, &[], now).await
    }
    async fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        self.write(self.engine.claim_due(now, lease, owner, limit).await)
    }
    async fn guard(&self, key: &MeetingKey) -> Result<Guard, StoreError> {
        self.engine.guard(key).await
    }
    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish(owner, outcomes).await)
    }
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        self.engine.next_wake().await
    }
    async fn count_due_before(&self, until: Timestamp, cap: u32) -> Result<u64, StoreError> {
        self.engine.count_due_before(until, cap).await
    }
    async fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> Result<Closing, StoreError> {
        self.write(self.engine.close_unlisted(listed, known_before, now).await)
    }
    async fn list(
        &self,
        finished_since: Timestamp,
        after: Option<&MeetingKey>,
        limit: u32,
    ) -> Result<Vec<MeetingView>, StoreError> {
        self.engine.list(finished_since, after, limit).await
    }
    async fn current_for_room(&self, room: &RoomId) -> Result<Option<RoomMeeting>, StoreError> {
        self.engine.current_for_room(room).await
    }
    async fn count_by_state(&self) -> Result<Vec<(MeetingState, u64)>, StoreError> {
        self.engine.count_by_state().await
    }
    async fn prune(&self, finished_before: Timestamp) -> Result<u64, StoreError> {
        let r = self.engine.prune(finished_before).await;
        if r.is_err() {
            // On PostgreSQL the meetings may be gone though the audit's
            // cleanup failed: count again rather than guess.
            self.gauges.request_recount();
        }
        self.write(r)
    }
    async fn forget_future(&self, starts_after: Timestamp) -> Result<u64, StoreError> {
        self.write(self.engine.forget_future(starts_after).await)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.engine.ping().await
    }
    async fn claim_warnings(
        &self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<WarnClaim>, StoreError> {
        self.write(
            (self.engine)
                .claim_warnings(now, warn_before, lease, owner, limit)
                .await,
        )
    }
    async fn finish_warnings(
        &self,
        owner: &str,
        records: &[WarnRecord],
    ) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish_warnings(owner, records).await)
    }
    async fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.engine.next_warning(now, warn_before).await
    }
}
