//! The in-meeting warning (`--warn-before`): at `deadline − warn` the
//! participants are told, once per meeting and deadline, in the meeting's
//! chat.
//!
//! A [`Job`] on the [`runner`](crate::runner), beside the
//! [`crate::scheduler`]: sleep until the next warning is due
//! ([`Engine::next_warning`](crate::store::Engine::next_warning)) or a
//! poke ([`crate::wake::Wake`]), claim what is due under a lease
//! ([`Store::claim_warnings`], `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), then for each claim: join the running meeting as a guest
//! with the room's guest token (`POST /guests/{guest_token}`, which cannot
//! start a meeting, unlike `POST /rooms`) and post the chat message. Outcomes
//! are group-committed and apply only while the claim holds the lease.
//!
//! Exactly once: a claim records the deadline it is for; a warning is due
//! again only if the deadline changes (an extension re-arms it) or the claim
//! lapsed (a crashed replica, or a deferred retry). The price, as for
//! shutdowns: a crash between eyeson's answer and our commit repeats the
//! message after the lease. Never for a meeting that ended: only `running`
//! meetings whose deadline is ahead are claimed, the room's shutdown cutoff
//! and newer meetings are checked before each attempt, and a 410 (the
//! meeting ended) is recorded and not retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{self, Timestamp, WarningOutcome};
use crate::eyeson::{AccessKey, EyesonClient, GuestJoin, Posted};
use crate::metrics;
use crate::presence::Headcount;
use crate::runner::{Ask, Failure, Job, StepError};
use crate::store::{StoreError, WarnClaim, WarnRecord};
use crate::store_handle::Store;

/// What the warner says and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// How long before the deadline.
    pub before: Duration,
    /// The guest's display name.
    pub name: String,
    /// The chat message.
    pub text: String,
    /// The chat message ahead of an alone end.
    pub alone_text: String,
}

impl Warning {
    /// The warning of `--warn-before`, `--warn-name` and `--warn-text`; the
    /// text defaults to "This meeting ends in …" (`before` in words) so it stays true
    /// when only `--warn-before` is changed. Errors name the flag.
    pub fn new(
        before: Duration,
        name: &str,
        text: Option<&str>,
        alone_text: Option<&str>,
    ) -> Result<Self, &'static str> {
        if before.is_zero() {
            return Err("--warn-before must be more than 0s (leave it unset for no warning)");
        }
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err("--warn-name must not be empty or have control characters");
        }
        let when = in_words(before);
        Ok(Warning {
            before,
            name: name.to_owned(),
            text: chat_text(
                text,
                || format!("This meeting ends in {when}."),
                [
                    "--warn-text must not be empty",
                    "--warn-text is longer than 1000 characters",
                ],
            )?,
            alone_text: chat_text(
                alone_text,
                || {
                    format!("You are the only participant. This meeting ends in {when} unless someone joins.")
                },
                [
                    "--alone-warn-text must not be empty",
                    "--alone-warn-text is longer than 1000 characters",
                ],
            )?,
        })
    }

    /// The message for a claim: the alone rule's, or the deadline's.
    pub fn text_for(&self, claim: &WarnClaim) -> &str {
        if claim.alone {
            &self.alone_text
        } else {
            &self.text
        }
    }
}

/// Longest `--warn-text`, in characters (a chat line, not a letter).
const MAX_WARN_TEXT: usize = 1000;

/// A chat message flag's text: as given (trimmed) or the default; the
/// errors (`[empty, too long]`) name the flag.
fn chat_text(
    given: Option<&str>,
    default: impl FnOnce() -> String,
    errors: [&'static str; 2],
) -> Result<String, &'static str> {
    let text = given.map_or_else(default, |t| t.trim().to_owned());
    if text.is_empty() {
        return Err(errors[0]);
    }
    if text.chars().count() > MAX_WARN_TEXT {
        return Err(errors[1]);
    }
    Ok(text)
}

/// A duration for people: "5 minutes", "1 hour and 30 minutes", "45 seconds".
pub fn in_words(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let parts: Vec<String> = [
        (secs / 3600, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
    .collect();
    match parts.as_slice() {
        [] => "1 second".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How the warner warns meetings.
#[derive(Clone, Debug)]
pub struct Warner {
    /// The store.
    pub store: Store,
    /// The eyeson client.
    pub client: EyesonClient,
    /// Log and record, call nothing.
    pub dry_run: bool,
    /// First wait before a deferred warning is claimed again.
    pub retry_backoff: Duration,
    /// When, as whom, what.
    pub warning: Arc<Warning>,
    /// Counts the participants before an alone warning.
    pub headcount: Arc<Headcount>,
}

/// A claimed warning, and the access key of a guest join that worked: the
/// retries reuse it, so a failed message does not make the bot join twice.
#[derive(Debug)]
pub struct Claimed {
    claim: WarnClaim,
    joined: Mutex<Option<AccessKey>>,
}

impl Job for Warner {
    type Claim = Claimed;
    type Outcome = WarningOutcome;
    type Record = WarnRecord;

    const TASK: &'static str = "warner";
    const WRITER: &'static str = "warning-writer";
    const WHAT: &'static str = "warning";
    const RETRIES: Option<&'static str> = Some(metrics::WARNING_RETRIES);

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<Claimed>, StoreError> {
        let before = self.warning.before;
        let claims = (self.store)
            .claim_warnings(ask.now, before, ask.lease, ask.owner, ask.limit)
            .await?;
        Ok(claims
            .into_iter()
            .map(|claim| Claimed {
                claim,
                joined: Mutex::new(None),
            })
            .collect())
    }

    async fn next_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        self.store.next_warning(now, self.warning.before).await
    }

    fn room(claimed: &Claimed) -> &str {
        claimed.claim.key.room_id.as_str()
    }

    /// The guards, the guest join (unless an earlier attempt of this claim
    /// joined), the message.
    async fn attempt(&self, claimed: &Claimed, _n: usize) -> Result<WarningOutcome, StepError> {
        let claim = &claimed.claim;
        let Some(token) = &claim.guest_token else {
            return Ok(WarningOutcome::NoGuestToken);
        };
        if self.dry_run {
            return Ok(match self.guard(claim).await {
                Ok(Some(o)) => o,
                _ => WarningOutcome::DryRun,
            });
        }
        if let Some(o) = self.guard(claim).await? {
            return Ok(o);
        }
        let known = claimed
            .joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if claim.alone && known.is_none() {
            // "You are the only participant" only if still true: someone
            // may have joined since the last check.
            let alone = self.headcount.still_alone(&claim.key.room_id).await;
            if !alone.map_err(StepError::Api)? {
                return Ok(WarningOutcome::Company);
            }
        }
        let access = match known {
            Some(k) => k,
            None => match self
                .client
                .join_as_guest(token, &self.warning.name)
                .await
                .map_err(StepError::Api)?
            {
                GuestJoin::Joined(k) => {
                    *claimed.joined.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
                    k
                }
                GuestJoin::MeetingEnded => return Ok(WarningOutcome::MeetingEnded),
            },
        };
        match self
            .client
            .post_chat(&access, self.warning.text_for(claim))
            .await
            .map_err(StepError::Api)?
        {
            Posted::Sent => Ok(WarningOutcome::Sent),
            Posted::MeetingEnded => Ok(WarningOutcome::MeetingEnded),
        }
    }

    fn failed(&self, claimed: &Claimed, failure: Failure) -> WarningOutcome {
        match failure {
            // A locked key may be unlocked before the deadline: deferred
            // (one call per claim), not failed.
            Failure::Locked => {
                tracing::warn!(room = %claimed.claim.key.room_id, "eyeson answered 423: the API key is locked (usage limits exceeded); warning deferred");
                WarningOutcome::Deferred
            }
            Failure::Refused(_) => WarningOutcome::Failed,
            Failure::Exhausted | Failure::CutShort => WarningOutcome::Deferred,
        }
    }

    fn conclude(&self, claimed: &Claimed, outcome: WarningOutcome, now: Timestamp) -> WarnRecord {
        let claim = &claimed.claim;
        metrics::warning(outcome);
        let key = &claim.key;
        match outcome {
            WarningOutcome::Sent => {
                let due = claim.deadline.minus(self.warning.before);
                metrics::warning_lateness((now.0 - due.0) as f64 / 1000.0);
                tracing::info!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, alone = claim.alone, "meeting warned")
            }
            WarningOutcome::MeetingEnded => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "not warned: the meeting had ended")
            }
            WarningOutcome::NoGuestToken => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, "not warned: no guest token is known for the meeting")
            }
            WarningOutcome::SkippedNewerMeeting => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "not warned: a newer meeting runs in the room")
            }
            WarningOutcome::DryRun => {
                tracing::warn!(room = %key.room_id, started_at = %key.started_at, deadline = %claim.deadline, "dry run: would warn")
            }
            WarningOutcome::Company => {
                tracing::info!(room = %key.room_id, started_at = %key.started_at, "alone warning not sent: the meeting has company (or the rule is off for the room)")
            }
            WarningOutcome::Failed | WarningOutcome::Deferred => {}
        }
        let retry_at = (outcome == WarningOutcome::Deferred)
            .then(|| now.plus(domain::retry_delay(self.retry_backoff, claim.attempts)));
        if let Some(at) = retry_at {
            tracing::warn!(room = %key.room_id, attempts = claim.attempts, retry_at = %at, "warning deferred after retryable failures");
        }
        WarnRecord {
            key: key.clone(),
            deadline: claim.deadline,
            attempts: claim.attempts,
            outcome,
            at: now,
            retry_at,
            alone: claim.alone,
        }
    }

    async fn commit(
        &self,
        owner: &str,
        records: &[WarnRecord],
        _now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.store.finish_warnings(owner, records).await
    }
}

impl Warner {
    /// Whether the meeting must not be warned: eyeson reported it ended (a
    /// shutdown cutoff covers it) or a newer meeting runs in the room (the
    /// guest token would join that one).
    async fn guard(&self, claim: &WarnClaim) -> Result<Option<WarningOutcome>, StepError> {
        let key = &claim.key;
        let guard = self.store.guard(key).await.map_err(StepError::Store)?;
        if domain::ended_by_cutoff(key, guard.cutoff) {
            return Ok(Some(WarningOutcome::MeetingEnded));
        }
        if guard.newer_meeting {
            return Ok(Some(WarningOutcome::SkippedNewerMeeting));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_text_follows_before_unless_given() {
        fn w(before: u64, text: Option<&str>) -> Result<Warning, &'static str> {
            Warning::new(Duration::from_secs(before), "Meeting limit", text, None)
        }
        assert_eq!(
            w(300, None).unwrap().text,
            "This meeting ends in 5 minutes."
        );
        assert_eq!(
            w(5400, None).unwrap().text,
            "This meeting ends in 1 hour and 30 minutes."
        );
        assert_eq!(
            in_words(Duration::from_secs(3661)),
            "1 hour, 1 minute and 1 second"
        );
        assert_eq!(w(300, Some(" Bye soon ")).unwrap().text, "Bye soon");
        assert!(w(300, Some("  ")).unwrap_err().contains("--warn-text"));
        assert!(w(300, Some(&"x".repeat(1001)))
            .unwrap_err()
            .contains("1000"));
        assert!(w(0, None).unwrap_err().contains("--warn-before"));
        assert_eq!(
            w(300, None).unwrap().alone_text,
            "You are the only participant. This meeting ends in 5 minutes unless someone joins."
        );
        let alone = |t| Warning::new(Duration::from_secs(60), "x", None, Some(t));
        assert!(alone(" ").unwrap_err().contains("--alone-warn-text"));
        assert!(alone(&"x".repeat(1001))
            .unwrap_err()
            .contains("--alone-warn-text"));
        let e = Warning::new(Duration::from_secs(60), " \n", None, None).unwrap_err();
        assert!(e.contains("--warn-name"), "{e}");
    }
}
