//! The pure core: meeting identity, deadlines, per-room limits and the
//! decisions a `room_update` delivery leads to.
//!
//! Nothing here knows about HTTP, SQL or the wall clock: every function that
//! needs "now" takes it as an argument, so every rule about time is tested
//! with plain numbers. The store applies the [`Plan`]s decided here; the
//! scheduler asks [`MeetingState`] which states are final.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since the Unix epoch (UTC).
///
/// Milliseconds because that is eyeson's own precision (`started_at` carries
/// `.748Z`), and an `i64` because that is what every SQL engine stores
/// natively and orders correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall-clock time given as a [`SystemTime`].
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Whole seconds since the epoch, as in a delivery's `timestamp`.
    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Parses eyeson's ISO-8601 UTC form (`2021-11-24T07:16:37.748Z`).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        // humantime accepts exactly `YYYY-MM-DDTHH:MM:SS[.frac]Z`, which is
        // what eyeson sends; offsets other than `Z` are refused, not guessed.
        humantime::parse_rfc3339(s).ok().map(Self::from_system_time)
    }

    /// This time plus a duration, saturating instead of overflowing.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// This time minus a duration, saturating instead of overflowing (a
    /// duration flag of any size must not wrap into the future).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// ISO-8601 UTC with milliseconds, the form eyeson itself uses.
    /// Times outside 1970..=9999 are clamped (an absurd limit in the limits
    /// file must not make a handler panic).
    pub fn to_rfc3339(self) -> String {
        const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let ms = self.0.clamp(0, MAX) as u64;
        let t = UNIX_EPOCH + Duration::from_millis(ms);
        humantime::format_rfc3339_millis(t).to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// An eyeson room id, checked at the boundary.
///
/// Custom room ids may contain spaces and other characters, so the only rules
/// are: not empty, at most [`RoomId::MAX_LEN`] bytes, no control characters
/// (they would corrupt logs and have no business in an id), and not `.` or
/// `..` (URL path rules drop such segments, so `DELETE /rooms/..` would
/// become a different call).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// Longest accepted room id, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Checks and wraps a room id.
    pub fn parse(s: &str) -> Result<Self, InvalidRoomId> {
        if s.is_empty() {
            return Err(InvalidRoomId::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidRoomId::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidRoomId::ControlCharacter);
        }
        if s == "." || s == ".." {
            return Err(InvalidRoomId::DotSegment);
        }
        Ok(RoomId(s.to_owned()))
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
    /// The id is the empty string.
    #[error("room id is empty")]
    Empty,
    /// The id is longer than [`RoomId::MAX_LEN`] bytes.
    #[error("room id is longer than 256 bytes")]
    TooLong,
    /// The id contains a control character.
    #[error("room id contains a control character")]
    ControlCharacter,
    /// The id is `.` or `..`.
    #[error("room id is . or ..")]
    DotSegment,
}

/// A meeting: one run of a room, identified by the room and its start.
///
/// A room id hosts consecutive meetings, so the room id alone is not an
/// identity: a late shutdown aimed at an old meeting must not end a new one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeetingKey {
    /// The room the meeting runs in.
    pub room_id: RoomId,
    /// When eyeson says the meeting started.
    pub started_at: Timestamp,
}

/// Where a tracked meeting stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeetingState {
    /// Running and not yet due (or due and waiting to be claimed).
    Running,
    /// Claimed by a scheduler under a lease (the shutdown call is in
    /// flight), or released after retryable failures and waiting until
    /// `lease_until` to be claimed again.
    Stopping,
    /// This service ended it (eyeson answered 2xx).
    ShutDown,
    /// eyeson reported it ended (webhook, room list, or 404/410 on shutdown).
    Ended,
    /// Not shut down on purpose: a newer meeting in the room is known, or dry run.
    Skipped,
    /// Shutting down failed for good (401/403/423, or an answer retrying
    /// cannot change).
    Failed,
}

impl MeetingState {
    /// Every state, in display order.
    pub const ALL: [MeetingState; 6] = [
        MeetingState::Running,
        MeetingState::Stopping,
        MeetingState::ShutDown,
        MeetingState::Ended,
        MeetingState::Skipped,
        MeetingState::Failed,
    ];

    /// The wire and storage name (`running`, `shut_down`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingState::Running => "running",
            MeetingState::Stopping => "stopping",
            MeetingState::ShutDown => "shut_down",
            MeetingState::Ended => "ended",
            MeetingState::Skipped => "skipped",
            MeetingState::Failed => "failed",
        }
    }

    /// The inverse of [`MeetingState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the meeting may still need a shutdown.
    pub fn is_open(self) -> bool {
        matches!(self, MeetingState::Running | MeetingState::Stopping)
    }

    /// The transitions the store is allowed to make. Final states never
    /// change again, which is what makes "at most one shutdown per meeting"
    /// hold no matter how deliveries interleave.
    pub fn may_become(self, next: MeetingState) -> bool {
        use MeetingState::*;
        match (self, next) {
            (Running, Stopping | Ended | Skipped) => true,
            // A lease expired: another claim keeps it Stopping.
            (Stopping, Stopping | ShutDown | Ended | Skipped | Failed) => true,
            // An alone end cancelled: someone joined before the call.
            (Stopping, Running) => true,
            _ => false,
        }
    }
}

impl fmt::Display for MeetingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one rule says about the alone rule (`alone_after`) for its room or
/// prefix; a rule without one inherits it (from a shorter prefix, then the
/// `--alone-after` default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AloneAfter {
    /// The alone rule is off here (stored as 0).
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
        match self {
            AloneAfter::Off => 0,
            AloneAfter::After(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1),
        }
    }

    /// From `room_limits.alone_after_ms` (0 or less: off).
    pub fn from_millis(ms: i64) -> Self {
        if ms <= 0 {
            AloneAfter::Off
        } else {
            AloneAfter::After(Duration::from_millis(ms as u64))
        }
    }
}

impl fmt::Display for AloneAfter {
    /// `off`, or the duration as humantime writes it (`30m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AloneAfter::Off => f.write_str("off"),
            AloneAfter::After(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// An alone setting as written by an operator: `off`, or a duration from
/// 1 s to 30 days (like a limit). The error says what is wrong, without
/// the field's name.
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

/// One per-room or per-prefix rule: each part it leaves `None` is
/// inherited from the next less specific rule that sets it (a shorter
/// prefix), else from the command line (`--max-duration`, `--alone-after`).
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
            alone_after: None,
        }
    }

    /// A rule that sets only the alone rule.
    pub fn alone(a: AloneAfter) -> Self {
        Rule {
            limit: None,
            alone_after: Some(a),
        }
    }

    /// Whether it sets nothing (such a rule is not kept).
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.alone_after.is_none()
    }
}

/// The per-room rules: the maximum meeting duration and the alone rule.
/// Each is looked up on its own: the exact room id's rule if it sets it,
/// else the longest matching prefix whose rule sets it, else the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    default: Duration,
    alone_default: Option<Duration>,
    exact: HashMap<String, Rule>,
    /// Sorted longest first, so the first match is the longest.
    prefixes: Vec<(String, Rule)>,
}

impl Limits {
    /// Only a default limit (the alone rule off).
    pub fn new(default: Duration) -> Self {
        Limits {
            default,
            alone_default: None,
            exact: HashMap::new(),
            prefixes: Vec::new(),
        }
    }

    /// The alone rule for rooms no rule names (`--alone-after`; `None`: off).
    pub fn with_alone_default(mut self, alone_after: Option<Duration>) -> Self {
        self.alone_default = alone_after;
        self
    }

    /// Adds per-room limits by exact id and by prefix (rules that set
    /// only a limit).
    pub fn with_rules(
        self,
        exact: impl IntoIterator<Item = (String, Duration)>,
        prefixes: impl IntoIterator<Item = (String, Duration)>,
    ) -> Self {
        self.with_full_rules(
            exact.into_iter().map(|(k, d)| (k, Rule::limit(d))),
            prefixes.into_iter().map(|(k, d)| (k, Rule::limit(d))),
        )
    }

    /// Adds per-room rules by exact id and by prefix (empty rules are
    /// ignored).
    pub fn with_full_rules(
        mut self,
        exact: impl IntoIterator<Item = (String, Rule)>,
        prefixes: impl IntoIterator<Item = (String, Rule)>,
    ) -> Self {
        self.exact
            .extend(exact.into_iter().filter(|(_, r)| !r.is_empty()));
        self.prefixes
            .extend(prefixes.into_iter().filter(|(_, r)| !r.is_empty()));
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
        let mut v: Vec<_> = self
            .exact
            .iter()
            .filter_map(|(k, r)| Some((k.as_str(), r.limit?)))
            .collect();
        v.sort();
        v
    }

    /// The prefix rules that set a limit, longest first.
    pub fn prefixes(&self) -> Vec<(&str, Duration)> {
        self.prefixes
            .iter()
            .filter_map(|(k, r)| Some((k.as_str(), r.limit?)))
            .collect()
    }

    /// Every exact-room rule, sorted by room id.
    pub fn room_rules(&self) -> Vec<(&str, Rule)> {
        let mut v: Vec<_> = self.exact.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Every prefix rule, longest first.
    pub fn prefix_rules(&self) -> Vec<(&str, Rule)> {
        self.prefixes
            .iter()
            .map(|(k, r)| (k.as_str(), *r))
            .collect()
    }

    /// The part `part` of the most specific rule for `room` that sets it.
    fn lookup<T>(&self, room: &RoomId, part: impl Fn(&Rule) -> Option<T>) -> Option<T> {
        let id = room.as_str();
        if let Some(v) = self.exact.get(id).and_then(&part) {
            return Some(v);
        }
        self.prefixes
            .iter()
            .filter(|(p, _)| id.starts_with(p.as_str()))
            .find_map(|(_, r)| part(r))
    }

    /// The limit that applies to a room.
    pub fn for_room(&self, room: &RoomId) -> Duration {
        self.lookup(room, |r| r.limit).unwrap_or(self.default)
    }

    /// How long a meeting in `room` may have at most one counted
    /// participant before it is ended; `None`: the alone rule is off for
    /// this room.
    pub fn alone_after(&self, room: &RoomId) -> Option<Duration> {
        match self.lookup(room, |r| r.alone_after) {
            Some(a) => a.duration(),
            None => self.alone_default,
        }
    }

    /// Whether the alone rule is on for any room: the default or any rule
    /// turns it on (otherwise the presence check has nothing to do).
    pub fn alone_anywhere(&self) -> bool {
        self.alone_default.is_some()
            || self
                .exact
                .values()
                .chain(self.prefixes.iter().map(|(_, r)| r))
                .any(|r| matches!(r.alone_after, Some(AloneAfter::After(_))))
    }
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

/// A `room_update` delivery (or a `GET /rooms` entry), already parsed.
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
    /// The room's guest token, if eyeson gave one (for the in-meeting
    /// warning).
    pub guest_token: Option<GuestToken>,
}

/// A room's guest token: lets anyone join the room's running meeting as a
/// guest, so it is kept like a secret: `Debug` is redacted and there is no
/// `Display`; [`GuestToken::expose`] is the one way to read it (for the
/// `POST /guests/{guest_token}` path and the store).
#[derive(Clone, PartialEq, Eq)]
pub struct GuestToken(String);

impl GuestToken {
    /// Longest accepted token, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Checks and wraps a token: not empty, at most [`GuestToken::MAX_LEN`]
    /// bytes, no control characters, not `.` or `..` (it becomes a path
    /// segment). `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && !s.chars().any(char::is_control)
            && s != "."
            && s != "..";
        ok.then(|| GuestToken(s.to_owned()))
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GuestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuestToken(..)")
    }
}

/// Whether `presented` equals `expected`, in time that does not depend on
/// where they differ: both are hashed first, so the comparison runs over two
/// 32-byte digests whatever the lengths.
pub fn secrets_match(expected: &[u8], presented: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(expected);
    let b = Sha256::digest(presented);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether the public `GET /meetings/{room_id}` shows a meeting to a caller
/// who presented `presented` (the guest-token header's bytes, if sent).
///
/// A meeting whose deliveries carried a guest token is shown only to whoever
/// shows that token (every participant's SDK has it), so guessing room ids
/// reveals nothing. One without a token is shown to anyone only when the
/// operator chose so (`tokenless_public`); otherwise to no one.
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
    /// A meeting is running: track it unless already known, and close older
    /// open meetings of the same room (a newer start proves they ended).
    /// If the room reported a shutdown at or after `key.started_at`, the
    /// delivery is late and the meeting is recorded as ended instead.
    Track {
        /// The meeting.
        key: MeetingKey,
        /// When to shut it down.
        deadline: Timestamp,
        /// The room's guest token, if the delivery carried one: stored (a
        /// known meeting's token is replaced by a newer one) for the
        /// in-meeting warning.
        guest_token: Option<GuestToken>,
    },
    /// eyeson says the room's meeting ended: close open meetings of the room
    /// that started at or before the cutoff, and remember the cutoff so late
    /// "running" deliveries for those meetings do not resurrect them.
    ///
    /// When the delivery named its meeting (`meeting` is `Some`), `cutoff`
    /// is that meeting's start. When it did not (`started_at: null`),
    /// `cutoff` is only an upper bound (just before the event's second): the
    /// store asks for the newest open meeting of the room started at or
    /// before it and lets [`null_start_cutoff`] decide the real cutoff, so a
    /// meeting that starts in the event's second (the next one, after a page
    /// reload) is not ended with it, not even by a redelivery.
    End {
        /// The room.
        room_id: RoomId,
        /// Meetings started at or before this are over (an upper bound
        /// when `meeting` is `None`, see above).
        cutoff: Timestamp,
        /// The ended meeting, when the delivery named its start, with its
        /// deadline (it is recorded as ended if it was unknown).
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
        // When the delivery names the meeting, only that meeting and older
        // ones are over: a redelivery stamped later must not close a newer
        // meeting (that meeting would then escape its limit). Without a
        // start, only meetings that started before the event's (whole)
        // second are candidates, an upper bound the store resolves with
        // `null_start_cutoff`: a meeting that started in that second may
        // be the next one (a sole participant reloaded the page), and a
        // redelivery of this shutdown must not end it either. A meeting
        // that started and ended within one second is left to the
        // scheduler (its DELETE meets 404 and records it ended).
        let cutoff = match &key {
            Some(k) => k.started_at,
            None => Timestamp(update.event_time.0.saturating_sub(1)),
        };
        return Plan::End {
            room_id: update.room_id.clone(),
            cutoff,
            meeting: key.map(|k| {
                let d = policy.deadline(&k);
                (k, d)
            }),
        };
    }
    match key {
        None => Plan::Ignore(IgnoreReason::NotStarted),
        Some(key) => {
            let deadline = policy.deadline(&key);
            Plan::Track {
                key,
                deadline,
                guest_token: update.guest_token.clone(),
            }
        }
    }
}

/// The real cutoff of a shutdown delivery that did not name its meeting
/// (`started_at: null`): the start of the newest meeting of the room that was
/// open (known to the store) when the delivery was applied and started at or
/// before `upper_bound` (just before the event's second). `None` when no such
/// meeting is open: then nothing is closed and no cutoff is recorded.
///
/// eyeson stamps deliveries in whole seconds, so "started at or before the
/// event" cannot tell the meeting that just ended from a new one that started
/// in the same second (a sole participant reloads the page: the SDK hangs up
/// and a new meeting starts at once). The ended meeting is the one that was
/// open; a meeting not yet known cannot be what the shutdown refers to, and
/// ending it in our books would let it run past its limit. The price of not
/// recording a cutoff when nothing is open: a late "running" delivery for a
/// meeting we never saw may track it, which then ends as `ended` on a 404,
/// by a newer meeting, or by reconciliation.
pub fn null_start_cutoff(
    upper_bound: Timestamp,
    newest_open: Option<Timestamp>,
) -> Option<Timestamp> {
    newest_open.filter(|t| *t <= upper_bound)
}

/// Whether the room's remembered shutdown cutoff (see [`Plan::End`]) says
/// this meeting is over: eyeson reported its end (or a later meeting's).
pub fn ended_by_cutoff(key: &MeetingKey, cutoff: Option<Timestamp>) -> bool {
    cutoff.is_some_and(|c| key.started_at <= c)
}

/// How far ahead of the service's clock a `started_at` may be: the replay
/// window (`--webhook-max-age`), or 10 minutes when that check is off.
/// Further ahead is a bad clock or a forgery, and such a meeting would
/// shield every later meeting of its room (they look older).
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

/// Whether a reconciliation must close nothing rather than close
/// `would_close` of the `open` tracked meetings: more than 10 and more than
/// 20% of them is more likely a partial `GET /rooms` answer than that many
/// meetings ending unseen. Closing by reconciliation is only an
/// optimisation (a meeting left open is shut down at its deadline and
/// meets 404), so when in doubt nothing is closed.
pub fn mass_close_refused(would_close: u64, open: u64) -> bool {
    would_close > 10 && would_close.saturating_mul(5) > open
}

/// Whether a meeting with this deadline may be shut down at `now`.
pub fn is_overdue(deadline: Timestamp, now: Timestamp) -> bool {
    deadline <= now
}

/// An operator's change to an open meeting's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineChange {
    /// Later by this much (`{"by": "15m"}`).
    By(Duration),
    /// At this time (`{"until": "…"}`); earlier than the current deadline
    /// is allowed, the past is not.
    Until(Timestamp),
    /// Now (`/end`): the scheduler claims it at once and ends it through
    /// the usual claim, lease, newer-meeting guard and retries.
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

/// The deadline after `change`, for a running meeting whose deadline is
/// `current`. An overdue meeting extended by too little stays refused
/// rather than silently ending at once.
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
        return Err(DeadlineRefused::InThePast);
    }
    if new > now.plus(MAX_DURATION) {
        return Err(DeadlineRefused::TooFar);
    }
    Ok(new)
}

/// The longest duration the service accepts anywhere: a limit, the grace,
/// an extension (the new deadline at most this far from now), the warning
/// and every interval and timeout flag (`--retention` has its own bound,
/// [`MAX_RETENTION`]). Long enough for any real meeting, short enough that
/// a slip of the finger (`999999999h`) is refused instead of meaning never.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest limit (and extension, and warning): below a second a limit
/// is a typo (`30ms` for `30m`) that would end every meeting at once.
pub const MIN_LIMIT: Duration = Duration::from_secs(1);

/// The longest `--retention`: how long history is kept, not a meeting's
/// time, so it may exceed [`MAX_DURATION`] (a year and a day).
pub const MAX_RETENTION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration outside its accepted range; its `Display` says the range
/// (the caller names the field and the value).
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
    if d < min || d > max {
        return Err(OutOfRange { min, max });
    }
    Ok(d)
}

/// `d` if it is a usable limit (also an extension's `by` and the warning's
/// lead): [`MIN_LIMIT`] to [`MAX_DURATION`].
pub fn limit_in_range(d: Duration) -> Result<Duration, OutOfRange> {
    in_range(d, MIN_LIMIT, MAX_DURATION)
}

/// How the shutdown call for a claimed meeting ended, and the state it leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// eyeson answered 200/204: this service ended the meeting.
    ShutDown,
    /// eyeson answered 404/410: the meeting was no longer running.
    AlreadyEnded,
    /// A newer meeting in the same room is known: not called, on purpose.
    SkippedNewerMeeting,
    /// Dry run: logged and recorded, not called.
    DryRun,
    /// eyeson refused (401/403): retrying cannot help.
    Refused,
    /// Another status came back (not retryable, not 401/403/423), or the
    /// answer did not parse: retrying cannot help.
    GaveUp,
    /// Retryable failures (429, 5xx, timeouts) outlasted this claim's
    /// budget: not final. The claim is released and the meeting is claimed
    /// again after [`retry_delay`].
    Deferred,
    /// eyeson answered 423: the API key is locked (usage limits exceeded).
    /// Not final, like [`ShutdownOutcome::Deferred`], but without retries
    /// inside the claim (an account stays locked for longer than a claim):
    /// the meeting stays open and is claimed again after [`retry_delay`].
    Locked,
    /// The alone rule's end: the participants, read once more right before
    /// the call, were still at most one, and eyeson answered 200/204.
    EndedAlone,
    /// The alone rule's end was due, but someone joined (or the rule was
    /// turned off for the room) before the call: not called; the meeting
    /// runs on and its alone clock is reset.
    AloneCancelled,
}

impl ShutdownOutcome {
    /// Whether the meeting waits to be claimed again ([`retry_delay`]).
    pub fn is_deferred(self) -> bool {
        matches!(self, ShutdownOutcome::Deferred | ShutdownOutcome::Locked)
    }

    /// The state the meeting ends up in (`Stopping` for
    /// [`ShutdownOutcome::Deferred`]: waiting to be claimed again).
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

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownOutcome::ShutDown => "shut_down",
            ShutdownOutcome::AlreadyEnded => "already_ended",
            ShutdownOutcome::SkippedNewerMeeting => "skipped_newer_meeting",
            ShutdownOutcome::DryRun => "dry_run",
            ShutdownOutcome::Refused => "refused",
            ShutdownOutcome::GaveUp => "gave_up",
            ShutdownOutcome::Deferred => "deferred",
            ShutdownOutcome::Locked => "locked",
            ShutdownOutcome::EndedAlone => "ended_alone",
            ShutdownOutcome::AloneCancelled => "alone_cancelled",
        }
    }
}

/// How the in-meeting warning of a claimed meeting ended. Stored (as
/// [`WarningOutcome::as_str`]) with the deadline it was for; a later change
/// of the deadline re-arms the warning ([`warning_due`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningOutcome {
    /// The chat message was posted (2xx).
    Sent,
    /// The guest join or the message answered 410: the meeting had ended.
    /// Not retried.
    MeetingEnded,
    /// No guest token is known for the meeting: it cannot be warned.
    NoGuestToken,
    /// A newer meeting in the room is known, or eyeson reported this one
    /// ended: the guest token would join another meeting. Not called.
    SkippedNewerMeeting,
    /// Dry run: logged and recorded, not called.
    DryRun,
    /// An alone warning's look at the participants found company (or the
    /// rule off for the room, or no users list): not sent.
    Company,
    /// eyeson refused (401/403/404/423) or answered something retrying
    /// cannot change.
    Failed,
    /// Retryable failures outlasted this claim: not final; claimed again
    /// after [`retry_delay`] (while the deadline is still ahead).
    Deferred,
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

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            WarningOutcome::Sent => "sent",
            WarningOutcome::MeetingEnded => "meeting_ended",
            WarningOutcome::NoGuestToken => "no_guest_token",
            WarningOutcome::SkippedNewerMeeting => "skipped_newer_meeting",
            WarningOutcome::DryRun => "dry_run",
            WarningOutcome::Company => "company",
            WarningOutcome::Failed => "failed",
            WarningOutcome::Deferred => "deferred",
        }
    }
}

/// What the store remembers of a meeting's warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarningMark {
    /// The deadline the last claim or outcome was for.
    pub warned_for: Timestamp,
    /// A claim for it is open (held, or deferred) until this time; `None`
    /// once an outcome is final.
    pub open_until: Option<Timestamp>,
}

/// Whether a running meeting's warning is due at `now`: its deadline is
/// still ahead and at most `warn_before` away, and either no warning was
/// claimed for this deadline (never warned, or the deadline changed since:
/// an extension re-arms it) or the claim for it lapsed (an expired lease or
/// a deferred retry). The stores' claim queries say the same in SQL.
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
        None => true,
        Some(m) if m.warned_for != deadline => true,
        Some(m) => m.open_until.is_some_and(|t| t <= now),
    }
}

/// Longest wait between two claims of a meeting whose shutdown keeps
/// failing with retryable errors.
pub const RETRY_DELAY_CAP: Duration = Duration::from_secs(5 * 60);

/// How long a [`ShutdownOutcome::Deferred`] meeting waits before it is
/// claimed again, after its `attempts`-th claim: `base` doubling per claim,
/// capped at [`RETRY_DELAY_CAP`] (or `base`, if that is longer).
pub fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    base.saturating_mul(1 << doublings)
        .min(RETRY_DELAY_CAP.max(base))
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn deadlines_move_forward_or_to_a_future_time_never_into_the_past() {
        let now = Timestamp(10_000);
        let min = Duration::from_secs(60);
        assert_eq!(
            moved_deadline(DeadlineChange::By(min), Timestamp(20_000), now),
            Ok(Timestamp(80_000))
        );
        // Overdue but not yet claimed: by 60 s from a deadline 70 s ago is past.
        assert_eq!(
            moved_deadline(DeadlineChange::By(min), Timestamp(-60_000), now),
            Err(DeadlineRefused::InThePast)
        );
        assert_eq!(
            moved_deadline(
                DeadlineChange::Until(Timestamp(15_000)),
                Timestamp(20_000),
                now
            ),
            Ok(Timestamp(15_000))
        );
        for t in [now, Timestamp(9_999)] {
            assert_eq!(
                moved_deadline(DeadlineChange::Until(t), Timestamp(20_000), now),
                Err(DeadlineRefused::InThePast)
            );
        }
        assert_eq!(
            moved_deadline(DeadlineChange::Now, Timestamp(20_000), now),
            Ok(now)
        );
        assert_eq!(
            moved_deadline(DeadlineChange::Now, Timestamp(5_000), now),
            Ok(Timestamp(5_000)),
            "ending an overdue meeting keeps its deadline"
        );
        assert_eq!(
            moved_deadline(DeadlineChange::By(Duration::MAX), Timestamp(20_000), now),
            Err(DeadlineRefused::TooFar)
        );
        let far = now.plus(MAX_DURATION);
        assert_eq!(
            moved_deadline(DeadlineChange::Until(far), Timestamp(20_000), now),
            Ok(far),
            "exactly the longest is accepted"
        );
        assert_eq!(
            moved_deadline(
                DeadlineChange::Until(Timestamp(far.0 + 1)),
                Timestamp(20_000),
                now
            ),
            Err(DeadlineRefused::TooFar)
        );
        assert_eq!(
            moved_deadline(DeadlineChange::By(MAX_DURATION), Timestamp(20_000), now),
            Err(DeadlineRefused::TooFar),
            "by counts from the current deadline, the bound from now"
        );
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
        let five = Duration::from_secs(300);
        let deadline = Timestamp(1_000_000);
        let at = deadline.minus(five);
        assert!(!warning_due(deadline, five, None, Timestamp(at.0 - 1)));
        assert!(warning_due(deadline, five, None, at));
        assert!(
            !warning_due(deadline, five, None, deadline),
            "never at or after the deadline"
        );
        let sent = WarningMark {
            warned_for: deadline,
            open_until: None,
        };
        assert!(!warning_due(deadline, five, Some(sent), at));
        let held = WarningMark {
            warned_for: deadline,
            open_until: Some(Timestamp(at.0 + 30_000)),
        };
        assert!(!warning_due(deadline, five, Some(held), at));
        assert!(warning_due(
            deadline,
            five,
            Some(held),
            Timestamp(at.0 + 30_000)
        ));
        // Extended by ten minutes: due again at the new deadline - 5m only.
        let later = Timestamp(deadline.0 + 600_000);
        assert!(!warning_due(later, five, Some(sent), at));
        assert!(warning_due(later, five, Some(sent), later.minus(five)));
        // Shortened: due at once.
        let sooner = Timestamp(deadline.0 - 1_000);
        assert!(warning_due(sooner, five, Some(sent), at));
        assert_eq!(
            format!("{:?}", GuestToken::parse("secret").unwrap()),
            "GuestToken(..)"
        );
        assert!(GuestToken::parse("").is_none() && GuestToken::parse("..").is_none());
    }

    #[test]
    fn a_meeting_is_shown_to_its_guest_token_only() {
        let token = GuestToken::parse("g-123").unwrap();
        let t = Some(&token);
        for public in [false, true] {
            assert!(meeting_visible(t, Some(b"g-123"), public));
            assert!(!meeting_visible(t, None, public), "no token");
            assert!(!meeting_visible(t, Some(b""), public));
            assert!(!meeting_visible(t, Some(b"g-12"), public), "a prefix");
            assert!(!meeting_visible(t, Some(b"g-1234"), public), "longer");
            assert!(!meeting_visible(t, Some(b"G-123"), public), "case");
        }
        // Without a stored token: only when the operator made it public.
        assert!(!meeting_visible(None, None, false));
        assert!(!meeting_visible(None, Some(b"anything"), false));
        assert!(meeting_visible(None, None, true));
        assert!(meeting_visible(None, Some(b"anything"), true));
    }

    #[test]
    fn starts_further_ahead_than_the_window_are_in_the_future() {
        let now = Timestamp(1_000_000);
        let ten = max_start_ahead(Duration::from_secs(600));
        assert!(!starts_in_the_future(Timestamp(1_600_000), now, ten));
        assert!(starts_in_the_future(Timestamp(1_600_001), now, ten));
        assert!(starts_in_the_future(Timestamp(i64::MAX), now, ten));
        assert_eq!(max_start_ahead(Duration::ZERO), Duration::from_secs(600));
        assert!(!starts_in_the_future(
            Timestamp(i64::MAX),
            Timestamp(i64::MAX - 1),
            Duration::MAX
        ));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            limits: Limits::new(Duration::from_secs(1800)).with_rules(
                [("board".to_owned(), Duration::from_secs(7200))],
                [
                    ("web".to_owned(), Duration::from_secs(600)),
                    ("webinar-".to_owned(), Duration::from_secs(10800)),
                ],
            ),
            grace: Duration::from_secs(30),
        }
    }

    #[test]
    fn limits_exact_then_longest_prefix_then_default() {
        let l = &policy().limits;
        assert_eq!(l.for_room(&room("board")), Duration::from_secs(7200));
        assert_eq!(l.for_room(&room("board-2")), Duration::from_secs(1800));
        assert_eq!(l.for_room(&room("webinar-7")), Duration::from_secs(10800));
        assert_eq!(l.for_room(&room("website")), Duration::from_secs(600));
        assert_eq!(l.for_room(&room("other")), Duration::from_secs(1800));
    }

    fn alone_limits(default: Option<Duration>) -> Limits {
        let m = |n: u64| Duration::from_secs(60 * n);
        Limits::new(m(30))
            .with_alone_default(default)
            .with_full_rules(
                [
                    // Only the alone rule: the limit is inherited.
                    ("kiosk".to_owned(), Rule::alone(AloneAfter::After(m(5)))),
                    ("webinar-vip".to_owned(), Rule::alone(AloneAfter::Off)),
                    ("board".to_owned(), Rule::limit(m(120))),
                    ("empty".to_owned(), Rule::default()),
                ],
                [
                    (
                        "webinar-".to_owned(),
                        Rule {
                            limit: Some(m(180)),
                            alone_after: Some(AloneAfter::After(m(15))),
                        },
                    ),
                    ("webinar-bot".to_owned(), Rule::alone(AloneAfter::Off)),
                    ("web".to_owned(), Rule::limit(m(10))),
                ],
            )
    }

    #[test]
    fn the_alone_rule_room_then_longest_prefix_then_default() {
        let m = |n: u64| Duration::from_secs(60 * n);
        for default in [None, Some(m(20))] {
            let l = alone_limits(default);
            let alone = |r: &str| l.alone_after(&room(r));
            assert_eq!(alone("kiosk"), Some(m(5)), "the room's own rule");
            assert_eq!(
                alone("webinar-vip"),
                None,
                "off for the room beats the prefix"
            );
            assert_eq!(alone("webinar-7"), Some(m(15)), "the prefix's");
            assert_eq!(
                alone("webinar-bot-1"),
                None,
                "the longer prefix turns it off"
            );
            // Rules that set no alone rule inherit it.
            assert_eq!(alone("board"), default, "a limit-only room rule");
            assert_eq!(alone("website"), default, "a limit-only prefix rule");
            assert_eq!(alone("empty"), default, "an empty rule is ignored");
            assert_eq!(alone("other"), default);
            assert!(l.alone_anywhere(), "kiosk and webinar- turn it on");
        }
    }

    #[test]
    fn a_rule_without_a_limit_leaves_the_limit_lookup_as_it_was() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let l = alone_limits(None);
        assert_eq!(l.for_room(&room("kiosk")), m(30), "the default");
        assert_eq!(l.for_room(&room("webinar-vip")), m(180), "the prefix's");
        assert_eq!(
            l.for_room(&room("webinar-bot-1")),
            m(180),
            "a shorter prefix's"
        );
        assert_eq!(l.for_room(&room("board")), m(120));
        assert_eq!(l.for_room(&room("website")), m(10));
        assert_eq!(l.for_room(&room("empty")), m(30));
        // Only limit-setting rules are listed as limits.
        assert_eq!(l.rooms(), [("board", m(120))]);
        assert_eq!(l.prefixes(), [("webinar-", m(180)), ("web", m(10))]);
        assert_eq!(l.room_rules().len(), 3, "the empty rule is not kept");
        assert_eq!(l.prefix_rules()[0].0, "webinar-bot");
    }

    #[test]
    fn the_alone_rule_is_anywhere_only_if_something_turns_it_on() {
        let m = |n: u64| Duration::from_secs(60 * n);
        assert!(!Limits::new(m(30)).alone_anywhere());
        assert!(Limits::new(m(30))
            .with_alone_default(Some(m(1)))
            .alone_anywhere());
        let off_only = Limits::new(m(30)).with_full_rules(
            [("a".to_owned(), Rule::alone(AloneAfter::Off))],
            [
                ("b".to_owned(), Rule::alone(AloneAfter::Off)),
                ("c".to_owned(), Rule::limit(m(5))),
            ],
        );
        assert!(
            !off_only.alone_anywhere(),
            "rules that turn it off turn nothing on"
        );
        assert_eq!(off_only.alone_after(&room("a")), None);
        let one_prefix = Limits::new(m(30))
            .with_full_rules([], [("p".to_owned(), Rule::alone(AloneAfter::After(m(2))))]);
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
    fn deadline_is_start_plus_limit_plus_grace() {
        let key = MeetingKey {
            room_id: room("x"),
            started_at: Timestamp(1_000_000),
        };
        assert_eq!(policy().deadline(&key), Timestamp(1_000_000 + 1_830_000));
    }

    #[test]
    fn subtracting_any_duration_saturates() {
        assert_eq!(
            Timestamp(5_000).minus(Duration::from_secs(2)),
            Timestamp(3_000)
        );
        assert_eq!(
            Timestamp(5_000).minus(Duration::MAX),
            Timestamp(5_000 - i64::MAX)
        );
        assert_eq!(
            Timestamp(i64::MIN).minus(Duration::MAX),
            Timestamp(i64::MIN)
        );
    }

    #[test]
    fn parses_eyeson_timestamps() {
        let t = Timestamp::parse_rfc3339("2021-11-24T07:16:37.748Z").unwrap();
        assert_eq!(t, Timestamp(1_637_738_197_748));
        assert_eq!(t.to_rfc3339(), "2021-11-24T07:16:37.748Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(-5).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert!(Timestamp::parse_rfc3339("").is_none());
    }

    #[test]
    fn null_start_never_schedules() {
        let u = RoomUpdate {
            room_id: room("r"),
            started_at: None,
            shutdown: false,
            event_time: Timestamp(5_000),
            guest_token: None,
        };
        assert_eq!(plan(&u, &policy()), Plan::Ignore(IgnoreReason::NotStarted));
    }

    #[test]
    fn a_null_start_shutdown_ends_meetings_started_before_the_event_second() {
        let u = RoomUpdate {
            room_id: room("r"),
            started_at: None,
            shutdown: true,
            event_time: Timestamp(5_000),
            guest_token: None,
        };
        assert_eq!(
            plan(&u, &policy()),
            Plan::End {
                room_id: room("r"),
                cutoff: Timestamp(4_999),
                meeting: None
            }
        );
    }

    #[test]
    fn a_null_start_shutdown_ends_only_the_newest_open_meeting() {
        let bound = Timestamp(5_999);
        assert_eq!(null_start_cutoff(bound, None), None);
        assert_eq!(
            null_start_cutoff(bound, Some(Timestamp(1_000))),
            Some(Timestamp(1_000))
        );
        assert_eq!(
            null_start_cutoff(bound, Some(Timestamp(5_999))),
            Some(Timestamp(5_999))
        );
        assert_eq!(null_start_cutoff(bound, Some(Timestamp(6_000))), None);
    }

    #[test]
    fn deferred_shutdowns_back_off_and_are_capped() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1), base);
        assert_eq!(retry_delay(base, 2), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(120));
        assert_eq!(retry_delay(base, 5), RETRY_DELAY_CAP);
        assert_eq!(retry_delay(base, i64::MAX), RETRY_DELAY_CAP);
        assert_eq!(retry_delay(base, 0), base);
        assert_eq!(
            retry_delay(Duration::from_secs(600), 3),
            Duration::from_secs(600)
        );
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
        for from in MeetingState::ALL {
            for to in MeetingState::ALL {
                if !from.is_open() {
                    assert!(!from.may_become(to), "{from} -> {to}");
                }
            }
        }
    }
}
