//! The SEPP messages the sandbox pushes (`call_terminated`, `source_update`,
//! `voice_activity`), encoded from the core's effects. Apart from the socket
//! adapter (`sepp`) so that the shared state can push them without
//! importing the adapter that imports it.

use serde_json::{json, Value};

use crate::meetings::{Push, Signal, Terminate};

/// The code of a regular end (the SDK emits `exit` for it).
const TERM_CODE_BYE: u16 = 200;

/// The `call_terminated` push for a user whose meeting was shut down.
pub(crate) fn terminated(t: &Terminate) -> String {
    envelope(
        "call_terminated",
        &t.conf_id,
        &t.client_id,
        json!({"call_id": t.call_id, "term_code": TERM_CODE_BYE}),
    )
}

/// A core [`Signal`] as the SEPP message the SDK expects.
///
/// - `source_update` `{src, asrc, vsrc, dims}`: the SDK's `PodiumFacade`
///   computes `solo` from `src` (exactly one distinct source, the local
///   client id) and reads the audio and video positions (`asrc`, `vsrc`:
///   indexes into `src`) and the video rectangles (`dims`, one per `vsrc`
///   entry) unguarded, so all four are needed. Everyone gets both positions:
///   a user without a video position would have their camera turned off.
/// - `voice_activity` `{cid, on}`: the SDK looks `cid` up as a user id
///   (`GET /rooms/{key}/users/{cid}`) and emits `voice_activity {user, on}`.
pub(crate) fn push(signal: &Signal) -> String {
    let (kind, data) = match &signal.push {
        Push::Podium { sources } => {
            let positions: Vec<usize> = (0..sources.len()).collect();
            (
                "source_update",
                json!({"src": sources, "asrc": positions, "vsrc": positions, "dims": grid(sources.len())}),
            )
        }
        Push::VoiceActivity { user_id, on } => {
            ("voice_activity", json!({"cid": user_id, "on": on}))
        }
    };
    envelope(kind, &signal.conf_id, &signal.client_id, data)
}

/// The canvas the rectangles of [`grid`] tile.
const CANVAS: (u32, u32) = (1280, 720);

/// `n` video rectangles `{x, y, w, h}` tiling the canvas in a near-square
/// grid, row by row, as a stand-in for eyeson's automatic layout.
fn grid(n: usize) -> Vec<Value> {
    if n == 0 {
        return Vec::new();
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let columns = (1..=n).find(|c| c * c >= n).unwrap_or(n);
    let rows = n.div_ceil(columns);
    let (w, h) = (CANVAS.0 / columns, CANVAS.1 / rows);
    (0..n)
        .map(|i| json!({"x": (i % columns) * w, "y": (i / columns) * h, "w": w, "h": h}))
        .collect()
}

/// A SEPP message `{type, msg_id, from, to, data}`.
pub(crate) fn envelope(kind: &str, from: &str, to: &str, data: Value) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let msg_id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({"type": kind, "msg_id": format!("sandbox-{msg_id}"), "from": from, "to": to, "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(what: Push) -> Value {
        let s = Signal {
            access_key: "key".into(),
            client_id: "u1".into(),
            conf_id: "conf-1".into(),
            push: what,
        };
        serde_json::from_str(&push(&s)).unwrap()
    }

    /// The SDK's `PodiumFacade.isSolo`, for the check below.
    fn solo(data: &Value, client_id: &str) -> bool {
        let src: Vec<&str> = data["src"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<&&str> = src.iter().collect();
        unique.len() == 1 && src[0] == client_id
    }

    #[test]
    fn a_podium_is_a_source_update_from_the_conference_with_every_position() {
        let one = signal(Push::Podium {
            sources: vec!["u1".into()],
        });
        assert_eq!(one["type"], "source_update");
        assert_eq!(
            (one["from"].as_str(), one["to"].as_str()),
            (Some("conf-1"), Some("u1"))
        );
        assert_eq!(
            one["data"],
            json!({"src": ["u1"], "asrc": [0], "vsrc": [0], "dims": [{"x": 0, "y": 0, "w": 1280, "h": 720}]})
        );
        assert!(solo(&one["data"], "u1"));

        let two = signal(Push::Podium {
            sources: vec!["u1".into(), "u2".into()],
        });
        assert_eq!(two["data"]["asrc"], json!([0, 1]));
        assert_eq!(two["data"]["vsrc"], json!([0, 1]));
        assert_eq!(two["data"]["dims"].as_array().unwrap().len(), 2);
        assert!(!solo(&two["data"], "u1"));
        assert!(!solo(&two["data"], "u2"));
    }

    #[test]
    fn voice_activity_names_the_speaker_by_user_id() {
        let v = signal(Push::VoiceActivity {
            user_id: "u2".into(),
            on: true,
        });
        assert_eq!(v["type"], "voice_activity");
        assert_eq!(v["data"], json!({"cid": "u2", "on": true}));
        assert_eq!(v["to"], "u1", "addressed to the recipient, not the speaker");
    }

    #[test]
    fn the_grid_tiles_the_canvas_without_overlap() {
        assert!(grid(0).is_empty());
        for n in 1..=10usize {
            let rects = grid(n);
            assert_eq!(rects.len(), n);
            let area: u64 = rects
                .iter()
                .map(|r| r["w"].as_u64().unwrap() * r["h"].as_u64().unwrap())
                .sum();
            assert!(area <= 1280 * 720, "{n}: {area}");
            for r in &rects {
                assert!(r["x"].as_u64().unwrap() + r["w"].as_u64().unwrap() <= 1280);
                assert!(r["y"].as_u64().unwrap() + r["h"].as_u64().unwrap() <= 720);
            }
        }
        assert_eq!(
            grid(3),
            vec![
                json!({"x": 0, "y": 0, "w": 640, "h": 360}),
                json!({"x": 640, "y": 0, "w": 640, "h": 360}),
                json!({"x": 0, "y": 360, "w": 640, "h": 360}),
            ]
        );
    }
}
