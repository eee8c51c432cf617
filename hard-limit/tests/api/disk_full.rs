//! A full disk on SQLite (`PRAGMA max_page_count`, no root needed): every
//! acknowledged delivery is in the file after a restart, a delivery that
//! could not be committed is answered 503, and the service recovers once
//! there is room again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eyeson_hard_limit::store_handle::Store;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::helpers::*;

/// Delivers every body (32 at a time); returns the indexes answered 204.
/// Any answer but 204 and 503 fails the test.
async fn deliver_all(app: &TestApp, bodies: &[String]) -> BTreeSet<usize> {
    let slots = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for (i, body) in bodies.iter().enumerate() {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let req = app
            .http
            .post(format!("{}/webhook", app.url))
            .header(
                "x-eyeson-signature",
                eyeson_api::sign(KEY.as_bytes(), body.as_bytes()),
            )
            .body(body.clone());
        tasks.spawn(async move {
            let status = tokio::time::timeout(Duration::from_secs(20), req.send())
                .await
                .expect("answered within 20 s")
                .expect("service answers")
                .status()
                .as_u16();
            drop(permit);
            (i, status)
        });
    }
    let mut acked = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (i, status) = r.unwrap();
        match status {
            204 => {
                acked.insert(i);
            }
            503 => {}
            other => panic!("delivery {i} answered {other}"),
        }
    }
    acked
}

/// Rows of the file, read by a fresh connection after the service stopped.
async fn rows_in_file(database: &str) -> Vec<(String, i64, String)> {
    let store = Store::connect(database).await.unwrap();
    let Some(s) = store.sqlite() else {
        unreachable!()
    };
    let rows = s.rows_for_tests().await.unwrap();
    store.close().await;
    rows
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn a_full_disk_never_loses_an_acknowledged_delivery_and_recovers() {
    let app = spawn_app().await;
    let Some(store) = app.store.sqlite().cloned() else {
        unreachable!("tests run on SQLite")
    };
    let started = start_for_deadline_in(Duration::from_secs(900));
    let starts = |range: std::ops::Range<usize>| -> Vec<(String, String)> {
        range
            .map(|i| {
                let room = format!("full-{i:04}-{}", "x".repeat(40));
                let body = room_update(&room, Some(started), false);
                (room, body)
            })
            .collect()
    };
    // Some meetings before the disk fills.
    let before = starts(0..600);
    let bodies: Vec<String> = before.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(deliver_all(&app, &bodies).await.len(), before.len());

    // Room for a few more pages only.
    store.limit_pages_for_tests(store.page_count().await.unwrap() + 2);
    let during = starts(600..1200);
    let mut bodies: Vec<String> = during.iter().map(|(_, b)| b.clone()).collect();
    // Shutdowns of meetings known before: updates, not only inserts (an
    // update that meets the full disk rolls back only itself, an insert
    // the whole transaction: both must be handled).
    let ends: Vec<String> = before
        .iter()
        .map(|(room, _)| room_update(room, Some(started), true))
        .collect();
    bodies.extend(ends.iter().cloned());
    // Meetings due at once: the scheduler claims them and calls DELETE
    // while the disk is full.
    let due_start = start_for_deadline_ago(Duration::from_secs(1));
    let due: Vec<String> = (0..100).map(|i| format!("due-{i:03}")).collect();
    for room in &due {
        app.fake.start_meeting(room, &iso(due_start));
    }
    let due_bodies: Vec<String> = due
        .iter()
        .map(|room| room_update(room, Some(due_start), false))
        .collect();
    let acked_due = deliver_all(&app, &due_bodies).await;
    let acked_during = deliver_all(&app, &bodies).await;
    assert!(
        acked_during.len() < bodies.len(),
        "the disk never filled: every delivery was acknowledged"
    );

    // Room again: every new delivery is acknowledged (eyeson retries a
    // 503; the first may still meet the full disk, so a few tries each).
    store.limit_pages_for_tests(1 << 30);
    let after = starts(1200..1400);
    let bodies: Vec<String> = after.iter().map(|(_, b)| b.clone()).collect();
    let mut missing: BTreeSet<usize> = (0..bodies.len()).collect();
    for _ in 0..3 {
        let retry: Vec<String> = missing.iter().map(|&i| bodies[i].clone()).collect();
        let idx: Vec<usize> = missing.iter().copied().collect();
        for k in deliver_all(&app, &retry).await {
            missing.remove(&idx[k]);
        }
        if missing.is_empty() {
            break;
        }
    }
    assert!(
        missing.is_empty(),
        "{} deliveries still refused after the disk has room again",
        missing.len()
    );

    let (fake, database, _dir) = app.stop().await;
    let rows = rows_in_file(&database).await;
    // A DELETE only for a meeting the file holds: never for one that lived
    // only in a transaction that did not commit.
    for d in fake.deletes() {
        let room = d.path.trim_start_matches("/rooms/");
        assert!(
            rows.iter()
                .any(|(r, s, _)| r == room && *s == millis(due_start)),
            "DELETE for {room}, which is not in the file"
        );
    }
    for &i in &acked_due {
        assert!(
            rows.iter()
                .any(|(r, s, _)| *r == due[i] && *s == millis(due_start)),
            "acknowledged {} is not in the file",
            due[i]
        );
    }
    let state = |room: &str| {
        rows.iter()
            .find(|(r, s, _)| r == room && *s == millis(started))
            .map(|(_, _, st)| st.clone())
    };
    let mut lost = Vec::new();
    for (room, _) in &before {
        if state(room).is_none() {
            lost.push(room.clone());
        }
    }
    for &i in &acked_during {
        if i < during.len() {
            if state(&during[i].0).is_none() {
                lost.push(during[i].0.clone());
            }
        } else {
            let room = &before[i - during.len()].0;
            if state(room).as_deref() != Some("ended") {
                lost.push(format!("end of {room}"));
            }
        }
    }
    for (room, _) in &after {
        if state(room).is_none() {
            lost.push(room.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged deliveries are not in the file after a restart (of {} rows), e.g. {:?}",
        lost.len(),
        rows.len(),
        &lost[..lost.len().min(3)]
    );
}
