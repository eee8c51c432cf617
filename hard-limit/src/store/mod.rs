//! The store: the source of truth for every tracked meeting.
//!
//! [`Engine`] is deliberately narrow (the questions the service asks,
//! no more). Two engines answer it, chosen by the database URL in
//! [`connect`]: SQLite ([`sqlite`], the default) and PostgreSQL
//! ([`postgres`], for several replicas on one database). Each keeps its
//! own migrations in `migrations/<engine>/`. The service holds the engine
//! through [`Store`], which keeps the gauges and the health flag from
//! each write's effect and dereferences to the engine for the reads.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the types of the questions and answers; [`connect`] |
//! | `engine.rs` | [`Engine`]: one object-safe trait over both engines ([`connect`] picks one), where the reads are documented |
//! | `effect.rs` | what a write changed ([`Written`]), returned with its answer for the handle that keeps the gauges and the health flag ([`crate::store_handle`], where the writes are documented) |
//! | `sql.rs` | the SQL both engines share, written once, and the `Dialect` each engine supplies |
//! | `plan.rs` | applying a plan: the steps, written once |
//! | `rows.rs` | decoding rows, written once |
//! | `sqlite.rs`, `postgres.rs` | only what differs: connection setup, transactions, claims, batches, pruning |
//!
//! Rules every engine must keep (the integration and property tests check
//! them through [`Store`], on both engines):
//! - [`Store::apply`] commits before it returns: an acknowledged
//!   webhook is never lost.
//! - Only transitions allowed by [`MeetingState::may_become`] happen; final
//!   states never change.
//! - [`Store::claim_due`] hands a meeting to exactly one worker at a
//!   time: a claim is a lease, and only an expired lease is claimed again.
//! - [`Store::finish`] applies only while the caller's claim (owner
//!   and attempts) still holds the lease, so a worker that lost its lease
//!   cannot overwrite the outcome, even when its own process re-claimed.
//!
//! [`Store`]: crate::store_handle::Store
//! [`Store::apply`]: crate::store_handle::Store::apply
//! [`Store::claim_due`]: crate::store_handle::Store::claim_due
//! [`Store::finish`]: crate::store_handle::Store::finish

mod effect;
mod engine;
mod plan;
pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;
mod sqlite_lock;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    AloneAfter, DeadlineChange, DeadlineRefused, GuestToken, MeetingKey, MeetingState, Rule,
    Timestamp, WarningOutcome,
};

pub use effect::{StateDelta, Written};
pub use engine::{BoxFut, Engine};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens (creating if needed) and migrates the store a URL names.
pub async fn connect(url: &str) -> Result<Arc<dyn Engine>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// A meeting as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetingView {
    /// Identity.
    pub key: MeetingKey,
    /// When it is (or was) to be shut down.
    pub deadline: Timestamp,
    /// Where it stands.
    pub state: MeetingState,
    /// What the alone rule's checks found.
    pub alone: AloneView,
}

/// A meeting as the alone rule's checks left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AloneView {
    /// Counted participants at the last check (none yet: `None`).
    pub participants: Option<i64>,
    /// Since when every check counted at most one.
    pub since: Option<Timestamp>,
    /// When it ends for being alone, while the clock runs (and the rule is
    /// on for the room).
    pub deadline: Option<Timestamp>,
    /// Whether it was ended for being alone.
    pub ended: bool,
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
    /// Its end: the deadline, or the alone deadline if sooner (for the
    /// lateness histogram).
    pub deadline: Timestamp,
    /// Whether the end is the alone rule's (the participants are read once
    /// more before the call).
    pub alone: bool,
    /// How many times it has been claimed, this claim included (more than 1
    /// means an earlier worker crashed or lost its lease mid-shutdown).
    pub attempts: i64,
    /// What the store knew of the room when the claim committed, read in
    /// the claim's own statement: the first shutdown attempt needs no
    /// further round trip (a retry reads it again, [`Engine::guard`]).
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

/// The final state of a claimed meeting, for
/// [`Store::finish`](crate::store_handle::Store::finish).
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
    /// final states. With `state` [`MeetingState::Running`] (an alone end
    /// cancelled: someone joined), when the participants are checked next.
    pub retry_at: Option<Timestamp>,
    /// Ended for being alone.
    pub ended_alone: bool,
    /// With an alone end cancelled: the participants counted.
    pub participants: Option<i64>,
}

impl Outcome {
    /// The alone period's event this outcome ends it with, if any.
    pub fn alone_event(&self) -> Option<&'static str> {
        if self.ended_alone {
            Some("ended")
        } else if self.state == MeetingState::Running {
            Some("cancelled")
        } else {
            None
        }
    }
}

/// A meeting whose participants check is claimed under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceClaim {
    /// The meeting.
    pub key: MeetingKey,
    /// Until when the claim holds (with the owner, its identity).
    pub until: Timestamp,
    /// The alone clock as the last check left it.
    pub alone_since: Option<Timestamp>,
}

/// What a participants check found, for
/// [`Store::finish_presence`](crate::store_handle::Store::finish_presence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRecord {
    /// The meeting.
    pub key: MeetingKey,
    /// The claim's [`PresenceClaim::until`].
    pub until: Timestamp,
    /// When the check was made.
    pub at: Timestamp,
    /// Counted participants; `None` when the check failed (nothing about
    /// the meeting changes but the next check's time).
    pub participants: Option<i64>,
    /// The room's `alone_after` at the check; `None`: the rule is off for
    /// it (the clock is cleared).
    pub alone_after: Option<Duration>,
    /// When to check next.
    pub next: Timestamp,
    /// `alone` (the clock started) or `company` (it was reset), for the
    /// history.
    pub event: Option<&'static str>,
}

/// A meeting whose in-meeting warning is claimed under a lease, for the
/// deadline it has now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnClaim {
    /// The meeting.
    pub key: MeetingKey,
    /// The end the warning is for (the meeting's deadline, or its alone
    /// deadline if sooner, when claimed).
    pub deadline: Timestamp,
    /// Whether that end is the alone rule's (its own text).
    pub alone: bool,
    /// The room's guest token, if known.
    pub guest_token: Option<GuestToken>,
    /// Claims of the warning for this deadline, this one included.
    pub attempts: i64,
}

/// How a claimed warning ended, for
/// [`Store::finish_warnings`](crate::store_handle::Store::finish_warnings).
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
    /// The claim's [`WarnClaim::alone`]: a sent alone warning is recorded
    /// in the alone period's history.
    pub alone: bool,
}

/// Lanes of a room start with this; the rest is the room id.
pub const ROOM_LANE: &str = "room:";

/// The PostgreSQL advisory-lock key of a lane: a room's lane locks what
/// the room's plans lock (the room id), so one lock orders both.
pub fn lock_key(lane: &str) -> &str {
    lane.strip_prefix(ROOM_LANE).unwrap_or(lane)
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

/// How a claimed outbox entry ended, for
/// [`Store::finish_forwards`](crate::store_handle::Store::finish_forwards).
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

/// What applying one [`Plan`](crate::domain::Plan) did.
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

/// What [`Store::close_unlisted`](crate::store_handle::Store::close_unlisted) did.
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

/// What [`Store::move_deadline`](crate::store_handle::Store::move_deadline) did.
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
    /// The alone rule's events of those meetings, oldest first.
    pub alone: Vec<AloneEvent>,
}

/// An alone period's event (`alone`, `company`, `warned`, `cancelled`,
/// `ended`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AloneEvent {
    /// The meeting's start.
    pub started_at: Timestamp,
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: String,
    /// Counted participants, if a check saw them.
    pub participants: Option<i64>,
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

/// One stored rule (`room_limits`): a limit, an alone setting or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRule {
    /// Room or prefix.
    pub kind: LimitKind,
    /// The room id or the prefix.
    pub key: String,
    /// The limit; `None`: the rule sets none (inherited: a shorter
    /// prefix's, else `--max-duration`).
    pub limit: Option<Duration>,
    /// The alone rule; `None`: inherited (a shorter prefix's, else
    /// `--alone-after`).
    pub alone_after: Option<AloneAfter>,
}

impl LimitRule {
    /// What the rule sets.
    pub fn rule(&self) -> Rule {
        Rule {
            limit: self.limit,
            alone_after: self.alone_after,
        }
    }
}

/// A change to one stored rule ([`Store::set_limit`]), merged into what is
/// stored: a part left `None` stays as it is, `Some(None)` clears it (the
/// part is then inherited), `Some(Some(v))` sets it. A rule left with
/// neither part is deleted.
///
/// [`Store::set_limit`]: crate::store_handle::Store::set_limit
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleChange {
    /// The limit.
    pub limit: Option<Option<Duration>>,
    /// The alone rule.
    pub alone_after: Option<Option<AloneAfter>>,
}

impl RuleChange {
    /// The rule `old` becomes.
    pub fn merged(&self, old: Rule) -> Rule {
        Rule {
            limit: self.limit.unwrap_or(old.limit),
            alone_after: self.alone_after.unwrap_or(old.alone_after),
        }
    }

    /// A change that sets the parts `rule` sets and leaves the others.
    pub fn setting(rule: Rule) -> Self {
        RuleChange {
            limit: rule.limit.map(Some),
            alone_after: rule.alone_after.map(Some),
        }
    }
}

/// A rule before and after [`Store::set_limit`](crate::store_handle::Store::set_limit)
/// (`None`: no rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleChanged {
    /// Before.
    pub previous: Option<Rule>,
    /// After.
    pub current: Option<Rule>,
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

/// The audit's description of a rule change: each part asked for (on a
/// removal, each part there was), old -> new (`room limit 1h -> 2h,
/// alone_after none -> 30m`; `none`: not set, inherited).
fn describe_limit(
    kind: LimitKind,
    asked: Option<RuleChange>,
    old: Option<Rule>,
    new: Option<Rule>,
) -> String {
    let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
    let show = |d: Option<String>| d.unwrap_or_else(|| "none".to_owned());
    let limit = |r: Rule| show(r.limit.map(|d| humantime::format_duration(d).to_string()));
    let alone = |r: Rule| show(r.alone_after.map(|a| a.to_string()));
    let (with_limit, with_alone) = match asked {
        Some(c) => (c.limit.is_some(), c.alone_after.is_some()),
        None => (old.limit.is_some(), old.alone_after.is_some()),
    };
    let mut parts = Vec::new();
    if with_limit || !with_alone {
        parts.push(format!("limit {} -> {}", limit(old), limit(new)));
    }
    if with_alone {
        parts.push(format!("alone_after {} -> {}", alone(old), alone(new)));
    }
    format!("{} {}", kind.as_str(), parts.join(", "))
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
