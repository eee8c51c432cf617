//! The observation log behind `GET /_sandbox/events`: what happened, oldest
//! first, for tests and for curious users. Tests assert on this, never on log
//! text, so its shape is a contract (see the README).

use std::time::SystemTime;

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The first user of a meeting started the call (SEPP `call_start`).
    MeetingStarted,
    /// A user started (or resumed) the call.
    UserJoined,
    /// A user is no longer in the call; see [`Reason`].
    UserLeft,
    /// The meeting is over; see [`Reason`].
    MeetingEnded,
    /// A `room_update` webhook was POSTed; `status` is the receiver's answer
    /// or 0 when it could not be reached.
    WebhookDelivered,
    /// An API-key `DELETE /rooms/{id}`; `status` is what the sandbox answered.
    ApiDelete,
    /// `POST /guests/{guest_token}` joined the running meeting as a guest
    /// (not a participant until it starts the call). `user_id`, `user_name`.
    GuestJoined,
    /// `POST /rooms/{access_key}/messages` with `type=chat`: pushed to every
    /// connected SDK of the meeting. `user_id`, `user_name`, `content`,
    /// `reached`.
    Chat,
    /// `POST /_sandbox/voice`: a user started (`on`) or stopped speaking.
    VoiceActivity,
    /// `POST /_sandbox/lock`: the API key was locked (`on`) or unlocked. No
    /// `room_id`.
    ApiKeyLocked,
    /// `POST /_sandbox/bots`: the bot `user_id`, `user_name` joined (`on`)
    /// or left the call; its `user_joined`/`user_left` follow.
    Bot,
}

/// Why a user left or a meeting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The client sent SEPP `call_terminate` (the SDK's `session_termination`,
    /// `destroy()`, or closing the page).
    Terminate,
    /// The SEPP socket closed without `call_terminate`.
    Disconnect,
    /// The user was still in the call when the meeting was shut down.
    MeetingEnded,
    /// The meeting ended because its last user left.
    LastUserLeft,
    /// The meeting was shut down by `DELETE /rooms/…` (API key or access key).
    ApiDelete,
}

/// One entry of the log. Optional fields are left out of the JSON when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// Empty (and left out) on events of no room.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room_id: String,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
    /// Why a meeting ended, on `meeting_ended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The receiver's HTTP status (0: unreachable), on `webhook_delivered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The user the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// That user's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The meeting's `started_at` (its identity with `room_id`), on
    /// `meeting_started`, `meeting_ended` and `chat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The webhook receiver, on `webhook_delivered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The message, on `chat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// How many ActionCable sockets a `chat` was pushed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached: Option<u16>,
    /// Speaking or not, on `voice_activity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
}

impl Event {
    /// An event with only the mandatory fields; callers add the rest.
    pub fn new(kind: Kind, room_id: &str, at: SystemTime) -> Self {
        Event {
            kind,
            room_id: room_id.to_owned(),
            at: rfc3339(at),
            reason: None,
            status: None,
            user_id: None,
            user_name: None,
            started_at: None,
            url: None,
            content: None,
            reached: None,
            on: None,
        }
    }
}

/// RFC 3339 UTC with milliseconds, like eyeson's `started_at`
/// (`2021-11-24T07:16:37.748Z`).
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn serializes_only_present_fields_in_snake_case() {
        let at = UNIX_EPOCH + Duration::from_millis(1_637_738_197_748);
        let mut e = Event::new(Kind::UserLeft, "r1", at);
        e.reason = Some(Reason::LastUserLeft);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"user_left","room_id":"r1","at":"2021-11-24T07:16:37.748Z","reason":"last_user_left"}"#
        );
    }
}
