//! The outbox's lanes: which forwarded deliveries keep their order (the
//! store claims only a lane's oldest entry).

use serde::Deserialize;

use crate::domain::RoomId;

// A room's lane is locked with the room, so the store defines both.
pub use crate::store::{lock_key, ROOM_LANE};

/// Lanes of deliveries that name no room start with this; the rest is the
/// delivery's `type`.
pub const TYPE_LANE: &str = "type:";

#[derive(Deserialize)]
struct LaneFields {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    room: Option<Named>,
    recording: Option<WithRoom>,
    snapshot: Option<WithRoom>,
}

#[derive(Deserialize)]
struct WithRoom {
    room: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    id: Option<serde_json::Value>,
}

/// The lane of a delivery body: `room:<id>` from `room.id`, else from
/// `recording.room.id` or `snapshot.room.id`; else `type:<type>` (one lane
/// per type). An id that is not a valid room id counts as absent.
pub fn lane_of(body: &[u8]) -> String {
    let Ok(fields) = serde_json::from_slice::<LaneFields>(body) else {
        return format!("{TYPE_LANE}unknown");
    };
    let id = |n: Option<Named>| match n?.id? {
        serde_json::Value::String(s) => RoomId::parse(&s).ok(),
        _ => None,
    };
    let room = id(fields.room)
        .or_else(|| id(fields.recording.and_then(|r| r.room)))
        .or_else(|| id(fields.snapshot.and_then(|s| s.room)));
    match room {
        Some(room) => format!("{ROOM_LANE}{}", room.as_str()),
        None => match fields.kind {
            Some(serde_json::Value::String(t)) if !t.is_empty() && t.len() <= 64 => {
                format!("{TYPE_LANE}{t}")
            }
            _ => format!("{TYPE_LANE}unknown"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_follow_the_room_wherever_the_delivery_names_it() {
        let lane = |body: &str| lane_of(body.as_bytes());
        assert_eq!(
            lane(r#"{"type":"room_update","room":{"id":"r1"}}"#),
            "room:r1"
        );
        assert_eq!(
            lane(r#"{"type":"recording_update","recording":{"id":"x","room":{"id":"r1"}}}"#),
            "room:r1"
        );
        assert_eq!(
            lane(r#"{"type":"snapshot_update","snapshot":{"room":{"id":"r2"}}}"#),
            "room:r2"
        );
        // No room named: one lane per type.
        assert_eq!(
            lane(r#"{"type":"recording_update","recording":{"id":"x"}}"#),
            "type:recording_update"
        );
        assert_eq!(
            lane(r#"{"type":"snapshot_update","snapshot":{"room":{"id":7}}}"#),
            "type:snapshot_update"
        );
        assert_eq!(lane(r#"{"type":42}"#), "type:unknown");
        assert_eq!(lane("not json"), "type:unknown");
        assert_eq!(lock_key("room:r1"), "r1");
        assert_eq!(lock_key("type:recording_update"), "type:recording_update");
    }
}
