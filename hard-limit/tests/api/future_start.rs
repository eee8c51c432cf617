//! A meeting "started" in the future, as a store written before such starts
//! were refused may hold: it is forgotten by the chores, so it cannot shield
//! the room's later meetings from their limit forever. Both engines.

use std::time::Duration;

use eyeson_hard_limit::domain::{MeetingKey, Plan, RoomId, Timestamp};

use crate::helpers::*;
use crate::pg::PgDb;

async fn a_future_row_shields_nothing(app: TestApp) {
    let far = Timestamp(253_402_300_000_000); // year 9999
    let key = MeetingKey {
        room_id: RoomId::parse("room-9999").unwrap(),
        started_at: far,
    };
    let plan = Plan::Track {
        key,
        deadline: far.plus(LIMIT),
        guest_token: None,
    };
    app.store.apply(&[plan], far).await.unwrap();
    wait_until(
        "the future meeting is forgotten",
        Duration::from_secs(10),
        || async { app.meetings().await.is_empty() },
    )
    .await;
    // A due meeting of the room is shut down, not skipped.
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("room-9999", started).await;
    app.wait_for_state("room-9999", started, "shut_down").await;
    app.stop().await;
}

#[tokio::test]
async fn a_future_meeting_is_forgotten_sqlite() {
    let app = spawn_app_with(|c| c.reconcile_every = Duration::from_millis(200)).await;
    a_future_row_shields_nothing(app).await;
}

#[tokio::test]
async fn a_future_meeting_is_forgotten_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let app = spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, |c| {
        c.reconcile_every = Duration::from_millis(200)
    })
    .await;
    a_future_row_shields_nothing(app).await;
}
