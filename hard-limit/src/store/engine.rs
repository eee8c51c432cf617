//! [`Engine`]: what the service needs of a database, as a trait object
//! (its futures boxed), so the engine is chosen at start-up without an
//! enum that forwards every method. Both engines implement it
//! through [`super::sql`]: the SQL they share is written once there.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{
    Applied, Caller, Claim, Closing, DeadlineMoved, ForwardClaim, ForwardRecord, Guard, LimitKind,
    LimitRule, MeetingView, NewForward, Outcome, PresenceClaim, PresenceRecord, RoomHistory,
    RoomMeeting, RuleChange, RuleChanged, StoreError, WarnClaim, WarnRecord, Written,
};
use crate::domain::{DeadlineChange, MeetingKey, MeetingState, Plan, RoomId, Timestamp};

/// A boxed, sendable future of a store call.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One database engine: the questions the service asks its store. See the
/// [module docs](super) for the rules an engine keeps.
///
/// The service reaches it through [`Store`], which dereferences to it: the
/// reads are called on the engine as they are, and are documented here.
/// Each write returns, with its answer, what it changed ([`Written`]); the
/// handle's method of the same name applies that to the gauges and the
/// write-health flag and answers the bare value, and is documented there.
/// The handle's methods shadow these, and a caller that reached one of
/// these writes anyway would hold a `Written<T>` where it wants a `T`: a
/// type error, or, dropped unused, the `unused_must_use` lint (denied in
/// this crate, and by clippy's `-D warnings` in its tests and examples).
///
/// [`Store`]: crate::store_handle::Store
pub trait Engine: Send + Sync + std::fmt::Debug + 'static {
    // Meetings.

    /// The write behind [`Store::apply_deliveries`](crate::store_handle::Store::apply_deliveries).
    fn apply_deliveries<'a>(
        &'a self,
        plans: &'a [Plan],
        forwards: &'a [NewForward],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<Applied>>>;
    /// The write behind [`Store::claim_due`](crate::store_handle::Store::claim_due).
    fn claim_due<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<Claim>>>;
    /// What the store knows now of the meeting's room (one round trip):
    /// read before each shutdown retry and each warning.
    fn guard<'a>(&'a self, key: &'a MeetingKey) -> BoxFut<'a, Guard>;
    /// The write behind [`Store::finish`](crate::store_handle::Store::finish).
    fn finish<'a>(
        &'a self,
        owner: &'a str,
        outcomes: &'a [Outcome],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When the scheduler next has something to do: the earliest running
    /// deadline or lease expiry; `None` if nothing is open.
    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>>;
    /// How many running meetings have their deadline at or before `until`,
    /// counting at most `cap` (for `/metrics`: a range scan of the
    /// deadline index that stops at `cap`, so a scrape stays cheap however
    /// many deadlines fall in the window).
    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64>;
    /// The write behind [`Store::close_unlisted`](crate::store_handle::Store::close_unlisted).
    fn close_unlisted<'a>(
        &'a self,
        listed: &'a [MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Written<Closing>>;
    /// Open meetings and those finished at or after `finished_since`, newest
    /// start first (then room id, descending), at most `limit`; with
    /// `after`, only those that come after that meeting in this order (a
    /// page cursor: stable while rows are added).
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
    /// The write behind [`Store::prune`](crate::store_handle::Store::prune).
    fn prune(&self, finished_before: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// The write behind [`Store::forget_future`](crate::store_handle::Store::forget_future).
    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// Answers if the store answers (for `/healthz`).
    fn ping(&self) -> BoxFut<'_, ()>;
    /// The write behind [`Store::claim_warnings`](crate::store_handle::Store::claim_warnings).
    fn claim_warnings<'a>(
        &'a self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>>;
    /// The write behind [`Store::finish_warnings`](crate::store_handle::Store::finish_warnings).
    fn finish_warnings<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [WarnRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When a warning is next due (or a warning lease expires), for
    /// meetings whose deadline is after `now`; `None` if none is pending.
    fn next_warning(&self, now: Timestamp, warn_before: Duration) -> BoxFut<'_, Option<Timestamp>>;
    /// The write behind [`Store::claim_presence`](crate::store_handle::Store::claim_presence).
    fn claim_presence<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<PresenceClaim>>>;
    /// The write behind [`Store::finish_presence`](crate::store_handle::Store::finish_presence).
    fn finish_presence<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [PresenceRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When the next participants check is due (a claimed one: when its
    /// lease ends), on the caller's clock; `None` with no running meeting.
    fn next_presence(&self) -> BoxFut<'_, Option<Timestamp>>;

    // The operator side: deadline changes, the audit, runtime limits. Every
    // change is recorded in the audit in its own transaction.

    /// The write behind [`Store::move_deadline`](crate::store_handle::Store::move_deadline).
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
    /// The first recorded deadline of each meeting started at or after
    /// `started_since` whose deadline an operator moved (the deadline its
    /// limit gave it).
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>>;
    /// Every stored limit.
    fn limit_rules(&self) -> BoxFut<'_, Vec<LimitRule>>;
    /// The write behind [`Store::set_limit`](crate::store_handle::Store::set_limit).
    fn set_limit<'a>(
        &'a self,
        kind: LimitKind,
        key: &'a str,
        change: Option<RuleChange>,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<RuleChanged>>;

    // The forwarding outbox (`--forward-to`).

    /// The write behind [`Store::claim_forwards`](crate::store_handle::Store::claim_forwards).
    fn claim_forwards<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<ForwardClaim>>>;
    /// The write behind [`Store::finish_forwards`](crate::store_handle::Store::finish_forwards).
    fn finish_forwards<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [ForwardRecord],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// How many entries wait in the outbox.
    fn pending_forwards(&self) -> BoxFut<'_, u64>;

    // The handle's own needs, benchmarks and tests.

    /// Commits a real write (see the engines' `probe_write`), for
    /// [`Store::recheck_writes`](crate::store_handle::Store::recheck_writes).
    fn probe_write(&self) -> BoxFut<'_, Written<()>>;
    /// Closes the connections (and gives up any lock the engine holds);
    /// the service calls [`Store::close`](crate::store_handle::Store::close),
    /// which first gives up the chores lock.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Inserts many meetings at once, in one transaction, behind the
    /// gauges' back (benchmarks and tests; the service itself goes through
    /// [`Store::apply`](crate::store_handle::Store::apply)).
    fn bulk_insert<'a>(
        &'a self,
        rows: &'a [(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> BoxFut<'a, ()>;
    /// Test hook: moves an open meeting's deadline (as an operator's
    /// extension would). Returns whether a meeting was changed. Not for
    /// production use.
    #[doc(hidden)]
    fn set_deadline_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
        deadline: Timestamp,
    ) -> BoxFut<'a, bool>;
    /// Test hook: the stored warning of a meeting, as `(warn_state,
    /// warn_for)`. Not for production use.
    #[doc(hidden)]
    fn warning_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
    ) -> BoxFut<'a, Option<(Option<String>, Option<i64>)>>;
    /// The engine itself, for what only one engine has (its test hooks,
    /// PostgreSQL's leader lock and `LISTEN`).
    fn as_any(&self) -> &dyn Any;
}
