//! The alone rule's participants check, a [`Job`] on the
//! [`runner`](crate::runner): every `--presence-every`, each running
//! meeting's counted participants move its alone clock (kept in the store).
//! A running alone clock gives the meeting an `alone_deadline`, which the
//! scheduler claims like a deadline, counting once more right before the
//! `DELETE` ([`Headcount`]).
//!
//! Calls are paced to `--presence-rate` per second per process; a 429's
//! `Retry-After` holds every check back. Late checks show in
//! [`metrics::PRESENCE_OVERDUE`] and a line a minute; none is skipped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::alone::{self, AloneClock, IgnorePattern};
use crate::domain::{self, RoomId, Timestamp};
use crate::eyeson::{ApiError, EyesonClient, Participants};
use crate::limits::LimitsHandle;
use crate::metrics;
use crate::runner::{Applied, Ask, Failure, Job, Spec, StepError};
use crate::store::{PresenceClaim, PresenceRecord, StoreError};
use crate::store_handle::Store;
use crate::supervisor::Task;
use crate::wake::Wake;

/// A check this much behind is "late" (logged).
const LATE: Duration = Duration::from_secs(5);
/// Late checks are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Spaces calls to eyeson evenly at a rate; a 429 holds them all back.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    /// The next free turn, and the end of a 429's hold.
    turns: Mutex<(Instant, Instant)>,
}

impl Pace {
    /// `per_second` calls a second (at least 1).
    pub fn new(per_second: u32) -> Self {
        let now = Instant::now();
        Pace {
            interval: Duration::from_secs(1) / per_second.max(1),
            turns: Mutex::new((now, now)),
        }
    }

    /// This call's turn at or after `now`, taken. `ahead` (the last look
    /// before an alone end, else ends starve while checks are behind)
    /// waits only for a 429's hold, and still takes a turn.
    fn reserve(&self, now: Instant, ahead: bool) -> Instant {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        let (next, held) = &mut *turns;
        let slot = match ahead {
            true => now.max(*held),
            false => now.max(*next).max(*held),
        };
        *next = (*next).max(slot) + self.interval;
        slot
    }

    /// No call before `after` from `now` (eyeson's `Retry-After`).
    fn hold_from(&self, now: Instant, after: Duration) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.1 = turns.1.max(now + after);
    }
}

/// Counts a meeting's participants for the alone rule: the presence check
/// and the last look before an alone end share it (and its pace).
#[derive(Debug)]
pub struct Headcount {
    pub(crate) client: EyesonClient,
    pub(crate) limits: Arc<LimitsHandle>,
    pub(crate) ignore: Vec<IgnorePattern>,
    /// The service's own warning guest (`--warn-name`).
    pub(crate) own_guest: String,
    pub(crate) pace: Pace,
}

impl Headcount {
    /// The room's `alone_after` now; `None`: the rule is off for it.
    pub fn alone_after(&self, room: &RoomId) -> Option<Duration> {
        self.limits.snapshot().limits.alone_after(room)
    }

    /// Whether the rule is on for any room (else no check is made); the
    /// limits are reloaded first if another process changed them.
    pub async fn anywhere(&self) -> bool {
        self.limits.policy().await.limits.alone_anywhere()
    }

    /// The last look before an alone end or its warning: whether the room
    /// is still alone under a rule that is on. Company, the rule off, or no
    /// users list (404/410) all say no: the rule acts only on certainty.
    pub async fn still_alone(&self, room: &RoomId) -> Result<bool, ApiError> {
        if self.alone_after(room).is_none() {
            return Ok(false);
        }
        Ok(self
            .count(room, true)
            .await?
            .is_some_and(alone::still_alone))
    }

    /// The counted participants now; `None`: eyeson has no meeting in the
    /// room (404/410). `last_look`: ahead of the queued checks.
    pub async fn count(&self, room: &RoomId, last_look: bool) -> Result<Option<usize>, ApiError> {
        tokio::time::sleep_until(self.pace.reserve(Instant::now(), last_look)).await;
        match self.client.online_participants(room).await {
            Ok(Participants::Online(list)) => Ok(Some(alone::counted(
                list.iter().map(|p| (p.id.as_str(), p.name.as_str())),
                &self.own_guest,
                &self.ignore,
            ))),
            Ok(Participants::Gone) => Ok(None),
            Err(e) => {
                if let ApiError::Throttled(after) = &e {
                    let after = after.unwrap_or(Duration::from_secs(1));
                    self.pace.hold_from(Instant::now(), after);
                }
                Err(e)
            }
        }
    }
}

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// This many counted participants.
    Counted(usize),
    /// No meeting in the room (404/410): the webhook or reconciler closes it.
    Gone,
    /// The rule is off for the room: no call; the clock is cleared.
    Off,
    /// The call failed (after retries): checked again sooner.
    Failed,
}

/// The participants check.
#[derive(Debug)]
pub struct Presence {
    pub(crate) store: Store,
    pub(crate) headcount: Arc<Headcount>,
    pub(crate) every: Duration,
    /// `--retry-backoff`: the next check after a failed one.
    pub(crate) retry_backoff: Duration,
    pub(crate) logged: Mutex<Option<Instant>>,
    /// Pokes the warner and the scheduler after a lone check.
    pub(crate) wake: Arc<Wake>,
}

impl Presence {
    /// Publishes how overdue the most overdue check is, and logs it once a
    /// minute while it is more than [`LATE`].
    fn overdue(&self, due: Option<Timestamp>, now: Timestamp) {
        let late = due.map_or(Duration::ZERO, |t| now.since(t));
        ::metrics::gauge!(metrics::PRESENCE_OVERDUE).set(late.as_secs_f64());
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if late > LATE && logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *logged = Some(Instant::now());
            tracing::warn!(overdue = ?late, "participants checks are late: --presence-rate is too low for the running meetings, or eyeson slows them down (429)");
        }
    }
}

impl Job for Presence {
    type Claim = PresenceClaim;
    type Outcome = Checked;
    type Record = PresenceRecord;
    const SPEC: Spec = Spec::new(
        Task::Presence,
        "participants check",
        Some(metrics::PRESENCE_RETRIES),
    );

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<PresenceClaim>, StoreError> {
        if !self.headcount.anywhere().await {
            return Ok(Vec::new());
        }
        // Published here too: while checks are behind, `next_due` is not
        // asked (every claim fills the free slots).
        self.overdue(self.store.next_presence().await?, ask.now);
        (self.store)
            .claim_presence(ask.now, ask.lease, ask.owner, ask.limit)
            .await
    }

    async fn next_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let due = match self.headcount.anywhere().await {
            true => self.store.next_presence().await?,
            false => None,
        };
        self.overdue(due, now);
        Ok(due)
    }

    fn room(claim: &PresenceClaim) -> &str {
        claim.key.room_id.as_str()
    }

    async fn attempt(&self, claim: &PresenceClaim, _n: usize) -> Result<Checked, StepError> {
        let room = &claim.key.room_id;
        if self.headcount.alone_after(room).is_none() {
            return Ok(Checked::Off);
        }
        Ok(match self.headcount.count(room, false).await? {
            Some(n) => Checked::Counted(n),
            None => Checked::Gone,
        })
    }

    fn failed(&self, _claim: &PresenceClaim, _failure: Failure) -> Checked {
        Checked::Failed
    }

    fn conclude(&self, claim: &PresenceClaim, checked: Checked, now: Timestamp) -> PresenceRecord {
        let (room, started_at) = (&claim.key.room_id, claim.key.started_at);
        let alone_after = self.headcount.alone_after(room);
        let mut next = self.every;
        let (label, participants, event) = match checked {
            Checked::Counted(n) => {
                // The store moves the clock the same way, on its own clock.
                let before = AloneClock::from(claim.alone_since);
                let event = alone::change(before, before.after_check(n, now));
                match event {
                    Some("alone") => {
                        tracing::info!(%room, %started_at, participants = n, alone_after = ?alone_after, "meeting is alone: its alone clock starts")
                    }
                    Some(_) => {
                        tracing::info!(%room, %started_at, participants = n, "meeting has company again: its alone clock is reset")
                    }
                    None => {}
                }
                let label = if alone::still_alone(n) {
                    "alone"
                } else {
                    "company"
                };
                (label, Some(n as i64), event)
            }
            Checked::Gone => {
                tracing::info!(%room, %started_at, "participants check: eyeson has no meeting in the room (404/410); the webhook or the reconciler closes it");
                ("gone", None, None)
            }
            Checked::Off => ("off", None, None),
            Checked::Failed => {
                next = domain::retry_delay(self.retry_backoff, 1).min(self.every);
                tracing::warn!(%room, %started_at, retry_in = ?next, "participants check failed; the alone clock is kept");
                ("failed", None, None)
            }
        };
        ::metrics::counter!(metrics::PRESENCE_CHECKS, "outcome" => label).increment(1);
        PresenceRecord {
            key: claim.key.clone(),
            until: claim.until,
            at: now,
            participants,
            alone_after: alone_after.filter(|_| checked != Checked::Off),
            next: now.plus(next),
            event,
        }
    }

    async fn commit(&self, owner: &str, records: &[PresenceRecord], _: Timestamp) -> Applied {
        let applied = self.store.finish_presence(owner, records).await?;
        // A lone check may have moved an alone end sooner.
        let lone = records.iter().zip(&applied).any(|(r, &ok)| {
            ok && r.alone_after.is_some() && r.participants.is_some_and(|n| n <= 1)
        });
        if lone {
            self.wake.poke();
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_spaces_calls_and_a_429_holds_them_all() {
        let pace = Pace::new(10);
        let t0 = Instant::now() + Duration::from_secs(1);
        let ms = |i: Instant| i.duration_since(t0).as_millis();
        let turns: Vec<_> = (0..3).map(|_| ms(pace.reserve(t0, false))).collect();
        assert_eq!(turns, [0, 100, 200]);
        // Idle time is not saved up into a burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(ms(pace.reserve(later, false)), 10_000);
        assert_eq!(ms(pace.reserve(later, false)), 10_100);
        // A last look goes ahead of the queue, and the queue makes up.
        assert_eq!(ms(pace.reserve(later, true)), 10_000);
        assert_eq!(ms(pace.reserve(later, false)), 10_300);
        // A 429 holds everything, the last look too.
        pace.hold_from(later, Duration::from_secs(3));
        assert_eq!(ms(pace.reserve(later, true)), 13_000);
        assert_eq!(ms(pace.reserve(later, false)), 13_100);
    }
}
