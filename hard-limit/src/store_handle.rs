//! [`Store`]: the one store handle the service holds. It wraps the
//! configured [`Engine`] from outside: every write returns what it changed
//! ([`Written`]), and this handle applies that once the write committed,
//! to the per-state counts of `/metrics` ([`crate::meeting_gauges`]) and
//! to the write-health flag of `/healthz`. The store itself knows neither.
//!
//! Reads need nothing of the handle: it dereferences to the engine, so
//! `store.list(…)` is [`Engine::list`]. Each write is a method of the
//! handle with the engine's name for it, which shadows the engine's; how a
//! write that skips the handle is caught is told at [`Engine`].

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Leader;
use crate::domain::{DeadlineChange, MeetingKey, Plan, RoomId, Timestamp};
use crate::meeting_gauges::MeetingGauges;
use crate::store::{
    self, Applied, Caller, Claim, Closing, DeadlineMoved, Engine, ForwardClaim, ForwardRecord,
    LimitKind, NewForward, Outcome, PgStore, PresenceClaim, PresenceRecord, RuleChange,
    RuleChanged, SqliteStore, StoreError, WarnClaim, WarnRecord, Written,
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
}

/// The reads, as the engine has them (its writes are shadowed by the
/// handle's, below).
impl Deref for Store {
    type Target = dyn Engine;

    fn deref(&self) -> &dyn Engine {
        &*self.engine
    }
}

/// The writes: each applies what it changed to the gauges and the health
/// flag, and answers the bare value.
impl Store {
    /// Applies plans in one transaction and commits; one result per plan.
    pub async fn apply(&self, plans: &[Plan], now: Timestamp) -> Result<Vec<Applied>, StoreError> {
        self.apply_deliveries(plans, &[], now).await
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

    /// Claims up to `limit` meetings that are due at `now` (running past
    /// their deadline, or stopping with an expired lease), earliest first.
    pub async fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        self.write(self.engine.claim_due(now, lease, owner, limit).await)
    }

    /// Records the outcomes of claims `owner` holds, in one transaction;
    /// each applies only if that claim still holds the lease: the row is
    /// `stopping`, owned by `owner`, and its `attempts` is the outcome's
    /// (a later claim, even by the same owner, increments it). One result
    /// per outcome: whether it applied.
    pub async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish(owner, outcomes).await)
    }

    /// Marks ended the running meetings that were tracked before
    /// `known_before` and are not in `listed` (eyeson's list of running
    /// meetings, asked for after `known_before`): they ended without a
    /// delivery reaching us. Closes none if that would be too many
    /// ([`crate::domain::mass_close_refused`]).
    pub async fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> Result<Closing, StoreError> {
        self.write(self.engine.close_unlisted(listed, known_before, now).await)
    }

    /// Forgets meetings finished before `finished_before`. Returns how many.
    pub async fn prune(&self, finished_before: Timestamp) -> Result<u64, StoreError> {
        let r = self.engine.prune(finished_before).await;
        if r.is_err() {
            // On PostgreSQL the meetings may be gone though the audit's
            // cleanup failed: count again rather than guess.
            self.gauges.request_recount();
        }
        self.write(r)
    }

    /// Forgets meetings that start after `starts_after`, and shutdown
    /// cutoffs after it: a start that far ahead of the clock (a bad clock,
    /// or tracked before such starts were refused) would otherwise shield
    /// every later meeting of its room and never be pruned. Returns how
    /// many rows went.
    pub async fn forget_future(&self, starts_after: Timestamp) -> Result<u64, StoreError> {
        self.write(self.engine.forget_future(starts_after).await)
    }

    /// Claims up to `limit` running meetings whose warning is due at `now`
    /// ([`crate::domain::warning_due`] with `warn_before`), earliest
    /// deadline first, each under a lease until `now + lease`: the claim
    /// records the deadline it is for, so a later change of the deadline
    /// makes the warning due again.
    pub async fn claim_warnings(
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

    /// Records warning outcomes of claims `owner` holds, in one
    /// transaction; each applies only while that claim (owner, attempts and
    /// deadline) holds the warning's lease. One result per record.
    pub async fn finish_warnings(
        &self,
        owner: &str,
        records: &[WarnRecord],
    ) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish_warnings(owner, records).await)
    }

    /// Claims up to `limit` running meetings whose participants check is
    /// due, leased to `owner` until `now + lease` (the check is due again
    /// then, should the claim be abandoned).
    pub async fn claim_presence(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<PresenceClaim>, StoreError> {
        self.write(self.engine.claim_presence(now, lease, owner, limit).await)
    }

    /// Records participants checks of claims `owner` holds, in one
    /// transaction (each only while its claim holds); one result per record.
    pub async fn finish_presence(
        &self,
        owner: &str,
        records: &[PresenceRecord],
    ) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish_presence(owner, records).await)
    }

    /// Moves the deadline of the room's open meeting (if `expected_start`
    /// is given, only if that is the open meeting), only while it is
    /// `running`, and records the action in the audit. On PostgreSQL the
    /// commit `NOTIFY`s every replica's scheduler.
    pub async fn move_deadline(
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

    /// Changes a rule (`Some`: merged into the stored one, see
    /// [`RuleChange`]; a rule left setting nothing is deleted) or removes it
    /// (`None`), in one transaction with its row in the audit; returns the
    /// rule before and after. Nothing is written (nor audited) when there
    /// was no rule and none results. On PostgreSQL the commit `NOTIFY`s
    /// every replica.
    pub async fn set_limit(
        &self,
        kind: LimitKind,
        key: &str,
        change: Option<RuleChange>,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<RuleChanged, StoreError> {
        self.write(self.engine.set_limit(kind, key, change, now, caller).await)
    }

    /// Claims up to `limit` outbox lane heads that are due and not leased
    /// (the lowest entry of each lane only, so a lane goes out in order),
    /// each under a lease of `lease` from the store's now.
    pub async fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ForwardClaim>, StoreError> {
        self.write(self.engine.claim_forwards(now, lease, owner, limit).await)
    }

    /// Records how outbox claims `owner` holds ended, in one transaction;
    /// each applies only while that claim holds the lease. One result per
    /// record.
    pub async fn finish_forwards(
        &self,
        owner: &str,
        records: &[ForwardRecord],
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.write(self.engine.finish_forwards(owner, records, now).await)
    }
}
