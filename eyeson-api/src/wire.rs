//! The JSON eyeson and its clients exchange, as far as this project uses it.
//!
//! Writers (`Serialize`) are what eyeson sends, as the sandbox and the test
//! fakes produce it. Readers (`Deserialize`, names ending in `Fields`) are
//! what the service accepts: deliberately lenient (optional, untyped
//! fields), because a delivery it refuses is a meeting it loses, and an
//! entry of `GET /rooms` it cannot read must be counted, not fatal. The
//! service turns readers into its own domain types and names what is wrong.
//! Unknown fields are ignored everywhere: eyeson adds fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The delivery type this project acts on.
pub const ROOM_UPDATE: &str = "room_update";

/// A room as eyeson shows it: `room{…}` in REST answers and `room_update`
/// deliveries, and an entry of `GET /rooms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Room {
    /// The room id (custom ids may contain spaces: see [`crate::paths`]).
    pub id: String,
    /// The display name.
    pub name: String,
    /// Whether the meeting is ready to join.
    pub ready: bool,
    /// The running meeting's start, ISO-8601 UTC with milliseconds; `null`
    /// before it started and in the shutdown delivery.
    pub started_at: Option<String>,
    /// Whether the meeting shut down.
    pub shutdown: bool,
    /// The guest token of the meeting (`POST /guests/{token}`); absent in
    /// the shutdown delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_token: Option<String>,
}

/// A webhook delivery, what eyeson POSTs to the registered URL:
/// `{"timestamp", "type", "room"}`, signed ([`crate::signature`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Unix seconds; covered by the signature, the receiver's only
    /// freshness signal.
    pub timestamp: u64,
    /// The delivery type, e.g. [`ROOM_UPDATE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The room (of a `room_update`).
    pub room: Room,
}

/// The reader of [`Delivery`]: every field optional and untyped, so that
/// the receiver names the one that is missing or wrong. Other types
/// (`recording_update`, `snapshot_update`) have no `room`.
#[derive(Debug, Deserialize)]
pub struct DeliveryFields {
    /// `timestamp`.
    pub timestamp: Option<Value>,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    /// `room`, read further with [`RoomFields`].
    pub room: Option<Value>,
}

/// The reader of a delivery's [`Room`]: an object with an `id` (of any
/// JSON type: the receiver checks it); the rest optional.
#[derive(Debug, Deserialize)]
pub struct RoomFields {
    /// `id`.
    pub id: Value,
    /// `started_at`.
    #[serde(default)]
    pub started_at: Option<Value>,
    /// `shutdown`.
    #[serde(default)]
    pub shutdown: Option<Value>,
    /// `guest_token`.
    #[serde(default)]
    pub guest_token: Option<Value>,
}

/// The reader of one [`Room`] of `GET /rooms`. An entry that does not
/// deserialize (an `id` or `started_at` that is not a string, a
/// `shutdown` that is not a boolean) is one the client cannot read.
#[derive(Debug, Deserialize)]
pub struct RoomListEntry {
    /// `id`.
    pub id: Option<String>,
    /// `started_at`.
    pub started_at: Option<String>,
    /// `shutdown`; absent means false.
    #[serde(default)]
    pub shutdown: bool,
    /// `guest_token`, of any type (only a string is usable).
    #[serde(default)]
    pub guest_token: Option<Value>,
}

/// A participant of a room's meeting as `GET /rooms/{room_id}/users`
/// lists it (eyeson-go's `RoomUser`; the answer is a JSON list of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomUser {
    /// The user id (with the JS SDK, also its SEPP client id).
    pub id: String,
    /// The room the meeting runs in.
    pub room_id: String,
    /// The display name.
    pub name: String,
    /// Joined with the room's guest token (`POST /guests/{token}`).
    pub guest: bool,
    /// Connected now.
    pub online: bool,
    /// An avatar URL, or `null`.
    pub avatar: Option<String>,
}

/// The reader of one [`RoomUser`]: every field optional and untyped, so
/// that a client decides what an entry it cannot fully read means. A
/// client counting participants should count such an entry rather than
/// drop it (a list that reads short looks emptier than the meeting is).
#[derive(Debug, Default, Deserialize)]
pub struct RoomUserFields {
    /// `id`: a string with eyeson; a number is conceivable.
    #[serde(default)]
    pub id: Option<Value>,
    /// `room_id`.
    #[serde(default)]
    pub room_id: Option<Value>,
    /// `name`.
    #[serde(default)]
    pub name: Option<Value>,
    /// `guest`.
    #[serde(default)]
    pub guest: Option<Value>,
    /// `online`.
    #[serde(default)]
    pub online: Option<Value>,
}

/// The links of a room answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Links {
    /// The meeting page for this participant.
    pub gui: String,
    /// The page guests join with the room's guest token.
    pub guest_join: String,
    /// The ActionCable websocket.
    pub websocket: String,
}

/// The part of a room answer (`POST /rooms`, `POST /guests/{token}`,
/// `GET /rooms/{access_key}`) this project relies on. eyeson sends more
/// (`user`, `options`, `signaling`, …): a writer adds those to the JSON
/// object this serializes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Joined {
    /// The participant's access key, for in-meeting calls.
    pub access_key: String,
    /// Whether the meeting is ready.
    pub ready: bool,
    /// The room.
    pub room: Room,
    /// Where to join.
    pub links: Links,
}

/// The reader of [`Joined`] for `POST /guests/{token}`: only the access
/// key is needed (the client checks it is usable).
#[derive(Debug, Deserialize)]
pub struct JoinedFields {
    /// `access_key`.
    pub access_key: Option<String>,
}

/// The registered webhook, the answer of `GET /webhooks` (and of a
/// successful `POST /webhooks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookAnswer {
    /// eyeson's id (for `DELETE /webhooks/{id}`).
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The registered types.
    pub types: WebhookTypes,
    /// When the last delivery was sent.
    pub last_request_sent_at: Option<String>,
    /// The receiver's answer to it, as a string (`"201"`).
    pub last_response_code: Option<String>,
}

/// A registration's `types` as eyeson answers them: a list, and at times
/// the one comma-separated string they were registered as. Readers accept
/// both ([`Registration::parse`]); a writer answers either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WebhookTypes {
    /// `["room_update", …]`, eyeson's usual answer.
    List(Vec<String>),
    /// `"room_update,…"`, as registered.
    Joined(String),
}

impl WebhookTypes {
    /// Whether `kind` is one of them.
    pub fn contains(&self, kind: &str) -> bool {
        match self {
            WebhookTypes::List(list) => list.iter().any(|t| t == kind),
            WebhookTypes::Joined(joined) => joined.split(',').any(|t| t.trim() == kind),
        }
    }
}

/// A registration as a client reads it from `GET /webhooks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// eyeson's id, a string or a number; empty if absent.
    pub id: String,
    /// Where eyeson posts.
    pub url: String,
    /// The types, split, trimmed, sorted, without duplicates or empties.
    pub types: Vec<String>,
}

impl Registration {
    /// Reads a `GET /webhooks` answer; `None` when no webhook is
    /// registered (`null`, `{}`, no string `url`). `types` may be a list or
    /// a comma-separated string; anything else is no types.
    pub fn read(v: &Value) -> Option<Registration> {
        let obj = v.as_object()?;
        let url = obj.get("url")?.as_str()?.to_owned();
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let mut types: Vec<String> = match obj.get("types") {
            Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_owned()).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(|t| t.trim().to_owned()))
                .collect(),
            _ => Vec::new(),
        };
        types.retain(|t| !t.is_empty());
        types.sort();
        types.dedup();
        Some(Registration { id, url, types })
    }
}

/// The form of `POST /webhooks`. Readers look fields up by the constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RegisterWebhookForm<'a> {
    /// Where deliveries are to go.
    pub url: &'a str,
    /// ONE comma-separated string (a list, `types[]`, silently registers
    /// nothing on eyeson).
    pub types: &'a str,
}

impl RegisterWebhookForm<'_> {
    /// The name of [`RegisterWebhookForm::url`].
    pub const URL: &'static str = "url";
    /// The name of [`RegisterWebhookForm::types`].
    pub const TYPES: &'static str = "types";
}

/// The form of `POST /guests/{guest_token}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuestJoinForm<'a> {
    /// The guest's display name.
    pub name: &'a str,
}

impl GuestJoinForm<'_> {
    /// The name of [`GuestJoinForm::name`].
    pub const NAME: &'static str = "name";
}

/// The form of `POST /rooms/{access_key}/messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MessageForm<'a> {
    /// The message type; [`MessageForm::CHAT`] is the one this project sends.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The text.
    pub content: &'a str,
}

impl MessageForm<'_> {
    /// The name of [`MessageForm::kind`].
    pub const TYPE: &'static str = "type";
    /// The name of [`MessageForm::content`].
    pub const CONTENT: &'static str = "content";
    /// The chat message type: everyone in the meeting sees it.
    pub const CHAT: &'static str = "chat";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names a form serializes with, in order.
    fn names(form: impl Serialize) -> Vec<String> {
        let Value::Object(fields) = serde_json::to_value(form).unwrap() else {
            panic!("not an object")
        };
        let mut names: Vec<String> = fields.keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn forms_are_read_by_the_names_they_are_written_with() {
        let mut want = vec![RegisterWebhookForm::TYPES, RegisterWebhookForm::URL];
        want.sort();
        assert_eq!(
            names(RegisterWebhookForm {
                url: "u",
                types: "t"
            }),
            want
        );
        assert_eq!(names(GuestJoinForm { name: "n" }), [GuestJoinForm::NAME]);
        let mut want = vec![MessageForm::TYPE, MessageForm::CONTENT];
        want.sort();
        assert_eq!(
            names(MessageForm {
                kind: MessageForm::CHAT,
                content: "c"
            }),
            want
        );
    }

    fn room(guest_token: Option<&str>) -> Room {
        Room {
            id: "a b".into(),
            name: "Standup".into(),
            ready: true,
            started_at: Some("2021-11-24T07:16:37.748Z".into()),
            shutdown: false,
            guest_token: guest_token.map(str::to_owned),
        }
    }

    #[test]
    fn what_is_written_is_read() {
        let delivery = Delivery {
            timestamp: 1_637_738_200,
            kind: ROOM_UPDATE.into(),
            room: room(Some("g")),
        };
        let body = serde_json::to_vec(&delivery).unwrap();
        let fields: DeliveryFields = serde_json::from_slice(&body).unwrap();
        assert_eq!(fields.timestamp, Some(Value::from(1_637_738_200u64)));
        assert_eq!(fields.kind, Some(Value::from(ROOM_UPDATE)));
        let r: RoomFields = serde_json::from_value(fields.room.unwrap()).unwrap();
        assert_eq!(r.id, "a b");
        assert_eq!(r.started_at, Some(Value::from("2021-11-24T07:16:37.748Z")));
        assert_eq!(r.shutdown, Some(Value::Bool(false)));
        assert_eq!(r.guest_token, Some(Value::from("g")));

        let list = serde_json::to_value(vec![room(Some("g"))]).unwrap();
        let entries: Vec<RoomListEntry> = serde_json::from_value(list).unwrap();
        assert_eq!(entries[0].id.as_deref(), Some("a b"));
        assert_eq!(
            entries[0].started_at.as_deref(),
            Some("2021-11-24T07:16:37.748Z")
        );
        assert!(!entries[0].shutdown);
        assert_eq!(entries[0].guest_token, Some(Value::from("g")));

        let joined = Joined {
            access_key: "ak".into(),
            ready: true,
            room: room(Some("g")),
            links: Links {
                gui: "http://x/meeting/ak".into(),
                guest_join: "http://x/join?guest=g".into(),
                websocket: "ws://x/rt".into(),
            },
        };
        let fields: JoinedFields =
            serde_json::from_value(serde_json::to_value(&joined).unwrap()).unwrap();
        assert_eq!(fields.access_key.as_deref(), Some("ak"));

        // Either shape of `types` a writer answers reads the same.
        for types in [
            WebhookTypes::List(vec!["room_update".into(), "recording_update".into()]),
            WebhookTypes::Joined("room_update,recording_update".into()),
        ] {
            assert!(types.contains("recording_update") && !types.contains("room"));
            let answer = WebhookAnswer {
                id: "w1".into(),
                url: "https://x/h".into(),
                types,
                last_request_sent_at: None,
                last_response_code: None,
            };
            let read = Registration::read(&serde_json::to_value(&answer).unwrap()).unwrap();
            assert_eq!(read.id, "w1");
            assert_eq!(read.url, "https://x/h");
            assert_eq!(read.types, ["recording_update", "room_update"]);
        }
    }

    #[test]
    fn room_users_are_read_leniently() {
        use serde_json::json;
        let user = RoomUser {
            id: "u1".into(),
            room_id: "a b".into(),
            name: "Recorder".into(),
            guest: false,
            online: true,
            avatar: None,
        };
        let written = serde_json::to_value(vec![user]).unwrap();
        assert_eq!(
            written,
            json!([{"id": "u1", "room_id": "a b", "name": "Recorder", "guest": false, "online": true, "avatar": null}])
        );
        let read: Vec<RoomUserFields> = serde_json::from_value(written).unwrap();
        assert_eq!(read[0].id, Some(Value::from("u1")));
        assert_eq!(read[0].room_id, Some(Value::from("a b")));
        assert_eq!(read[0].name, Some(Value::from("Recorder")));
        assert_eq!(read[0].guest, Some(Value::Bool(false)));
        assert_eq!(read[0].online, Some(Value::Bool(true)));

        // Missing, null, mistyped and unknown fields all read.
        let odd: RoomUserFields =
            serde_json::from_value(json!({"id": 7, "online": "yes", "name": null, "extra": 1}))
                .unwrap();
        assert_eq!(odd.id, Some(Value::from(7)));
        assert_eq!(odd.online, Some(Value::from("yes")));
        assert_eq!((odd.name, odd.guest, odd.room_id), (None, None, None));
        assert!(serde_json::from_value::<RoomUserFields>(json!({})).is_ok());
    }

    #[test]
    fn the_shutdown_room_has_no_guest_token() {
        let mut r = room(None);
        r.started_at = None;
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("guest_token").is_none());
        assert_eq!(v["started_at"], Value::Null);
        let read: RoomFields = serde_json::from_value(v).unwrap();
        assert_eq!((read.started_at, read.guest_token), (None, None));
    }

    #[test]
    fn registrations_in_every_seen_shape() {
        use serde_json::json;
        assert_eq!(Registration::read(&Value::Null), None);
        assert_eq!(Registration::read(&json!({})), None);
        let w = Registration::read(
            &json!({"id": "a1", "url": "https://x/h", "types": "room_update, recording_update"}),
        )
        .unwrap();
        assert_eq!(w.types, ["recording_update", "room_update"]);
        let w =
            Registration::read(&json!({"id": 7, "url": "https://x/h", "types": ["room_update"]}))
                .unwrap();
        assert_eq!(
            (w.id.as_str(), w.types.as_slice()),
            ("7", &["room_update".to_owned()][..])
        );
    }
}
