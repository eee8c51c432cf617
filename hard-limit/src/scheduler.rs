//! The hard limit itself: at each meeting's deadline, `DELETE /rooms/{id}`.
//!
//! A [`Job`] on the [`runner`](crate::runner): it claims what is due
//! ([`Store::claim_due`], which reads each room's guard with the claim),
//! checks before each attempt that eyeson has not reported the meeting
//! ended and that no newer meeting runs in the room (a `DELETE` would end
//! either), and calls, retrying 429/5xx/timeouts.
//!
//! The alone rule's end goes the same way: an `alone_deadline` (set by the
//! [`presence`](crate::presence) check) is claimed like a deadline when it
//! comes first, and the participants are read once more right before the
//! `DELETE`: if someone joined (or the rule was turned off), nothing is
//! called and the alone clock is reset ([`ShutdownOutcome::AloneCancelled`]).
//!
//! Exactly once: a crash leaves a `stopping` row whose lease expires and is
//! claimed again; a crash between eyeson's 204 and our commit repeats the
//! call, which then answers 404 ("already ended").

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{self, MeetingKey, ShutdownOutcome, Timestamp};
use crate::eyeson::{ApiError, EyesonClient};
use crate::metrics;
use crate::presence::Headcount;
use crate::runner::{Applied, Ask, Failure, Job, Spec, StepError};
use crate::store::{Claim, Guard, Outcome, StoreError};
use crate::store_handle::Store;
use crate::supervisor::Task;

/// What the scheduler and the [`warner`](crate::warner) share: both call
/// eyeson about a claimed meeting, and defer what fails.
#[derive(Clone, Debug)]
pub struct Calls {
    pub(crate) store: Store,
    pub(crate) client: EyesonClient,
    /// Log and record, call nothing.
    pub(crate) dry_run: bool,
    /// First wait before a deferred claim is claimed again; doubles per
    /// claim, capped ([`domain::retry_delay`]).
    pub(crate) retry_backoff: Duration,
    /// Counts the participants before an alone end or its warning.
    pub(crate) headcount: Arc<Headcount>,
}

/// What is logged when a claimed meeting's shutdown or warning ends, by
/// [`Spec::what`] and outcome label (`true`: at warning level).
const SAID: [(&str, &str, bool, &str); 12] = [
    ("shutdown", "shut_down", false, "meeting shut down"),
    ("shutdown", "already_ended", false, "meeting had ended already"),
    ("shutdown", "skipped_newer_meeting", false, "not shut down: a newer meeting runs in the room"),
    ("shutdown", "ended_alone", false, "meeting ended: alone for --alone-after"),
    ("shutdown", "alone_cancelled", false, "alone end cancelled: someone joined (or the rule is off for the room); the alone clock is reset"),
    ("shutdown", "dry_run", true, "dry run: would shut down"),
    ("warning", "sent", false, "meeting warned"),
    ("warning", "meeting_ended", false, "not warned: the meeting had ended"),
    ("warning", "no_guest_token", true, "not warned: no guest token is known for the meeting"),
    ("warning", "skipped_newer_meeting", false, "not warned: a newer meeting runs in the room"),
    ("warning", "dry_run", true, "dry run: would warn"),
    ("warning", "company", false, "alone warning not sent: the meeting has company (or the rule is off for the room)"),
];

impl Calls {
    /// `ended` if eyeson reported the meeting ended (a shutdown cutoff
    /// covers it), `newer` if a newer meeting runs in the room (a call
    /// would reach that one); from the room's guard, `known` or read now.
    pub async fn stale<O>(
        &self,
        key: &MeetingKey,
        known: Option<Guard>,
        ended: O,
        newer: O,
    ) -> Result<Option<O>, StepError> {
        let guard = match known {
            Some(guard) => guard,
            None => self.store.guard(key).await?,
        };
        Ok(match domain::ended_by_cutoff(key, guard.cutoff) {
            true => Some(ended),
            false => guard.newer_meeting.then_some(newer),
        })
    }

    /// When a claim deferred at `now`, its `attempts`-th, is due again.
    pub fn retry_at(&self, now: Timestamp, attempts: i64) -> Timestamp {
        now.plus(domain::retry_delay(self.retry_backoff, attempts))
    }

    /// Logs how a claimed meeting's `what` ended (`label`), per `SAID`,
    /// under its own job's target (a `RUST_LOG` filter on `…::warner`
    /// keeps the warning outcomes).
    pub fn said(what: &str, label: &str, key: &MeetingKey, deadline: Timestamp, alone: bool) {
        let Some(&(.., warn, said)) = SAID.iter().find(|s| (s.0, s.1) == (what, label)) else {
            return;
        };
        let (room, started_at) = (&key.room_id, key.started_at);
        macro_rules! log {
            ($level:ident) => {
                match what {
                    "warning" => tracing::$level!(target: "eyeson_hard_limit::warner", %room, %started_at, %deadline, alone, "{said}"),
                    _ => tracing::$level!(%room, %started_at, %deadline, alone, "{said}"),
                }
            };
        }
        match warn {
            true => log!(warn),
            false => log!(info),
        }
    }
}

/// How the scheduler shuts meetings down.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub(crate) calls: Calls,
    /// `--presence-every`: after an alone end is cancelled, the next check.
    pub(crate) presence_every: Duration,
}

impl Job for Scheduler {
    type Claim = Claim;
    type Outcome = ShutdownOutcome;
    type Record = Outcome;
    const SPEC: Spec = Spec {
        // With one bound, calls waited on commits when thousands of
        // deadlines fell together.
        claims_per_call: 2,
        ..Spec::new(Task::Scheduler, "shutdown", Some(metrics::SHUTDOWN_RETRIES))
    };

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<Claim>, StoreError> {
        let store = &self.calls.store;
        store
            .claim_due(ask.now, ask.lease, ask.owner, ask.limit)
            .await
    }

    async fn next_due(&self, _now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        self.calls.store.next_wake().await
    }

    fn room(claim: &Claim) -> &str {
        claim.key.room_id.as_str()
    }

    /// The guards (a shutdown delivery during a retry backoff: the room may
    /// host a new meeting we have not heard of), then the call. The first
    /// attempt uses the guard read with the claim; a retry reads it again.
    async fn attempt(&self, claim: &Claim, n: usize) -> Result<ShutdownOutcome, StepError> {
        let key = &claim.key;
        if self.calls.dry_run {
            return Ok(match claim.guard.newer_meeting {
                true => ShutdownOutcome::SkippedNewerMeeting,
                false => ShutdownOutcome::DryRun,
            });
        }
        let known = (n == 0).then_some(claim.guard);
        let (ended, newer) = (
            ShutdownOutcome::AlreadyEnded,
            ShutdownOutcome::SkippedNewerMeeting,
        );
        if let Some(o) = self.calls.stale(key, known, ended, newer).await? {
            return Ok(o);
        }
        // The last look: company (or no rule, or no list) cancels an alone
        // end; a failed count is retried like a failed DELETE.
        if claim.alone && !self.calls.headcount.still_alone(&key.room_id).await? {
            return Ok(ShutdownOutcome::AloneCancelled);
        }
        Ok(match self.calls.client.end_meeting(&key.room_id).await? {
            true if claim.alone => ShutdownOutcome::EndedAlone,
            true => ShutdownOutcome::ShutDown,
            false => ShutdownOutcome::AlreadyEnded,
        })
    }

    fn failed(&self, _claim: &Claim, failure: Failure) -> ShutdownOutcome {
        match failure {
            // Logged once by `conclude`, with the retry time.
            Failure::Locked => ShutdownOutcome::Locked,
            Failure::Refused(ApiError::Status(401 | 403)) => ShutdownOutcome::Refused,
            Failure::Refused(_) => ShutdownOutcome::GaveUp,
            Failure::Exhausted | Failure::CutShort => ShutdownOutcome::Deferred,
        }
    }

    fn conclude(&self, claim: &Claim, outcome: ShutdownOutcome, now: Timestamp) -> Outcome {
        use ShutdownOutcome::{AloneCancelled, AlreadyEnded, EndedAlone, Locked, ShutDown};
        ::metrics::counter!(metrics::SHUTDOWNS, "outcome" => outcome.as_str()).increment(1);
        if matches!(outcome, ShutDown | AlreadyEnded | EndedAlone) {
            let late = (now.0 - claim.deadline.0) as f64 / 1000.0;
            ::metrics::histogram!(metrics::LATENESS).record(late);
        }
        let key = &claim.key;
        Calls::said(
            "shutdown",
            outcome.as_str(),
            key,
            claim.deadline,
            claim.alone,
        );
        // Never final: claimed again after a bounded, growing wait (one call
        // per claim while locked: never a burst).
        let retry_at = if outcome.is_deferred() {
            let at = self.calls.retry_at(now, claim.attempts);
            let why = match outcome {
                Locked => "eyeson answered 423: the API key is locked (usage limits exceeded); shutdown deferred",
                _ => "shutdown deferred after retryable failures",
            };
            tracing::warn!(room = %key.room_id, started_at = %key.started_at, attempts = claim.attempts, retry_at = %at, "{why}");
            Some(at)
        } else {
            ::metrics::histogram!(metrics::SHUTDOWN_ATTEMPTS).record(claim.attempts as f64);
            // The next participants check.
            (outcome == AloneCancelled).then(|| now.plus(self.presence_every))
        };
        Outcome {
            key: key.clone(),
            state: outcome.final_state(),
            at: now,
            attempts: claim.attempts,
            retry_at,
            ended_alone: outcome == EndedAlone,
            participants: None,
        }
    }

    async fn commit(&self, owner: &str, records: &[Outcome], _: Timestamp) -> Applied {
        self.calls.store.finish(owner, records).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::RoomId;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_job_logs_its_outcomes_under_its_own_target() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_target(true)
            .with_ansi(false)
            .finish();
        let key = MeetingKey {
            room_id: RoomId::parse("r1").unwrap(),
            started_at: Timestamp(1_000),
        };
        tracing::subscriber::with_default(subscriber, || {
            Calls::said("warning", "sent", &key, Timestamp(5_000), false);
            Calls::said("shutdown", "shut_down", &key, Timestamp(5_000), false);
            Calls::said("warning", "dry_run", &key, Timestamp(5_000), true);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let expected = [
            " INFO eyeson_hard_limit::warner: meeting warned",
            " INFO eyeson_hard_limit::scheduler: meeting shut down",
            " WARN eyeson_hard_limit::warner: dry run: would warn",
        ];
        for (line, said) in lines.iter().zip(expected) {
            assert!(line.contains(said) && line.contains("room=r1"), "{text}");
        }
        assert!(lines[2].contains("alone=true"), "{text}");
    }
}
