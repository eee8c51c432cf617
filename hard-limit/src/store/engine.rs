//! [`Engine`]: what the service needs of a database, as a trait object (its
//! futures boxed), so the engine is picked at start-up. Both engines get
//! it from the shared SQL of [`super::sql`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{
    Applied, Caller, Claim, ClaimReq, Closing, DeadlineMoved, ForwardClaim, ForwardRecord, Guard,
    LimitKind, LimitRule, MeetingView, NewForward, Outcome, PresenceClaim, PresenceRecord,
    RoomHistory, RoomMeeting, RuleChange, RuleChanged, StoreError, WarnClaim, WarnRecord, Written,
};
use crate::domain::{DeadlineChange, MeetingKey, MeetingState, Plan, RoomId, Timestamp};

/// A boxed, sendable future of a store call.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One database engine: the questions the service asks its store (the
/// rules it keeps: [module docs](super)).
///
/// The reads are documented here and called through [`Store`], which
/// dereferences to the engine. Each write returns what it changed
/// ([`Written`]); [`Store`]'s method of the same name applies that and is
/// documented there. A caller that skipped the handle would hold a
/// `Written<T>`: a type error, or unused, the denied `unused_must_use`.
///
/// [`Store`]: crate::store_handle::Store
pub trait Engine: Send + Sync + std::fmt::Debug + 'static {
    /// See [`Store::apply_deliveries`](crate::store_handle::Store::apply_deliveries).
    fn apply_deliveries<'a>(
        &'a self,
        plans: &'a [Plan],
        forwards: &'a [NewForward],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<Applied>>>;
    /// See [`Store::claim_due`](crate::store_handle::Store::claim_due).
    fn claim_due<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<Claim>>>;
    /// What the store knows now of the meeting's room (one round trip),
    /// read before each shutdown retry and each warning.
    fn guard<'a>(&'a self, key: &'a MeetingKey) -> BoxFut<'a, Guard>;
    /// See [`Store::finish`](crate::store_handle::Store::finish).
    fn finish<'a>(&'a self, owner: &'a str, o: &'a [Outcome]) -> BoxFut<'a, Written<Vec<bool>>>;
    /// The scheduler's next wake-up: the earliest running deadline or lease
    /// expiry; `None` if nothing is open.
    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>>;
    /// Running meetings due at or before `until`, counting at most `cap`
    /// (for `/metrics`: a capped range scan of the deadline index).
    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64>;
    /// See [`Store::close_unlisted`](crate::store_handle::Store::close_unlisted).
    fn close_unlisted<'a>(
        &'a self,
        listed: &'a [MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Written<Closing>>;
    /// Open meetings and those finished at or after `finished_since`, newest
    /// start first (then room id, descending), at most `limit`; `after` is a
    /// page cursor: only those that come after that meeting.
    fn list<'a>(
        &'a self,
        finished_since: Timestamp,
        after: Option<&'a MeetingKey>,
        limit: u32,
    ) -> BoxFut<'a, Vec<MeetingView>>;
    /// The room's open meeting (the latest, if several), with its guest
    /// token.
    fn current_for_room<'a>(&'a self, room: &'a RoomId) -> BoxFut<'a, Option<RoomMeeting>>;
    /// How many meetings are in each state.
    fn count_by_state(&self) -> BoxFut<'_, Vec<(MeetingState, u64)>>;
    /// See [`Store::prune`](crate::store_handle::Store::prune).
    fn prune(&self, finished_before: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// See [`Store::forget_future`](crate::store_handle::Store::forget_future).
    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// Answers if the store answers (for `/healthz`).
    fn ping(&self) -> BoxFut<'_, ()>;
    /// See [`Store::claim_warnings`](crate::store_handle::Store::claim_warnings).
    fn claim_warnings<'a>(
        &'a self,
        c: ClaimReq<'a>,
        warn_before: Duration,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>>;
    /// See [`Store::finish_warnings`](crate::store_handle::Store::finish_warnings).
    fn finish_warnings<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [WarnRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When a warning is next due (or a warning lease expires), for meetings
    /// whose deadline is after `now`; `None` if none is pending.
    fn next_warning(&self, now: Timestamp, warn_before: Duration) -> BoxFut<'_, Option<Timestamp>>;
    /// See [`Store::claim_presence`](crate::store_handle::Store::claim_presence).
    fn claim_presence<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<PresenceClaim>>>;
    /// See [`Store::finish_presence`](crate::store_handle::Store::finish_presence).
    fn finish_presence<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [PresenceRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When the next participants check is due (a claimed one: its lease
    /// end), on the caller's clock; `None` with no running meeting.
    fn next_presence(&self) -> BoxFut<'_, Option<Timestamp>>;

    // The operator side; each change is audited in its own transaction.

    /// See [`Store::move_deadline`](crate::store_handle::Store::move_deadline).
    fn move_deadline<'a>(
        &'a self,
        room: &'a RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<DeadlineMoved>>;
    /// The room's last `limit` meetings with their transitions, and the
    /// operator actions on it.
    fn history<'a>(&'a self, room: &'a RoomId, limit: u32) -> BoxFut<'a, RoomHistory>;
    /// The first recorded deadline (the one its limit gave it) of each
    /// meeting started since `started_since` whose deadline was moved.
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>>;
    /// Every stored limit.
    fn limit_rules(&self) -> BoxFut<'_, Vec<LimitRule>>;
    /// See [`Store::set_limit`](crate::store_handle::Store::set_limit).
    fn set_limit<'a>(
        &'a self,
        kind: LimitKind,
        key: &'a str,
        change: Option<RuleChange>,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<RuleChanged>>;

    // The forwarding outbox (`--forward-to`).

    /// See [`Store::claim_forwards`](crate::store_handle::Store::claim_forwards).
    fn claim_forwards<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<ForwardClaim>>>;
    /// See [`Store::finish_forwards`](crate::store_handle::Store::finish_forwards).
    fn finish_forwards<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [ForwardRecord],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// How many entries wait in the outbox.
    fn pending_forwards(&self) -> BoxFut<'_, u64>;

    // The handle's own needs, benchmarks and tests.

    /// Commits a real write, for
    /// [`Store::recheck_writes`](crate::store_handle::Store::recheck_writes).
    fn probe_write(&self) -> BoxFut<'_, Written<()>>;
    /// Closes the connections and any lock the engine holds (the service
    /// calls [`Store::close`](crate::store_handle::Store::close)).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Inserts many meetings in one transaction, behind the gauges' back
    /// (benchmarks and tests).
    fn bulk_insert<'a>(
        &'a self,
        rows: &'a [(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> BoxFut<'a, ()>;
    /// Test hook: moves an open meeting's deadline; whether one changed.
    #[doc(hidden)]
    fn set_deadline_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
        deadline: Timestamp,
    ) -> BoxFut<'a, bool>;
    /// Test hook: a meeting's stored warning, as `(warn_state, warn_for)`.
    #[doc(hidden)]
    fn warning_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
    ) -> BoxFut<'a, Option<(Option<String>, Option<i64>)>>;
    /// The engine itself, for what only one engine has.
    fn as_any(&self) -> &dyn Any;
}
