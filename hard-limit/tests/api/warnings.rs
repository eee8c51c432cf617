//! The in-meeting warning (`--warn-before`) against the fake eyeson: the
//! exact guest join and chat message, once per deadline (also across a
//! restart and two replicas on PostgreSQL), re-armed when the deadline
//! moves, 410 recorded and not retried, never for a meeting that ended.

use std::time::{Duration, SystemTime};

use eyeson_hard_limit::domain::{MeetingKey, RoomId, Timestamp};
use serde_json::json;

use crate::fake_eyeson::guest_token_of;
use crate::helpers::*;
use crate::pg::PgDb;

fn warn(before: Duration) -> impl FnOnce(&mut eyeson_hard_limit::Flags) {
    move |c| c.warn_before = Some(before)
}

fn key_of(room: &str, started: SystemTime) -> MeetingKey {
    MeetingKey {
        room_id: RoomId::parse(room).unwrap(),
        started_at: Timestamp::from_system_time(started),
    }
}

fn messages_in(app_fake: &FakeEyeson, room: &str) -> usize {
    app_fake
        .messages()
        .iter()
        .filter(|m| m.room == room)
        .count()
}

fn joins_for(fake: &FakeEyeson, room: &str) -> Vec<crate::fake_eyeson::Recorded> {
    let path = format!("/guests/{}", guest_token_of(room));
    fake.guest_joins()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// A meeting whose warning is due at once (deadline in `in_`, more than
/// the warning time ahead of nothing) is warned; waiting for its message
/// proves the warner has run a claim since the meeting was tracked.
async fn control_meeting_is_warned(app: &TestApp, room: &str, in_: Duration) {
    app.meeting_starts(room, start_for_deadline_in(in_)).await;
    wait_until(
        &format!("{room} is warned"),
        Duration::from_secs(10),
        || async { messages_in(&app.fake, room) == 1 },
    )
    .await;
}

#[tokio::test]
async fn a_meeting_is_warned_once_before_its_deadline_with_the_exact_calls() {
    let app = spawn_app_with(warn(Duration::from_secs(2))).await;
    let started = start_for_deadline_in(Duration::from_secs(3));
    app.meeting_starts("room-w", started).await;
    app.wait_for_state("room-w", started, "shut_down").await;
    let deadline = started + LIMIT;

    let joins = app.fake.guest_joins();
    assert_eq!(joins.len(), 1, "one guest join");
    assert_eq!(joins[0].path, "/guests/gt-room-w");
    assert_eq!(joins[0].status, 201);
    assert_eq!(
        joins[0].form,
        [("name".to_owned(), "Meeting limit".to_owned())]
    );
    assert_eq!(
        joins[0].authorization, None,
        "the API key never goes with a guest call"
    );
    let sent: Vec<_> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages"))
        .collect();
    assert_eq!(sent.len(), 1, "one message");
    // The access key the one guest join was given.
    let keys = app.fake.access_keys("room-w");
    assert_eq!(keys.len(), 1, "one access key handed out");
    assert_eq!(sent[0].path, format!("/rooms/{}/messages", keys[0]));
    assert_eq!(sent[0].authorization, None);
    assert_eq!(
        sent[0].form,
        [
            ("type".to_owned(), "chat".to_owned()),
            (
                "content".to_owned(),
                "This meeting ends in 2 seconds.".to_owned()
            )
        ]
    );
    let messages = app.fake.messages();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].at >= deadline - Duration::from_secs(2),
        "warned before the warning time"
    );
    assert!(messages[0].at < deadline, "warned after the deadline");
    // Then the meeting was shut down, after the warning.
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].answered_at >= messages[0].at);
    assert_eq!(
        app.store
            .warning_for_tests(&key_of("room-w", started))
            .await
            .unwrap(),
        Some((
            Some("sent".into()),
            Some(Timestamp::from_system_time(deadline).0)
        ))
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("hard_limit_warnings_total{outcome=\"sent\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_warning_sent_is_not_sent_again_after_a_restart() {
    let before = Duration::from_secs(30);
    let app = spawn_app_with(warn(before)).await;
    let started = start_for_deadline_in(Duration::from_secs(20));
    app.meeting_starts("room-r", started).await;
    wait_until("room-r is warned", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-r") == 1
    })
    .await;
    let (fake, database, dir) = app.stop().await;
    let app = spawn_on(fake, database, dir, warn(before)).await;
    control_meeting_is_warned(&app, "room-control", Duration::from_secs(20)).await;
    assert_eq!(
        messages_in(&app.fake, "room-r"),
        1,
        "warned again after the restart"
    );
    assert_eq!(joins_for(&app.fake, "room-r").len(), 1);
}

#[tokio::test]
async fn a_moved_deadline_rearms_the_warning_and_a_far_one_waits() {
    let before = Duration::from_secs(2);
    let app = spawn_app_with(warn(before)).await;
    let started = start_for_deadline_in(Duration::from_millis(2_500));
    let key = key_of("room-x", started);
    app.meeting_starts("room-x", started).await;
    wait_until("the first warning", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-x") == 1
    })
    .await;
    // Extended by 3 s (as an operator would): a second warning at the new
    // deadline - 2 s. A delivery for another meeting wakes the warner (an
    // extension wakes it the same way).
    let new_deadline = SystemTime::now() + Duration::from_secs(3);
    assert!(app
        .store
        .set_deadline_for_tests(&key, Timestamp::from_system_time(new_deadline))
        .await
        .unwrap());
    app.meeting_starts("room-poke", start_for_deadline_in(Duration::from_secs(600)))
        .await;
    wait_until("the second warning", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-x") == 2
    })
    .await;
    let second = app
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.room == "room-x")
        .nth(1)
        .unwrap();
    assert!(
        second.at + Duration::from_millis(5) >= new_deadline - before,
        "the re-armed warning came before its time"
    );
    // Extended far: no warning now. A control meeting due at once is
    // warned after the extension; by then room-x would have been too.
    assert!(app
        .store
        .set_deadline_for_tests(
            &key,
            Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(3600))
        )
        .await
        .unwrap());
    control_meeting_is_warned(&app, "room-control", Duration::from_secs(1)).await;
    assert_eq!(messages_in(&app.fake, "room-x"), 2);
    assert_eq!(
        joins_for(&app.fake, "room-x").len(),
        2,
        "one join per warning"
    );
}

#[tokio::test]
async fn gone_means_the_meeting_ended_and_is_not_retried() {
    let app = spawn_app_with(warn(Duration::from_secs(30))).await;
    let started = start_for_deadline_in(Duration::from_secs(20));
    // Ended at eyeson without a delivery reaching the service.
    app.meeting_starts("room-g", started).await;
    app.fake.end_meeting("room-g");
    let key = key_of("room-g", started);
    wait_until("the 410 is recorded", Duration::from_secs(10), || async {
        matches!(app.store.warning_for_tests(&key).await.unwrap(), Some((Some(s), _)) if s == "ended")
    })
    .await;
    control_meeting_is_warned(&app, "room-control", Duration::from_secs(20)).await;
    let joins = joins_for(&app.fake, "room-g");
    assert_eq!(joins.len(), 1, "410 is not retried");
    assert_eq!(joins[0].status, 410);
    assert_eq!(messages_in(&app.fake, "room-g"), 0);
}

#[tokio::test]
async fn a_meeting_that_ended_is_never_warned() {
    let app = spawn_app_with(warn(Duration::from_secs(2))).await;
    let started = start_for_deadline_in(Duration::from_millis(3_000));
    app.meeting_starts("room-e", started).await;
    let r = app
        .deliver(&room_update("room-e", Some(started), true))
        .await;
    assert_eq!(r.status(), 204);
    app.fake.end_meeting("room-e");
    // Due 0.2 s after room-e would have been.
    control_meeting_is_warned(&app, "room-control", Duration::from_millis(3_200)).await;
    assert!(
        joins_for(&app.fake, "room-e").is_empty(),
        "an ended meeting was joined"
    );
    assert_eq!(messages_in(&app.fake, "room-e"), 0);
}

#[tokio::test]
async fn a_meeting_without_a_guest_token_is_recorded_as_not_warnable() {
    let app = spawn_app_with(warn(Duration::from_secs(30))).await;
    let started = start_for_deadline_in(Duration::from_secs(20));
    // Not in the fake's room list either: the start-up reconciliation
    // would bring the token from there (as it should).
    let body = json!({"timestamp": unix_now(), "type": "room_update",
        "room": {"id": "room-n", "name": "n", "ready": true, "started_at": iso(started),
                 "shutdown": false}})
    .to_string();
    assert_eq!(app.deliver(&body).await.status(), 204);
    let key = key_of("room-n", started);
    wait_until("recorded as not warnable", Duration::from_secs(10), || async {
        matches!(app.store.warning_for_tests(&key).await.unwrap(), Some((Some(s), _)) if s == "no_guest_token")
    })
    .await;
    assert!(app.fake.guest_joins().is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_access_key() {
    let app = spawn_app_with(warn(Duration::from_secs(30))).await;
    app.fake.script_guest(&[503]);
    app.fake.script_message(&[502]);
    app.meeting_starts("room-t", start_for_deadline_in(Duration::from_secs(20)))
        .await;
    wait_until("warned", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-t") == 1
    })
    .await;
    let joins: Vec<u16> = app.fake.guest_joins().iter().map(|r| r.status).collect();
    assert_eq!(joins, [503, 201]);
    let posts: Vec<(String, u16)> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages"))
        .map(|r| (r.path, r.status))
        .collect();
    // The key of the successful join, both times.
    let keys = app.fake.access_keys("room-t");
    assert_eq!(keys.len(), 1, "one access key handed out");
    let path = format!("/rooms/{}/messages", keys[0]);
    assert_eq!(posts, [(path.clone(), 502), (path, 201)]);
}

/// Two replicas (the real binary) on one PostgreSQL database: 200 meetings
/// due within a second, delivered round-robin; every meeting gets exactly
/// one chat message, and both replicas sent some.
#[tokio::test]
async fn two_replicas_warn_each_meeting_exactly_once() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let extra = [("MAX_DURATION", "30m"), ("WARN_BEFORE", "3s")];
    let replicas: Vec<ServiceProcess> = (0..2)
        .map(|i| {
            ServiceProcess::spawn(
                &fake,
                &db.url,
                "info",
                &format!("replica-{i}"),
                Duration::from_secs(30),
                &extra,
            )
        })
        .collect();
    let http = reqwest::Client::new();
    let n = 200;
    let base = SystemTime::now() + Duration::from_secs(4);
    let mut deliveries = tokio::task::JoinSet::new();
    for i in 0..n {
        let room = format!("pg-room-{i}");
        // Deadlines 4 s to 5 s from now: warnings due 1 s to 2 s from now.
        let started = {
            let t = base + Duration::from_millis(i as u64 * 5) - LIMIT;
            let ms = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
        };
        fake.start_meeting(&room, &iso(started));
        let url = replicas[i % 2].url.clone();
        let http = http.clone();
        let body = room_update(&room, Some(started), false);
        deliveries.spawn(async move {
            let r = http
                .post(format!("{url}/webhook"))
                .header(
                    "x-eyeson-signature",
                    eyeson_api::sign(KEY.as_bytes(), body.as_bytes()),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        });
    }
    while let Some(r) = deliveries.join_next().await {
        r.unwrap();
    }
    wait_until(
        "every meeting is shut down",
        Duration::from_secs(30),
        || async { fake.deletes().iter().filter(|d| d.status == 204).count() == n },
    )
    .await;
    let messages = fake.messages();
    let mut per_room = std::collections::HashMap::new();
    for m in &messages {
        *per_room.entry(m.room.clone()).or_insert(0) += 1;
        assert_eq!(m.content, "This meeting ends in 3 seconds.");
    }
    assert_eq!(per_room.len(), n, "every meeting warned");
    assert!(per_room.values().all(|c| *c == 1), "a meeting warned twice");
    assert_eq!(fake.guest_joins().len(), n, "one guest join per meeting");
    let mut senders = 0;
    for r in &replicas {
        let text = http
            .get(format!("{}/metrics", r.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sent = text
            .lines()
            .find(|l| l.starts_with("hard_limit_warnings_total{outcome=\"sent\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if sent > 0.0 {
            senders += 1;
        }
    }
    assert_eq!(senders, 2, "both replicas sent warnings");
    for mut r in replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

#[tokio::test]
async fn a_dry_run_records_the_warning_and_calls_nothing() {
    let app = spawn_app_with(|c| {
        c.warn_before = Some(Duration::from_secs(30));
        c.dry_run = true;
    })
    .await;
    let started = start_for_deadline_in(Duration::from_secs(20));
    app.meeting_starts("room-d", started).await;
    let key = key_of("room-d", started);
    wait_until("recorded as skipped", Duration::from_secs(10), || async {
        matches!(app.store.warning_for_tests(&key).await.unwrap(), Some((Some(s), _)) if s == "skipped")
    })
    .await;
    assert!(app.fake.guest_joins().is_empty());
    assert!(app.fake.messages().is_empty());
}

fn messages_for(fake: &FakeEyeson, room: &str) -> Vec<crate::fake_eyeson::Message> {
    fake.messages()
        .into_iter()
        .filter(|m| m.room == room)
        .collect()
}

async fn extend(app: &TestApp, room: &str, body: serde_json::Value) -> serde_json::Value {
    let r = app
        .http
        .post(format!("{}/meetings/{room}/extend", app.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// An operator's extension through the admin endpoint re-arms the warning:
/// the second message comes at the new deadline − warn, not earlier and
/// not a minute late (the warner sleeps up to 60 s unless the extension
/// pokes it), and the meeting ends once, at the new deadline.
#[tokio::test]
async fn an_extension_through_the_endpoint_rearms_the_warning() {
    let before = Duration::from_secs(2);
    let app = spawn_app_with(warn(before)).await;
    let started = start_for_deadline_in(Duration::from_millis(2_500));
    app.meeting_starts("room-e", started).await;
    wait_until("the first warning", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-e") == 1
    })
    .await;
    let body = extend(&app, "room-e", json!({"by": "3s"})).await;
    let new_deadline = started + LIMIT + Duration::from_secs(3);
    assert_eq!(body["deadline"], iso(new_deadline));
    wait_until("the re-armed warning", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-e") == 2
    })
    .await;
    let second = &messages_for(&app.fake, "room-e")[1];
    assert!(
        second.at + Duration::from_millis(5) >= new_deadline - before,
        "the re-armed warning came before its time"
    );
    let key = key_of("room-e", started);
    assert_eq!(
        app.store.warning_for_tests(&key).await.unwrap().unwrap().1,
        Some(Timestamp::from_system_time(new_deadline).0),
        "the warning is recorded for the new deadline"
    );
    app.wait_for_state("room-e", started, "shut_down").await;
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1, "one DELETE");
    assert!(
        deletes[0].answered_at >= new_deadline,
        "ended at the new deadline"
    );
    assert_eq!(
        joins_for(&app.fake, "room-e").len(),
        2,
        "one join per warning"
    );
}

/// Two replicas on PostgreSQL: a deadline brought forward on one (the real
/// binary, killed right after) is warned by the other in time, woken by the
/// extension's `NOTIFY` (its warner was asleep for up to a minute).
#[tokio::test]
async fn an_extension_on_one_replica_rearms_the_other_replicas_warner() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let before = Duration::from_secs(2);
    let b = spawn_on(
        FakeEyeson::start(KEY).await,
        db.url.clone(),
        None,
        warn(before),
    )
    .await;
    let a = ServiceProcess::spawn(
        &b.fake,
        &db.url,
        "info",
        "replica-a",
        Duration::from_secs(30),
        &[("MAX_DURATION", "30m"), ("WARN_BEFORE", "2s")],
    );
    let started = start_for_deadline_in(Duration::from_secs(600));
    b.meeting_starts("room-pe", started).await;
    // The warners have looked since, and found nothing due for ten minutes.
    control_meeting_is_warned(&b, "room-control", Duration::from_secs(1)).await;
    let until = SystemTime::now() + Duration::from_secs(3);
    let until = SystemTime::UNIX_EPOCH
        + Duration::from_millis(
            until
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        );
    let r = b
        .http
        .post(format!("{}/meetings/room-pe/extend", a.admin))
        .json(&json!({"until": iso(until)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SIGKILL: the extension is committed; nothing of `a` remains.
    let mut child = a.child;
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(
        "the other replica warns",
        Duration::from_secs(10),
        || async { messages_in(&b.fake, "room-pe") == 1 },
    )
    .await;
    let sent = &messages_for(&b.fake, "room-pe")[0];
    assert!(
        sent.at + Duration::from_millis(5) >= until - before,
        "warned before its time"
    );
    b.wait_for_state("room-pe", started, "shut_down").await;
    let deletes: Vec<_> = b
        .fake
        .deletes()
        .into_iter()
        .filter(|d| d.path == "/rooms/room-pe")
        .collect();
    assert_eq!(deletes.len(), 1, "one DELETE");
    assert_eq!(messages_in(&b.fake, "room-pe"), 1, "warned once");
}

/// A locked API key (423) may be unlocked before the deadline: the warning
/// is deferred (one call per claim, spaced by `--retry-backoff`), not failed.
#[tokio::test]
async fn a_locked_key_defers_the_warning() {
    let backoff = Duration::from_millis(300);
    let app = spawn_app_with(|c| {
        c.warn_before = Some(Duration::from_secs(30));
        c.retry_backoff = backoff;
    })
    .await;
    app.fake.script_guest(&[423, 423]);
    app.meeting_starts("room-l", start_for_deadline_in(Duration::from_secs(20)))
        .await;
    wait_until("warned once unlocked", Duration::from_secs(10), || async {
        messages_in(&app.fake, "room-l") == 1
    })
    .await;
    let joins = app.fake.guest_joins();
    let statuses: Vec<u16> = joins.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [423, 423, 201], "one call per claim");
    for pair in joins.windows(2) {
        let gap = pair[1].answered_instant - pair[0].answered_instant;
        assert!(gap >= backoff - Duration::from_millis(50), "{gap:?}");
    }
}
