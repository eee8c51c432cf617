//! The alone rule (`--alone-after`) against the sandbox with bots: a
//! meeting that one participant keeps open is ended once, recorded
//! `ended_alone`; company, a join right before the DELETE, an ignored bot,
//! eyeson's failures and a restart each do what they must.

use std::time::{Duration, SystemTime};

use eyeson_sandbox::script::Fault;
use serde_json::Value;

use crate::helpers::*;

/// The rule on, checked every second.
fn alone(after: Duration) -> impl FnOnce(&mut eyeson_hard_limit::Flags) {
    move |c| {
        c.alone_after = Some(after);
        c.presence_every = Duration::from_secs(1);
    }
}

async fn meeting(app: &TestApp, room: &str) -> Value {
    app.meetings()
        .await
        .into_iter()
        .find(|m| m["room_id"] == room)
        .unwrap_or_else(|| panic!("{room} is listed"))
}

async fn history_events(app: &TestApp, room: &str) -> Vec<Value> {
    let h = app.history(room).await;
    h["meetings"][0]["events"].as_array().unwrap().clone()
}

fn event_time(events: &[Value], name: &str) -> Option<chrono_like::Ms> {
    events
        .iter()
        .find(|e| e["event"] == name)
        .map(|e| chrono_like::parse(e["at"].as_str().unwrap()))
}

/// ISO-8601 (as the service writes it) to ms, without a date crate.
mod chrono_like {
    pub type Ms = i64;
    pub fn parse(s: &str) -> Ms {
        let t = humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }
}

/// Waits (bounded: `secs`) until `room`'s meeting in `GET /meetings`
/// passes `ok`.
async fn wait_for_meeting(
    app: &TestApp,
    room: &str,
    what: &str,
    secs: u64,
    ok: impl Fn(&Value) -> bool,
) {
    wait_until(
        &format!("{room}: {what}"),
        Duration::from_secs(secs),
        || async { ok(&meeting(app, room).await) },
    )
    .await;
}

/// Waits (bounded: `secs`) until `room`'s history has `event`.
async fn wait_for_event(app: &TestApp, room: &str, event: &str, secs: u64) {
    wait_until(
        &format!("{room}: {event}"),
        Duration::from_secs(secs),
        || async { event_time(&history_events(app, room).await, event).is_some() },
    )
    .await;
}

fn deletes_of(app: &TestApp, room: &str) -> usize {
    let path = format!("/rooms/{room}");
    app.fake
        .deletes()
        .iter()
        .filter(|r| r.path == path && (200..300).contains(&r.status))
        .count()
}

#[tokio::test]
async fn a_lone_participant_is_ended_once_after_alone_after() {
    let app = spawn_app_with(alone(Duration::from_secs(2))).await;
    let started = SystemTime::now();
    app.meeting_starts("solo", started).await;
    app.fake.bot("solo", "Ada", true);
    app.wait_for_state("solo", started, "shut_down").await;

    assert_eq!(deletes_of(&app, "solo"), 1, "exactly one DELETE");
    let m = meeting(&app, "solo").await;
    assert_eq!(m["ended_alone"], true, "{m}");
    let events = history_events(&app, "solo").await;
    let lone = event_time(&events, "alone").expect("the alone period is in the history");
    let ended = event_time(&events, "ended_alone").expect("the end is recorded ended_alone");
    assert!(
        ended - lone >= 2_000,
        "never before alone_after: {events:?}"
    );
    // (The metrics are the process's, shared by the tests running beside
    // this one: only their presence is checked.)
    let metrics = app.metrics().await;
    assert!(
        metric_value(
            &metrics,
            r#"hard_limit_shutdowns_total{outcome="ended_alone"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let looks = app.fake.calls("GET", "/rooms/solo/users");
    assert!(looks.len() >= 2, "a check, then the last look: {looks:?}");
    assert!(
        looks
            .iter()
            .all(|r| r.query.as_deref() == Some("online=true")),
        "{looks:?}"
    );
}

#[tokio::test]
async fn company_keeps_the_meeting_and_a_join_resets_the_clock() {
    let app = spawn_app_with(alone(Duration::from_secs(3))).await;
    let started = SystemTime::now();
    app.meeting_starts("pair", started).await;
    app.fake.bot("pair", "Ada", true);
    app.fake.bot("pair", "Grace", true);
    wait_for_meeting(&app, "pair", "a check counts company", 10, |m| {
        m["participants"] == 2
    })
    .await;
    assert!(meeting(&app, "pair").await["alone_deadline"].is_null());

    // One leaves: the clock runs, and the page (guest token) sees the end.
    app.fake.bot("pair", "Grace", false);
    wait_for_meeting(&app, "pair", "the alone deadline appears", 10, |m| {
        !m["alone_deadline"].is_null()
    })
    .await;
    let public = app.public_meeting("pair").await;
    assert!(public["alone_deadline"].is_string(), "{public}");

    // Someone joins: the next check resets it; nothing is ended.
    app.fake.bot("pair", "Grace", true);
    wait_for_meeting(&app, "pair", "the alone deadline goes", 10, |m| {
        m["alone_deadline"].is_null()
    })
    .await;
    let events = history_events(&app, "pair").await;
    assert!(event_time(&events, "company").is_some(), "{events:?}");
    assert_eq!(meeting(&app, "pair").await["state"], "running");
    assert_eq!(deletes_of(&app, "pair"), 0);
}

#[tokio::test]
async fn a_join_right_before_the_delete_cancels_the_end() {
    // One check a minute: the clock starts at the first, and the only look
    // before the end is the scheduler's.
    let app = spawn_app_with(|c| {
        c.alone_after = Some(Duration::from_secs(2));
        c.presence_every = Duration::from_secs(60);
    })
    .await;
    let started = SystemTime::now();
    app.meeting_starts("late-join", started).await;
    app.fake.bot("late-join", "Ada", true);
    wait_for_meeting(&app, "late-join", "the clock runs", 10, |m| {
        !m["alone_deadline"].is_null()
    })
    .await;
    app.fake.bot("late-join", "Grace", true);
    wait_for_event(&app, "late-join", "alone_cancelled", 10).await;
    let m = meeting(&app, "late-join").await;
    assert_eq!(m["state"], "running", "{m}");
    assert!(m["alone_deadline"].is_null(), "the clock is reset: {m}");
    assert_eq!(deletes_of(&app, "late-join"), 0);
    let metrics = app.metrics().await;
    assert!(
        metric_value(
            &metrics,
            r#"hard_limit_shutdowns_total{outcome="alone_cancelled"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_ignored_bot_does_not_keep_a_meeting_open_and_another_does() {
    let app = spawn_app_with(|c| {
        c.alone_after = Some(Duration::from_secs(2));
        c.presence_every = Duration::from_secs(1);
        c.alone_ignore = vec!["recorder*".into()];
    })
    .await;
    let started = SystemTime::now();
    app.meeting_starts("recorded", started).await;
    app.meeting_starts("with-bob", started).await;
    app.fake.bot("recorded", "Ada", true);
    app.fake.bot("recorded", "Recorder 1", true);
    app.fake.bot("with-bob", "Ada", true);
    app.fake.bot("with-bob", "Bob", true);
    app.wait_for_state("recorded", started, "shut_down").await;
    assert_eq!(meeting(&app, "recorded").await["ended_alone"], true);
    // Long past with-bob's would-be end, with checks since.
    let m = meeting(&app, "with-bob").await;
    assert_eq!(
        (m["state"].as_str(), m["participants"].as_i64()),
        (Some("running"), Some(2))
    );
    assert!(m["alone_since"].is_null(), "{m}");
    assert_eq!(deletes_of(&app, "with-bob"), 0);
}

#[tokio::test]
async fn eyesons_failures_never_end_a_meeting_and_the_checks_catch_up() {
    let app = spawn_app_with(alone(Duration::from_secs(1))).await;
    let started = SystemTime::now();
    app.fake.start_meeting("busy", &iso(started));
    app.fake.bot("busy", "Ada", true);
    app.fake.bot("busy", "Grace", true);
    // (Tracked without `meeting_starts`, which would start the meeting
    // afresh, without its bots.)
    let r = app
        .deliver(&room_update("busy", Some(started), false))
        .await;
    assert_eq!(r.status(), 204);
    // Every kind of failure, before any good answer: none may read as
    // "nobody here".
    app.fake.script_users(
        "busy",
        [
            // Cut at the client's 10 s timeout.
            Fault::Hang,
            Fault::Status(429),
            Fault::Status(503),
            Fault::Status(500),
            Fault::Cut,
            Fault::Answer(200, String::new()),
            Fault::Answer(200, r#"{"users": []}"#.into()),
            Fault::Status(502),
        ],
    );
    wait_for_meeting(&app, "busy", "a good check after the failures", 60, |m| {
        m["participants"] == 2
    })
    .await;
    let m = meeting(&app, "busy").await;
    assert_eq!(m["state"], "running", "{m}");
    assert!(m["alone_since"].is_null(), "{m}");
    assert_eq!(deletes_of(&app, "busy"), 0);
    let asked = app.fake.calls("GET", "/rooms/busy/users");
    assert!(
        asked.len() >= 9,
        "every failure was retried: {}",
        asked.len()
    );
    let metrics = app.metrics().await;
    assert!(
        metric_value(&metrics, "hard_limit_presence_retries_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_alone_clock_survives_a_restart_and_the_end_comes_once_on_time() {
    let app = spawn_app_with(alone(Duration::from_secs(4))).await;
    let started = SystemTime::now();
    app.meeting_starts("kiosk", started).await;
    app.fake.bot("kiosk", "Lobby tablet", true);
    wait_for_meeting(&app, "kiosk", "the clock runs", 10, |m| {
        !m["alone_since"].is_null()
    })
    .await;
    let since = meeting(&app, "kiosk").await["alone_since"].clone();
    let (fake, database, dir) = app.stop().await;
    let app = spawn_on(fake, database, dir, alone(Duration::from_secs(4))).await;
    let m = meeting(&app, "kiosk").await;
    assert_eq!(m["alone_since"], since, "kept across the restart");
    app.wait_for_state("kiosk", started, "shut_down").await;
    assert_eq!(deletes_of(&app, "kiosk"), 1);
    let events = history_events(&app, "kiosk").await;
    let ended = event_time(&events, "ended_alone").unwrap();
    let since = chrono_like::parse(since.as_str().unwrap());
    assert!(ended - since >= 4_000, "{events:?}");
    let alone_periods = events.iter().filter(|e| e["event"] == "alone").count();
    assert_eq!(alone_periods, 1, "one period, not restarted: {events:?}");
}

#[tokio::test]
async fn the_lone_participant_is_warned_once_with_the_alone_text() {
    let app = spawn_app_with(|c| {
        c.alone_after = Some(Duration::from_secs(4));
        c.presence_every = Duration::from_secs(1);
        c.warn_before = Some(Duration::from_secs(2));
    })
    .await;
    let started = SystemTime::now();
    app.meeting_starts("lonely", started).await;
    app.fake.bot("lonely", "Ada", true);
    app.wait_for_state("lonely", started, "shut_down").await;
    let messages: Vec<_> = app
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.room == "lonely")
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0].content,
        "You are the only participant. This meeting ends in 2 seconds unless someone joins."
    );
    let events = history_events(&app, "lonely").await;
    let warned = event_time(&events, "warned").expect("the warning is in the history");
    let ended = event_time(&events, "ended_alone").unwrap();
    assert!(warned < ended, "{events:?}");
}

#[tokio::test]
async fn a_room_whose_users_call_says_gone_while_it_runs_is_not_ended_by_the_rule() {
    let app = spawn_app_with(alone(Duration::from_secs(1))).await;
    let started = SystemTime::now();
    app.meeting_starts("phantom", started).await;
    app.fake.bot("phantom", "Ada", true);
    wait_for_meeting(&app, "phantom", "the clock runs", 10, |m| {
        !m["alone_since"].is_null()
    })
    .await;
    // From now on eyeson answers 404 for the room's users, though the
    // meeting runs.
    app.fake
        .script_users("phantom", std::iter::repeat_n(Fault::Status(404), 50));
    wait_for_event(&app, "phantom", "alone_cancelled", 15).await;
    let m = meeting(&app, "phantom").await;
    assert_eq!(
        m["state"], "running",
        "still tracked, its deadline still applies: {m}"
    );
    assert_eq!(deletes_of(&app, "phantom"), 0);
    assert!(app.fake.is_running("phantom"));
}

#[tokio::test]
async fn no_alone_warning_once_someone_has_joined_since_the_last_check() {
    // One check a minute: only the warner's and the scheduler's own looks
    // can see the join.
    let app = spawn_app_with(|c| {
        c.alone_after = Some(Duration::from_secs(4));
        c.presence_every = Duration::from_secs(60);
        c.warn_before = Some(Duration::from_secs(2));
    })
    .await;
    let started = SystemTime::now();
    app.meeting_starts("joined", started).await;
    app.fake.bot("joined", "Ada", true);
    wait_for_meeting(&app, "joined", "the clock runs", 10, |m| {
        !m["alone_deadline"].is_null()
    })
    .await;
    app.fake.bot("joined", "Grace", true);
    wait_for_event(&app, "joined", "alone_cancelled", 15).await;
    let events = history_events(&app, "joined").await;
    assert!(event_time(&events, "warned").is_none(), "{events:?}");
    assert!(
        app.fake.messages().iter().all(|m| m.room != "joined"),
        "no chat message"
    );
    assert!(
        app.fake.guest_joins().is_empty(),
        "the warning guest never joined"
    );
    assert_eq!(deletes_of(&app, "joined"), 0);
}
