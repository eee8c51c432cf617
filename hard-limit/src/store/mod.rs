//! The store, source of truth for every tracked meeting: [`connect`] picks
//! SQLite ([`sqlite`], default) or PostgreSQL ([`postgres`], replicas) by
//! URL. Both run the shared SQL (`sql.rs`, `plan.rs`, `rows.rs`) behind
//! [`Engine`]; the service holds it through [`Store`], which applies each
//! write's [`Written`] effect to the gauges and the health flag.
//!
//! Every engine keeps these rules: [`Store::apply`] commits before it
//! returns (an acknowledged webhook is never lost); only transitions
//! [`MeetingState::may_become`] allows happen; [`Store::claim_due`] leases a
//! meeting to one worker at a time; [`Store::finish`] applies only while
//! the caller's claim (owner and attempts) holds the lease.

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

#[cfg(doc)]
use crate::store_handle::Store;

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

/// A lease claim: up to `limit` rows due at `now`, leased to `owner`.
#[derive(Clone, Copy, Debug)]
pub struct ClaimReq<'a> {
    /// The caller's clock.
    pub now: Timestamp,
    /// How long the claim holds.
    pub lease: Duration,
    /// Who claims.
    pub owner: &'a str,
    /// At most this many rows.
    pub limit: u32,
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
    /// When it ends for being alone, while the clock runs and the rule is on.
    pub deadline: Option<Timestamp>,
    /// Whether it was ended for being alone.
    pub ended: bool,
}

/// A room's open meeting, for the public `GET /meetings/{room_id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMeeting {
    /// The meeting.
    pub view: MeetingView,
    /// The room's guest token, if a delivery carried one (it reads the deadline).
    pub guest_token: Option<GuestToken>,
}

/// A meeting claimed for shutdown under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The meeting.
    pub key: MeetingKey,
    /// Its end: the deadline, or the alone deadline if sooner.
    pub deadline: Timestamp,
    /// Whether the end is the alone rule's (participants are read again).
    pub alone: bool,
    /// Claims so far, this one included (above 1: an earlier one was lost).
    pub attempts: i64,
    /// The room as the claim read it (a retry reads [`Engine::guard`]).
    pub guard: Guard,
}

/// What a shutdown or warning checks right before its call (which reaches
/// whatever meeting the room holds now).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// The room's shutdown cutoff, if any ([`crate::domain::ended_by_cutoff`]).
    pub cutoff: Option<Timestamp>,
    /// Whether a later meeting of the room is known.
    pub newer_meeting: bool,
}

/// The final state of a claimed meeting, for [`Store::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The meeting.
    pub key: MeetingKey,
    /// Its final state.
    pub state: MeetingState,
    /// When the outcome was known.
    pub at: Timestamp,
    /// The claim's [`Claim::attempts`] (with the owner, the claim's identity).
    pub attempts: i64,
    /// Deferred ([`MeetingState::Stopping`]): claimable again from then;
    /// alone end cancelled (`Running`): the next participants check.
    pub retry_at: Option<Timestamp>,
    /// Ended for being alone.
    pub ended_alone: bool,
    /// With an alone end cancelled: the participants counted.
    pub participants: Option<i64>,
}

impl Outcome {
    /// The alone period's event this outcome ends it with, if any.
    pub fn alone_event(&self) -> Option<&'static str> {
        match (self.ended_alone, self.state) {
            (true, _) => Some("ended"),
            (false, MeetingState::Running) => Some("cancelled"),
            _ => None,
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

/// What a participants check found, for [`Store::finish_presence`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRecord {
    /// The meeting.
    pub key: MeetingKey,
    /// The claim's [`PresenceClaim::until`].
    pub until: Timestamp,
    /// When the check was made.
    pub at: Timestamp,
    /// Counted participants; `None`: the check failed (only `next` applies).
    pub participants: Option<i64>,
    /// The room's `alone_after`; `None`: the rule is off (the clock clears).
    pub alone_after: Option<Duration>,
    /// When to check next.
    pub next: Timestamp,
    /// `alone` (the clock started) or `company` (it was reset), for history.
    pub event: Option<&'static str>,
}

/// A meeting whose warning is claimed under a lease, for its current end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnClaim {
    /// The meeting.
    pub key: MeetingKey,
    /// The end warned of (deadline, or the alone deadline if sooner).
    pub deadline: Timestamp,
    /// Whether that end is the alone rule's (its own text).
    pub alone: bool,
    /// The room's guest token, if known.
    pub guest_token: Option<GuestToken>,
    /// Claims of the warning for this deadline, this one included.
    pub attempts: i64,
}

/// How a claimed warning ended, for [`Store::finish_warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarnRecord {
    /// The meeting.
    pub key: MeetingKey,
    /// The claim's [`WarnClaim::deadline`] (with owner and attempts, its identity).
    pub deadline: Timestamp,
    /// The claim's [`WarnClaim::attempts`].
    pub attempts: i64,
    /// What happened.
    pub outcome: WarningOutcome,
    /// When it was known.
    pub at: Timestamp,
    /// Only with [`WarningOutcome::Deferred`]: claimable again from then.
    pub retry_at: Option<Timestamp>,
    /// The claim's [`WarnClaim::alone`] (a sent one goes into the history).
    pub alone: bool,
}

/// Lanes of a room start with this; the rest is the room id.
pub const ROOM_LANE: &str = "room:";

/// A lane's PostgreSQL advisory-lock key: a room's lane locks the room id,
/// as its plans do, so one lock orders both.
pub fn lock_key(lane: &str) -> &str {
    lane.strip_prefix(ROOM_LANE).unwrap_or(lane)
}

/// A delivery to forward (`--forward-to`), put in the outbox with its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewForward {
    /// Its lane ([`crate::lanes::lane_of`]), which goes out in commit order.
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

/// How a claimed outbox entry ended, for [`Store::finish_forwards`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRecord {
    /// The entry.
    pub id: i64,
    /// The claim's [`ForwardClaim::attempts`] (with the owner, the claim).
    pub attempts: i64,
    /// `None`: remove it; `Some(d)`: retry (with its lane) `d` from now.
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
    /// A shutdown reported earlier covers it: recorded as ended.
    LateForEndedMeeting,
    /// This many open meetings were marked ended.
    Ended(u64),
}

/// What [`Store::close_unlisted`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Closed this many meetings.
    Closed(u64),
    /// Closed none: too many ([`crate::domain::mass_close_refused`]).
    Refused {
        /// How many it would have closed.
        would_close: u64,
        /// How many meetings were open.
        open: u64,
    },
}

/// Who asked for an operator action, as the audit names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's address (`ip:port`), as the admin listener saw it.
    pub addr: String,
}

/// What [`Store::move_deadline`] did; only `Moved` changed anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineMoved {
    /// The room has no open meeting.
    NoOpenMeeting,
    /// The room's open meeting is not the one the caller named.
    OtherMeeting(MeetingView),
    /// The meeting is stopping (claimed, or waiting for a retry).
    NotRunning(MeetingView),
    /// The change was refused.
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

/// An alone period's event (`alone`, `company`, `warned`, `cancelled`, `ended`).
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

/// A stored rule (`room_limits`): a limit, an alone setting or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRule {
    /// Room or prefix.
    pub kind: LimitKind,
    /// The room id or the prefix.
    pub key: String,
    /// The limit; `None`: inherited (a shorter prefix's, or `--max-duration`).
    pub limit: Option<Duration>,
    /// The alone rule; `None`: inherited (a shorter prefix's, or `--alone-after`).
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

/// A change to a stored rule ([`Store::set_limit`]); per part `None` keeps,
/// `Some(None)` clears (inherits), `Some(Some(v))` sets.
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

/// A rule before and after [`Store::set_limit`] (`None`: no rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleChanged {
    /// Before.
    pub previous: Option<Rule>,
    /// After.
    pub current: Option<Rule>,
}

/// The audit's action name and description of a deadline change.
fn describe(change: DeadlineChange) -> (&'static str, String) {
    match change {
        DeadlineChange::By(d) => ("extend", format!("by {}", humantime::format_duration(d))),
        DeadlineChange::Until(t) => ("extend", format!("until {}", t.to_rfc3339())),
        DeadlineChange::Now => ("end", "end now".into()),
    }
}
/// The audit's text of a rule change: each part asked for (removed: each
/// there was) as old -> new (`room limit 1h -> 2h, alone_after none -> 30m`).
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

/// What a deadline change does to the room's open meeting.
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
    /// The store is unusable (say, not writable); names the file or
    /// database, never a URL with credentials.
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
    /// Makes [`StoreError::Unusable`] errors for `store`.
    pub(crate) fn unusable(store: String) -> impl Fn(String) -> StoreError {
        move |reason| StoreError::Unusable {
            store: store.clone(),
            reason,
        }
    }

    /// Whether the database refused the write's values rather than failed.
    pub fn is_constraint_violation(&self) -> bool {
        use sqlx::error::ErrorKind::*;
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        let kind = e.kind();
        matches!(
            kind,
            CheckViolation | UniqueViolation | NotNullViolation | ForeignKeyViolation
        )
    }
}
