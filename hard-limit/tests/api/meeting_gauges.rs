//! `hard_limit_meetings{state}` in `/metrics` comes from memory: it follows
//! the service's own writes at once without counting the store, and a
//! recount from the store corrects it. Each case runs on SQLite and on
//! PostgreSQL (skipped when no server answers).

use std::time::Duration;

use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::domain::{MeetingKey, MeetingState, RoomId, Timestamp};
use eyeson_hard_limit::store_handle::Store;

use crate::helpers::*;
use crate::pg::PgDb;

macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(None).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = crate::pg::PgDb::create().await else { return };
                    super::$case(Some(&db)).await;
                }
            )*
        }
    };
}

on_both_engines!(
    the_gauges_follow_tracking_ends_and_shutdowns_without_a_recount,
    a_recount_corrects_rows_written_behind_the_services_back,
    the_periodic_recount_corrects_without_being_asked,
    pruning_takes_finished_meetings_off_the_gauges,
    metrics_answer_from_memory_while_the_store_is_closed,
    due_and_overdue_work_show_in_metrics,
);

async fn spawn(pg: Option<&PgDb>, tweak: impl FnOnce(&mut Flags)) -> TestApp {
    let tweak = |c: &mut Flags| {
        // Only the recounts a case asks for.
        c.recount_every = Duration::from_secs(3600);
        tweak(c);
    };
    match pg {
        Some(db) => spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, tweak).await,
        None => spawn_app_with(tweak).await,
    }
}

/// Waits for the recounts at start (the one before serving; on PostgreSQL
/// also the one after `LISTEN` connects) and returns how many there were.
async fn started_recounts(app: &TestApp, pg: Option<&PgDb>) -> u64 {
    let want = if pg.is_some() { 2 } else { 1 };
    wait_until("the recounts at start", Duration::from_secs(10), || async {
        app.store.gauges().recounts() >= want
    })
    .await;
    app.store.gauges().recounts()
}

/// `hard_limit_meetings{state}` in one scrape.
fn gauge(text: &str, state: &str) -> u64 {
    let series = format!("hard_limit_meetings{{state=\"{state}\"}} ");
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .collect();
    assert_eq!(values.len(), 1, "one {series}in\n{text}");
    values[0]
}

/// All six gauges, in `MeetingState::ALL` order.
async fn gauges(app: &TestApp) -> [u64; 6] {
    let text = app.metrics().await;
    MeetingState::ALL.map(|s| gauge(&text, s.as_str()))
}

/// Waits until the scraped gauges are `want` (in `MeetingState::ALL`
/// order: running, stopping, shut_down, ended, skipped, failed).
async fn wait_for_gauges(app: &TestApp, what: &str, want: [u64; 6]) {
    let mut last = [0; 6];
    let ok = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            last = gauges(app).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    assert!(ok, "{what}: gauges {last:?}, expected {want:?}");
}

/// Rows inserted straight into the store, past the service.
async fn insert_behind_the_back(store: &Store, rows: &[(&str, MeetingState)]) {
    let now = Timestamp(unix_now() * 1000);
    let rows: Vec<_> = rows
        .iter()
        .map(|(room, state)| {
            let key = MeetingKey {
                room_id: RoomId::parse(room).unwrap(),
                started_at: Timestamp(now.0 - 60_000),
            };
            (key, Timestamp(now.0 + 3_600_000), *state)
        })
        .collect();
    store.bulk_insert(&rows, now).await.unwrap();
}

async fn the_gauges_follow_tracking_ends_and_shutdowns_without_a_recount(pg: Option<&PgDb>) {
    let app = spawn(pg, |c| {
        c.lease = Duration::from_secs(2); // retry budget: 1 s per claim
        c.retry_backoff = Duration::from_millis(300);
    })
    .await;
    let recounts = started_recounts(&app, pg).await;
    assert_eq!(gauges(&app).await, [0; 6]);

    let later = start_for_deadline_in(Duration::from_secs(600));
    app.meeting_starts("g-later", later).await;
    app.meeting_starts("g-other", later).await;
    wait_for_gauges(&app, "two tracked", [2, 0, 0, 0, 0, 0]).await;

    // Ended by webhook.
    let r = app.deliver(&room_update("g-other", None, true)).await;
    assert_eq!(r.status(), 204);
    wait_for_gauges(&app, "one ended by webhook", [1, 0, 0, 1, 0, 0]).await;

    // Shut down by the scheduler.
    let due = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("g-due", due).await;
    app.wait_for_state("g-due", due, "shut_down").await;
    wait_for_gauges(&app, "one shut down", [1, 0, 1, 1, 0, 0]).await;

    // An outage longer than a claim's retry budget: claimed (stopping),
    // deferred (still stopping), claimed again, then shut down.
    app.fake.script_delete("g-outage", &[503; 6]);
    let overdue = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("g-outage", overdue).await;
    wait_for_gauges(&app, "one stopping", [1, 1, 1, 1, 0, 0]).await;
    app.wait_for_state("g-outage", overdue, "shut_down").await;
    assert!(
        app.fake.calls("DELETE", "/rooms/g-outage").len() > 3,
        "more than one claim's worth of attempts"
    );
    wait_for_gauges(&app, "the deferred one shut down", [1, 0, 2, 1, 0, 0]).await;
    assert_eq!(
        app.store.gauges().recounts(),
        recounts,
        "the gauges moved without a recount"
    );
}

async fn a_recount_corrects_rows_written_behind_the_services_back(pg: Option<&PgDb>) {
    let app = spawn(pg, |_| {}).await;
    let recounts = started_recounts(&app, pg).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    app.meeting_starts("r-tracked", started).await;
    wait_for_gauges(&app, "one tracked", [1, 0, 0, 0, 0, 0]).await;
    insert_behind_the_back(
        &app.store,
        &[
            ("r-back-1", MeetingState::Running),
            ("r-back-2", MeetingState::Running),
            ("r-back-3", MeetingState::Failed),
        ],
    )
    .await;
    // A scrape does not count the store: the rows do not show yet.
    for _ in 0..5 {
        assert_eq!(gauges(&app).await, [1, 0, 0, 0, 0, 0]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.store.gauges().request_recount();
    wait_for_gauges(&app, "after a recount", [3, 0, 0, 0, 0, 1]).await;
    assert_eq!(app.store.gauges().recounts(), recounts + 1);
    // The gauges go on from the corrected counts.
    let r = app.deliver(&room_update("r-tracked", None, true)).await;
    assert_eq!(r.status(), 204);
    wait_for_gauges(&app, "then one ended", [2, 0, 0, 1, 0, 1]).await;
}

async fn the_periodic_recount_corrects_without_being_asked(pg: Option<&PgDb>) {
    let app = spawn(pg, |c| c.recount_every = Duration::from_millis(200)).await;
    started_recounts(&app, pg).await;
    insert_behind_the_back(&app.store, &[("p-back", MeetingState::Skipped)]).await;
    wait_for_gauges(&app, "after a periodic recount", [0, 0, 0, 0, 1, 0]).await;
}

async fn pruning_takes_finished_meetings_off_the_gauges(pg: Option<&PgDb>) {
    let app = spawn(pg, |c| {
        c.reconcile_every = Duration::from_millis(200);
        c.webhook_max_age = Duration::ZERO; // so a retention this short is allowed
        c.retention = Duration::from_secs(1);
    })
    .await;
    let recounts = started_recounts(&app, pg).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    app.meeting_starts("pr-kept", started).await;
    app.meeting_starts("pr-gone", started).await;
    let r = app.deliver(&room_update("pr-gone", None, true)).await;
    assert_eq!(r.status(), 204);
    // Ended (eyeson no longer lists it), then pruned once it finished
    // more than the retention ago.
    app.fake.end_meeting("pr-gone");
    wait_for_gauges(&app, "one ended", [1, 0, 0, 1, 0, 0]).await;
    wait_for_gauges(&app, "the ended one pruned", [1, 0, 0, 0, 0, 0]).await;
    assert!(app.state_of("pr-gone", started).await.is_none(), "pruned");
    assert_eq!(
        app.store.gauges().recounts(),
        recounts,
        "pruning counted what it deleted, no recount"
    );
}

async fn metrics_answer_from_memory_while_the_store_is_closed(pg: Option<&PgDb>) {
    let app = spawn(pg, |_| {}).await;
    started_recounts(&app, pg).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    app.meeting_starts("c-1", started).await;
    app.meeting_starts("c-2", started).await;
    wait_for_gauges(&app, "two tracked", [2, 0, 0, 0, 0, 0]).await;
    let r = app.deliver(&room_update("c-2", None, true)).await;
    assert_eq!(r.status(), 204);
    app.store.close().await;
    let t = std::time::Instant::now();
    let r = app
        .http
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The end committed before the store closed; no count could run since.
    assert_eq!(gauge(&text, "running"), 1, "{text}");
    assert_eq!(gauge(&text, "ended"), 1, "{text}");
}

/// Two replicas on one PostgreSQL database: each applies the changes the
/// other publishes (within a second, no recount), and not its own twice.
#[tokio::test]
async fn replicas_follow_each_others_changes_without_a_recount() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = spawn(Some(&db), |_| {}).await;
    let b = spawn(Some(&db), |_| {}).await;
    let recounts_a = started_recounts(&a, Some(&db)).await;
    let recounts_b = started_recounts(&b, Some(&db)).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    a.meeting_starts("rep-1", started).await;
    a.meeting_starts("rep-2", started).await;
    wait_for_gauges(&a, "tracked on A", [2, 0, 0, 0, 0, 0]).await;
    wait_for_gauges(&b, "A's tracking on B", [2, 0, 0, 0, 0, 0]).await;
    let r = b.deliver(&room_update("rep-1", None, true)).await;
    assert_eq!(r.status(), 204);
    wait_for_gauges(&b, "ended on B", [1, 0, 0, 1, 0, 0]).await;
    wait_for_gauges(&a, "B's end on A", [1, 0, 0, 1, 0, 0]).await;
    // Several publishing periods later: nobody applied a change twice.
    tokio::time::sleep(4 * eyeson_hard_limit::cluster::COUNTS_EVERY).await;
    assert_eq!(gauges(&a).await, [1, 0, 0, 1, 0, 0]);
    assert_eq!(gauges(&b).await, [1, 0, 0, 1, 0, 0]);
    assert_eq!(a.store.gauges().recounts(), recounts_a, "no recount on A");
    assert_eq!(b.store.gauges().recounts(), recounts_b, "no recount on B");
}

/// The value of an unlabelled series in one scrape.
fn value(text: &str, name: &str) -> f64 {
    let series = format!("{name} ");
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .collect();
    assert_eq!(values.len(), 1, "one {name} in\n{text}");
    values[0]
}

async fn due_and_overdue_work_show_in_metrics(pg: Option<&PgDb>) {
    // A 4 h limit, so deadlines can lie beyond the hour.
    const LONG: Duration = Duration::from_secs(4 * 3600);
    let start = |in_: Duration| start_for_deadline_in(in_) + LIMIT - LONG;
    let app = spawn(pg, |c| c.max_duration = LONG).await;
    started_recounts(&app, pg).await;
    app.meeting_starts("d-soon", start(Duration::from_secs(1800)))
        .await;
    app.meeting_starts("d-later", start(Duration::from_secs(7200)))
        .await;
    let text = app.metrics().await;
    assert_eq!(
        value(&text, "hard_limit_meetings_due_next_hour"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "hard_limit_overdue_seconds"), 0.0, "{text}");
    assert_eq!(
        value(&text, "hard_limit_background_tasks_ok"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "hard_limit_store_writable"), 1.0, "{text}");

    // A due meeting written behind the scheduler's back (it looks at the
    // store on its own only once a minute): overdue by its age. The last
    // delivery woke the scheduler; if it had not gone back to sleep yet, it
    // claims the row at once, maybe in the middle of the scrape: then write
    // another one, a few times at most.
    let mut shown = None;
    for attempt in 0..5 {
        let now = Timestamp(unix_now() * 1000);
        let key = MeetingKey {
            room_id: RoomId::parse(&format!("d-overdue-{attempt}")).unwrap(),
            started_at: Timestamp(now.0 - 600_000),
        };
        let rows = [(key, Timestamp(now.0 - 90_000), MeetingState::Running)];
        app.store.bulk_insert(&rows, now).await.unwrap();
        let text = app.metrics().await;
        // Claimed before or during this scrape: the row is no longer running.
        let claimed = value(&text, "hard_limit_overdue_seconds") == 0.0
            || value(&text, "hard_limit_meetings_due_next_hour") < 2.0;
        if !claimed {
            shown = Some(text);
            break;
        }
    }
    let text = shown.expect("an overdue meeting never showed in /metrics");
    let overdue = value(&text, "hard_limit_overdue_seconds");
    assert!((90.0..150.0).contains(&overdue), "{overdue}\n{text}");
    assert_eq!(
        value(&text, "hard_limit_meetings_due_next_hour"),
        2.0,
        "{text}"
    );

    // A delivery wakes the scheduler, which claims it: nothing overdue.
    app.meeting_starts("d-wake", start(Duration::from_secs(9000)))
        .await;
    wait_until(
        "the overdue meeting claimed",
        Duration::from_secs(10),
        || async { value(&app.metrics().await, "hard_limit_overdue_seconds") == 0.0 },
    )
    .await;
    assert_eq!(
        value(&app.metrics().await, "hard_limit_meetings_due_next_hour"),
        1.0
    );
}

/// `hard_limit_store_writable` follows the store as `/healthz` does: 0
/// after a failed write while writes are refused, 1 once a probe commits.
#[tokio::test]
async fn the_store_writable_gauge_follows_refused_writes() {
    let app = spawn(None, |_| {}).await;
    let Some(store) = app.store.sqlite().cloned() else {
        unreachable!()
    };
    assert_eq!(
        value(&app.metrics().await, "hard_limit_store_writable"),
        1.0
    );
    store.refuse_writes_for_tests(true);
    let r = app
        .deliver(&room_update(
            "w-1",
            Some(start_for_deadline_in(LIMIT)),
            false,
        ))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        value(&app.metrics().await, "hard_limit_store_writable"),
        0.0
    );
    assert_eq!(
        value(&app.metrics().await, "hard_limit_store_writable"),
        0.0
    );
    store.refuse_writes_for_tests(false);
    assert_eq!(
        value(&app.metrics().await, "hard_limit_store_writable"),
        1.0
    );
}
