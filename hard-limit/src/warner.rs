//! The in-meeting warning (`--warn-before`): at `deadline − warn` the
//! participants are told, once per meeting and deadline, in the chat.
//!
//! A [`Job`] on the [`runner`](crate::runner) beside the
//! [`crate::scheduler`]: for each claim it joins the running meeting as a
//! guest with the room's guest token (`POST /guests/{guest_token}`, which
//! cannot start a meeting, unlike `POST /rooms`) and posts the message.
//!
//! Exactly once: a claim records the deadline it is for; a warning is due
//! again only if the deadline changes (an extension re-arms it) or the
//! claim lapsed. As for shutdowns, a crash between eyeson's answer and our
//! commit repeats the message. Never for a meeting that ended: only
//! `running` meetings with a deadline ahead are claimed, the guards are
//! checked before each attempt, and a 410 is recorded, not retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{Timestamp, WarningOutcome};
use crate::eyeson::AccessKey;
use crate::metrics;
use crate::runner::{Applied, Ask, Failure, Job, Spec, StepError};
use crate::scheduler::Calls;
use crate::store::{StoreError, WarnClaim, WarnRecord};
use crate::supervisor::Task;

/// What the warner says and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub(crate) before: Duration,
    pub(crate) name: String,
    pub(crate) text: String,
    /// The chat message ahead of an alone end.
    pub(crate) alone_text: String,
}

impl Warning {
    /// The warning of `--warn-before`, `--warn-name`, `--warn-text` and
    /// `--alone-warn-text`; the texts default to "… ends in `before` in
    /// words" so they stay true when only `--warn-before` changes. Errors
    /// name the flag.
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
            text: chat_text(text, || format!("This meeting ends in {when}."), WARN_TEXT)?,
            alone_text: chat_text(
                alone_text,
                || {
                    format!("You are the only participant. This meeting ends in {when} unless someone joins.")
                },
                ALONE_TEXT,
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

/// Longest chat text, in characters (a chat line, not a letter).
const MAX_WARN_TEXT: usize = 1000;
/// The errors of `--warn-text`: empty, too long.
const WARN_TEXT: [&str; 2] = [
    "--warn-text must not be empty",
    "--warn-text is longer than 1000 characters",
];
/// The errors of `--alone-warn-text`.
const ALONE_TEXT: [&str; 2] = [
    "--alone-warn-text must not be empty",
    "--alone-warn-text is longer than 1000 characters",
];

/// A chat message flag's text: as given (trimmed) or the default; the
/// errors (`[empty, too long]`) name the flag.
fn chat_text(
    given: Option<&str>,
    default: impl FnOnce() -> String,
    errors: [&'static str; 2],
) -> Result<String, &'static str> {
    let text = given.map_or_else(default, |t| t.trim().to_owned());
    match text.chars().count() {
        0 => Err(errors[0]),
        n if n > MAX_WARN_TEXT => Err(errors[1]),
        _ => Ok(text),
    }
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
    pub(crate) calls: Calls,
    pub(crate) warning: Arc<Warning>,
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
    const SPEC: Spec = Spec::new(Task::Warner, "warning", Some(metrics::WARNING_RETRIES));

    async fn claim(&self, ask: Ask<'_>) -> Result<Vec<Claimed>, StoreError> {
        let before = self.warning.before;
        let claims = (self.calls.store)
            .claim_warnings(ask.now, before, ask.lease, ask.owner, ask.limit)
            .await?;
        let claimed = |claim| Claimed {
            claim,
            joined: Mutex::default(),
        };
        Ok(claims.into_iter().map(claimed).collect())
    }

    async fn next_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        self.calls
            .store
            .next_warning(now, self.warning.before)
            .await
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
        let (ended, newer) = (
            WarningOutcome::MeetingEnded,
            WarningOutcome::SkippedNewerMeeting,
        );
        let stale = self.calls.stale(&claim.key, None, ended, newer).await;
        if self.calls.dry_run {
            return Ok(stale.ok().flatten().unwrap_or(WarningOutcome::DryRun));
        }
        if let Some(o) = stale? {
            return Ok(o);
        }
        let joined = || claimed.joined.lock().unwrap_or_else(|e| e.into_inner());
        let known = joined().clone();
        // "You are the only participant" only if still true.
        if claim.alone
            && known.is_none()
            && !self.calls.headcount.still_alone(&claim.key.room_id).await?
        {
            return Ok(WarningOutcome::Company);
        }
        let access = match known {
            Some(k) => k,
            None => match self
                .calls
                .client
                .join_as_guest(token, &self.warning.name)
                .await?
            {
                Some(k) => joined().insert(k).clone(),
                None => return Ok(WarningOutcome::MeetingEnded),
            },
        };
        let text = self.warning.text_for(claim);
        Ok(match self.calls.client.post_chat(&access, text).await? {
            true => WarningOutcome::Sent,
            false => WarningOutcome::MeetingEnded,
        })
    }

    fn failed(&self, claimed: &Claimed, failure: Failure) -> WarningOutcome {
        match failure {
            // A locked key may be unlocked before the deadline.
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
        let key = &claim.key;
        ::metrics::counter!(metrics::WARNINGS, "outcome" => outcome.label()).increment(1);
        if outcome == WarningOutcome::Sent {
            let due = claim.deadline.minus(self.warning.before);
            let late = (now.0 - due.0) as f64 / 1000.0;
            ::metrics::histogram!(metrics::WARNING_LATENESS).record(late);
        }
        Calls::said("warning", outcome.label(), key, claim.deadline, claim.alone);
        let retry_at = (outcome == WarningOutcome::Deferred).then(|| {
            let at = self.calls.retry_at(now, claim.attempts);
            tracing::warn!(room = %key.room_id, attempts = claim.attempts, retry_at = %at, "warning deferred after retryable failures");
            at
        });
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

    async fn commit(&self, owner: &str, records: &[WarnRecord], _: Timestamp) -> Applied {
        self.calls.store.finish_warnings(owner, records).await
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
        for (before, text) in [(300, "5 minutes"), (5400, "1 hour and 30 minutes")] {
            let text = format!("This meeting ends in {text}.");
            assert_eq!(w(before, None).unwrap().text, text);
        }
        let words = in_words(Duration::from_secs(3661));
        assert_eq!(words, "1 hour, 1 minute and 1 second");
        assert_eq!(w(300, Some(" Bye soon ")).unwrap().text, "Bye soon");
        let long = "x".repeat(1001);
        let err = |before, text| w(before, text).unwrap_err();
        assert!(err(300, Some("  ")).contains("--warn-text"));
        assert!(err(300, Some(&long)).contains("1000"));
        assert!(err(0, None).contains("--warn-before"));
        assert_eq!(
            w(300, None).unwrap().alone_text,
            "You are the only participant. This meeting ends in 5 minutes unless someone joins."
        );
        let alone = |t| Warning::new(Duration::from_secs(60), "x", None, Some(t)).unwrap_err();
        assert!(alone(" ").contains("--alone-warn-text"));
        assert!(alone(&long).contains("--alone-warn-text"));
        let e = Warning::new(Duration::from_secs(60), " \n", None, None).unwrap_err();
        assert!(e.contains("--warn-name"), "{e}");
    }
}
