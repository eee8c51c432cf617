//! The REST client's `GET /rooms/{room_id}/users?online=true` against the
//! sandbox: who is online, gone rooms, and failures that must never read as
//! "nobody is here".

use eyeson_hard_limit::domain::RoomId;
use eyeson_hard_limit::eyeson::{ApiError, EyesonClient, Participants};
use eyeson_sandbox::script::Fault;

use crate::fake_eyeson::FakeEyeson;

const KEY: &str = "participants-test-key";

async fn client(fake: &FakeEyeson) -> EyesonClient {
    EyesonClient::new(fake.url().parse().unwrap(), KEY.parse().unwrap()).unwrap()
}

fn names(p: Participants) -> Vec<String> {
    match p {
        Participants::Online(list) => {
            let mut names: Vec<String> = list.into_iter().map(|p| p.name).collect();
            names.sort();
            names
        }
        Participants::Gone => panic!("the room reads as gone"),
    }
}

#[tokio::test]
async fn online_participants_follow_the_call() {
    let fake = FakeEyeson::start(KEY).await;
    let client = client(&fake).await;
    let room = RoomId::parse("standup").unwrap();
    fake.start_meeting("standup", "2026-12-06T10:00:00Z");
    fake.bot("standup", "Ada", true);
    fake.bot("standup", "Recorder", true);
    let online = client.online_participants(&room).await.unwrap();
    assert_eq!(names(online), ["Ada", "Recorder"]);
    fake.bot("standup", "Ada", false);
    let online = client.online_participants(&room).await.unwrap();
    assert_eq!(names(online), ["Recorder"]);
    let asked = fake.calls("GET", "/rooms/standup/users");
    assert!(!asked.is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn an_unknown_room_is_gone() {
    let fake = FakeEyeson::start(KEY).await;
    let client = client(&fake).await;
    let room = RoomId::parse("never-held").unwrap();
    assert_eq!(
        client.online_participants(&room).await.unwrap(),
        Participants::Gone
    );
}

#[tokio::test]
async fn failures_are_errors_never_an_empty_meeting() {
    let fake = FakeEyeson::start(KEY).await;
    let client = client(&fake).await;
    let room = RoomId::parse("board").unwrap();
    fake.start_meeting("board", "2026-12-06T10:00:00Z");
    fake.bot("board", "Grace", true);
    fake.script_users(
        "board",
        [
            Fault::Status(429),
            Fault::Status(503),
            Fault::Cut,
            Fault::Answer(200, String::new()),
            Fault::Answer(200, r#"{"users": []}"#.into()),
        ],
    );
    match client.online_participants(&room).await {
        Err(ApiError::Throttled(Some(_))) => {}
        other => panic!("429 with Retry-After: {other:?}"),
    }
    let e = client.online_participants(&room).await.unwrap_err();
    assert!(
        matches!(e, ApiError::Status(503)) && e.is_retryable(),
        "{e:?}"
    );
    for what in ["a cut answer", "an empty answer", "not a list"] {
        match client.online_participants(&room).await {
            Err(ApiError::Decode(_) | ApiError::Transport(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // Unscripted again: the meeting as it is.
    assert_eq!(
        names(client.online_participants(&room).await.unwrap()),
        ["Grace"]
    );
}

#[tokio::test]
async fn an_entry_that_does_not_read_still_counts() {
    let fake = FakeEyeson::start(KEY).await;
    let client = client(&fake).await;
    let room = RoomId::parse("kiosk").unwrap();
    fake.start_meeting("kiosk", "2026-12-06T10:00:00Z");
    fake.script_users(
        "kiosk",
        [Fault::Answer(
            200,
            r#"[{"id": 7, "name": "Kiosk"}, "garbled", {"id": "u2", "name": null}]"#.into(),
        )],
    );
    match client.online_participants(&room).await.unwrap() {
        Participants::Online(list) => {
            assert_eq!(list.len(), 3, "{list:?}");
            assert_eq!((list[0].id.as_str(), list[0].name.as_str()), ("7", "Kiosk"));
            assert_eq!((list[1].id.as_str(), list[1].name.as_str()), ("", ""));
            assert_eq!(list[2].id, "u2");
        }
        Participants::Gone => panic!("gone"),
    }
}

/// A check that starts an alone clock wakes the scheduler: the alone
/// deadline it writes (here 2 s ahead) comes long before anything else the
/// scheduler sleeps until (the 30-minute deadline, its one-minute poll),
/// and nothing else happens meanwhile that could wake it.
#[tokio::test]
async fn an_alone_deadline_sooner_than_the_schedulers_sleep_is_kept() {
    use crate::helpers::*;
    use std::time::{Duration, Instant, SystemTime};
    let after = Duration::from_secs(2);
    let app = spawn_app_with(move |c| {
        c.alone_after = Some(after);
        c.presence_every = Duration::from_secs(1);
    })
    .await;
    let started = SystemTime::now() - Duration::from_secs(60);
    app.fake.start_meeting("lone", &iso(started));
    app.fake.bot("lone", "ada", true);
    app.fake.bot("lone", "bob", true);
    let r = app
        .deliver(&room_update("lone", Some(started), false))
        .await;
    assert_eq!(r.status(), 204);
    // Checked (two participants) and the scheduler asleep again.
    wait_until("a first check", Duration::from_secs(10), || async {
        !app.fake.calls("GET", "/rooms/lone/users").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = Instant::now();
    app.fake.bot("lone", "bob", false);
    wait_until(
        "the alone end, within alone_after + two check periods",
        after + Duration::from_secs(4),
        || async { app.fake.deletes().len() == 1 },
    )
    .await;
    assert!(left.elapsed() >= after, "ended before alone_after");
    app.wait_for_state("lone", started, "shut_down").await;
}

/// Checks that cannot keep up (10 meetings, one check a second, each due
/// every second) show in `hard_limit_presence_overdue_seconds`.
#[tokio::test]
async fn checks_behind_show_in_the_overdue_metric() {
    use crate::helpers::*;
    use std::time::{Duration, SystemTime};
    let app = spawn_app_with(|c| {
        c.alone_after = Some(Duration::from_secs(3600));
        c.presence_every = Duration::from_secs(1);
        c.presence_rate = 1;
    })
    .await;
    let started = SystemTime::now() - Duration::from_secs(60);
    for i in 0..10 {
        app.meeting_starts(&format!("busy-{i}"), started).await;
    }
    let overdue = || async {
        app.metrics()
            .await
            .lines()
            .find(|l| l.starts_with("hard_limit_presence_overdue_seconds "))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        "the overdue metric shows checks 3 s late",
        Duration::from_secs(15),
        || async { overdue().await >= 3.0 },
    )
    .await;
}
