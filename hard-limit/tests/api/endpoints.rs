//! The read-only endpoints.

use std::time::Duration;

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

#[tokio::test]
async fn a_room_shows_its_open_meeting_with_cors() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("my room", started).await;
    let r = app
        .http
        .get(format!("{}/meetings/my%20room", app.url))
        .header("origin", "https://meet.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["room_id"], "my room");
    assert_eq!(m["deadline"], iso(started + LIMIT));
    assert_eq!(m["state"], "running");

    let r = app
        .http
        .get(format!("{}/meetings/nobody", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let r = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/meetings/my%20room", app.url),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
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
    use eyeson_hard_limit::store::MeetingStore;
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
