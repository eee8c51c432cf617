//! A background task that ends or panics (injected with the test-only
//! fault hook): `/healthz` turns 503 at once, the service finishes what it
//! can and stops with an error naming the task; the binary exits non-zero.

use std::time::{Duration, Instant};

use eyeson_hard_limit::app::{StartError, TestHooks};
use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::fault::Faults;
use eyeson_hard_limit::Application;

use crate::helpers::*;

async fn health(http: &reqwest::Client, url: &str) -> Option<u16> {
    let r = http.get(format!("{url}/healthz")).send().await.ok()?;
    Some(r.status().as_u16())
}

async fn kill_task(task: &str) {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let faults = Faults::arm(task);
    let mut config = Flags::new(KEY.parse().unwrap(), fake.url().parse().unwrap(), database);
    config.reconcile_every = Duration::from_secs(3600);
    config.max_duration = LIMIT;
    // A short lease: the shutdown call left hanging below is cut short
    // after 3 s, so the service stops soon after the fault.
    config.lease = Duration::from_secs(4);
    // The warner runs too (the busy meeting below is past its deadline:
    // nothing to warn).
    config.warn_before = Some(Duration::from_secs(5));
    // And the forwarder (to a port where nothing listens: it retries).
    config.forward_to = Some("http://127.0.0.1:9/eyeson-hook".parse().unwrap());
    let hooks = TestHooks {
        faults: faults.clone(),
        ..TestHooks::default()
    };
    let app = Application::build_with(config.try_into().unwrap(), hooks)
        .await
        .unwrap();
    let url = format!("http://{}", app.local_addr());
    let run = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let http = reqwest::Client::new();
    assert_eq!(health(&http, &url).await, Some(200));

    // Keep the scheduler busy: a due meeting whose DELETE hangs, so the
    // service is still finishing it (and answering) after the fault.
    let started = start_for_deadline_ago(Duration::from_secs(1));
    fake.start_meeting("busy", &iso(started));
    fake.script_delete("busy", &[0]);
    let body = room_update("busy", Some(started), false);
    let sig = eyeson_api::sign(KEY.as_bytes(), body.as_bytes());
    let post = |body: String, sig: String| {
        http.post(format!("{url}/webhook"))
            .header("x-eyeson-signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(post(body, sig).await.unwrap().status(), 204);
    wait_until(
        "the DELETE is in flight",
        Duration::from_secs(10),
        || async { !fake.deletes().is_empty() },
    )
    .await;

    faults.fire();
    let fired = Instant::now();
    if task != "scheduler" {
        // The scheduler still finishes its call in flight: meanwhile the
        // service answers, and says it is not healthy.
        wait_until("/healthz turns 503", Duration::from_secs(2), || async {
            health(&http, &url).await == Some(503)
        })
        .await;
        assert!(fired.elapsed() < Duration::from_secs(2));
        if task == "ingest-writer" {
            let body = room_update(
                "later",
                Some(start_for_deadline_in(Duration::from_secs(600))),
                false,
            );
            let sig = eyeson_api::sign(KEY.as_bytes(), body.as_bytes());
            let status = post(body, sig).await.map(|r| r.status().as_u16());
            assert!(
                !matches!(status, Ok(204)),
                "a delivery was acknowledged with no writer to commit it"
            );
        }
    }
    let result = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the service stops after a task died")
        .expect("run does not panic");
    match result {
        Err(StartError::TaskEnded { task: t, how }) => {
            let expected = match task {
                "ingest-writer" => "webhook writer",
                "outcome-writer" => "scheduler",
                "warning-writer" => "warner",
                "forward-writer" => "forwarder",
                other => other,
            };
            assert_eq!(t, expected);
            if !task.ends_with("-writer") || task == "ingest-writer" {
                assert!(how.contains("panicked"), "{how}");
            }
        }
        other => panic!("expected TaskEnded for {task}, got {other:?}"),
    }
    assert!(
        health(&http, &url).await.is_none(),
        "the service stopped listening"
    );
}

#[tokio::test]
async fn a_dead_scheduler_stops_the_service() {
    kill_task("scheduler").await;
}

#[tokio::test]
async fn a_dead_reconciler_stops_the_service() {
    kill_task("reconciler").await;
}

#[tokio::test]
async fn a_dead_webhook_writer_stops_the_service() {
    kill_task("ingest-writer").await;
}

#[tokio::test]
async fn a_dead_outcome_writer_stops_the_service() {
    kill_task("outcome-writer").await;
}

#[tokio::test]
async fn a_dead_warner_stops_the_service() {
    kill_task("warner").await;
}

#[tokio::test]
async fn a_dead_warning_writer_stops_the_service() {
    kill_task("warning-writer").await;
}

#[tokio::test]
async fn a_dead_forwarder_stops_the_service() {
    kill_task("forwarder").await;
}

#[tokio::test]
async fn a_dead_forward_writer_stops_the_service() {
    kill_task("forward-writer").await;
}

#[tokio::test]
async fn the_binary_exits_non_zero_when_a_task_dies() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let mut p = ServiceProcess::spawn(
        &fake,
        &database,
        "info",
        "faulty",
        Duration::from_secs(20),
        &[("HARD_LIMIT_INJECT_FAULT", "reconciler")],
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running 20 s after its reconciler died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "exit non-zero: {status:?}");
    let logs = p.logs.lock().unwrap().join("\n");
    assert!(logs.contains("reconciler"), "{logs}");
}
