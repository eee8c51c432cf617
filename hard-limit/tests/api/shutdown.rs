//! The scheduler against the fake eyeson: exact calls, retries, refusals,
//! and the newer-meeting guard.

use std::time::{Duration, SystemTime};

use crate::helpers::*;

#[tokio::test]
async fn an_overdue_meeting_is_shut_down_once_with_the_exact_call() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_millis(300));
    app.meeting_starts("room-1", started).await;
    app.wait_for_state("room-1", started, "shut_down").await;
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert_delete(&deletes[0], "/rooms/room-1");
    assert!(deletes[0].form.is_empty());
    // Not before the deadline.
    assert!(
        deletes[0].answered_at >= started + LIMIT,
        "shut down before the deadline"
    );
    assert!(!app.fake.is_running("room-1"));
}

#[tokio::test]
async fn room_ids_are_percent_encoded_path_segments() {
    let app = spawn_app().await;
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("team room/1?x", started).await;
    app.wait_for_state("team room/1?x", started, "shut_down")
        .await;
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert_delete(&deletes[0], "/rooms/team%20room%2F1%3Fx");
}

#[tokio::test]
async fn not_found_and_gone_mean_done() {
    let app = spawn_app().await;
    app.fake.script_delete("room-404", &[404]);
    app.fake.script_delete("room-410", &[410]);
    let s1 = start_for_deadline_ago(Duration::from_secs(1));
    let s2 = start_for_deadline_ago(Duration::from_secs(2));
    app.meeting_starts("room-404", s1).await;
    app.meeting_starts("room-410", s2).await;
    app.wait_for_state("room-404", s1, "ended").await;
    app.wait_for_state("room-410", s2, "ended").await;
    assert_eq!(app.fake.calls("DELETE", "/rooms/room-404").len(), 1);
    assert_eq!(app.fake.calls("DELETE", "/rooms/room-410").len(), 1);
}

#[tokio::test]
async fn unavailable_then_no_content_is_retried() {
    let app = spawn_app().await;
    app.fake.script_delete("room-503", &[503, 503]);
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-503", started).await;
    app.wait_for_state("room-503", started, "shut_down").await;
    let calls = app.fake.calls("DELETE", "/rooms/room-503");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [503, 503, 204]);
    for c in &calls {
        assert_delete(c, "/rooms/room-503");
    }
    // Backoff: the retries are spaced, not hammered.
    assert!(calls[1].answered_instant - calls[0].answered_instant >= Duration::from_millis(50));
}

#[tokio::test]
async fn too_many_requests_is_retried_after_retry_after() {
    let app = spawn_app().await;
    app.fake.script_delete("room-429", &[429]); // with Retry-After: 1
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-429", started).await;
    app.wait_for_state("room-429", started, "shut_down").await;
    let calls = app.fake.calls("DELETE", "/rooms/room-429");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 204]);
    assert!(calls[1].answered_instant - calls[0].answered_instant >= Duration::from_millis(950));
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let app = spawn_app().await;
    app.fake.script_delete("room-403", &[403, 403, 403]);
    let s1 = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-403", s1).await;
    app.wait_for_state("room-403", s1, "failed").await;
    // Final states are not claimed again: a later meeting's enforcement
    // shows the scheduler moved on without another call.
    let sentinel = start_for_deadline_in(Duration::from_millis(300));
    app.meeting_starts("sentinel", sentinel).await;
    app.wait_for_state("sentinel", sentinel, "shut_down").await;
    assert_eq!(app.fake.calls("DELETE", "/rooms/room-403").len(), 1);
}

/// A locked API key (423) may be unlocked: the meeting stays open and its
/// shutdown is deferred (one call per claim, spaced by the doubling
/// `--retry-backoff`, never a burst), until a call goes through.
#[tokio::test]
async fn a_locked_key_defers_the_shutdown_one_call_per_claim() {
    let backoff = Duration::from_millis(300);
    let app = spawn_app_with(|c| c.retry_backoff = backoff).await;
    app.fake.script_delete("room-423", &[423, 423, 423]);
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-423", started).await;
    wait_until("the first 423", Duration::from_secs(10), || async {
        !app.fake.calls("DELETE", "/rooms/room-423").is_empty()
    })
    .await;
    let state = app.state_of("room-423", started).await;
    assert_ne!(
        state.as_deref(),
        Some("failed"),
        "a locked key is not final"
    );
    app.wait_for_state("room-423", started, "shut_down").await;
    let calls = app.fake.calls("DELETE", "/rooms/room-423");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [423, 423, 423, 204], "one call per claim");
    // Spaced by the backoff, doubling: 300 ms, 600 ms, 1200 ms.
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].answered_instant - pair[0].answered_instant;
        let expected = backoff * (1 << i);
        assert!(
            gap >= expected - Duration::from_millis(50),
            "call {} came {gap:?} after the one before (backoff {expected:?})",
            i + 2
        );
    }
    let text = app.metrics().await;
    assert!(
        text.lines().any(|l| l
            .strip_prefix("hard_limit_shutdowns_total{outcome=\"locked\"} ")
            .is_some_and(|v| v.trim() != "0")),
        "{text}"
    );
    assert!(text.contains("hard_limit_api_key_locked "), "{text}");
}

#[tokio::test]
async fn a_newer_meeting_in_the_same_room_is_not_shut_down() {
    let app = spawn_app().await;
    // Margin: the newer meeting must be known before the old deadline.
    let old = start_for_deadline_in(Duration::from_millis(1000));
    let new = SystemTime::now() - Duration::from_secs(1);
    app.meeting_starts("room-n", old).await;
    // The room's next meeting starts (eyeson's room now runs `new`).
    app.meeting_starts("room-n", new).await;
    let sentinel = start_for_deadline_in(Duration::from_millis(1300));
    app.meeting_starts("sentinel", sentinel).await;
    app.wait_for_state("sentinel", sentinel, "shut_down").await;
    assert!(
        app.fake.calls("DELETE", "/rooms/room-n").is_empty(),
        "the newer meeting was ended"
    );
    assert_eq!(app.state_of("room-n", old).await.as_deref(), Some("ended"));
    assert_eq!(
        app.state_of("room-n", new).await.as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn an_older_meeting_delivered_late_is_skipped_at_its_deadline() {
    let app = spawn_app().await;
    let old = start_for_deadline_in(Duration::from_millis(300));
    let new = SystemTime::now() - Duration::from_secs(1);
    // Out of order: the newer meeting is known first.
    app.meeting_starts("room-late", new).await;
    assert_eq!(
        app.deliver(&room_update("room-late", Some(old), false))
            .await
            .status(),
        204
    );
    app.wait_for_state("room-late", old, "skipped").await;
    assert!(app.fake.calls("DELETE", "/rooms/room-late").is_empty());
    assert_eq!(
        app.state_of("room-late", new).await.as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn dry_run_records_and_calls_nothing() {
    let app = spawn_app_with(|c| c.dry_run = true).await;
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-dry", started).await;
    app.wait_for_state("room-dry", started, "skipped").await;
    assert!(app.fake.deletes().is_empty());
}

#[tokio::test]
async fn per_room_limits_come_from_the_limits_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(
        &file,
        "[rooms]\n\"vip\" = \"2h\"\n[prefixes]\n\"quick-\" = \"1s\"\n",
    )
    .unwrap();
    let app = spawn_app_with(|c| c.limits = Some(file)).await;
    let now = SystemTime::now();
    let ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let started = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    app.meeting_starts("vip", started).await;
    app.meeting_starts("quick-1", started).await;
    let m = app.meetings().await;
    let deadline = |room: &str| {
        m.iter().find(|x| x["room_id"] == room).unwrap()["deadline"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(deadline("vip"), iso(started + Duration::from_secs(7200)));
    assert_eq!(deadline("quick-1"), iso(started + Duration::from_secs(1)));
    app.wait_for_state("quick-1", started, "shut_down").await;
    assert!(app.fake.calls("DELETE", "/rooms/vip").is_empty());
}

#[tokio::test]
async fn grace_delays_the_deadline() {
    let app = spawn_app_with(|c| c.grace = Duration::from_secs(90)).await;
    let started = start_for_deadline_in(Duration::ZERO);
    app.meeting_starts("room-g", started).await;
    let m = app.meetings().await;
    assert_eq!(
        m[0]["deadline"],
        iso(started + LIMIT + Duration::from_secs(90))
    );
    assert_eq!(m[0]["state"], "running");
}

#[tokio::test]
async fn stopping_finishes_the_shutdown_in_flight() {
    let app = spawn_app().await;
    app.fake.script_delete("room-s", &[503]);
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-s", started).await;
    wait_until(
        "the first attempt failed",
        Duration::from_secs(10),
        || async { !app.fake.calls("DELETE", "/rooms/room-s").is_empty() },
    )
    .await;
    // Stop while the retry is pending: the service finishes it first.
    let (fake, database, dir) = app.stop().await;
    let statuses: Vec<u16> = fake
        .calls("DELETE", "/rooms/room-s")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [503, 204]);
    let app = spawn_on(fake, database, dir, |_| {}).await;
    assert_eq!(
        app.state_of("room-s", started).await.as_deref(),
        Some("shut_down")
    );
}

/// An eyeson outage longer than one claim's retry budget (half the lease)
/// does not leave the meeting unenforced: the shutdown is deferred, not
/// failed, and tried again until it goes through.
#[tokio::test]
async fn an_outage_longer_than_the_retry_budget_defers_the_shutdown() {
    let app = spawn_app_with(|c| {
        c.lease = Duration::from_secs(2); // retry budget: 1 s per claim
        c.retry_backoff = Duration::from_millis(300);
    })
    .await;
    // Many more 503s than one claim's budget allows.
    app.fake.script_delete("room-outage", &[503; 12]);
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-outage", started).await;
    wait_until(
        "the outage is over and the meeting shut down",
        Duration::from_secs(30),
        || async { app.state_of("room-outage", started).await.as_deref() == Some("shut_down") },
    )
    .await;
    let statuses: Vec<u16> = app
        .fake
        .calls("DELETE", "/rooms/room-outage")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses.len(), 13, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&204));
    let text = app.metrics().await;
    assert!(
        text.lines().any(|l| l
            .strip_prefix("hard_limit_shutdowns_total{outcome=\"deferred\"} ")
            .is_some_and(|v| v.trim() != "0")),
        "{text}"
    );
    assert!(
        text.contains("hard_limit_shutdown_attempts_bucket"),
        "{text}"
    );
}

/// During a retry backoff the users leave (eyeson delivers the shutdown)
/// and a new meeting starts in the room before its delivery reaches us:
/// the pending retry must not `DELETE /rooms/{id}`, which would end the
/// new meeting.
#[tokio::test]
async fn a_shutdown_delivered_during_a_retry_backoff_stops_the_retries() {
    let app = spawn_app().await;
    app.fake.script_delete("room-b", &[429]); // Retry-After: 1
    let old = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-b", old).await;
    wait_until(
        "the first attempt was throttled",
        Duration::from_secs(10),
        || async { !app.fake.calls("DELETE", "/rooms/room-b").is_empty() },
    )
    .await;
    assert_eq!(
        app.deliver(&room_update("room-b", None, true))
            .await
            .status(),
        204
    );
    // The new meeting runs at eyeson; its delivery has not arrived.
    app.fake.start_meeting("room-b", &iso(SystemTime::now()));
    app.wait_for_state("room-b", old, "ended").await;
    assert_eq!(app.fake.calls("DELETE", "/rooms/room-b").len(), 1);
    assert!(app.fake.is_running("room-b"), "the new meeting was ended");
}

/// A call that outlives the lease (no answer; the client timeout is 10 s)
/// is given up before the lease expires, so the meeting's next claim (here
/// by the same process) never calls while the first call is in flight.
#[tokio::test]
async fn a_hanging_call_is_given_up_before_the_lease_expires() {
    let app = spawn_app_with(|c| {
        c.lease = Duration::from_secs(2);
        c.retry_backoff = Duration::from_millis(300);
    })
    .await;
    app.fake.script_delete("room-h", &[0]); // the first call never answers
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-h", started).await;
    app.wait_for_state("room-h", started, "shut_down").await;
    let calls = app.fake.calls("DELETE", "/rooms/room-h");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let abandoned = calls[0]
        .abandoned_at
        .expect("the hanging call was still in flight when the next one was made");
    assert!(
        calls[1].answered_instant >= abandoned,
        "two calls were in flight at once"
    );
    assert!(abandoned - calls[0].answered_instant < Duration::from_secs(2));
}

/// `--shutdown-concurrency` bounds the calls in flight, even when the
/// scheduler holds more claims than that (it claims ahead, so that calls
/// do not wait on commits): with 2, and every first call hanging, never
/// more than 2 calls are open at once, and every meeting still ends.
#[tokio::test]
async fn shutdown_concurrency_bounds_the_calls_in_flight() {
    let app = spawn_app_with(|c| {
        c.shutdown_concurrency = 2;
        c.lease = Duration::from_secs(2);
        c.retry_backoff = Duration::from_millis(200);
    })
    .await;
    let started = start_for_deadline_ago(Duration::from_secs(1));
    let rooms: Vec<String> = (0..6).map(|i| format!("room-c{i}")).collect();
    for room in &rooms {
        app.fake.script_delete(room, &[0]);
        app.meeting_starts(room, started).await;
    }
    for room in &rooms {
        app.wait_for_state(room, started, "shut_down").await;
    }
    let calls = app.fake.deletes();
    assert!(calls.len() >= 12, "{calls:?}");
    let open = |c: &crate::fake_eyeson::Recorded| {
        (
            c.answered_instant,
            c.abandoned_at.unwrap_or(c.answered_instant),
        )
    };
    for c in &calls {
        let (at, _) = open(c);
        let in_flight = calls
            .iter()
            .filter(|d| {
                let (start, end) = open(d);
                start <= at && end > at
            })
            .count();
        assert!(
            in_flight <= 2,
            "{in_flight} calls in flight at once: {calls:?}"
        );
    }
}
