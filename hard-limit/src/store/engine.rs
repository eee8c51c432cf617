//! [`Engine`]: what the service needs of a database, as a trait object
//! (futures boxed) picked at start-up; the shared SQL implements it.

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
#[cfg(doc)]
use crate::store_handle::Store;

/// A boxed, sendable future of a store call.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One database engine: what the service asks its store (the rules it
/// keeps: [module docs](super)). Reads are documented here; each write
/// returns a [`Written`] that [`Store`]'s method of that name (documented
/// there) applies; skipping the handle leaves it unused, a denied warning.
pub trait Engine: Send + Sync + std::fmt::Debug + 'static {
    /// See [`Store::apply_deliveries`].
    fn apply_deliveries<'a>(
        &'a self,
        plans: &'a [Plan],
        forwards: &'a [NewForward],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<Applied>>>;
    /// See [`Store::claim_due`].
    fn claim_due<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<Claim>>>;
    /// What the store knows now of the meeting's room, read before each
    /// shutdown retry and each warning.
    fn guard<'a>(&'a self, key: &'a MeetingKey) -> BoxFut<'a, Guard>;
    /// See [`Store::finish`].
    fn finish<'a>(&'a self, owner: &'a str, o: &'a [Outcome]) -> BoxFut<'a, Written<Vec<bool>>>;
    /// The earliest running deadline or lease expiry (`None`: none open).
    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>>;
    /// Running meetings due by `until`, counting at most `cap` (`/metrics`).
    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64>;
    /// See [`Store::close_unlisted`].
    fn close_unlisted<'a>(
        &'a self,
        listed: &'a [MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Written<Closing>>;
    /// At most `limit` meetings open or finished since `finished_since`,
    /// newest start (then room id) first, after the cursor `after`.
    fn list<'a>(
        &'a self,
        finished_since: Timestamp,
        after: Option<&'a MeetingKey>,
        limit: u32,
    ) -> BoxFut<'a, Vec<MeetingView>>;
    /// The room's latest open meeting, with its guest token.
    fn current_for_room<'a>(&'a self, room: &'a RoomId) -> BoxFut<'a, Option<RoomMeeting>>;
    /// How many meetings are in each state.
    fn count_by_state(&self) -> BoxFut<'_, Vec<(MeetingState, u64)>>;
    /// See [`Store::prune`].
    fn prune(&self, finished_before: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// See [`Store::forget_future`].
    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>>;
    /// Answers if the store answers (for `/healthz`).
    fn ping(&self) -> BoxFut<'_, ()>;
    /// See [`Store::claim_warnings`].
    fn claim_warnings<'a>(
        &'a self,
        c: ClaimReq<'a>,
        warn_before: Duration,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>>;
    /// See [`Store::finish_warnings`].
    fn finish_warnings<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [WarnRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When a warning (or its lease) is next due, of meetings ending after
    /// `now`; `None` if none is pending.
    fn next_warning(&self, now: Timestamp, warn_before: Duration) -> BoxFut<'_, Option<Timestamp>>;
    /// See [`Store::claim_presence`].
    fn claim_presence<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<PresenceClaim>>>;
    /// See [`Store::finish_presence`].
    fn finish_presence<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [PresenceRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// When the next participants check (or its lease) is due, on the
    /// caller's clock; `None` with no running meeting.
    fn next_presence(&self) -> BoxFut<'_, Option<Timestamp>>;

    // The operator side; each change is audited in its own transaction.

    /// See [`Store::move_deadline`].
    fn move_deadline<'a>(
        &'a self,
        room: &'a RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<DeadlineMoved>>;
    /// The room's last `limit` meetings and the operator actions on it.
    fn history<'a>(&'a self, room: &'a RoomId, limit: u32) -> BoxFut<'a, RoomHistory>;
    /// The limit's deadline of each meeting started since `started_since`
    /// whose deadline was moved (its first recorded one).
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>>;
    /// Every stored limit.
    fn limit_rules(&self) -> BoxFut<'_, Vec<LimitRule>>;
    /// See [`Store::set_limit`].
    fn set_limit<'a>(
        &'a self,
        kind: LimitKind,
        key: &'a str,
        change: Option<RuleChange>,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<RuleChanged>>;

    // The forwarding outbox (`--forward-to`).

    /// See [`Store::claim_forwards`].
    fn claim_forwards<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<ForwardClaim>>>;
    /// See [`Store::finish_forwards`].
    fn finish_forwards<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [ForwardRecord],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    /// How many entries wait in the outbox.
    fn pending_forwards(&self) -> BoxFut<'_, u64>;

    // The handle's own needs, benchmarks and tests.

    /// Commits a real write, for [`Store::recheck_writes`].
    fn probe_write(&self) -> BoxFut<'_, Written<()>>;
    /// Closes the connections and any lock (through [`Store::close`]).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Inserts meetings behind the gauges' back (benchmarks and tests).
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
