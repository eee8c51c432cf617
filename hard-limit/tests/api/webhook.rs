//! `POST /webhook`: signatures, parsing, freshness, duplicates, ordering.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_signed_delivery_is_tracked_with_its_deadline() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    app.meeting_starts("room-a", started).await;
    let meetings = app.meetings().await;
    assert_eq!(meetings.len(), 1, "{meetings:?}");
    assert_eq!(meetings[0]["room_id"], "room-a");
    assert_eq!(meetings[0]["started_at"], iso(started));
    assert_eq!(meetings[0]["deadline"], iso(started + LIMIT));
    assert_eq!(meetings[0]["state"], "running");
}

#[tokio::test]
async fn wrong_or_missing_signatures_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let body = room_update(
        "room-a",
        Some(start_for_deadline_ago(Duration::from_secs(1))),
        false,
    );
    let wrong = eyeson_api::sign(b"another-key", body.as_bytes());
    assert_eq!(app.deliver_signed(&body, Some(&wrong)).await.status(), 401);
    assert_eq!(app.deliver_signed(&body, None).await.status(), 401);
    assert_eq!(
        app.deliver_signed(&body, Some("not hex")).await.status(),
        401
    );
    // A correct signature over a different body does not carry over.
    let other = room_update("room-b", None, false);
    let sig_other = eyeson_api::sign(KEY.as_bytes(), other.as_bytes());
    assert_eq!(
        app.deliver_signed(&body, Some(&sig_other)).await.status(),
        401
    );
    assert!(app.meetings().await.is_empty());
    assert!(
        app.fake.deletes().is_empty(),
        "an overdue meeting behind a bad signature was acted on"
    );
}

#[tokio::test]
async fn null_started_at_schedules_nothing() {
    let app = spawn_app().await;
    let r = app.deliver(&room_update("room-null", None, false)).await;
    assert_eq!(r.status(), 204);
    assert!(app.meetings().await.is_empty());
}

#[tokio::test]
async fn other_types_are_acknowledged_and_ignored() {
    let app = spawn_app().await;
    for body in [
        json!({"timestamp": unix_now(), "type": "recording_update", "recording": {"id": "r1"}}),
        json!({"timestamp": unix_now(), "type": "snapshot_update", "snapshot": {"id": "s1"}}),
        json!({"timestamp": unix_now(), "type": "something_new",
               "room": {"id": "x", "started_at": iso(start_for_deadline_ago(Duration::from_secs(5))), "shutdown": false}}),
    ] {
        assert_eq!(app.deliver(&body.to_string()).await.status(), 204, "{body}");
    }
    assert!(app.meetings().await.is_empty());
}

#[tokio::test]
async fn malformed_bodies_get_400_and_change_nothing() {
    let app = spawn_app().await;
    for body in [
        "not json".to_owned(),
        "{}".to_owned(),
        json!({"timestamp": unix_now(), "type": "room_update"}).to_string(),
        json!({"timestamp": unix_now(), "type": "room_update", "room": {"name": "no id"}})
            .to_string(),
        json!({"type": "room_update", "room": {"id": "a"}}).to_string(),
        json!({"timestamp": unix_now(), "type": "room_update",
               "room": {"id": "a", "started_at": "last tuesday"}})
        .to_string(),
    ] {
        let r = app.deliver(&body).await;
        assert_eq!(r.status(), 400, "{body}");
        let err: serde_json::Value = r.json().await.unwrap();
        assert!(err["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(app.meetings().await.is_empty());
}

#[tokio::test]
async fn bodies_over_64_kib_get_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(64 * 1024);
    let body = json!({"timestamp": unix_now(), "type": "room_update",
                      "room": {"id": "big", "started_at": null, "shutdown": false, "pad": padding}})
    .to_string();
    assert_eq!(app.deliver(&body).await.status(), 413);
}

#[tokio::test]
async fn replays_older_than_ten_minutes_are_refused() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let old = room_update_at(unix_now() - 11 * 60, "room-old", Some(started), false);
    assert_eq!(app.deliver(&old).await.status(), 401);
    let recent = room_update_at(unix_now() - 9 * 60, "room-old", Some(started), false);
    assert_eq!(app.deliver(&recent).await.status(), 204);
    assert_eq!(app.meetings().await.len(), 1);
}

#[tokio::test]
async fn the_replay_window_is_configurable() {
    let app = spawn_app_with(|c| c.webhook_max_age = Duration::from_secs(30)).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let body = room_update_at(unix_now() - 60, "room-w", Some(started), false);
    assert_eq!(app.deliver(&body).await.status(), 401);
}

#[tokio::test]
async fn duplicate_deliveries_track_once_and_shut_down_once() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_millis(400));
    app.fake.start_meeting("room-dup", &iso(started));
    let body = room_update("room-dup", Some(started), false);
    for _ in 0..3 {
        assert_eq!(app.deliver(&body).await.status(), 204);
    }
    app.wait_for_state("room-dup", started, "shut_down").await;
    // Redelivered after the shutdown: still one meeting, still one call.
    assert_eq!(app.deliver(&body).await.status(), 204);
    let sentinel = start_for_deadline_in(Duration::from_millis(300));
    app.meeting_starts("sentinel", sentinel).await;
    app.wait_for_state("sentinel", sentinel, "shut_down").await;
    assert_eq!(app.fake.calls("DELETE", "/rooms/room-dup").len(), 1);
    assert_eq!(app.meetings().await.len(), 2);
}

#[tokio::test]
async fn a_shutdown_delivered_before_the_start_keeps_the_meeting_ended() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_millis(300));
    // Out of order: the "ended" delivery overtakes the "running" one.
    assert_eq!(
        app.deliver(&room_update("room-ooo", Some(started), true))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.deliver(&room_update("room-ooo", Some(started), false))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.state_of("room-ooo", started).await.as_deref(),
        Some("ended")
    );
    // Once a later meeting's deadline has been enforced, the earlier
    // deadline has certainly been considered.
    let sentinel = start_for_deadline_in(Duration::from_millis(600));
    app.meeting_starts("sentinel", sentinel).await;
    app.wait_for_state("sentinel", sentinel, "shut_down").await;
    assert!(app.fake.calls("DELETE", "/rooms/room-ooo").is_empty());
    assert_eq!(
        app.state_of("room-ooo", started).await.as_deref(),
        Some("ended")
    );
}

#[tokio::test]
async fn a_shutdown_without_start_ends_the_open_meeting() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_millis(1000));
    app.meeting_starts("room-end", started).await;
    assert_eq!(
        app.deliver(&room_update("room-end", None, true))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.state_of("room-end", started).await.as_deref(),
        Some("ended")
    );
    let sentinel = start_for_deadline_in(Duration::from_millis(1300));
    app.meeting_starts("sentinel", sentinel).await;
    app.wait_for_state("sentinel", sentinel, "shut_down").await;
    assert!(app.fake.calls("DELETE", "/rooms/room-end").is_empty());
}

/// The sole participant reloads the page: the SDK hangs up (eyeson sends
/// `shutdown: true, started_at: null`, stamped in whole seconds) and a new
/// meeting starts in the same second. The new meeting must keep its limit,
/// whichever of the two deliveries arrives first.
#[tokio::test]
async fn a_null_start_shutdown_does_not_end_a_meeting_started_in_the_same_second() {
    let app = spawn_app().await;
    let ts = unix_now();
    let second = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64);
    let old = start_for_deadline_in(Duration::from_secs(600));
    let shutdown = room_update_at(ts, "room-reload", None, true);
    // Shutdown first, then the new meeting's start (started 500 ms into
    // the shutdown's second).
    app.meeting_starts("room-reload", old).await;
    assert_eq!(app.deliver(&shutdown).await.status(), 204);
    let new = second + Duration::from_millis(500);
    app.meeting_starts("room-reload", new).await;
    assert_eq!(
        app.state_of("room-reload", old).await.as_deref(),
        Some("ended")
    );
    assert_eq!(
        app.state_of("room-reload", new).await.as_deref(),
        Some("running"),
        "the new meeting escaped its limit"
    );
    // The same with no meeting known when the shutdown arrives.
    assert_eq!(
        app.deliver(&room_update_at(ts, "room-fresh", None, true))
            .await
            .status(),
        204
    );
    app.meeting_starts("room-fresh", second + Duration::from_millis(200))
        .await;
    assert_eq!(
        app.state_of("room-fresh", second + Duration::from_millis(200))
            .await
            .as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn a_start_in_the_future_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let far = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_000); // year 9999
    let tomorrow = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let just_beyond = std::time::SystemTime::now() + Duration::from_secs(660);
    for started in [far, tomorrow, just_beyond] {
        for shutdown in [false, true] {
            let r = app
                .deliver(&room_update("room-f", Some(started), shutdown))
                .await;
            assert_eq!(r.status(), 400, "{started:?} shutdown={shutdown}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("room.started_at"),
                "{body}"
            );
        }
    }
    assert!(app.meetings().await.is_empty());
    // Within the window (a clock a little ahead) is fine.
    let soon = std::time::SystemTime::now() + Duration::from_secs(60);
    assert_eq!(
        app.deliver(&room_update("room-f", Some(soon), false))
            .await
            .status(),
        204
    );
    assert!(app.metrics().await.contains(r#"reason="future_start""#));
}
