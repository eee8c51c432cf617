//! Every rejection is counted in /metrics by reason.
//!
//! A test binary of its own: the metrics recorder is process-wide, so exact
//! counts need a process where nothing else delivers webhooks.

#[path = "api/fake_eyeson.rs"]
mod fake_eyeson;
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use helpers::*;
use serde_json::json;

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn every_delivery_is_counted_by_outcome_and_reason() {
    let app = spawn_app().await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let good = room_update("room-1", Some(started), false);
    let wrong = eyeson_api::sign(b"nope", good.as_bytes());

    assert_eq!(app.deliver(&good).await.status(), 204);
    assert_eq!(app.deliver(&good).await.status(), 204);
    assert_eq!(
        app.deliver(&room_update("room-2", None, false))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.deliver(&room_update("room-1", None, true))
            .await
            .status(),
        204
    );
    let other = json!({"timestamp": unix_now(), "type": "recording_update"}).to_string();
    assert_eq!(app.deliver(&other).await.status(), 204);
    assert_eq!(app.deliver_signed(&good, None).await.status(), 401);
    assert_eq!(app.deliver_signed(&good, Some(&wrong)).await.status(), 401);
    assert_eq!(app.deliver_signed(&good, Some(&wrong)).await.status(), 401);
    assert_eq!(app.deliver(&"x".repeat(70_000)).await.status(), 413);
    assert_eq!(app.deliver("{\"type\":1}").await.status(), 400);
    let stale = room_update_at(unix_now() - 3600, "room-3", Some(started), false);
    assert_eq!(app.deliver(&stale).await.status(), 401);
    // A client that aborts mid-body: unreadable, not too large.
    {
        use tokio::io::AsyncWriteExt;
        let addr = app.url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"timestamp\":",
        )
        .await
        .unwrap();
        s.flush().await.unwrap();
    }
    wait_until(
        "the aborted delivery is counted",
        Duration::from_secs(10),
        || async {
            let text = app.metrics().await;
            let rejected = |reason: &str| {
                counter(
                    &text,
                    &format!(
                        "hard_limit_webhook_deliveries_total{{outcome=\"rejected\",reason=\"{reason}\"}}"
                    ),
                )
            };
            rejected("too_large") + rejected("unreadable") == 2
        },
    )
    .await;

    let text = app.metrics().await;
    let d = |outcome: &str, reason: &str| {
        counter(
            &text,
            &format!(
                "hard_limit_webhook_deliveries_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(d("accepted", "tracked"), 1, "{text}");
    assert_eq!(d("accepted", "duplicate"), 1);
    assert_eq!(d("accepted", "ended"), 1);
    assert_eq!(d("ignored", "not_started"), 1);
    assert_eq!(d("ignored", "other_type"), 1);
    assert_eq!(d("rejected", "missing_signature"), 1);
    assert_eq!(d("rejected", "bad_signature"), 2);
    assert_eq!(d("rejected", "too_large"), 1);
    assert_eq!(d("rejected", "unreadable"), 1);
    assert_eq!(d("rejected", "malformed"), 1);
    assert_eq!(d("rejected", "stale"), 1);
    assert_eq!(counter(&text, "hard_limit_meetings{state=\"ended\"}"), 1);
    assert_eq!(counter(&text, "hard_limit_meetings{state=\"running\"}"), 0);

    shutdown_outcomes_and_lateness_are_recorded().await;
}

/// Run after the delivery counts (one test: the recorder is shared).
async fn shutdown_outcomes_and_lateness_are_recorded() {
    let app = spawn_app().await;
    app.fake.script_delete("room-403", &[403]);
    let s1 = start_for_deadline_in(Duration::from_millis(200));
    let s2 = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-ok", s1).await;
    app.meeting_starts("room-403", s2).await;
    app.wait_for_state("room-ok", s1, "shut_down").await;
    app.wait_for_state("room-403", s2, "failed").await;
    let text = app.metrics().await;
    assert_eq!(
        counter(&text, "hard_limit_shutdowns_total{outcome=\"shut_down\"}"),
        1,
        "{text}"
    );
    assert_eq!(
        counter(&text, "hard_limit_shutdowns_total{outcome=\"refused\"}"),
        1
    );
    assert_eq!(
        counter(&text, "hard_limit_enforcement_lateness_seconds_count"),
        1
    );
}
