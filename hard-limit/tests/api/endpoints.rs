//! The read-only endpoints.

use std::time::Duration;

use crate::fake_eyeson::guest_token_of;
use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_when_the_store_does() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The header the public endpoint reads the room's guest token from.
const GUEST: &str = "x-eyeson-guest-token";

/// An answer as a client sees it: status, every header but `date` (the
/// clock's), body.
type Answer = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("date"));
    let mut headers: Vec<(String, Vec<u8>)> = r
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// `GET /meetings/{room}` from a meeting page's origin, with `token` in
/// the guest-token header if given.
async fn read_room(app: &TestApp, room: &str, token: Option<&str>) -> Answer {
    let mut req = app
        .http
        .get(format!("{}/meetings/{room}", app.url))
        .header("origin", "https://meet.example.com");
    if let Some(t) = token {
        req = req.header(GUEST, t);
    }
    answer(req.send().await.unwrap()).await
}

/// A start delivery for `room` whose `room` object has no `guest_token`.
fn start_without_token(room: &str, started_at: std::time::SystemTime) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&room_update(room, Some(started_at), false)).unwrap();
    v["room"].as_object_mut().unwrap().remove("guest_token");
    v.to_string()
}

#[tokio::test]
async fn a_room_shows_its_open_meeting_to_its_guest_token_with_cors() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("my room", started).await;
    let (status, headers, body) =
        read_room(&app, "my%20room", Some(&guest_token_of("my room"))).await;
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["room_id"], "my room");
    assert_eq!(m["deadline"], iso(started + LIMIT));
    assert_eq!(m["state"], "running");

    let (status, headers, _) = read_room(&app, "nobody", None).await;
    assert_eq!(status, 404);
    assert!(headers.contains(&("access-control-allow-origin".into(), b"*".to_vec())));
}

/// Guessing room ids reveals nothing: without the room's guest token, or
/// with a wrong one, a live room answers exactly as a room without a
/// meeting (status, headers, body).
#[tokio::test]
async fn without_the_guest_token_a_live_room_answers_as_an_unknown_one() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("standup", started).await;
    let right = guest_token_of("standup");
    let unknown = read_room(&app, "nobody", None).await;
    assert_eq!(unknown.0, 404);
    let wrong_ones = [
        String::new(),
        "wrong".to_owned(),
        right[..right.len() - 1].to_owned(),
        format!("{right}x"),
        right.to_uppercase(),
        guest_token_of("demo"),
    ];
    assert_eq!(read_room(&app, "standup", None).await, unknown, "no token");
    for wrong in &wrong_ones {
        assert_eq!(
            read_room(&app, "standup", Some(wrong)).await,
            unknown,
            "token {wrong:?}"
        );
        assert_eq!(read_room(&app, "nobody", Some(wrong)).await, unknown);
    }
    assert_eq!(read_room(&app, "nobody", Some(&right)).await, unknown);
    // The room's own token still reads it.
    let (status, _, body) = read_room(&app, "standup", Some(&right)).await;
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["deadline"], iso(started + LIMIT));
}

/// A meeting whose deliveries carried no guest token is shown to no one,
/// unless the operator made such meetings public (`--public-deadlines`);
/// a meeting with a token needs it either way.
#[tokio::test]
async fn a_meeting_without_a_guest_token_is_shown_only_with_public_deadlines() {
    for public in [false, true] {
        let app = spawn_app_with(|c| c.public_deadlines = public).await;
        let started = start_for_deadline_in(Duration::from_secs(900));
        // Not started in the fake: its GET /rooms (the reconciler's first
        // read runs beside the test) would give the meeting a token.
        let r = app
            .deliver(&start_without_token("tokenless", started))
            .await;
        assert_eq!(r.status(), 204);
        app.meeting_starts("with-token", started).await;
        app.wait_for_state("tokenless", started, "running").await;
        let unknown = read_room(&app, "nobody", None).await;
        assert_eq!(unknown.0, 404);
        for token in [None, Some("anything")] {
            let got = read_room(&app, "tokenless", token).await;
            if public {
                assert_eq!(got.0, 200, "public, token {token:?}");
                let m: serde_json::Value = serde_json::from_slice(&got.2).unwrap();
                assert_eq!(m["deadline"], iso(started + LIMIT));
            } else {
                assert_eq!(got, unknown, "not public, token {token:?}");
            }
            assert_eq!(
                read_room(&app, "with-token", token).await,
                unknown,
                "public {public}: a meeting with a token needs it"
            );
        }
        let (status, _, _) =
            read_room(&app, "with-token", Some(&guest_token_of("with-token"))).await;
        assert_eq!(status, 200);
    }
}

/// The guest-token header makes a page's request preflighted: the
/// preflight allows it.
#[tokio::test]
async fn the_preflight_allows_the_guest_token_header() {
    let app = spawn_app().await;
    let r = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/meetings/my%20room", app.url),
        )
        .header("origin", "https://meet.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", GUEST)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let h = |name: &str| r.headers()[name].to_str().unwrap().to_ascii_lowercase();
    assert_eq!(h("access-control-allow-origin"), "*");
    assert!(h("access-control-allow-methods").contains("get"));
    assert!(
        h("access-control-allow-headers")
            .split(',')
            .any(|v| v.trim() == GUEST),
        "{}",
        h("access-control-allow-headers")
    );
}

/// The guest token (a credential: it joins the meeting) is never logged,
/// whether it arrives in a delivery or in a read, right or wrong.
#[tokio::test]
async fn the_guest_token_is_never_logged() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let svc = ServiceProcess::spawn(
        &fake,
        &database,
        "debug",
        "guest-token",
        Duration::from_secs(20),
        &[],
    );
    let http = reqwest::Client::new();
    let started = start_for_deadline_in(Duration::from_secs(900));
    fake.start_meeting("secret-room", &iso(started));
    let body = room_update("secret-room", Some(started), false);
    let r = http
        .post(format!("{}/webhook", svc.url))
        .header(
            "x-eyeson-signature",
            eyeson_api::sign(KEY.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let right = guest_token_of("secret-room");
    let wrong = format!("{right}-wrong");
    let read = |token: String| {
        let http = http.clone();
        let url = format!("{}/meetings/secret-room", svc.url);
        async move {
            http.get(url)
                .header(GUEST, token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(read(right.clone()).await, 200);
    assert_eq!(read(wrong.clone()).await, 404);
    let mut child = svc.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = svc.logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains("listening")));
    for line in &logs {
        assert!(
            !line.contains(&right) && !line.contains(&wrong),
            "token logged: {line}"
        );
    }
}

#[tokio::test]
async fn metrics_expose_the_documented_series() {
    let app = spawn_app().await;
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-m", started).await;
    app.wait_for_state("room-m", started, "shut_down").await;
    let text = app.metrics().await;
    for needle in [
        "hard_limit_meetings{state=\"shut_down\"} 1",
        "hard_limit_webhook_deliveries_total{outcome=\"rejected\",reason=\"bad_signature\"}",
        "hard_limit_shutdowns_total{outcome=\"shut_down\"}",
        "hard_limit_enforcement_lateness_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/nope", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(format!("{}/meetings?limit=abc", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_room_path_that_does_not_decode_is_refused_with_cors() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/meetings/%FF", app.url))
        .header("origin", "https://meet.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

/// `/meetings` answers at most 1000 a page (whatever `limit` asks), and
/// links to the next page with a cursor; following the links lists every
/// meeting once.
#[tokio::test]
async fn meetings_are_listed_page_by_page() {
    use eyeson_hard_limit::domain::{MeetingKey, Plan, RoomId, Timestamp};
    let app = spawn_app().await;
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    // 1,005 meetings, many sharing a start (the cursor must break ties).
    let plans: Vec<Plan> = (0..1005)
        .map(|i| {
            let key = MeetingKey {
                room_id: RoomId::parse(&format!("room {i:04}/é")).unwrap(),
                started_at: Timestamp(now.0 - 60_000 - (i % 7) * 1000),
            };
            Plan::Track {
                deadline: key.started_at.plus(LIMIT),
                key,
                guest_token: None,
            }
        })
        .collect();
    app.store.apply(&plans, now).await.unwrap();

    let get = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get(format!("{}/meetings?limit=10000", app.admin)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("link"), "a full page links on");
    let page: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(page.len(), 1000, "limit is capped at 1000");

    let mut seen = std::collections::BTreeSet::new();
    let mut last: Option<(String, String)> = None;
    let mut url = format!("{}/meetings?limit=100", app.admin);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 20, "the links end");
        let r = get(url.clone()).await;
        assert_eq!(r.status(), 200);
        let next = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<serde_json::Value> = r.json().await.unwrap();
        assert!(page.len() <= 100);
        for m in &page {
            let k = (
                m["started_at"].as_str().unwrap().to_owned(),
                m["room_id"].as_str().unwrap().to_owned(),
            );
            if let Some(prev) = &last {
                assert!(
                    k < *prev,
                    "newest first, then room id: {k:?} after {prev:?}"
                );
            }
            assert!(seen.insert(k.clone()), "listed twice: {k:?}");
            last = Some(k);
        }
        let Some(link) = next else { break };
        let target = link
            .split(';')
            .next()
            .unwrap()
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned();
        assert!(link.contains("rel=\"next\""), "{link}");
        url = format!("{}{target}", app.admin);
    }
    assert_eq!(seen.len(), 1005);
    let r = get(format!("{}/meetings?cursor=nonsense", app.admin)).await;
    assert_eq!(r.status(), 400);
}
