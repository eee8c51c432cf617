//! The store: the source of truth for every tracked meeting.
//!
//! [`MeetingStore`] is deliberately narrow (a dozen questions the service
//! asks), so each engine is one file: SQLite ([`sqlite`], the default) and
//! PostgreSQL ([`postgres`], for several replicas on one database), chosen
//! by the database URL in [`Store::connect`]. Each engine keeps its own migrations in
//! `migrations/<engine>/`.
//!
//! Rules every engine must keep (the integration and property tests check
//! them through this trait):
//! - [`MeetingStore::apply`] commits before it returns: an acknowledged
//!   webhook is never lost.
//! - Only transitions allowed by [`MeetingState::may_become`] happen; final
//!   states never change.
//! - [`MeetingStore::claim_due`] hands a meeting to exactly one worker at a
//!   time: a claim is a lease, and only an expired lease is claimed again.
//! - [`MeetingStore::finish`] applies only while the caller's claim (owner
//!   and attempts) still holds the lease, so a worker that lost its lease
//!   cannot overwrite the outcome, even when its own process re-claimed.
//!
//! The [`Store`] wrapper also keeps the per-state counts of `/metrics`
//! ([`crate::meeting_gauges`]) from each committed write's result: plan
//! steps record theirs; a claim with `attempts` 1 moved a meeting from
//! running (only claims raise `attempts`, from 0 at insert, and nothing
//! returns a meeting to running); an applied outcome moved one from
//! stopping; a prune records the states it deleted. A new write that
//! changes states must report its changes there too, or ask for a recount
//! as `forget_future` does.

mod plan;
pub mod postgres;

/// Row decoding shared by both engines: the columns are the same, only the
/// row type differs.
mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use super::{
        ActionRecord, Claim, Guard, MeetingRecord, MeetingView, RoomMeeting, StoreError, WarnClaim,
    };
    use crate::domain::{GuestToken, MeetingKey, MeetingState, RoomId, Timestamp};

    /// What a row of `meetings` must be able to decode.
    pub(super) trait MeetingRow: Row
    where
        for<'r> &'r str: ColumnIndex<Self>,
        for<'r> String: Decode<'r, Self::Database> + Type<Self::Database>,
        for<'r> i64: Decode<'r, Self::Database> + Type<Self::Database>,
        for<'r> Option<i64>: Decode<'r, Self::Database> + Type<Self::Database>,
        for<'r> Option<String>: Decode<'r, Self::Database> + Type<Self::Database>,
    {
        fn key(&self) -> Result<MeetingKey, StoreError> {
            let room: String = self.try_get("room_id")?;
            Ok(MeetingKey {
                room_id: RoomId::parse(&room)
                    .map_err(|e| StoreError::Corrupt(format!("room id: {e}")))?,
                started_at: Timestamp(self.try_get("started_at")?),
            })
        }

        fn view(&self) -> Result<MeetingView, StoreError> {
            let state: String = self.try_get("state")?;
            Ok(MeetingView {
                key: self.key()?,
                deadline: Timestamp(self.try_get("deadline")?),
                state: MeetingState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
            })
        }

        fn room_meeting(&self) -> Result<RoomMeeting, StoreError> {
            let token: Option<String> = self.try_get("guest_token")?;
            Ok(RoomMeeting {
                view: self.view()?,
                // A stored token that no longer parses is as good as none.
                guest_token: token.as_deref().and_then(GuestToken::parse),
            })
        }

        fn record(&self) -> Result<MeetingRecord, StoreError> {
            Ok(MeetingRecord {
                view: self.view()?,
                tracked_at: Timestamp(self.try_get("created_at")?),
                updated_at: Timestamp(self.try_get("updated_at")?),
                finished_at: self
                    .try_get::<Option<i64>, _>("finished_at")?
                    .map(Timestamp),
                attempts: self.try_get("attempts")?,
            })
        }

        fn action(&self) -> Result<ActionRecord, StoreError> {
            let t = |c: &str| -> Result<Option<Timestamp>, StoreError> {
                Ok(self.try_get::<Option<i64>, _>(c)?.map(Timestamp))
            };
            Ok(ActionRecord {
                at: Timestamp(self.try_get("at")?),
                action: self.try_get("action")?,
                room_id: self.try_get("room_id")?,
                started_at: t("started_at")?,
                old_deadline: t("old_deadline")?,
                new_deadline: t("new_deadline")?,
                detail: self.try_get("detail")?,
                caller: self.try_get("caller")?,
            })
        }

        fn warn_claim(&self) -> Result<WarnClaim, StoreError>
        where
            for<'r> Option<String>: Decode<'r, Self::Database> + Type<Self::Database>,
        {
            let token: Option<String> = self.try_get("guest_token")?;
            Ok(WarnClaim {
                key: self.key()?,
                deadline: Timestamp(self.try_get("deadline")?),
                // A stored token that no longer parses is as good as none.
                guest_token: token.as_deref().and_then(GuestToken::parse),
                attempts: self.try_get("warn_attempts")?,
            })
        }

        fn claim(&self) -> Result<Claim, StoreError> {
            Ok(Claim {
                key: self.key()?,
                deadline: Timestamp(self.try_get("deadline")?),
                attempts: self.try_get("attempts")?,
                guard: self.guard()?,
            })
        }

        /// The `cutoff` and `newer` (0 or 1) columns.
        fn guard(&self) -> Result<Guard, StoreError> {
            Ok(Guard {
                cutoff: self.try_get::<Option<i64>, _>("cutoff")?.map(Timestamp),
                newer_meeting: self.try_get::<i64, _>("newer")? != 0,
            })
        }
    }

    impl MeetingRow for sqlx::sqlite::SqliteRow {}
    impl MeetingRow for sqlx::postgres::PgRow {}
}

pub mod sqlite;
mod sqlite_lock;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::domain::{
    DeadlineChange, DeadlineRefused, GuestToken, MeetingKey, MeetingState, Plan, RoomId, Timestamp,
    WarningOutcome,
};
use crate::meeting_gauges::{MeetingGauges, StateDelta};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A meeting as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetingView {
    /// Identity.
    pub key: MeetingKey,
    /// When it is (or was) to be shut down.
    pub deadline: Timestamp,
    /// Where it stands.
    pub state: MeetingState,
}

/// A room's open meeting, as the public `GET /meetings/{room_id}` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMeeting {
    /// The meeting.
    pub view: MeetingView,
    /// The room's guest token, if a delivery carried one: whoever shows it
    /// may read the deadline.
    pub guest_token: Option<GuestToken>,
}

/// A meeting claimed for shutdown under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The meeting.
    pub key: MeetingKey,
    /// Its deadline (for the lateness histogram).
    pub deadline: Timestamp,
    /// How many times it has been claimed, this claim included (more than 1
    /// means an earlier worker crashed or lost its lease mid-shutdown).
    pub attempts: i64,
    /// What the store knew of the room when the claim committed, read in
    /// the claim's own statement: the first shutdown attempt needs no
    /// further round trip (a retry reads it again, [`MeetingStore::guard`]).
    pub guard: Guard,
}

/// What a shutdown or a warning checks right before its call, since a
/// `DELETE /rooms/{id}` (or a guest join) would reach whatever meeting the
/// room holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// The room's shutdown cutoff (the latest "meetings started at or
    /// before this are over" eyeson reported), if any: see
    /// [`crate::domain::ended_by_cutoff`].
    pub cutoff: Option<Timestamp>,
    /// Whether a meeting that started later in the same room is known.
    pub newer_meeting: bool,
}

/// The final state of a claimed meeting, for [`MeetingStore::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The meeting.
    pub key: MeetingKey,
    /// Its final state.
    pub state: MeetingState,
    /// When the outcome was known.
    pub at: Timestamp,
    /// The claim's [`Claim::attempts`]: with the owner, it identifies the
    /// claim, so an outcome of an earlier claim of the same owner (whose
    /// lease expired and which was claimed again) does not apply.
    pub attempts: i64,
    /// Only with `state` [`MeetingState::Stopping`] (a deferred shutdown):
    /// the claim is released (no owner) and the meeting may be claimed
    /// again from this time on (stored as its `lease_until`). `None` for
    /// final states.
    pub retry_at: Option<Timestamp>,
}

/// A meeting whose in-meeting warning is claimed under a lease, for the
/// deadline it has now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnClaim {
    /// The meeting.
    pub key: MeetingKey,
    /// The deadline the warning is for (the meeting's, when claimed).
    pub deadline: Timestamp,
    /// The room's guest token, if known.
    pub guest_token: Option<GuestToken>,
    /// Claims of the warning for this deadline, this one included.
    pub attempts: i64,
}

/// How a claimed warning ended, for [`MeetingStore::finish_warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnRecord {
    /// The meeting.
    pub key: MeetingKey,
    /// The claim's [`WarnClaim::deadline`]: with the owner and attempts it
    /// identifies the claim, so the outcome of a claim for an old deadline
    /// (the meeting was extended meanwhile) does not apply.
    pub deadline: Timestamp,
    /// The claim's [`WarnClaim::attempts`].
    pub attempts: i64,
    /// What happened.
    pub outcome: WarningOutcome,
    /// When it was known.
    pub at: Timestamp,
    /// Only with [`WarningOutcome::Deferred`]: claimable again from then.
    pub retry_at: Option<Timestamp>,
}

/// A delivery to forward to the app (`--forward-to`), written to the
/// outbox in the same transaction as the delivery's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewForward {
    /// Its lane ([`crate::lanes::lane_of`]): deliveries of one lane go
    /// out one after the other, in the order they were committed.
    pub lane: String,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
    /// The `X-Eyeson-Signature` header as received.
    pub signature: String,
    /// The `Content-Type` header as received, if any.
    pub content_type: Option<String>,
}

/// An outbox entry claimed under a lease: the head of its lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardClaim {
    /// The entry.
    pub id: i64,
    /// Its lane.
    pub lane: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The signature header as received.
    pub signature: String,
    /// The content type as received.
    pub content_type: Option<String>,
    /// When the service committed it (the store's clock).
    pub received_at: Timestamp,
    /// Claims of this entry, this one included.
    pub attempts: i64,
    /// The store's "now" when it was claimed.
    pub claimed_at: Timestamp,
}

/// How a claimed outbox entry ended, for [`ForwardStore::finish_forwards`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRecord {
    /// The entry.
    pub id: i64,
    /// The claim's [`ForwardClaim::attempts`] (with the owner, it
    /// identifies the claim).
    pub attempts: i64,
    /// `None`: remove the entry (delivered, expired or refused).
    /// `Some(d)`: try it again `d` after the store's now; the lane's later
    /// entries wait at least as long.
    pub retry_in: Option<Duration>,
    /// Why the last attempt failed (kept with a retry, for operators).
    pub error: Option<String>,
}

/// The forwarding outbox's questions (`--forward-to`).
pub trait ForwardStore: Send + Sync {
    /// Claims up to `limit` lane heads that are due and not leased (the
    /// lowest entry of each lane only, so a lane goes out in order), each
    /// under a lease of `lease` from the store's now.
    fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ForwardClaim>, StoreError>> + Send;

    /// Records how claims `owner` holds ended, in one transaction; each
    /// applies only while that claim holds the lease. One result per record.
    fn finish_forwards(
        &self,
        owner: &str,
        records: &[ForwardRecord],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// How many entries wait in the outbox.
    fn pending_forwards(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What applying one [`Plan`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to do.
    Ignored,
    /// A meeting is newly tracked.
    Tracked,
    /// The meeting was known already (a duplicate delivery).
    AlreadyKnown,
    /// The room reported a shutdown covering this meeting earlier: recorded as ended.
    LateForEndedMeeting,
    /// This many open meetings were marked ended.
    Ended(u64),
}

/// What [`MeetingStore::close_unlisted`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Closed this many meetings.
    Closed(u64),
    /// Closed none: `would_close` of the `open` tracked meetings is too
    /// many to believe ([`crate::domain::mass_close_refused`]).
    Refused {
        /// How many it would have closed.
        would_close: u64,
        /// How many meetings were open.
        open: u64,
    },
}

/// Who asked for an operator action, and how it is described in the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's address (`ip:port`), as the admin listener saw it.
    pub addr: String,
}

/// What [`AdminStore::move_deadline`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineMoved {
    /// The room has no open meeting.
    NoOpenMeeting,
    /// The room's open meeting is not the one the caller named (it ended
    /// and a newer one started meanwhile): nothing changed.
    OtherMeeting(MeetingView),
    /// The meeting is stopping (claimed, or waiting for a retry): nothing
    /// changed.
    NotRunning(MeetingView),
    /// The change was refused: nothing changed.
    Refused(DeadlineRefused, MeetingView),
    /// Moved and recorded in the audit.
    Moved {
        /// The meeting with its new deadline.
        meeting: MeetingView,
        /// Its deadline before.
        old: Timestamp,
    },
}

/// One meeting with its transitions, for `/meetings/{room}/history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetingRecord {
    /// Identity, deadline, state.
    pub view: MeetingView,
    /// When the service first tracked it.
    pub tracked_at: Timestamp,
    /// Its last change.
    pub updated_at: Timestamp,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    /// How many times it was claimed for shutdown.
    pub attempts: i64,
}

/// One audited operator action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRecord {
    /// When.
    pub at: Timestamp,
    /// `extend`, `end`, `limit_set`, `limit_removed`.
    pub action: String,
    /// The room (for limits: the room id or the prefix).
    pub room_id: String,
    /// The meeting, for meeting actions.
    pub started_at: Option<Timestamp>,
    /// The deadline before.
    pub old_deadline: Option<Timestamp>,
    /// The deadline after.
    pub new_deadline: Option<Timestamp>,
    /// What was asked (`by 15m`, `prefix limit 2h`, …).
    pub detail: Option<String>,
    /// Who asked (address).
    pub caller: String,
}

/// A room's meetings and the operator actions on it, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomHistory {
    /// Its meetings.
    pub meetings: Vec<MeetingRecord>,
    /// Operator actions on the room.
    pub actions: Vec<ActionRecord>,
}

/// A per-room or per-prefix limit kept in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitKind {
    /// An exact room id.
    Room,
    /// A room id prefix (longest match wins).
    Prefix,
}

impl LimitKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Room => "room",
            LimitKind::Prefix => "prefix",
        }
    }
}

/// One stored limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRule {
    /// Room or prefix.
    pub kind: LimitKind,
    /// The room id or the prefix.
    pub key: String,
    /// The limit.
    pub limit: Duration,
}

/// The operator side of the store: deadline changes, the audit, runtime
/// limits. Every change is recorded in the audit in its own transaction.
pub trait AdminStore: Send + Sync {
    /// Moves the deadline of the room's open meeting (if `expected_start`
    /// is given, only if that is the open meeting), only while it is
    /// `running`, and records the action. On PostgreSQL the commit
    /// `NOTIFY`s every replica's scheduler.
    fn move_deadline(
        &self,
        room: &RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &Caller,
    ) -> impl Future<Output = Result<DeadlineMoved, StoreError>> + Send;

    /// The room's last `limit` meetings with their transitions, and the
    /// operator actions on it.
    fn history(
        &self,
        room: &RoomId,
        limit: u32,
    ) -> impl Future<Output = Result<RoomHistory, StoreError>> + Send;

    /// The first recorded deadline of each meeting started at or after
    /// `started_since` whose deadline an operator moved (the deadline its
    /// limit gave it).
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> impl Future<Output = Result<Vec<(MeetingKey, Timestamp)>, StoreError>> + Send;

    /// Every stored limit.
    fn limit_rules(&self) -> impl Future<Output = Result<Vec<LimitRule>, StoreError>> + Send;

    /// Sets (`Some`) or removes (`None`) a limit and records the action;
    /// returns the limit it replaced. On PostgreSQL the commit `NOTIFY`s
    /// every replica.
    fn set_limit(
        &self,
        kind: LimitKind,
        key: &str,
        limit: Option<Duration>,
        now: Timestamp,
        caller: &Caller,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;
}

/// The audit's action name for a deadline change.
fn action_name(change: DeadlineChange) -> &'static str {
    match change {
        DeadlineChange::Now => "end",
        DeadlineChange::By(_) | DeadlineChange::Until(_) => "extend",
    }
}

/// The audit's description of a deadline change.
fn describe(change: DeadlineChange) -> String {
    match change {
        DeadlineChange::By(d) => format!("by {}", humantime::format_duration(d)),
        DeadlineChange::Until(t) => format!("until {}", t.to_rfc3339()),
        DeadlineChange::Now => "end now".into(),
    }
}

/// The audit's description of a limit change.
fn describe_limit(kind: LimitKind, old_ms: Option<i64>, new: Option<Duration>) -> String {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    let old = old_ms.map(|ms| show(Duration::from_millis(ms.max(0) as u64)));
    format!(
        "{} limit {} -> {}",
        kind.as_str(),
        old.as_deref().unwrap_or("none"),
        new.map(show).as_deref().unwrap_or("none")
    )
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a deadline change does to the room's open meeting `view` (pure:
/// the engines run it inside their transaction).
fn decide_move(
    view: &MeetingView,
    expected_start: Option<Timestamp>,
    change: DeadlineChange,
    now: Timestamp,
) -> DeadlineMoved {
    if expected_start.is_some_and(|s| s != view.key.started_at) {
        return DeadlineMoved::OtherMeeting(view.clone());
    }
    if view.state != MeetingState::Running {
        return DeadlineMoved::NotRunning(view.clone());
    }
    match crate::domain::moved_deadline(change, view.deadline, now) {
        Err(why) => DeadlineMoved::Refused(why, view.clone()),
        Ok(new) => DeadlineMoved::Moved {
            meeting: MeetingView {
                deadline: new,
                ..view.clone()
            },
            old: view.deadline,
        },
    }
}

/// A claimed outbox row (`RETURNING id, lane, body, signature,
/// content_type, received_at, attempts`), claimed at `claimed_at`.
fn forward_claim<R>(row: &R, claimed_at: Timestamp) -> Result<ForwardClaim, StoreError>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ForwardClaim {
        id: row.try_get("id")?,
        lane: row.try_get("lane")?,
        body: row.try_get("body")?,
        signature: row.try_get("signature")?,
        content_type: row.try_get("content_type")?,
        received_at: Timestamp(row.try_get("received_at")?),
        attempts: row.try_get("attempts")?,
        claimed_at,
    })
}

fn limit_rule<R>(row: &R) -> Result<LimitRule, StoreError>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let kind = match kind.as_str() {
        "room" => LimitKind::Room,
        "prefix" => LimitKind::Prefix,
        other => return Err(StoreError::Corrupt(format!("limit kind {other:?}"))),
    };
    let ms: i64 = row.try_get("limit_ms")?;
    Ok(LimitRule {
        kind,
        key: row.try_get("key")?,
        limit: Duration::from_millis(ms.max(1) as u64),
    })
}

/// A store failure. Details go to the log, never to HTTP clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row the service did not write (unknown state, bad room id).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store cannot be used as the service needs (say, it cannot be
    /// written). Names the store (a file path or a database name, never a
    /// URL with credentials).
    #[error("{store}: {reason}")]
    Unusable {
        /// Which store.
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// The database URL names an engine this build does not have.
    #[error("unsupported database URL (expected sqlite://... or postgres://...)")]
    UnsupportedUrl,
}

impl StoreError {
    /// Whether the database refused the write's values (a CHECK, UNIQUE,
    /// NOT NULL or foreign key constraint), rather than failed.
    pub fn is_constraint_violation(&self) -> bool {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => matches!(
                e.kind(),
                ErrorKind::CheckViolation
                    | ErrorKind::UniqueViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::ForeignKeyViolation
            ),
            _ => false,
        }
    }
}

/// The questions the service asks its store. See the module docs for the
/// rules an implementation keeps.
pub trait MeetingStore: Send + Sync {
    /// Applies plans in one transaction and commits; one result per plan.
    fn apply(
        &self,
        plans: &[Plan],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;

    /// Claims up to `limit` meetings that are due at `now` (running past
    /// their deadline, or stopping with an expired lease), earliest first.
    fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send;

    /// What the store knows now of the meeting's room (one round trip):
    /// read before each shutdown retry and each warning.
    fn guard(&self, key: &MeetingKey) -> impl Future<Output = Result<Guard, StoreError>> + Send;

    /// Records the outcomes of claims `owner` holds, in one transaction;
    /// each applies only if that claim still holds the lease: the row is
    /// `stopping`, owned by `owner`, and its `attempts` is the outcome's
    /// (a later claim, even by the same owner, increments it). One result
    /// per outcome: whether it applied.
    fn finish(
        &self,
        owner: &str,
        outcomes: &[Outcome],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// When the scheduler next has something to do: the earliest running
    /// deadline or lease expiry; `None` if nothing is open.
    fn next_wake(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// How many running meetings have their deadline at or before `until`,
    /// counting at most `cap` (for `/metrics`: a range scan of the
    /// deadline index that stops at `cap`, so a scrape stays cheap however
    /// many deadlines fall in the window).
    fn count_due_before(
        &self,
        until: Timestamp,
        cap: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Marks ended the running meetings that were tracked before
    /// `known_before` and are not in `listed` (eyeson's list of running
    /// meetings, asked for after `known_before`): they ended without a
    /// delivery reaching us. Closes none if that would be too many
    /// ([`crate::domain::mass_close_refused`]).
    fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Closing, StoreError>> + Send;

    /// Open meetings and those finished at or after `finished_since`, newest
    /// start first (then room id, descending), at most `limit`; with
    /// `after`, only those that come after that meeting in this order (a
    /// page cursor: stable while rows are added).
    fn list(
        &self,
        finished_since: Timestamp,
        after: Option<&MeetingKey>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<MeetingView>, StoreError>> + Send;

    /// The room's open meeting (the latest, if several), with its guest
    /// token.
    fn current_for_room(
        &self,
        room: &RoomId,
    ) -> impl Future<Output = Result<Option<RoomMeeting>, StoreError>> + Send;

    /// How many meetings are in each state.
    fn count_by_state(
        &self,
    ) -> impl Future<Output = Result<Vec<(MeetingState, u64)>, StoreError>> + Send;

    /// Forgets meetings finished before `finished_before`. Returns how many.
    fn prune(
        &self,
        finished_before: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Forgets meetings that start after `starts_after`, and shutdown
    /// cutoffs after it: a start that far ahead of the clock (a bad clock,
    /// or tracked before such starts were refused) would otherwise shield
    /// every later meeting of its room and never be pruned. Returns how
    /// many rows went.
    fn forget_future(
        &self,
        starts_after: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Answers if the store answers (for `/healthz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Claims up to `limit` running meetings whose warning is due at `now`
    /// ([`crate::domain::warning_due`] with `warn_before`), earliest
    /// deadline first, each under a lease until `now + lease`: the claim
    /// records the deadline it is for, so a later change of the deadline
    /// makes the warning due again.
    fn claim_warnings(
        &self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<WarnClaim>, StoreError>> + Send;

    /// Records warning outcomes of claims `owner` holds, in one
    /// transaction; each applies only while that claim (owner, attempts and
    /// deadline) holds the warning's lease. One result per record.
    fn finish_warnings(
        &self,
        owner: &str,
        records: &[WarnRecord],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// When a warning is next due (or a warning lease expires), for
    /// meetings whose deadline is after `now`; `None` if none is pending.
    fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
}

/// The configured engine. An enum rather than `dyn` (async trait methods are
/// not object safe) and rather than generics (they would spread through
/// every handler).
#[derive(Clone, Debug)]
pub enum Store {
    /// SQLite, the default: one file, no server.
    Sqlite(SqliteStore),
    /// PostgreSQL: any number of replicas on one database.
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the store a URL names.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Closes the connections (after the last user is done).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// Whether the last write that changed something committed: false from
    /// a failed write until a later one commits a change (for `/healthz`: a
    /// read-only or full store answers reads but loses nothing only by
    /// refusing deliveries, so it is not healthy).
    pub fn last_write_ok(&self) -> bool {
        self.write_flag().load(Ordering::SeqCst)
    }

    /// After a failed write: commits a probe write, and if it works marks
    /// the store writable again (so an idle service recovers without
    /// traffic). Without a failed write it does nothing.
    pub async fn recheck_writes(&self) -> bool {
        if self.last_write_ok() {
            return true;
        }
        let r = match self {
            Store::Sqlite(s) => s.probe_write().await,
            Store::Postgres(s) => s.probe_write().await,
        };
        self.note(r, |_| true).is_ok()
    }

    /// Meetings by state as this process knows them: every write through
    /// this handle (and its clones) keeps them current
    /// ([`crate::meeting_gauges`]).
    pub fn gauges(&self) -> &std::sync::Arc<MeetingGauges> {
        match self {
            Store::Sqlite(s) => &s.gauges,
            Store::Postgres(s) => &s.gauges,
        }
    }

    /// Applies a committed write's changes to the gauges.
    fn count(&self, delta: impl FnOnce(&mut StateDelta)) {
        let mut d = StateDelta::default();
        delta(&mut d);
        self.gauges().apply(&d);
    }

    fn write_flag(&self) -> &AtomicBool {
        match self {
            Store::Sqlite(s) => &s.write_ok,
            Store::Postgres(s) => &s.write_ok,
        }
    }

    /// Records how a write went: an error clears the flag, a commit that
    /// changed something (`wrote`) sets it. A commit that changed nothing
    /// proves nothing (an empty transaction commits on a full disk too).
    fn note<T>(
        &self,
        result: Result<T, StoreError>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        match &result {
            Ok(v) if wrote(v) => {
                if !self.write_flag().swap(true, Ordering::SeqCst) {
                    tracing::info!("the store accepts writes again");
                }
            }
            Ok(_) => {}
            // A constraint the input broke says nothing of the store's
            // health (the handlers validate first; this is the backstop).
            Err(e) if e.is_constraint_violation() => {}
            Err(e) => {
                if self.write_flag().swap(false, Ordering::SeqCst) {
                    tracing::error!(error = %e, "a write to the store failed; /healthz answers 503 until one succeeds");
                }
            }
        }
        result
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
        match self {
            Store::Sqlite(s) => s.set_deadline_for_tests(key, deadline).await,
            Store::Postgres(s) => s.set_deadline_for_tests(key, deadline).await,
        }
    }

    /// Test hook: the stored warning of a meeting, as `(warn_state,
    /// warn_for)`. Not for production use.
    #[doc(hidden)]
    pub async fn warning_for_tests(
        &self,
        key: &MeetingKey,
    ) -> Result<Option<(Option<String>, Option<i64>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.warning_for_tests(key).await,
            Store::Postgres(s) => s.warning_for_tests(key).await,
        }
    }

    /// Whether this process runs the singleton chores (reconciliation,
    /// pruning, webhook registration): always on SQLite (one host); on
    /// PostgreSQL, the one replica holding the chores advisory lock.
    pub async fn chores_leader(&self) -> bool {
        match self {
            Store::Sqlite(_) => true,
            Store::Postgres(s) => s.chores_leader().await,
        }
    }

    /// Starts the task that wakes this process's scheduler when another
    /// process tracks a meeting (PostgreSQL `LISTEN`); `None` on SQLite,
    /// where the scheduler's capped sleep covers other processes.
    pub fn spawn_listener(
        &self,
        wake: std::sync::Arc<crate::wake::Wake>,
        limits_changed: std::sync::Arc<dyn Fn() + Send + Sync>,
        stop: crate::shutdown::Shutdown,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.spawn_listener(wake, limits_changed, stop)),
        }
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
        let r = match self {
            Store::Sqlite(s) => {
                s.move_deadline(room, expected_start, change, now, caller)
                    .await
            }
            Store::Postgres(s) => {
                s.move_deadline(room, expected_start, change, now, caller)
                    .await
            }
        };
        self.note(r, |m| matches!(m, DeadlineMoved::Moved { .. }))
    }
    async fn history(&self, room: &RoomId, limit: u32) -> Result<RoomHistory, StoreError> {
        match self {
            Store::Sqlite(s) => s.history(room, limit).await,
            Store::Postgres(s) => s.history(room, limit).await,
        }
    }
    async fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> Result<Vec<(MeetingKey, Timestamp)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.planned_deadlines(started_since).await,
            Store::Postgres(s) => s.planned_deadlines(started_since).await,
        }
    }
    async fn limit_rules(&self) -> Result<Vec<LimitRule>, StoreError> {
        match self {
            Store::Sqlite(s) => s.limit_rules().await,
            Store::Postgres(s) => s.limit_rules().await,
        }
    }
    async fn set_limit(
        &self,
        kind: LimitKind,
        key: &str,
        limit: Option<Duration>,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<Option<Duration>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.set_limit(kind, key, limit, now, caller).await,
            Store::Postgres(s) => s.set_limit(kind, key, limit, now, caller).await,
        };
        self.note(r, |_| true)
    }
}

impl Store {
    /// Applies a batch of deliveries' plans and writes the deliveries to
    /// forward into the outbox, in one transaction: once it returns `Ok`,
    /// both are durable.
    pub async fn apply_deliveries(
        &self,
        plans: &[Plan],
        forwards: &[NewForward],
        now: Timestamp,
    ) -> Result<Vec<Applied>, StoreError> {
        let (r, delta) = crate::meeting_gauges::counting(async {
            match self {
                Store::Sqlite(s) => s.apply_deliveries(plans, forwards, now).await,
                Store::Postgres(s) => s.apply_deliveries(plans, forwards, now).await,
            }
        })
        .await;
        if r.is_ok() {
            self.gauges().apply(&delta);
        }
        self.note(r, |applied| {
            !forwards.is_empty()
                || applied
                    .iter()
                    .any(|a| !matches!(a, Applied::Ignored | Applied::AlreadyKnown))
        })
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
        let r = match self {
            Store::Sqlite(s) => s.claim_forwards(now, lease, owner, limit).await,
            Store::Postgres(s) => s.claim_forwards(now, lease, owner, limit).await,
        };
        self.note(r, |claims| !claims.is_empty())
    }
    async fn finish_forwards(
        &self,
        owner: &str,
        records: &[ForwardRecord],
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.finish_forwards(owner, records, now).await,
            Store::Postgres(s) => s.finish_forwards(owner, records, now).await,
        };
        self.note(r, |applied| applied.contains(&true))
    }
    async fn pending_forwards(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.pending_forwards().await,
            Store::Postgres(s) => s.pending_forwards().await,
        }
    }
}

impl MeetingStore for Store {
    async fn apply(&self, plans: &[Plan], now: Timestamp) -> Result<Vec<Applied>, StoreError> {
        let (r, delta) = crate::meeting_gauges::counting(async {
            match self {
                Store::Sqlite(s) => s.apply(plans, now).await,
                Store::Postgres(s) => s.apply(plans, now).await,
            }
        })
        .await;
        if r.is_ok() {
            self.gauges().apply(&delta);
        }
        self.note(r, |applied| {
            applied
                .iter()
                .any(|a| !matches!(a, Applied::Ignored | Applied::AlreadyKnown))
        })
    }
    async fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.claim_due(now, lease, owner, limit).await,
            Store::Postgres(s) => s.claim_due(now, lease, owner, limit).await,
        };
        if let Ok(claims) = &r {
            // Only claims increment `attempts` (0 on insert), and only a
            // running row's first claim makes it stopping: a claim with
            // attempts 1 came from running, a later one from stopping.
            let first = claims.iter().filter(|c| c.attempts == 1).count() as u64;
            self.count(|d| d.moved(MeetingState::Running, MeetingState::Stopping, first));
        }
        self.note(r, |claims| !claims.is_empty())
    }
    async fn guard(&self, key: &MeetingKey) -> Result<Guard, StoreError> {
        match self {
            Store::Sqlite(s) => s.guard(key).await,
            Store::Postgres(s) => s.guard(key).await,
        }
    }
    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.finish(owner, outcomes).await,
            Store::Postgres(s) => s.finish(owner, outcomes).await,
        };
        if let Ok(applied) = &r {
            self.count(|d| {
                for (o, _) in outcomes.iter().zip(applied).filter(|(_, a)| **a) {
                    // A deferral stays stopping: `moved` to itself is no change.
                    d.moved(MeetingState::Stopping, o.state, 1);
                }
            });
        }
        self.note(r, |applied| applied.contains(&true))
    }
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        match self {
            Store::Sqlite(s) => s.next_wake().await,
            Store::Postgres(s) => s.next_wake().await,
        }
    }
    async fn count_due_before(&self, until: Timestamp, cap: u32) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count_due_before(until, cap).await,
            Store::Postgres(s) => s.count_due_before(until, cap).await,
        }
    }
    async fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> Result<Closing, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.close_unlisted(listed, known_before, now).await,
            Store::Postgres(s) => s.close_unlisted(listed, known_before, now).await,
        };
        if let Ok(Closing::Closed(n)) = &r {
            self.count(|d| d.moved(MeetingState::Running, MeetingState::Ended, *n));
        }
        self.note(r, |c| matches!(c, Closing::Closed(n) if *n > 0))
    }
    async fn list(
        &self,
        finished_since: Timestamp,
        after: Option<&MeetingKey>,
        limit: u32,
    ) -> Result<Vec<MeetingView>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list(finished_since, after, limit).await,
            Store::Postgres(s) => s.list(finished_since, after, limit).await,
        }
    }
    async fn current_for_room(&self, room: &RoomId) -> Result<Option<RoomMeeting>, StoreError> {
        match self {
            Store::Sqlite(s) => s.current_for_room(room).await,
            Store::Postgres(s) => s.current_for_room(room).await,
        }
    }
    async fn count_by_state(&self) -> Result<Vec<(MeetingState, u64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.count_by_state().await,
            Store::Postgres(s) => s.count_by_state().await,
        }
    }
    async fn prune(&self, finished_before: Timestamp) -> Result<u64, StoreError> {
        let (r, delta) = crate::meeting_gauges::counting(async {
            match self {
                Store::Sqlite(s) => s.prune(finished_before).await,
                Store::Postgres(s) => s.prune(finished_before).await,
            }
        })
        .await;
        match &r {
            Ok(_) => self.gauges().apply(&delta),
            // On PostgreSQL the meetings may be gone though the audit's
            // cleanup failed: count again rather than guess.
            Err(_) => self.gauges().request_recount(),
        }
        self.note(r, |n| *n > 0)
    }
    async fn forget_future(&self, starts_after: Timestamp) -> Result<u64, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.forget_future(starts_after).await,
            Store::Postgres(s) => s.forget_future(starts_after).await,
        };
        if matches!(r, Ok(n) if n > 0) {
            // Which states the rows were in is not returned: recount.
            self.gauges().request_recount();
        }
        self.note(r, |n| *n > 0)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }
    async fn claim_warnings(
        &self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<WarnClaim>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => {
                s.claim_warnings(now, warn_before, lease, owner, limit)
                    .await
            }
            Store::Postgres(s) => {
                s.claim_warnings(now, warn_before, lease, owner, limit)
                    .await
            }
        };
        self.note(r, |claims| !claims.is_empty())
    }
    async fn finish_warnings(
        &self,
        owner: &str,
        records: &[WarnRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let r = match self {
            Store::Sqlite(s) => s.finish_warnings(owner, records).await,
            Store::Postgres(s) => s.finish_warnings(owner, records).await,
        };
        self.note(r, |applied| applied.contains(&true))
    }
    async fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> Result<Option<Timestamp>, StoreError> {
        match self {
            Store::Sqlite(s) => s.next_warning(now, warn_before).await,
            Store::Postgres(s) => s.next_warning(now, warn_before).await,
        }
    }
}
