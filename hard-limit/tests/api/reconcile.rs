//! Reconciliation with `GET /rooms`.

use std::time::{Duration, SystemTime};

use crate::helpers::*;

#[tokio::test]
async fn a_meeting_only_get_rooms_knows_is_enforced() {
    let fake = FakeEyeson::start(KEY).await;
    // It began while the service was down: no delivery will ever come.
    let started = start_for_deadline_in(Duration::from_millis(300));
    fake.start_meeting("room-quiet", &iso(started));
    let app = spawn_app_on(fake, |_| {}).await;
    app.wait_for_state("room-quiet", started, "shut_down").await;
    let lists = app.fake.calls("GET", "/rooms");
    assert!(!lists.is_empty());
    assert_eq!(lists[0].authorization.as_deref(), Some(KEY));
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert_delete(&deletes[0], "/rooms/room-quiet");
}

#[tokio::test]
async fn meetings_that_ended_silently_are_closed() {
    let app = spawn_app_with(|c| {
        c.reconcile_every = Duration::from_millis(100);
        c.close_unlisted_after = Duration::from_millis(300);
    })
    .await;
    // Tracked from a delivery, but eyeson does not list it (it ended and
    // the "ended" delivery was lost).
    let started = SystemTime::now() - Duration::from_secs(300);
    let started = iso_round(started);
    assert_eq!(
        app.deliver(&room_update("room-gone", Some(started), false))
            .await
            .status(),
        204
    );
    app.wait_for_state("room-gone", started, "ended").await;
    assert!(app.fake.deletes().is_empty());
    // One that eyeson does list stays running through many reconciliations.
    let listed = iso_round(SystemTime::now() - Duration::from_secs(300));
    app.meeting_starts("room-listed", listed).await;
    let runs = app.fake.calls("GET", "/rooms").len();
    wait_until(
        "five more reconciliations",
        Duration::from_secs(10),
        || async { app.fake.calls("GET", "/rooms").len() >= runs + 5 },
    )
    .await;
    assert_eq!(
        app.state_of("room-listed", listed).await.as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn a_failing_room_list_does_not_hold_back_enforcement() {
    let fake = FakeEyeson::start(KEY).await;
    fake.script_rooms(&[0]); // GET /rooms never answers
    let app = spawn_app_on(fake, |_| {}).await;
    wait_until(
        "GET /rooms is in flight",
        Duration::from_secs(5),
        || async { !app.fake.calls("GET", "/rooms").is_empty() },
    )
    .await;
    let started = start_for_deadline_in(Duration::from_millis(200));
    app.meeting_starts("room-x", started).await;
    app.wait_for_state("room-x", started, "shut_down").await;
}

fn iso_round(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Reconciliations every 100 ms, a meeting tracked long enough to be closed
/// if it went unlisted.
async fn reconciling_app() -> TestApp {
    spawn_app_with(|c| {
        c.reconcile_every = Duration::from_millis(100);
        c.close_unlisted_after = Duration::from_millis(300);
    })
    .await
}

async fn reconciliations(app: &TestApp, more: usize) {
    let runs = app.fake.calls("GET", "/rooms").len();
    wait_until("more reconciliations", Duration::from_secs(10), || async {
        app.fake.calls("GET", "/rooms").len() >= runs + more
    })
    .await;
}

#[tokio::test]
async fn a_room_entry_that_does_not_parse_does_not_close_its_meeting() {
    let app = reconciling_app().await;
    let started = iso_round(SystemTime::now() - Duration::from_secs(300));
    assert_eq!(
        app.deliver(&room_update("room-odd", Some(started), false))
            .await
            .status(),
        204
    );
    // eyeson lists the meeting, in a form this service does not parse.
    let ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    app.fake.list_raw(Some(serde_json::json!([{
        "id": "room-odd", "name": "room-odd", "ready": true, "started_at": ms.to_string(),
        "shutdown": false, "guest_token": crate::fake_eyeson::guest_token_of("room-odd"),
    }])));
    reconciliations(&app, 6).await;
    assert_eq!(
        app.state_of("room-odd", started).await.as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn one_empty_room_list_does_not_close_running_meetings() {
    let app = reconciling_app().await;
    let started = iso_round(SystemTime::now() - Duration::from_secs(300));
    app.meeting_starts("room-on", started).await;
    // Tracked longer than --close-unlisted-after before the empty answer.
    reconciliations(&app, 5).await;
    app.fake.script_rooms(&[200]); // one transient empty list
    reconciliations(&app, 5).await;
    assert_eq!(
        app.state_of("room-on", started).await.as_deref(),
        Some("running")
    );
}

/// The longest retention keeps a finished meeting, rather than wrapping
/// into the future and pruning every finished meeting (longer ones, up to
/// more than milliseconds in an i64 hold, are refused at start).
#[tokio::test]
async fn an_enormous_retention_prunes_nothing() {
    let app = spawn_app_with(|c| {
        c.reconcile_every = Duration::from_millis(100);
        // The longest accepted (longer ones are refused at start).
        c.retention = eyeson_hard_limit::domain::MAX_RETENTION;
    })
    .await;
    let started = iso_round(SystemTime::now() - Duration::from_secs(60));
    // Finished: eyeson reports it ended.
    assert_eq!(
        app.deliver(&room_update("room-kept", Some(started), true))
            .await
            .status(),
        204
    );
    reconciliations(&app, 3).await;
    assert_eq!(
        app.state_of("room-kept", started).await.as_deref(),
        Some("ended")
    );
}

/// 50 meetings run; eyeson's list always shows only 10 of them (a partial
/// answer, say an unannounced page size). Two reconciliations would close
/// 40 live meetings; closing by reconciliation is only an optimisation, so
/// nothing is closed, and the refusal is counted.
#[tokio::test]
async fn an_always_partial_room_list_closes_nothing() {
    let app = reconciling_app().await;
    let started = iso_round(SystemTime::now() - Duration::from_secs(300));
    for i in 0..50 {
        app.meeting_starts(&format!("room-{i:02}"), started).await;
    }
    // All tracked longer than --close-unlisted-after, listed in full.
    reconciliations(&app, 5).await;
    app.fake.list_only(Some(10));
    reconciliations(&app, 6).await;
    let meetings = app.meetings().await;
    assert_eq!(meetings.len(), 50);
    assert!(
        meetings.iter().all(|m| m["state"] == "running"),
        "a partial list closed live meetings"
    );
    let metrics = app.metrics().await;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hard_limit_reconcile_closes_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{metrics}");
    // A few meetings that did end unseen are still closed.
    app.fake.list_only(None);
    for i in 0..5 {
        app.fake.end_meeting(&format!("room-{i:02}"));
    }
    wait_until("5 closed", Duration::from_secs(10), || async {
        app.meetings()
            .await
            .iter()
            .filter(|m| m["state"] == "ended")
            .count()
            == 5
    })
    .await;
}

/// `GET /rooms` in pages linked with `Link: rel="next"`: every page is
/// read, so every running meeting is tracked, and none is closed as
/// unlisted for being on a later page.
#[tokio::test]
async fn every_page_of_the_room_list_is_read() {
    let fake = FakeEyeson::start(KEY).await;
    fake.paginate_rooms(Some(7));
    // They began while the service was down: only GET /rooms knows them.
    let started = iso_round(SystemTime::now() - Duration::from_secs(300));
    for i in 0..30 {
        fake.start_meeting(&format!("room-{i:02}"), &iso(started));
    }
    let app = spawn_app_on(fake, |c| {
        c.reconcile_every = Duration::from_millis(100);
        c.close_unlisted_after = Duration::from_millis(300);
    })
    .await;
    wait_until("all 30 tracked", Duration::from_secs(10), || async {
        app.meetings().await.len() == 30
    })
    .await;
    reconciliations(&app, 15).await;
    let meetings = app.meetings().await;
    assert!(
        meetings.iter().all(|m| m["state"] == "running"),
        "{meetings:?}"
    );
    assert!(app
        .fake
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(KEY)));
}

/// A locked API key answers `GET /rooms` with 423: an answer, but no list,
/// so it closes nothing (the meetings are not known to have ended).
#[tokio::test]
async fn a_locked_key_room_list_closes_nothing() {
    let app = reconciling_app().await;
    let started = iso_round(SystemTime::now() - Duration::from_secs(300));
    app.meeting_starts("room-locked", started).await;
    app.fake.script_rooms(&[423; 8]);
    reconciliations(&app, 8).await;
    assert_eq!(
        app.state_of("room-locked", started).await.as_deref(),
        Some("running")
    );
}
