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
        .get(format!("{}/meetings?limit=abc", app.url))
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
