//! [`Engine`]: what the service needs of a database, as a trait object
//! (its futures boxed), so the engine is chosen at start-up without an
//! enum that forwards every method. Both engines implement it
//! through [`super::sql`]: the SQL they share is written there once.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{
    Applied, Caller, Claim, Closing, DeadlineMoved, ForwardClaim, ForwardRecord, Guard, LimitKind,
    LimitRule, MeetingView, NewForward, Outcome, RoomHistory, RoomMeeting, StoreError, WarnClaim,
    WarnRecord, Written,
};
use crate::domain::{DeadlineChange, MeetingKey, MeetingState, Plan, RoomId, Timestamp};

/// A boxed, sendable future of a store call.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One database engine. The methods mean what the same-named methods of
/// [`super::MeetingStore`], [`super::AdminStore`] and
/// [`super::ForwardStore`] document; each write returns, with its answer,
/// what it changed ([`Written`]), for the wrapper that keeps the gauges and
/// the write-health flag.
#[allow(missing_docs)]
pub trait Engine: Send + Sync + std::fmt::Debug + 'static {
    fn apply_deliveries<'a>(
        &'a self,
        plans: &'a [Plan],
        forwards: &'a [NewForward],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<Applied>>>;
    fn claim_due<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<Claim>>>;
    fn guard<'a>(&'a self, key: &'a MeetingKey) -> BoxFut<'a, Guard>;
    fn finish<'a>(
        &'a self,
        owner: &'a str,
        outcomes: &'a [Outcome],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>>;
    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64>;
    fn close_unlisted<'a>(
        &'a self,
        listed: &'a [MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Written<Closing>>;
    fn list<'a>(
        &'a self,
        finished_since: Timestamp,
        after: Option<&'a MeetingKey>,
        limit: u32,
    ) -> BoxFut<'a, Vec<MeetingView>>;
    fn current_for_room<'a>(&'a self, room: &'a RoomId) -> BoxFut<'a, Option<RoomMeeting>>;
    fn count_by_state(&self) -> BoxFut<'_, Vec<(MeetingState, u64)>>;
    fn prune(&self, finished_before: Timestamp) -> BoxFut<'_, Written<u64>>;
    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>>;
    fn ping(&self) -> BoxFut<'_, ()>;
    fn claim_warnings<'a>(
        &'a self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>>;
    fn finish_warnings<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [WarnRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    fn next_warning(&self, now: Timestamp, warn_before: Duration) -> BoxFut<'_, Option<Timestamp>>;
    fn move_deadline<'a>(
        &'a self,
        room: &'a RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<DeadlineMoved>>;
    fn history<'a>(&'a self, room: &'a RoomId, limit: u32) -> BoxFut<'a, RoomHistory>;
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>>;
    fn limit_rules(&self) -> BoxFut<'_, Vec<LimitRule>>;
    fn set_limit<'a>(
        &'a self,
        kind: LimitKind,
        key: &'a str,
        limit: Option<Duration>,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<Option<Duration>>>;
    fn claim_forwards<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<ForwardClaim>>>;
    fn finish_forwards<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [ForwardRecord],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<bool>>>;
    fn pending_forwards(&self) -> BoxFut<'_, u64>;

    /// Commits a real write (see the engines' `probe_write`).
    fn probe_write(&self) -> BoxFut<'_, Written<()>>;
    /// Closes the connections (and gives up any lock the engine holds).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Inserts many meetings in one transaction (benchmarks, tests).
    fn bulk_insert<'a>(
        &'a self,
        rows: &'a [(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> BoxFut<'a, ()>;
    /// Test hook: moves an open meeting's deadline; whether one changed.
    fn set_deadline_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
        deadline: Timestamp,
    ) -> BoxFut<'a, bool>;
    /// Test hook: a meeting's `(warn_state, warn_for)`.
    fn warning_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
    ) -> BoxFut<'a, Option<(Option<String>, Option<i64>)>>;
    /// The engine itself, for what only one engine has (its test hooks,
    /// PostgreSQL's leader lock and `LISTEN`).
    fn as_any(&self) -> &dyn Any;
}
