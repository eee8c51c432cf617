//! Stalled clients: slow or stopped headers, a body that never finishes,
//! idle keep-alive connections. They are closed after the configured
//! timeouts, a few hundred of them do not delay a valid webhook, and the
//! number of connections served at once is capped.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

#[tokio::test]
async fn stalled_connections_are_closed_and_do_not_delay_a_webhook() {
    let app = spawn_app_with(|c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.body_read_timeout = Duration::from_secs(1);
        c.keep_alive_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        match i % 3 {
            // Headers that never end.
            0 => s
                .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-")
                .await
                .unwrap(),
            // A body that never ends.
            1 => s
                .write_all(
                    b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\
                      x-eyeson-signature: 00\r\n\r\n{\"timestamp\":",
                )
                .await
                .unwrap(),
            // Connected, silent.
            _ => {}
        }
        stalled.push(s);
    }
    // A valid delivery is answered at once, not after the stalled ones.
    let t = Instant::now();
    let started = start_for_deadline_in(Duration::from_secs(600));
    let r = app
        .deliver(&room_update("room-stall", Some(started), false))
        .await;
    assert_eq!(r.status(), 204);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "a valid webhook waited {:?} behind stalled connections",
        t.elapsed()
    );
    // Every stalled connection is closed by the service (the stalled body
    // answered 408 first), within a few timeouts.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut s) in stalled.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut got = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
                .await
                .is_ok();
            (i, closed, String::from_utf8_lossy(&got).into_owned())
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, closed, got) = r.unwrap();
        assert!(closed, "stalled connection {i} still open after 5 s");
        if i % 3 == 1 {
            assert!(got.starts_with("HTTP/1.1 408"), "{i}: {got:?}");
        }
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(|c| {
        c.max_connections = 4;
        c.keep_alive_timeout = Duration::from_secs(1);
        c.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A fresh client: accepted only once an idle connection was closed.
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "served at once: the cap of 4 connections was not applied ({:?})",
        t.elapsed()
    );
    drop(idle);
}

/// The admin listener has the same limits, with a cap of its own: idle
/// connections to it are closed after the timeout, and while its slots
/// are taken the public listener still answers at once (and the other
/// way round, a flood on the public port cannot lock operators out).
#[tokio::test]
async fn the_admin_listener_has_the_same_limits_and_its_own_cap() {
    let app = spawn_app_with(|c| {
        c.max_connections = 2;
        c.keep_alive_timeout = Duration::from_secs(1);
        c.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let admin = app.admin.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(&admin).await.unwrap());
    }
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the public port waited for the admin cap"
    );
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/meetings", app.admin))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "served at once: the cap of 2 admin connections was not applied ({:?})",
        t.elapsed()
    );
    // The idle ones were closed by the service, not left open.
    for mut s in idle {
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .is_ok();
        assert!(closed, "an idle admin connection stayed open");
    }
}
