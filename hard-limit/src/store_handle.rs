//! [`Store`]: the store handle the service holds. Each write of the
//! [`Engine`] returns what it changed ([`Written`]); the handle's write of
//! the same name applies that, once committed, to the counts of `/metrics`
//! ([`crate::meeting_gauges`]) and the write-health flag of `/healthz`.
//! Reads go straight to the engine (`Deref`).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Leader;
use crate::domain::{DeadlineChange, MeetingKey, Plan, RoomId, Timestamp};
use crate::meeting_gauges::MeetingGauges;
use crate::store::{
    self, Applied, Caller, Claim, ClaimReq, Closing, DeadlineMoved, Engine, ForwardClaim,
    ForwardRecord, LimitKind, NewForward, Outcome, PgStore, PresenceClaim, PresenceRecord,
    RuleChange, RuleChanged, SqliteStore, StoreError, WarnClaim, WarnRecord, Written,
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

    /// Gives up the chores lock, then closes the connections.
    pub async fn close(&self) {
        if let Some(leader) = &self.leader {
            leader.release().await;
        }
        self.engine.close().await
    }

    /// Whether the last write that changed something committed (for
    /// `/healthz`: a read-only or full store still answers reads, but
    /// refuses deliveries).
    pub fn last_write_ok(&self) -> bool {
        self.write_ok.load(Ordering::SeqCst)
    }

    /// After a failed write: commits a probe write, which marks the store
    /// writable again if it works (an idle service recovers without traffic).
    pub async fn recheck_writes(&self) -> bool {
        if self.last_write_ok() {
            return true;
        }
        self.write(self.engine.probe_write().await).is_ok()
    }

    /// Meetings by state, kept current by this handle's (and its clones')
    /// writes.
    pub fn gauges(&self) -> &Arc<MeetingGauges> {
        &self.gauges
    }

    /// Applies what a write did: its state changes to the gauges; a commit
    /// that changed something sets the health flag (an empty one proves
    /// nothing: it commits on a full disk too), an error clears it.
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
            // Bad input (the handlers' backstop) says nothing of the store.
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
    /// pruning, webhook registration): always on SQLite; on PostgreSQL, the
    /// replica holding the chores lock ([`crate::cluster::Leader`]).
    pub async fn chores_leader(&self) -> bool {
        match &self.leader {
            Some(leader) => leader.leads().await,
            None => true,
        }
    }
}

/// The reads, as the engine has them (the handle's writes shadow its own).
impl Deref for Store {
    type Target = dyn Engine;

    fn deref(&self) -> &dyn Engine {
        &*self.engine
    }
}

/// The handle's writes: each calls the engine's and applies what it changed.
macro_rules! writes {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty = $call:ident($($e:expr),*);)*) => {
        impl Store {
            $($(#[$doc])*
            pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                self.write(self.engine.$call($($e),*).await)
            })*
        }
    };
}

writes! {
    /// Applies a batch of deliveries' plans and writes the deliveries to
    /// forward to the outbox, in one transaction: durable once `Ok`.
    fn apply_deliveries(plans: &[Plan], forwards: &[NewForward], now: Timestamp) -> Vec<Applied>
        = apply_deliveries(plans, forwards, now);
    /// Claims up to `limit` meetings due at `now` (running past their
    /// deadline, or stopping with an expired lease), earliest first.
    fn claim_due(now: Timestamp, lease: Duration, owner: &str, limit: u32) -> Vec<Claim>
        = claim_due(ClaimReq { now, lease, owner, limit });
    /// Records the outcomes of `owner`'s claims in one transaction, each
    /// only while its claim holds the lease (`stopping`, owned by `owner`,
    /// same `attempts`: a later claim increments it). Whether each applied.
    fn finish(owner: &str, outcomes: &[Outcome]) -> Vec<bool> = finish(owner, outcomes);
    /// Marks ended the running meetings tracked before `known_before` that
    /// are not in `listed` (eyeson's running meetings, asked for after
    /// that): they ended unseen. Closes none if that would be too many
    /// ([`crate::domain::mass_close_refused`]).
    fn close_unlisted(listed: &[MeetingKey], known_before: Timestamp, now: Timestamp) -> Closing
        = close_unlisted(listed, known_before, now);
    /// Forgets meetings that start after `starts_after`, and shutdown
    /// cutoffs after it (a start that far ahead would shield its room's
    /// later meetings and never be pruned). How many rows went.
    fn forget_future(starts_after: Timestamp) -> u64 = forget_future(starts_after);
    /// Claims up to `limit` running meetings whose warning is due at `now`
    /// ([`crate::domain::warning_due`]), earliest first, leased until
    /// `now + lease`; the claim records the deadline, so a moved deadline
    /// makes the warning due again.
    fn claim_warnings(now: Timestamp, warn_before: Duration, lease: Duration, owner: &str, limit: u32)
        -> Vec<WarnClaim> = claim_warnings(ClaimReq { now, lease, owner, limit }, warn_before);
    /// Records warning outcomes of `owner`'s claims in one transaction, each
    /// only while its claim (owner, attempts, deadline) holds the lease.
    fn finish_warnings(owner: &str, records: &[WarnRecord]) -> Vec<bool>
        = finish_warnings(owner, records);
    /// Claims up to `limit` running meetings whose participants check is
    /// due, leased to `owner` until `now + lease` (due again then).
    fn claim_presence(now: Timestamp, lease: Duration, owner: &str, limit: u32) -> Vec<PresenceClaim>
        = claim_presence(ClaimReq { now, lease, owner, limit });
    /// Records participants checks of `owner`'s claims in one transaction,
    /// each only while its claim holds.
    fn finish_presence(owner: &str, records: &[PresenceRecord]) -> Vec<bool>
        = finish_presence(owner, records);
    /// Moves the deadline of the room's open meeting (only `expected_start`'s,
    /// if given), only while `running`, audited. PostgreSQL `NOTIFY`s every
    /// replica's scheduler.
    fn move_deadline(
        room: &RoomId, expected_start: Option<Timestamp>, change: DeadlineChange, now: Timestamp,
        caller: &Caller
    ) -> DeadlineMoved = move_deadline(room, expected_start, change, now, caller);
    /// Changes a rule (`Some`: merged, see [`RuleChange`]; a rule left empty
    /// is deleted) or removes it (`None`), audited in the same transaction;
    /// the rule before and after. Writes nothing with no rule before or
    /// after. PostgreSQL `NOTIFY`s every replica.
    fn set_limit(
        kind: LimitKind, key: &str, change: Option<RuleChange>, now: Timestamp, caller: &Caller
    ) -> RuleChanged = set_limit(kind, key, change, now, caller);
    /// Claims up to `limit` due, unleased outbox lane heads (a lane goes
    /// out in order), leased for `lease` from the store's now.
    fn claim_forwards(now: Timestamp, lease: Duration, owner: &str, limit: u32) -> Vec<ForwardClaim>
        = claim_forwards(ClaimReq { now, lease, owner, limit });
    /// Records how `owner`'s outbox claims ended, in one transaction, each
    /// only while its claim holds the lease.
    fn finish_forwards(owner: &str, records: &[ForwardRecord], now: Timestamp) -> Vec<bool>
        = finish_forwards(owner, records, now);
}

impl Store {
    /// Applies plans in one transaction and commits; one result per plan.
    pub async fn apply(&self, plans: &[Plan], now: Timestamp) -> Result<Vec<Applied>, StoreError> {
        self.apply_deliveries(plans, &[], now).await
    }

    /// Forgets meetings finished before `finished_before`; how many.
    pub async fn prune(&self, finished_before: Timestamp) -> Result<u64, StoreError> {
        let r = self.engine.prune(finished_before).await;
        if r.is_err() {
            // On PostgreSQL the meetings may be gone though the audit's
            // cleanup failed: count again rather than guess.
            self.gauges.request_recount();
        }
        self.write(r)
    }
}
