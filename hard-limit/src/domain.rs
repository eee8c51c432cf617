//! The pure core: meeting identity, deadlines, per-room limits and what a
//! `room_update` delivery leads to. No HTTP, SQL or wall clock here: "now"
//! is always an argument, so every rule about time is tested with numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fieldless enum whose variants each have a `&'static str` name (the
/// method `$as_str`, also its `Display`), listed in order as `ALL`.
macro_rules! named_enum {
    ($(#[$m:meta])* pub enum $name:ident: $as_str:ident {
        $($(#[$vm:meta])* $v:ident => $s:literal,)*
    }) => {
        $(#[$m])*
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($s),*].len()] = [$($name::$v),*];

            /// The name stored, sent or used as a metrics label.
            pub fn $as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.$as_str())
            }
        }
    };
}

/// Milliseconds since the Unix epoch (UTC): eyeson's precision, stored as
/// an `i64` by every SQL engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Timestamp {
    /// The wall-clock time given as a [`SystemTime`].
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(millis(d)),
            Err(e) => Timestamp(-millis(e.duration())),
        }
    }

    /// Whole seconds since the epoch, as in a delivery's `timestamp`.
    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Parses eyeson's `2021-11-24T07:16:37.748Z`; offsets other than `Z`
    /// are refused, not guessed.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        humantime::parse_rfc3339(s).ok().map(Self::from_system_time)
    }

    /// This time plus a duration, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(millis(d)))
    }

    /// This time minus a duration, saturating (never wraps into the future).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(millis(d)))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// ISO-8601 UTC with milliseconds, clamped to 1970..=9999 (an absurd
    /// limit must not make a handler panic).
    pub fn to_rfc3339(self) -> String {
        const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let t = UNIX_EPOCH + Duration::from_millis(self.0.clamp(0, MAX) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// An eyeson room id: not empty, at most [`RoomId::MAX_LEN`] bytes, no
/// control characters (they corrupt logs), not `.` or `..` (URL rules drop
/// such segments: `DELETE /rooms/..` would become another call).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// Longest accepted room id, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Checks and wraps a room id.
    pub fn parse(s: &str) -> Result<Self, InvalidRoomId> {
        Err(if s.is_empty() {
            InvalidRoomId::Empty
        } else if s.len() > Self::MAX_LEN {
            InvalidRoomId::TooLong
        } else if s.chars().any(char::is_control) {
            InvalidRoomId::ControlCharacter
        } else if s == "." || s == ".." {
            InvalidRoomId::DotSegment
        } else {
            return Ok(RoomId(s.to_owned()));
        })
    }

    /// The id as eyeson spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a room id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRoomId {
    /// The empty string.
    #[error("room id is empty")]
    Empty,
    /// Longer than [`RoomId::MAX_LEN`] bytes.
    #[error("room id is longer than 256 bytes")]
    TooLong,
    /// Contains a control character.
    #[error("room id contains a control character")]
    ControlCharacter,
    /// `.` or `..`.
    #[error("room id is . or ..")]
    DotSegment,
}

/// A meeting: one run of a room. A room hosts consecutive meetings, so a
/// late shutdown aimed at an old meeting must not end a new one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeetingKey {
    /// The room the meeting runs in.
    pub room_id: RoomId,
    /// When eyeson says the meeting started.
    pub started_at: Timestamp,
}

named_enum! {
    /// Where a tracked meeting stands; `as_str` is its wire and storage name.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum MeetingState: as_str {
        /// Running and not yet due (or due and waiting to be claimed).
        Running => "running",
        /// Claimed under a lease, or released after retryable failures until
        /// `lease_until`.
        Stopping => "stopping",
        /// This service ended it (eyeson answered 2xx).
        ShutDown => "shut_down",
        /// eyeson reported it ended (webhook, room list, or 404/410 on shutdown).
        Ended => "ended",
        /// Not shut down on purpose: a newer meeting in the room, or dry run.
        Skipped => "skipped",
        /// Shutting down failed for good (an answer retrying cannot change).
        Failed => "failed",
    }
}

impl MeetingState {
    /// The inverse of [`MeetingState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the meeting may still need a shutdown.
    pub fn is_open(self) -> bool {
        matches!(self, MeetingState::Running | MeetingState::Stopping)
    }

    /// The transitions the store may make. Final states never change: so at
    /// most one shutdown per meeting, however deliveries interleave.
    pub fn may_become(self, next: MeetingState) -> bool {
        use MeetingState::*;
        // From Stopping, any: an outcome, a lapsed lease claimed again
        // (Stopping), or a cancelled alone end (Running).
        matches!(
            (self, next),
            (Running, Stopping | Ended | Skipped) | (Stopping, _)
        )
    }
}

/// What a rule says about the alone rule for its room or prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AloneAfter {
    /// Off here (stored as 0).
    Off,
    /// A meeting alone this long is ended.
    After(Duration),
}

impl AloneAfter {
    /// `None` when off.
    pub fn duration(self) -> Option<Duration> {
        match self {
            AloneAfter::Off => None,
            AloneAfter::After(d) => Some(d),
        }
    }

    /// As stored in `room_limits.alone_after_ms` (0 for off).
    pub fn as_millis(self) -> i64 {
        self.duration().map_or(0, |d| millis(d).max(1))
    }

    /// From `room_limits.alone_after_ms` (0 or less: off).
    pub fn from_millis(ms: i64) -> Self {
        match u64::try_from(ms) {
            Ok(ms) if ms > 0 => AloneAfter::After(Duration::from_millis(ms)),
            _ => AloneAfter::Off,
        }
    }
}

impl fmt::Display for AloneAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AloneAfter::Off => f.write_str("off"),
            AloneAfter::After(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// An operator's alone setting: `off`, or a duration like a limit. The
/// error does not name the field.
pub fn parse_alone_after(s: &str) -> Result<AloneAfter, String> {
    let s = s.trim();
    if s == "off" {
        return Ok(AloneAfter::Off);
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("is not \"off\" nor a duration like 30m ({e})"))?;
    limit_in_range(d)
        .map(AloneAfter::After)
        .map_err(|range| range.to_string())
}

/// One per-room or per-prefix rule; a part left `None` is inherited (from a
/// shorter prefix, else the command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The maximum duration.
    pub limit: Option<Duration>,
    /// The alone rule.
    pub alone_after: Option<AloneAfter>,
}

impl Rule {
    /// A rule that sets only a limit.
    pub fn limit(d: Duration) -> Self {
        Rule {
            limit: Some(d),
            ..Rule::default()
        }
    }

    /// A rule that sets only the alone rule.
    pub fn alone(a: AloneAfter) -> Self {
        Rule {
            alone_after: Some(a),
            ..Rule::default()
        }
    }

    /// Whether it sets nothing (such a rule is not kept).
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.alone_after.is_none()
    }
}

/// The per-room rules. The limit and the alone rule are each looked up on
/// their own: the room's rule, else the longest prefix's, else the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    default: Duration,
    alone_default: Option<Duration>,
    exact: BTreeMap<String, Rule>,
    /// Longest first, so the first match is the longest.
    prefixes: Vec<(String, Rule)>,
}

impl Limits {
    /// Only a default limit (the alone rule off).
    pub fn new(default: Duration) -> Self {
        Limits {
            default,
            alone_default: None,
            exact: BTreeMap::new(),
            prefixes: Vec::new(),
        }
    }

    /// The alone rule for rooms no rule names (`--alone-after`; `None`: off).
    pub fn with_alone_default(mut self, alone_after: Option<Duration>) -> Self {
        self.alone_default = alone_after;
        self
    }

    /// Adds rules by exact room id and by prefix; empty rules are dropped.
    pub fn with_full_rules(
        mut self,
        exact: impl IntoIterator<Item = (String, Rule)>,
        prefixes: impl IntoIterator<Item = (String, Rule)>,
    ) -> Self {
        let keep = |(_, r): &(String, Rule)| !r.is_empty();
        self.exact.extend(exact.into_iter().filter(keep));
        self.prefixes.extend(prefixes.into_iter().filter(keep));
        self.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self
    }

    /// The limit for rooms no rule names.
    pub fn default_limit(&self) -> Duration {
        self.default
    }

    /// The alone rule for rooms no rule names (`None`: off).
    pub fn default_alone_after(&self) -> Option<Duration> {
        self.alone_default
    }

    /// The exact-room rules that set a limit, sorted by room id.
    pub fn rooms(&self) -> Vec<(&str, Duration)> {
        self.room_rules()
            .into_iter()
            .filter_map(with_limit)
            .collect()
    }

    /// The prefix rules that set a limit, longest first.
    pub fn prefixes(&self) -> Vec<(&str, Duration)> {
        self.prefix_rules()
            .into_iter()
            .filter_map(with_limit)
            .collect()
    }

    /// Every exact-room rule, sorted by room id.
    pub fn room_rules(&self) -> Vec<(&str, Rule)> {
        self.exact.iter().map(|(k, r)| (k.as_str(), *r)).collect()
    }

    /// Every prefix rule, longest first.
    pub fn prefix_rules(&self) -> Vec<(&str, Rule)> {
        self.prefixes
            .iter()
            .map(|(k, r)| (k.as_str(), *r))
            .collect()
    }

    /// `part` of the most specific rule for `room` that sets it.
    fn lookup<T>(&self, room: &RoomId, part: impl Fn(&Rule) -> Option<T>) -> Option<T> {
        let id = room.as_str();
        self.exact.get(id).and_then(&part).or_else(|| {
            self.prefixes
                .iter()
                .filter(|(p, _)| id.starts_with(p.as_str()))
                .find_map(|(_, r)| part(r))
        })
    }

    /// The limit that applies to a room.
    pub fn for_room(&self, room: &RoomId) -> Duration {
        self.lookup(room, |r| r.limit).unwrap_or(self.default)
    }

    /// How long a meeting in `room` may be alone before it is ended (`None`:
    /// the alone rule is off here).
    pub fn alone_after(&self, room: &RoomId) -> Option<Duration> {
        (self.lookup(room, |r| r.alone_after)).map_or(self.alone_default, AloneAfter::duration)
    }

    /// Whether the default or any rule turns the alone rule on.
    pub fn alone_anywhere(&self) -> bool {
        self.alone_default.is_some()
            || self
                .exact
                .values()
                .chain(self.prefixes.iter().map(|(_, r)| r))
                .any(|r| matches!(r.alone_after, Some(AloneAfter::After(_))))
    }
}

fn with_limit((key, rule): (&str, Rule)) -> Option<(&str, Duration)> {
    Some((key, rule.limit?))
}

/// How deadlines are computed: the per-room limit plus a grace period.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Per-room maximum durations.
    pub limits: Limits,
    /// Extra time after the limit before the shutdown call.
    pub grace: Duration,
}

impl Policy {
    /// When a meeting is to be shut down: start + limit + grace.
    pub fn deadline(&self, key: &MeetingKey) -> Timestamp {
        key.started_at
            .plus(self.limits.for_room(&key.room_id))
            .plus(self.grace)
    }
}

/// A `room_update` delivery (or a `GET /rooms` entry), parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomUpdate {
    /// The room.
    pub room_id: RoomId,
    /// The meeting's start, if eyeson gave one.
    pub started_at: Option<Timestamp>,
    /// Whether eyeson says the meeting ended.
    pub shutdown: bool,
    /// When eyeson sent the event (the signed `timestamp`).
    pub event_time: Timestamp,
    /// The room's guest token, if given (for the in-meeting warning).
    pub guest_token: Option<GuestToken>,
}

/// A room's guest token: it lets anyone join, so `Debug` is redacted and
/// [`GuestToken::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestToken(String);

impl GuestToken {
    /// Checks a token by a room id's rules (it is a path segment too).
    pub fn parse(s: &str) -> Option<Self> {
        RoomId::parse(s).ok().map(|r| GuestToken(r.0))
    }

    /// The token itself (for `POST /guests/{guest_token}` and the store).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GuestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuestToken(..)")
    }
}

/// Whether `presented` equals `expected`, in time independent of where they
/// differ (both are hashed, the digests compared in full).
pub fn secrets_match(expected: &[u8], presented: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(expected), Sha256::digest(presented));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether the public `GET /meetings/{room_id}` shows a meeting: to the
/// holder of its guest token only (guessing ids reveals nothing), or, if it
/// has none, to anyone when the operator chose so.
pub fn meeting_visible(
    stored: Option<&GuestToken>,
    presented: Option<&[u8]>,
    tokenless_public: bool,
) -> bool {
    match stored {
        Some(token) => presented.is_some_and(|p| secrets_match(token.expose().as_bytes(), p)),
        None => tokenless_public,
    }
}

/// What a delivery means for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to record (and why).
    Ignore(IgnoreReason),
    /// A meeting runs: track it, and close the room's older open meetings
    /// (a newer start proves they ended); ended instead if a known cutoff
    /// covers it (a late delivery).
    Track {
        /// The meeting.
        key: MeetingKey,
        /// When to shut it down.
        deadline: Timestamp,
        /// The guest token, if delivered (replaces a known meeting's).
        guest_token: Option<GuestToken>,
    },
    /// The room's meeting ended: close open meetings started by `cutoff` and
    /// remember it, so late deliveries do not resurrect them. Without
    /// `meeting` it is an upper bound, resolved by [`null_start_cutoff`].
    End {
        /// The room.
        room_id: RoomId,
        /// Meetings started at or before this are over.
        cutoff: Timestamp,
        /// The named meeting and its deadline (recorded ended if unknown).
        meeting: Option<(MeetingKey, Timestamp)>,
    },
}

/// Why a delivery changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// `started_at: null` and not a shutdown: the room is not running yet.
    NotStarted,
}

/// Decides what a room update means. Pure: same input, same plan.
pub fn plan(update: &RoomUpdate, policy: &Policy) -> Plan {
    let key = update.started_at.map(|started_at| MeetingKey {
        room_id: update.room_id.clone(),
        started_at,
    });
    if update.shutdown {
        // A named meeting ends only itself and older ones (a later
        // redelivery must not let a newer one escape its limit). Unnamed,
        // only meetings started before the event's second: one started in
        // it may be the next (a page reload).
        let cutoff = match &key {
            Some(k) => k.started_at,
            None => Timestamp(update.event_time.0.saturating_sub(1)),
        };
        return Plan::End {
            room_id: update.room_id.clone(),
            cutoff,
            meeting: key.map(|k| (k.clone(), policy.deadline(&k))),
        };
    }
    match key {
        None => Plan::Ignore(IgnoreReason::NotStarted),
        Some(key) => Plan::Track {
            deadline: policy.deadline(&key),
            key,
            guest_token: update.guest_token.clone(),
        },
    }
}

/// The real cutoff of a shutdown without a start: the room's newest open
/// meeting started by `upper_bound`, else `None` (close nothing). eyeson
/// stamps whole seconds, so only a meeting we knew open can be the ended
/// one; ending an unknown one (a page reload) would let it escape its limit.
pub fn null_start_cutoff(
    upper_bound: Timestamp,
    newest_open: Option<Timestamp>,
) -> Option<Timestamp> {
    newest_open.filter(|t| *t <= upper_bound)
}

/// Whether the room's remembered cutoff ([`Plan::End`]) says it is over.
pub fn ended_by_cutoff(key: &MeetingKey, cutoff: Option<Timestamp>) -> bool {
    cutoff.is_some_and(|c| key.started_at <= c)
}

/// How far ahead a `started_at` may be: the replay window, or 10 minutes
/// without one. Further is a bad clock or a forgery, and would shield the
/// room's later meetings (they look older).
pub fn max_start_ahead(webhook_max_age: Duration) -> Duration {
    if webhook_max_age.is_zero() {
        Duration::from_secs(600)
    } else {
        webhook_max_age
    }
}

/// Whether `started_at` is further ahead of `now` than `ahead` allows.
pub fn starts_in_the_future(started_at: Timestamp, now: Timestamp, ahead: Duration) -> bool {
    started_at > now.plus(ahead)
}

/// Whether a reconciliation must close none of `would_close` of `open`:
/// more than 10 and 20% is likelier a partial `GET /rooms` than unseen
/// ends, and closing is only an optimisation (a DELETE meets 404).
pub fn mass_close_refused(would_close: u64, open: u64) -> bool {
    would_close > 10 && would_close.saturating_mul(5) > open
}

/// An operator's change to an open meeting's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineChange {
    /// Later by this much (`{"by": "15m"}`).
    By(Duration),
    /// At this time (`{"until": "…"}`): earlier is allowed, the past is not.
    Until(Timestamp),
    /// Now (`/end`): the scheduler ends it the usual way, at once.
    Now,
}

/// Why a [`DeadlineChange`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineRefused {
    /// The new deadline would not be after now.
    InThePast,
    /// The new deadline would be more than [`MAX_DURATION`] from now.
    TooFar,
}

/// The deadline after `change` of a meeting due at `current`; an overdue
/// one extended too little is refused rather than ended at once.
pub fn moved_deadline(
    change: DeadlineChange,
    current: Timestamp,
    now: Timestamp,
) -> Result<Timestamp, DeadlineRefused> {
    let new = match change {
        DeadlineChange::By(d) => current.plus(d),
        DeadlineChange::Until(t) => t,
        DeadlineChange::Now => return Ok(current.min(now)),
    };
    if new <= now {
        Err(DeadlineRefused::InThePast)
    } else if new > now.plus(MAX_DURATION) {
        Err(DeadlineRefused::TooFar)
    } else {
        Ok(new)
    }
}

/// The longest duration accepted (but for [`MAX_RETENTION`]): a slip like
/// `999999999h` is refused instead of meaning never.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest limit: below a second it is a typo (`30ms` for `30m`).
pub const MIN_LIMIT: Duration = Duration::from_secs(1);

/// The longest `--retention` (a year and a day): it bounds history.
pub const MAX_RETENTION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration outside its range; `Display` says the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// The shortest accepted.
    pub min: Duration,
    /// The longest accepted.
    pub max: Duration,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole days as days: humantime would say "1year 18h" for 366 days.
        let show = |d: Duration| match d.as_secs() {
            s if s >= 86_400 && s % 86_400 == 0 && d.subsec_nanos() == 0 => {
                format!("{}days", s / 86_400)
            }
            _ => humantime::format_duration(d).to_string(),
        };
        write!(f, "must be from {} to {}", show(self.min), show(self.max))
    }
}

/// `d` if it lies in `min..=max`.
pub fn in_range(d: Duration, min: Duration, max: Duration) -> Result<Duration, OutOfRange> {
    (min..=max)
        .contains(&d)
        .then_some(d)
        .ok_or(OutOfRange { min, max })
}

/// `d` if it is a usable limit: [`MIN_LIMIT`] to [`MAX_DURATION`].
pub fn limit_in_range(d: Duration) -> Result<Duration, OutOfRange> {
    in_range(d, MIN_LIMIT, MAX_DURATION)
}

named_enum! {
    /// How the shutdown call of a claimed meeting ended; `as_str` is its
    /// metrics label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ShutdownOutcome: as_str {
        /// eyeson answered 200/204: this service ended the meeting.
        ShutDown => "shut_down",
        /// eyeson answered 404/410: the meeting was no longer running.
        AlreadyEnded => "already_ended",
        /// A newer meeting in the room is known: not called, on purpose.
        SkippedNewerMeeting => "skipped_newer_meeting",
        /// Dry run: logged and recorded, not called.
        DryRun => "dry_run",
        /// eyeson refused (401/403): retrying cannot help.
        Refused => "refused",
        /// Another final status, or an unreadable answer.
        GaveUp => "gave_up",
        /// Retryable failures outlasted this claim: claimed again after
        /// [`retry_delay`].
        Deferred => "deferred",
        /// eyeson answered 423 (key locked): like `Deferred`, without
        /// retries inside the claim (a lock outlasts it).
        Locked => "locked",
        /// The alone rule's end: still alone right before the call, then 2xx.
        EndedAlone => "ended_alone",
        /// The alone end was due but someone joined (or the rule went off):
        /// not called, the alone clock reset.
        AloneCancelled => "alone_cancelled",
    }
}

impl ShutdownOutcome {
    /// Whether the meeting waits to be claimed again ([`retry_delay`]).
    pub fn is_deferred(self) -> bool {
        self.final_state() == MeetingState::Stopping
    }

    /// The state it leads to (`Stopping` while deferred).
    pub fn final_state(self) -> MeetingState {
        match self {
            ShutdownOutcome::Deferred | ShutdownOutcome::Locked => MeetingState::Stopping,
            ShutdownOutcome::ShutDown | ShutdownOutcome::EndedAlone => MeetingState::ShutDown,
            ShutdownOutcome::AloneCancelled => MeetingState::Running,
            ShutdownOutcome::AlreadyEnded => MeetingState::Ended,
            ShutdownOutcome::SkippedNewerMeeting | ShutdownOutcome::DryRun => MeetingState::Skipped,
            ShutdownOutcome::Refused | ShutdownOutcome::GaveUp => MeetingState::Failed,
        }
    }
}

named_enum! {
    /// How the in-meeting warning of a claimed meeting ended; `label` is its
    /// metrics label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum WarningOutcome: label {
        /// The chat message was posted (2xx).
        Sent => "sent",
        /// The guest join or the message answered 410: the meeting had ended.
        MeetingEnded => "meeting_ended",
        /// No guest token is known for the meeting.
        NoGuestToken => "no_guest_token",
        /// A newer meeting is known, or this one ended: not called.
        SkippedNewerMeeting => "skipped_newer_meeting",
        /// Dry run: logged and recorded, not called.
        DryRun => "dry_run",
        /// An alone warning found company (or the rule off): not sent.
        Company => "company",
        /// eyeson refused, or answered what retrying cannot change.
        Failed => "failed",
        /// Retryable failures outlasted this claim: claimed again later.
        Deferred => "deferred",
    }
}

impl WarningOutcome {
    /// The stored state (`warn_state`).
    pub fn as_str(self) -> &'static str {
        match self {
            WarningOutcome::Sent => "sent",
            WarningOutcome::MeetingEnded => "ended",
            WarningOutcome::NoGuestToken => "no_guest_token",
            WarningOutcome::SkippedNewerMeeting
            | WarningOutcome::DryRun
            | WarningOutcome::Company => "skipped",
            WarningOutcome::Failed => "failed",
            WarningOutcome::Deferred => "claimed",
        }
    }
}

/// What the store remembers of a meeting's warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarningMark {
    /// The deadline the last claim or outcome was for.
    pub warned_for: Timestamp,
    /// A claim is open (held, or deferred) until this; `None` once final.
    pub open_until: Option<Timestamp>,
}

/// Whether a meeting's warning is due at `now`: the deadline at most
/// `warn_before` ahead, and not yet claimed for it (a moved deadline
/// re-arms it) or the claim lapsed. The stores' SQL says the same.
pub fn warning_due(
    deadline: Timestamp,
    warn_before: Duration,
    mark: Option<WarningMark>,
    now: Timestamp,
) -> bool {
    if now >= deadline || deadline.minus(warn_before) > now {
        return false;
    }
    match mark {
        Some(m) if m.warned_for == deadline => m.open_until.is_some_and(|t| t <= now),
        _ => true,
    }
}

/// Longest wait between two claims of a shutdown that keeps failing.
pub const RETRY_DELAY_CAP: Duration = Duration::from_secs(5 * 60);

/// How long a deferred meeting waits after its `attempts`-th claim: `base`
/// doubling per claim, capped at [`RETRY_DELAY_CAP`] (or `base` if longer).
pub fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    base.saturating_mul(1 << doublings)
        .min(RETRY_DELAY_CAP.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    fn m(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    fn rules<const N: usize>(rules: [(&str, Rule); N]) -> Vec<(String, Rule)> {
        rules.into_iter().map(|(k, r)| (k.to_owned(), r)).collect()
    }

    fn policy() -> Policy {
        Policy {
            limits: Limits::new(m(30)).with_full_rules(
                rules([("board", Rule::limit(m(120)))]),
                rules([
                    ("web", Rule::limit(m(10))),
                    ("webinar-", Rule::limit(m(180))),
                ]),
            ),
            grace: Duration::from_secs(30),
        }
    }

    #[test]
    fn deadlines_move_forward_or_to_a_future_time_never_into_the_past() {
        use DeadlineChange::{By, Now, Until};
        use DeadlineRefused::{InThePast, TooFar};
        let now = Timestamp(10_000);
        let far = now.plus(MAX_DURATION);
        let min = Duration::from_secs(60);
        // `why`: an overdue meeting (70 s ago + 60 s is past) is refused;
        // ending one keeps its deadline; exactly the longest is accepted;
        // `By` counts from the deadline, the bound from now.
        for (change, current, expected, why) in [
            (By(min), 20_000, Ok(Timestamp(80_000)), ""),
            (By(min), -60_000, Err(InThePast), "overdue"),
            (Until(Timestamp(15_000)), 20_000, Ok(Timestamp(15_000)), ""),
            (Until(now), 20_000, Err(InThePast), ""),
            (Until(Timestamp(9_999)), 20_000, Err(InThePast), ""),
            (Now, 20_000, Ok(now), ""),
            (Now, 5_000, Ok(Timestamp(5_000)), "ending"),
            (By(Duration::MAX), 20_000, Err(TooFar), ""),
            (Until(far), 20_000, Ok(far), "longest"),
            (Until(Timestamp(far.0 + 1)), 20_000, Err(TooFar), ""),
            (By(MAX_DURATION), 20_000, Err(TooFar), "from now"),
        ] {
            let moved = moved_deadline(change, Timestamp(current), now);
            assert_eq!(moved, expected, "{change:?} {why}");
        }
    }

    #[test]
    fn durations_have_one_range() {
        assert!(limit_in_range(Duration::from_micros(500)).is_err());
        assert!(limit_in_range(Duration::from_millis(999)).is_err());
        assert_eq!(limit_in_range(MIN_LIMIT), Ok(MIN_LIMIT));
        assert_eq!(limit_in_range(MAX_DURATION), Ok(MAX_DURATION));
        let e = limit_in_range(MAX_DURATION + Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.to_string(), "must be from 1s to 30days");
    }

    #[test]
    fn a_warning_is_due_once_per_deadline_and_rearmed_when_it_moves() {
        let five = m(5);
        let deadline = Timestamp(1_000_000);
        let at = deadline.minus(five);
        let mark = |open_until| WarningMark {
            warned_for: deadline,
            open_until,
        };
        let (sent, held) = (mark(None), mark(Some(Timestamp(at.0 + 30_000))));
        let due = |deadline, mark, now| warning_due(deadline, five, mark, now);
        assert!(!due(deadline, None, Timestamp(at.0 - 1)));
        assert!(due(deadline, None, at));
        assert!(!due(deadline, None, deadline), "never at the deadline");
        assert!(!due(deadline, Some(sent), at));
        assert!(!due(deadline, Some(held), at));
        assert!(due(deadline, Some(held), Timestamp(at.0 + 30_000)));
        // Extended by ten minutes: due again at the new deadline - 5m only.
        let later = Timestamp(deadline.0 + 600_000);
        assert!(!due(later, Some(sent), at));
        assert!(due(later, Some(sent), later.minus(five)));
        // Shortened: due at once.
        assert!(due(Timestamp(deadline.0 - 1_000), Some(sent), at));
        let token = GuestToken::parse("secret").unwrap();
        assert_eq!(format!("{token:?}"), "GuestToken(..)");
        assert!(GuestToken::parse("").is_none() && GuestToken::parse("..").is_none());
    }

    #[test]
    fn a_meeting_is_shown_to_its_guest_token_only() {
        let token = GuestToken::parse("g-123").unwrap();
        for public in [false, true] {
            let shown = |p: Option<&[u8]>| meeting_visible(Some(&token), p, public);
            assert!(shown(Some(b"g-123")));
            assert!(!shown(None), "no token");
            assert!(!shown(Some(b"")));
            assert!(!shown(Some(b"g-12")), "a prefix");
            assert!(!shown(Some(b"g-1234")), "longer");
            assert!(!shown(Some(b"G-123")), "case");
            // Without a stored token: only when the operator made it public.
            assert_eq!(meeting_visible(None, None, public), public);
            assert_eq!(meeting_visible(None, Some(b"anything"), public), public);
        }
    }

    #[test]
    fn starts_further_ahead_than_the_window_are_in_the_future() {
        let now = Timestamp(1_000_000);
        let ten = max_start_ahead(m(10));
        assert!(!starts_in_the_future(Timestamp(1_600_000), now, ten));
        assert!(starts_in_the_future(Timestamp(1_600_001), now, ten));
        assert!(starts_in_the_future(Timestamp(i64::MAX), now, ten));
        assert_eq!(max_start_ahead(Duration::ZERO), m(10));
        let (max, almost) = (Timestamp(i64::MAX), Timestamp(i64::MAX - 1));
        assert!(!starts_in_the_future(max, almost, Duration::MAX));
    }

    #[test]
    fn closing_many_and_a_large_share_is_refused() {
        assert!(!mass_close_refused(10, 10), "ten is never too many");
        assert!(!mass_close_refused(11, 100), "11% is not");
        assert!(!mass_close_refused(20, 100), "20% is not");
        assert!(mass_close_refused(21, 100));
        assert!(mass_close_refused(19_900, 20_000));
        assert!(mass_close_refused(u64::MAX / 2, u64::MAX / 2));
    }

    #[test]
    fn limits_exact_then_longest_prefix_then_default() {
        let l = &policy().limits;
        for (r, limit) in [
            ("board", 120),
            ("board-2", 30),
            ("webinar-7", 180),
            ("website", 10),
            ("other", 30),
        ] {
            assert_eq!(l.for_room(&room(r)), m(limit), "{r}");
        }
    }

    fn alone_limits(default: Option<Duration>) -> Limits {
        use AloneAfter::{After, Off};
        let both = Rule {
            limit: Some(m(180)),
            alone_after: Some(After(m(15))),
        };
        Limits::new(m(30))
            .with_alone_default(default)
            .with_full_rules(
                rules([
                    // Only the alone rule: the limit is inherited.
                    ("kiosk", Rule::alone(After(m(5)))),
                    ("webinar-vip", Rule::alone(Off)),
                    ("board", Rule::limit(m(120))),
                    ("empty", Rule::default()),
                ]),
                rules([
                    ("webinar-", both),
                    ("webinar-bot", Rule::alone(Off)),
                    ("web", Rule::limit(m(10))),
                ]),
            )
    }

    #[test]
    fn the_alone_rule_room_then_longest_prefix_then_default() {
        for default in [None, Some(m(20))] {
            let l = alone_limits(default);
            for (r, expected, why) in [
                ("kiosk", Some(m(5)), "the room's own rule"),
                ("webinar-vip", None, "off for the room beats the prefix"),
                ("webinar-7", Some(m(15)), "the prefix's"),
                ("webinar-bot-1", None, "the longer prefix turns it off"),
                // Rules that set no alone rule inherit it.
                ("board", default, "a limit-only room rule"),
                ("website", default, "a limit-only prefix rule"),
                ("empty", default, "an empty rule is ignored"),
                ("other", default, ""),
            ] {
                assert_eq!(l.alone_after(&room(r)), expected, "{r}: {why}");
            }
            assert!(l.alone_anywhere(), "kiosk and webinar- turn it on");
        }
    }

    #[test]
    fn a_rule_without_a_limit_leaves_the_limit_lookup_as_it_was() {
        let l = alone_limits(None);
        for (r, limit, why) in [
            ("kiosk", 30, "the default"),
            ("webinar-vip", 180, "the prefix's"),
            ("webinar-bot-1", 180, "a shorter prefix's"),
            ("board", 120, ""),
            ("website", 10, ""),
            ("empty", 30, ""),
        ] {
            assert_eq!(l.for_room(&room(r)), m(limit), "{r}: {why}");
        }
        // Only limit-setting rules are listed as limits.
        assert_eq!(l.rooms(), [("board", m(120))]);
        assert_eq!(l.prefixes(), [("webinar-", m(180)), ("web", m(10))]);
        assert_eq!(l.room_rules().len(), 3, "the empty rule is not kept");
        assert_eq!(l.prefix_rules()[0].0, "webinar-bot");
    }

    #[test]
    fn the_alone_rule_is_anywhere_only_if_something_turns_it_on() {
        let none = Limits::new(m(30));
        assert!(!none.alone_anywhere());
        assert!(none.clone().with_alone_default(Some(m(1))).alone_anywhere());
        let off_only = none.clone().with_full_rules(
            rules([("a", Rule::alone(AloneAfter::Off))]),
            rules([
                ("b", Rule::alone(AloneAfter::Off)),
                ("c", Rule::limit(m(5))),
            ]),
        );
        assert!(!off_only.alone_anywhere(), "off turns nothing on");
        assert_eq!(off_only.alone_after(&room("a")), None);
        let one_prefix =
            none.with_full_rules([], rules([("p", Rule::alone(AloneAfter::After(m(2))))]));
        assert!(one_prefix.alone_anywhere());
        assert_eq!(one_prefix.alone_after(&room("px")), Some(m(2)));
        assert_eq!(one_prefix.alone_after(&room("x")), None);
    }

    #[test]
    fn alone_after_is_stored_as_milliseconds_with_zero_for_off() {
        assert_eq!(AloneAfter::Off.as_millis(), 0);
        assert_eq!(AloneAfter::from_millis(0), AloneAfter::Off);
        let d = AloneAfter::After(Duration::from_secs(90));
        assert_eq!(AloneAfter::from_millis(d.as_millis()), d);
        assert_eq!(d.to_string(), "1m 30s");
        assert_eq!(AloneAfter::Off.to_string(), "off");
        assert_eq!(d.duration(), Some(Duration::from_secs(90)));
    }

    #[test]
    fn timestamps_add_subtract_parse_and_print() {
        let key = MeetingKey {
            room_id: room("x"),
            started_at: Timestamp(1_000_000),
        };
        assert_eq!(policy().deadline(&key), Timestamp(1_000_000 + 1_830_000));
        // Subtracting any duration saturates.
        let five = Timestamp(5_000);
        assert_eq!(five.minus(Duration::from_secs(2)), Timestamp(3_000));
        assert_eq!(five.minus(Duration::MAX), Timestamp(5_000 - i64::MAX));
        let min = Timestamp(i64::MIN);
        assert_eq!(min.minus(Duration::MAX), min);
        // eyeson's form.
        let t = Timestamp::parse_rfc3339("2021-11-24T07:16:37.748Z").unwrap();
        assert_eq!(t, Timestamp(1_637_738_197_748));
        assert_eq!(t.to_rfc3339(), "2021-11-24T07:16:37.748Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(-5).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert!(Timestamp::parse_rfc3339("").is_none());
    }

    #[test]
    fn a_null_start_never_schedules_and_its_shutdown_ends_only_older_meetings() {
        let update = |shutdown| RoomUpdate {
            room_id: room("r"),
            started_at: None,
            shutdown,
            event_time: Timestamp(5_000),
            guest_token: None,
        };
        let ignore = Plan::Ignore(IgnoreReason::NotStarted);
        assert_eq!(plan(&update(false), &policy()), ignore);
        let end = Plan::End {
            room_id: room("r"),
            cutoff: Timestamp(4_999),
            meeting: None,
        };
        assert_eq!(plan(&update(true), &policy()), end, "before the second");
        // Only the newest open meeting within the bound ends.
        let bound = Timestamp(5_999);
        for (newest_open, cutoff) in [
            (None, None),
            (Some(1_000), Some(1_000)),
            (Some(5_999), Some(5_999)),
            (Some(6_000), None),
        ] {
            let newest_open = newest_open.map(Timestamp);
            assert_eq!(null_start_cutoff(bound, newest_open), cutoff.map(Timestamp));
        }
    }

    #[test]
    fn deferred_shutdowns_back_off_and_are_capped() {
        let base = Duration::from_secs(30);
        for (attempts, delay) in [
            (1, base),
            (2, m(1)),
            (3, m(2)),
            (5, RETRY_DELAY_CAP),
            (i64::MAX, RETRY_DELAY_CAP),
            (0, base),
        ] {
            assert_eq!(retry_delay(base, attempts), delay, "{attempts}");
        }
        assert_eq!(retry_delay(m(10), 3), m(10));
        assert!(ShutdownOutcome::Deferred.final_state().is_open());
        assert!(ShutdownOutcome::Locked.final_state().is_open());
        assert!(ShutdownOutcome::Locked.is_deferred());
        assert!(!ShutdownOutcome::Refused.final_state().is_open());
    }

    #[test]
    fn room_ids_are_checked() {
        assert_eq!(RoomId::parse(""), Err(InvalidRoomId::Empty));
        assert_eq!(RoomId::parse("a\nb"), Err(InvalidRoomId::ControlCharacter));
        assert_eq!(RoomId::parse(&"x".repeat(257)), Err(InvalidRoomId::TooLong));
        assert_eq!(RoomId::parse(".."), Err(InvalidRoomId::DotSegment));
        assert!(RoomId::parse("my room/ä").is_ok());
        assert!(RoomId::parse("...").is_ok());
    }

    #[test]
    fn final_states_never_change() {
        for from in MeetingState::ALL.into_iter().filter(|s| !s.is_open()) {
            for to in MeetingState::ALL {
                assert!(!from.may_become(to), "{from} -> {to}");
            }
        }
    }
}
