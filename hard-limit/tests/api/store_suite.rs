//! The store contract, one suite run against both engines: each case below
//! is a function of `&Store`, and `suite!` makes a `sqlite::` and a
//! `postgres::` test of it (the PostgreSQL ones skip, with one message, when
//! no server answers). PostgreSQL runs with the caller's clock here so the
//! cases can step time; the database-clock path is covered by
//! `postgres_uses_the_database_clock` and the replica tests.

use std::collections::HashSet;
use std::time::Duration;

use eyeson_hard_limit::domain::{
    plan, AloneAfter, DeadlineChange, DeadlineRefused, GuestToken, Limits, MeetingKey,
    MeetingState, Plan, Policy, RoomId, RoomUpdate, Rule, Timestamp, WarningOutcome,
};
use eyeson_hard_limit::store::{
    Applied, Caller, Claim, Closing, DeadlineMoved, ForwardClaim, ForwardRecord, Guard, LimitKind,
    LimitRule, MeetingView, NewForward, Outcome, PgStore, PresenceRecord, RuleChange, RuleChanged,
    WarnClaim, WarnRecord,
};
use eyeson_hard_limit::store_handle::Store;

use crate::pg::PgDb;

const LEASE: Duration = Duration::from_secs(30);

fn policy() -> Policy {
    Policy {
        limits: Limits::new(Duration::from_secs(60)),
        grace: Duration::ZERO,
    }
}

fn key(room: &str, start: i64) -> MeetingKey {
    MeetingKey {
        room_id: RoomId::parse(room).unwrap(),
        started_at: Timestamp(start),
    }
}

fn update(room: &str, start: Option<i64>, shutdown: bool, at: i64) -> Plan {
    plan(
        &RoomUpdate {
            room_id: RoomId::parse(room).unwrap(),
            started_at: start.map(Timestamp),
            shutdown,
            event_time: Timestamp(at),
            guest_token: None,
        },
        &policy(),
    )
}

fn track(room: &str, start: i64) -> Plan {
    update(room, Some(start), false, start)
}

/// A start carrying the room's guest token (`gt-<room>`).
fn track_with_token(room: &str, start: i64) -> Plan {
    plan(
        &RoomUpdate {
            room_id: RoomId::parse(room).unwrap(),
            started_at: Some(Timestamp(start)),
            shutdown: false,
            event_time: Timestamp(start),
            guest_token: GuestToken::parse(&format!("gt-{room}")),
        },
        &policy(),
    )
}

/// Ten seconds before the 60 s deadline.
const WARN: Duration = Duration::from_secs(10);

async fn claim_warnings(store: &Store, now: i64, lease: Duration, owner: &str) -> Vec<WarnClaim> {
    store
        .claim_warnings(Timestamp(now), WARN, lease, owner, 100)
        .await
        .unwrap()
}

fn record(c: &WarnClaim, outcome: WarningOutcome, at: i64, retry_at: Option<i64>) -> WarnRecord {
    WarnRecord {
        key: c.key.clone(),
        deadline: c.deadline,
        attempts: c.attempts,
        outcome,
        at: Timestamp(at),
        retry_at: retry_at.map(Timestamp),
        alone: false,
    }
}

/// A fresh SQLite store (in a temporary directory) or PostgreSQL store (in
/// a fresh database); `None` when PostgreSQL is not reachable.
#[allow(dead_code)] // the second fields keep the database alive
pub(crate) enum Fresh {
    Sqlite(Store, tempfile::TempDir),
    Postgres(Store, PgDb),
}

impl Fresh {
    pub(crate) async fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        Fresh::Sqlite(Store::connect(&url).await.unwrap(), dir)
    }

    pub(crate) async fn postgres() -> Option<Fresh> {
        let db = PgDb::create().await?;
        let store = PgStore::connect_with_caller_clock(&db.url).await.unwrap();
        Some(Fresh::Postgres(Store::from(store), db))
    }

    pub(crate) fn store(&self) -> &Store {
        match self {
            Fresh::Sqlite(s, _) | Fresh::Postgres(s, _) => s,
        }
    }

    pub(crate) async fn close(self) {
        self.store().close().await;
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fresh = super::Fresh::sqlite().await;
                    super::$case(fresh.store()).await;
                    fresh.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fresh) = super::Fresh::postgres().await else { return };
                    super::$case(fresh.store()).await;
                    fresh.close().await;
                }
            )*
        }
    };
}

suite!(
    warnings_are_claimed_once_per_deadline,
    a_moved_deadline_rearms_the_warning,
    a_lapsed_warning_claim_is_claimed_again,
    no_warning_for_an_ended_meeting_or_after_the_deadline,
    a_guest_token_that_arrives_later_makes_a_meeting_warnable,
    concurrent_warning_claimers_never_share_a_meeting,
    tracking_duplicates_and_ends,
    a_late_running_delivery_does_not_resurrect,
    a_newer_start_closes_older_meetings,
    a_claim_carries_what_the_room_knows,
    a_batch_applies_as_its_plans_one_by_one,
    claims_are_leases,
    only_the_lease_holder_records_the_outcome,
    next_wake_is_the_earliest_deadline_or_lease,
    reads_answer_what_was_written,
    close_unlisted_closes_only_old_unlisted_meetings,
    close_unlisted_refuses_to_close_too_many,
    list_pages_with_a_cursor,
    prune_forgets_only_old_finished_meetings,
    forget_future_forgets_only_future_starts_and_cutoffs,
    concurrent_claimers_never_share_a_meeting,
    concurrent_batches_for_the_same_rooms_all_commit,
    only_the_latest_claim_of_an_owner_records_the_outcome,
    a_deferred_shutdown_is_claimed_again_at_its_retry_time,
    a_null_start_shutdown_spares_a_meeting_that_started_after_the_open_one,
    pruning_a_rooms_last_meeting_forgets_its_cutoff,
    operators_move_only_a_running_meeting_and_it_is_audited,
    ending_now_makes_the_meeting_due_at_once,
    limits_are_stored_replaced_removed_and_audited,
    alone_settings_merge_into_the_rules_and_are_audited,
    the_gauges_follow_every_write_exactly,
    the_outbox_goes_out_in_order_per_lane_under_leases,
    presence_checks_are_leases_and_move_the_alone_clock,
);

/// A check of `room`'s claim `until` at `at` that counted `n` (`None`: it
/// failed), with the rule at `after_s` seconds.
fn checked(room: &str, until: Timestamp, at: i64, n: Option<i64>, after_s: u64) -> PresenceRecord {
    PresenceRecord {
        key: key(room, 0),
        until,
        at: Timestamp(at),
        participants: n,
        alone_after: Some(Duration::from_secs(after_s)),
        next: Timestamp(at + 1_000),
        event: None,
    }
}

async fn alone_of(store: &Store, room: &str) -> eyeson_hard_limit::store::AloneView {
    let room = RoomId::parse(room).unwrap();
    store
        .current_for_room(&room)
        .await
        .unwrap()
        .unwrap()
        .view
        .alone
}

async fn presence_checks_are_leases_and_move_the_alone_clock(store: &Store) {
    // Deadline = start + 60 s; the first check is due when tracked.
    store.apply(&[track("a", 0)], Timestamp(0)).await.unwrap();
    assert_eq!(store.next_presence().await.unwrap(), Some(Timestamp(0)));
    let c = store
        .claim_presence(Timestamp(0), LEASE, "w1", 10)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    let until = c[0].until;
    assert_eq!(until, Timestamp(30_000), "due again when the lease ends");
    // Held: nobody else checks it, and nobody else's record applies.
    assert!(store
        .claim_presence(Timestamp(10_000), LEASE, "w2", 10)
        .await
        .unwrap()
        .is_empty());
    let lone = checked("a", until, 1_000, Some(1), 20);
    assert_eq!(
        store
            .finish_presence("w2", std::slice::from_ref(&lone))
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(store.finish_presence("w1", &[lone]).await.unwrap(), [true]);
    let a = alone_of(store, "a").await;
    assert_eq!(
        (a.participants, a.since, a.deadline),
        (Some(1), Some(Timestamp(1_000)), Some(Timestamp(21_000)))
    );
    assert_eq!(store.next_presence().await.unwrap(), Some(Timestamp(2_000)));
    // A later lone check keeps the clock; a failed one changes nothing.
    let c = store
        .claim_presence(Timestamp(2_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = checked("a", c[0].until, 2_000, Some(0), 20);
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    let c = store
        .claim_presence(Timestamp(3_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = checked("a", c[0].until, 3_000, None, 20);
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    let a = alone_of(store, "a").await;
    assert_eq!(
        (a.participants, a.since, a.deadline),
        (Some(0), Some(Timestamp(1_000)), Some(Timestamp(21_000)))
    );

    // The alone deadline comes before the deadline: the scheduler claims
    // it as an alone end.
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(21_000)));
    let due = store
        .claim_due(Timestamp(21_000), LEASE, "s", 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].alone);
    assert_eq!(due[0].deadline, Timestamp(21_000));
    // Someone joined before the DELETE: running again, the clock reset.
    let cancelled = Outcome {
        key: key("a", 0),
        state: MeetingState::Running,
        at: Timestamp(21_500),
        attempts: due[0].attempts,
        retry_at: Some(Timestamp(22_000)),
        ended_alone: false,
        participants: Some(2),
    };
    assert_eq!(store.finish("s", &[cancelled]).await.unwrap(), [true]);
    let view = store
        .current_for_room(&RoomId::parse("a").unwrap())
        .await
        .unwrap()
        .unwrap()
        .view;
    assert_eq!(view.state, MeetingState::Running);
    assert_eq!(
        (
            view.alone.since,
            view.alone.deadline,
            view.alone.participants
        ),
        (None, None, Some(2))
    );
    assert_eq!(
        store.next_presence().await.unwrap(),
        Some(Timestamp(22_000))
    );
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(60_000)));

    // Company resets; the rule turned off clears the clock.
    let c = store
        .claim_presence(Timestamp(22_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = checked("a", c[0].until, 22_000, Some(1), 20);
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    assert_eq!(alone_of(store, "a").await.since, Some(Timestamp(22_000)));
    let c = store
        .claim_presence(Timestamp(23_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = checked("a", c[0].until, 23_000, Some(3), 20);
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    assert_eq!(alone_of(store, "a").await.since, None);
    let c = store
        .claim_presence(Timestamp(24_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = checked("a", c[0].until, 24_000, Some(1), 20);
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    let c = store
        .claim_presence(Timestamp(25_000), LEASE, "w1", 10)
        .await
        .unwrap();
    let rec = PresenceRecord {
        alone_after: None,
        ..checked("a", c[0].until, 25_000, None, 20)
    };
    assert_eq!(store.finish_presence("w1", &[rec]).await.unwrap(), [true]);
    let a = alone_of(store, "a").await;
    assert_eq!((a.since, a.deadline), (None, None));

    // A claim abandoned (its process died) is due again when its lease
    // ends, and the dead claim's record no longer applies.
    let dead = store
        .claim_presence(Timestamp(26_000), LEASE, "w1", 10)
        .await
        .unwrap();
    assert_eq!(
        store.next_presence().await.unwrap(),
        Some(Timestamp(56_000))
    );
    let taken = store
        .claim_presence(Timestamp(56_000), LEASE, "w2", 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let late = checked("a", dead[0].until, 56_500, Some(1), 20);
    assert_eq!(store.finish_presence("w1", &[late]).await.unwrap(), [false]);
}

fn caller() -> Caller {
    Caller {
        addr: "127.0.0.1:5000".into(),
    }
}

async fn operators_move_only_a_running_meeting_and_it_is_audited(store: &Store) {
    let room = RoomId::parse("op-room").unwrap();
    store
        .apply(&[track("op-room", 1_000)], Timestamp(1_000))
        .await
        .unwrap();
    // Deadline 61_000 (60 s limit). Nothing for a room without a meeting.
    let none = store
        .move_deadline(
            &RoomId::parse("other").unwrap(),
            None,
            DeadlineChange::By(Duration::from_secs(1)),
            Timestamp(2_000),
            &caller(),
        )
        .await
        .unwrap();
    assert_eq!(none, DeadlineMoved::NoOpenMeeting);
    let moved = store
        .move_deadline(
            &room,
            Some(Timestamp(1_000)),
            DeadlineChange::By(Duration::from_secs(60)),
            Timestamp(2_000),
            &caller(),
        )
        .await
        .unwrap();
    let DeadlineMoved::Moved { meeting, old } = moved else {
        panic!("not moved: {moved:?}")
    };
    assert_eq!(
        (old, meeting.deadline),
        (Timestamp(61_000), Timestamp(121_000))
    );
    // A scheduler that wakes at the old deadline claims nothing.
    assert!(store
        .claim_due(Timestamp(61_000), LEASE, "w", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(121_000)));
    // The wrong meeting, or a deadline in the past: nothing changes.
    let other = store
        .move_deadline(
            &room,
            Some(Timestamp(999)),
            DeadlineChange::Now,
            Timestamp(3_000),
            &caller(),
        )
        .await
        .unwrap();
    assert!(matches!(other, DeadlineMoved::OtherMeeting(_)), "{other:?}");
    let past = store
        .move_deadline(
            &room,
            None,
            DeadlineChange::Until(Timestamp(3_000)),
            Timestamp(3_000),
            &caller(),
        )
        .await
        .unwrap();
    assert!(
        matches!(past, DeadlineMoved::Refused(DeadlineRefused::InThePast, _)),
        "{past:?}"
    );
    // Claimed at the new deadline: stopping, and no longer movable.
    let claims = store
        .claim_due(Timestamp(121_000), LEASE, "w", 10)
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].deadline, Timestamp(121_000));
    let stopping = store
        .move_deadline(
            &room,
            None,
            DeadlineChange::By(Duration::from_secs(60)),
            Timestamp(122_000),
            &caller(),
        )
        .await
        .unwrap();
    assert!(
        matches!(stopping, DeadlineMoved::NotRunning(ref m) if m.state == MeetingState::Stopping),
        "{stopping:?}"
    );
    // Only the move that happened is in the audit and the history.
    let h = store.history(&room, 10).await.unwrap();
    assert_eq!(h.meetings.len(), 1);
    assert_eq!(h.meetings[0].tracked_at, Timestamp(1_000));
    assert_eq!(h.meetings[0].view.state, MeetingState::Stopping);
    assert_eq!(h.actions.len(), 1);
    let a = &h.actions[0];
    assert_eq!(
        (
            a.action.as_str(),
            a.started_at,
            a.old_deadline,
            a.new_deadline,
            a.caller.as_str()
        ),
        (
            "extend",
            Some(Timestamp(1_000)),
            Some(Timestamp(61_000)),
            Some(Timestamp(121_000)),
            "127.0.0.1:5000"
        )
    );
    assert_eq!(a.at, Timestamp(2_000));
    assert_eq!(
        store.planned_deadlines(Timestamp(0)).await.unwrap(),
        vec![(key("op-room", 1_000), Timestamp(61_000))]
    );
}

async fn ending_now_makes_the_meeting_due_at_once(store: &Store) {
    let room = RoomId::parse("end-room").unwrap();
    store
        .apply(&[track("end-room", 1_000)], Timestamp(1_000))
        .await
        .unwrap();
    assert!(store
        .claim_due(Timestamp(5_000), LEASE, "w", 10)
        .await
        .unwrap()
        .is_empty());
    let moved = store
        .move_deadline(
            &room,
            None,
            DeadlineChange::Now,
            Timestamp(5_000),
            &caller(),
        )
        .await
        .unwrap();
    assert!(
        matches!(moved, DeadlineMoved::Moved { ref meeting, .. } if meeting.deadline == Timestamp(5_000)),
        "{moved:?}"
    );
    let claims = store
        .claim_due(Timestamp(5_000), LEASE, "w", 10)
        .await
        .unwrap();
    assert_eq!(
        claims.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
        vec![key("end-room", 1_000)]
    );
    let h = store.history(&room, 10).await.unwrap();
    assert_eq!(h.actions[0].action, "end");
}

/// A change that sets only the limit.
fn set_limit_to(d: Duration) -> Option<RuleChange> {
    Some(RuleChange {
        limit: Some(Some(d)),
        alone_after: None,
    })
}

/// A change that sets only the alone rule.
fn set_alone_to(a: Option<AloneAfter>) -> Option<RuleChange> {
    Some(RuleChange {
        limit: None,
        alone_after: Some(a),
    })
}

async fn limits_are_stored_replaced_removed_and_audited(store: &Store) {
    let hour = Duration::from_secs(3600);
    assert!(store.limit_rules().await.unwrap().is_empty());
    let previous = |c: RuleChanged| c.previous.and_then(|r| r.limit);
    assert_eq!(
        previous(
            store
                .set_limit(
                    LimitKind::Room,
                    "board",
                    set_limit_to(hour),
                    Timestamp(1),
                    &caller()
                )
                .await
                .unwrap()
        ),
        None
    );
    assert_eq!(
        previous(
            store
                .set_limit(
                    LimitKind::Prefix,
                    "web-",
                    set_limit_to(hour),
                    Timestamp(2),
                    &caller()
                )
                .await
                .unwrap()
        ),
        None
    );
    assert_eq!(
        previous(
            store
                .set_limit(
                    LimitKind::Room,
                    "board",
                    set_limit_to(2 * hour),
                    Timestamp(3),
                    &caller()
                )
                .await
                .unwrap()
        ),
        Some(hour)
    );
    assert_eq!(
        store.limit_rules().await.unwrap(),
        vec![
            LimitRule {
                kind: LimitKind::Prefix,
                key: "web-".into(),
                limit: Some(hour),
                alone_after: None,
            },
            LimitRule {
                kind: LimitKind::Room,
                key: "board".into(),
                limit: Some(2 * hour),
                alone_after: None,
            },
        ]
    );
    assert_eq!(
        previous(
            store
                .set_limit(LimitKind::Prefix, "web-", None, Timestamp(4), &caller())
                .await
                .unwrap()
        ),
        Some(hour)
    );
    assert_eq!(store.limit_rules().await.unwrap().len(), 1);
    let h = store
        .history(&RoomId::parse("board").unwrap(), 10)
        .await
        .unwrap();
    let names: Vec<&str> = h.actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(names, ["limit_set", "limit_set"]);
    assert_eq!(h.actions[0].detail.as_deref(), Some("room limit 1h -> 2h"));
}

/// The alone setting is stored beside the limit, merged part by part: a
/// change leaves the part it does not name as it was; a rule left with
/// nothing is deleted; every change is audited with what moved.
async fn alone_settings_merge_into_the_rules_and_are_audited(store: &Store) {
    let (hour, min5) = (Duration::from_secs(3600), Duration::from_secs(300));
    let rules = || async { store.limit_rules().await.unwrap() };
    let set = |kind, key: &'static str, change, at| async move {
        store
            .set_limit(kind, key, change, Timestamp(at), &caller())
            .await
            .unwrap()
    };
    // Only the alone rule: the rule has no limit.
    let c = set(
        LimitKind::Room,
        "kiosk",
        set_alone_to(Some(AloneAfter::After(min5))),
        1,
    )
    .await;
    assert_eq!(c.previous, None);
    assert_eq!(c.current, Some(Rule::alone(AloneAfter::After(min5))));
    // A limit merged in keeps the alone rule.
    let c = set(LimitKind::Room, "kiosk", set_limit_to(hour), 2).await;
    assert_eq!(
        c.current,
        Some(Rule {
            limit: Some(hour),
            alone_after: Some(AloneAfter::After(min5))
        })
    );
    // Turning the alone rule off keeps the limit.
    set(
        LimitKind::Room,
        "kiosk",
        set_alone_to(Some(AloneAfter::Off)),
        3,
    )
    .await;
    // Off on a prefix with no rule yet.
    set(
        LimitKind::Prefix,
        "bot-",
        set_alone_to(Some(AloneAfter::Off)),
        4,
    )
    .await;
    assert_eq!(
        rules().await,
        vec![
            LimitRule {
                kind: LimitKind::Prefix,
                key: "bot-".into(),
                limit: None,
                alone_after: Some(AloneAfter::Off),
            },
            LimitRule {
                kind: LimitKind::Room,
                key: "kiosk".into(),
                limit: Some(hour),
                alone_after: Some(AloneAfter::Off),
            },
        ]
    );
    // Clearing the limit leaves a rule with the alone setting only.
    let c = set(
        LimitKind::Room,
        "kiosk",
        Some(RuleChange {
            limit: Some(None),
            alone_after: None,
        }),
        5,
    )
    .await;
    assert_eq!(c.current, Some(Rule::alone(AloneAfter::Off)));
    // Clearing the last part deletes the rule.
    let c = set(LimitKind::Room, "kiosk", set_alone_to(None), 6).await;
    assert_eq!(c.previous, Some(Rule::alone(AloneAfter::Off)));
    assert_eq!(c.current, None);
    // Clearing what is not there writes nothing.
    let c = set(LimitKind::Room, "kiosk", set_alone_to(None), 7).await;
    assert_eq!(c, RuleChanged::default());
    assert_eq!(rules().await.len(), 1, "only bot- is left");
    // Removing a rule removes both parts.
    set(LimitKind::Prefix, "bot-", None, 8).await;
    assert!(rules().await.is_empty());

    let h = store
        .history(&RoomId::parse("kiosk").unwrap(), 10)
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = h
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.detail.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [
            ("limit_removed", "room alone_after off -> none"),
            ("limit_set", "room limit 1h -> none"),
            ("limit_set", "room alone_after 5m -> off"),
            ("limit_set", "room limit none -> 1h"),
            ("limit_set", "room alone_after none -> 5m"),
        ]
    );
    let h = store
        .history(&RoomId::parse("bot-").unwrap(), 10)
        .await
        .unwrap();
    let details: Vec<&str> = h
        .actions
        .iter()
        .filter_map(|a| a.detail.as_deref())
        .collect();
    assert_eq!(
        details,
        [
            "prefix alone_after off -> none",
            "prefix alone_after none -> off"
        ]
    );
}

async fn only_the_latest_claim_of_an_owner_records_the_outcome(store: &Store) {
    store.apply(&[track("a", 0)], Timestamp(0)).await.unwrap();
    let first = store
        .claim_due(Timestamp(60_000), LEASE, "p", 8)
        .await
        .unwrap();
    let again = store
        .claim_due(Timestamp(90_000), LEASE, "p", 8)
        .await
        .unwrap();
    assert_eq!((first[0].attempts, again[0].attempts), (1, 2));
    let outcome = |attempts| Outcome {
        key: key("a", 0),
        state: MeetingState::ShutDown,
        at: Timestamp(95_000),
        attempts,
        retry_at: None,
        ended_alone: false,
        participants: None,
    };
    assert_eq!(store.finish("p", &[outcome(1)]).await.unwrap(), [false]);
    assert_eq!(store.finish("p", &[outcome(2)]).await.unwrap(), [true]);
}

/// A batch (on PostgreSQL, its starts of distinct rooms are one statement)
/// answers and stores what its plans applied one by one do: rooms `b-*`
/// get the batch, rooms `s-*` the same plans one at a time.
async fn a_batch_applies_as_its_plans_one_by_one(store: &Store) {
    for p in ["b", "s"] {
        let room = |r: &str| format!("{p}-{r}");
        store
            .apply(
                &[
                    track(&room("known"), 1_000),
                    track(&room("old"), 1_000),
                    update(&room("cut"), Some(2_000), true, 2_000),
                ],
                Timestamp(2_000),
            )
            .await
            .unwrap();
    }
    let plans = |p: &str| {
        let room = |r: &str| format!("{p}-{r}");
        vec![
            track(&room("new"), 3_000),
            track_with_token(&room("known"), 1_000),
            track(&room("old"), 3_000),
            track(&room("cut"), 1_500),
            track(&room("twice"), 3_000),
            update(&room("gone"), Some(2_500), true, 3_000),
            track(&room("twice"), 3_000),
            track(&room("late"), 2_900),
        ]
    };
    let batch = store.apply(&plans("b"), Timestamp(3_000)).await.unwrap();
    let mut one_by_one = Vec::new();
    for plan in plans("s") {
        one_by_one.extend(store.apply(&[plan], Timestamp(3_000)).await.unwrap());
    }
    assert_eq!(batch, one_by_one);
    assert_eq!(
        batch,
        [
            Applied::Tracked,
            Applied::AlreadyKnown,
            Applied::Tracked,
            Applied::LateForEndedMeeting,
            Applied::Tracked,
            Applied::Ended(0),
            Applied::AlreadyKnown,
            Applied::Tracked,
        ]
    );
    let views = |p: &'static str, all: &[MeetingView]| {
        let mut v: Vec<(String, i64, i64, MeetingState)> = all
            .iter()
            .filter_map(|m| {
                let r = m.key.room_id.as_str().strip_prefix(p)?;
                Some((r.to_owned(), m.key.started_at.0, m.deadline.0, m.state))
            })
            .collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    };
    let all = store.list(Timestamp(0), None, 100).await.unwrap();
    assert_eq!(views("b-", &all), views("s-", &all));
    assert!(views("b-", &all).contains(&("old".into(), 1_000, 61_000, MeetingState::Ended)));
    // The guest token that arrived with the known meeting's redelivery
    // makes it warnable in both.
    let warned: Vec<String> = claim_warnings(store, 51_000, LEASE, "w")
        .await
        .into_iter()
        .filter(|c| c.guest_token.is_some())
        .map(|c| c.key.room_id.as_str().to_owned())
        .collect();
    assert!(
        warned.contains(&"b-known".to_owned()) && warned.contains(&"s-known".to_owned()),
        "{warned:?}"
    );
}

/// The guard read with a claim (its first attempt makes no other round
/// trip) is what the store knows when the claim commits; and a batch of
/// outcomes answers per outcome, in order.
async fn a_claim_carries_what_the_room_knows(store: &Store) {
    store
        .apply(
            &[track("plain", 0), track("newer", 0), track("cut", 0)],
            Timestamp(0),
        )
        .await
        .unwrap();
    let first = store
        .claim_due(Timestamp(60_000), LEASE, "w", 8)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        first.iter().all(|c| c.guard == Guard::default()),
        "{first:?}"
    );
    let outcome = |room: &str, state, attempts, retry_at: Option<i64>| Outcome {
        key: key(room, 0),
        state,
        at: Timestamp(60_500),
        attempts,
        retry_at: retry_at.map(Timestamp),
        ended_alone: false,
        participants: None,
    };
    // One batch: a stale claim (wrong attempts), two deferrals, a meeting
    // nobody claimed, and "plain" shut down.
    let applied = store
        .finish(
            "w",
            &[
                outcome("plain", MeetingState::ShutDown, 2, None),
                outcome("newer", MeetingState::Stopping, 1, Some(61_000)),
                outcome("unknown", MeetingState::ShutDown, 1, None),
                outcome("cut", MeetingState::Stopping, 1, Some(61_000)),
                outcome("plain", MeetingState::ShutDown, 1, None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied, [false, true, false, true, true]);
    // Meanwhile a newer meeting starts in one room, and eyeson reports the
    // other's end (the stopping rows are left to their worker).
    store
        .apply(
            &[track("newer", 60_600), update("cut", Some(0), true, 60_700)],
            Timestamp(60_700),
        )
        .await
        .unwrap();
    let again = store
        .claim_due(Timestamp(61_000), LEASE, "v", 8)
        .await
        .unwrap();
    let guard_of = |room: &str| {
        again
            .iter()
            .find(|c| c.key.room_id.as_str() == room)
            .map(|c| c.guard)
    };
    assert_eq!(
        guard_of("newer"),
        Some(Guard {
            cutoff: None,
            newer_meeting: true
        })
    );
    assert_eq!(
        guard_of("cut"),
        Some(Guard {
            cutoff: Some(Timestamp(0)),
            newer_meeting: false
        })
    );
    assert_eq!(
        store.guard(&key("newer", 0)).await.unwrap(),
        guard_of("newer").unwrap()
    );
    assert_eq!(
        store.guard(&key("cut", 0)).await.unwrap(),
        guard_of("cut").unwrap()
    );
}

async fn a_deferred_shutdown_is_claimed_again_at_its_retry_time(store: &Store) {
    store.apply(&[track("a", 0)], Timestamp(0)).await.unwrap();
    let claim = store
        .claim_due(Timestamp(60_000), LEASE, "w", 8)
        .await
        .unwrap();
    let deferred = Outcome {
        key: key("a", 0),
        state: MeetingState::Stopping,
        at: Timestamp(61_000),
        attempts: claim[0].attempts,
        retry_at: Some(Timestamp(71_000)),
        ended_alone: false,
        participants: None,
    };
    assert_eq!(store.finish("w", &[deferred]).await.unwrap(), [true]);
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(71_000)));
    assert!(store
        .claim_due(Timestamp(70_999), LEASE, "v", 8)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_due(Timestamp(71_000), LEASE, "v", 8)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
}

async fn a_null_start_shutdown_spares_a_meeting_that_started_after_the_open_one(store: &Store) {
    // Meeting 1 ends (null start, stamped in second 5); meeting 2 started
    // at 5.5 s, within the same second.
    store
        .apply(&[track("a", 1_000)], Timestamp(1_000))
        .await
        .unwrap();
    store
        .apply(&[update("a", None, true, 5_000)], Timestamp(5_300))
        .await
        .unwrap();
    store
        .apply(&[track("a", 5_500)], Timestamp(5_500))
        .await
        .unwrap();
    assert_eq!(
        store.guard(&key("a", 0)).await.unwrap().cutoff,
        Some(Timestamp(1_000))
    );
    // A redelivery of the same shutdown, now that meeting 2 is known, must
    // not end meeting 2 either.
    store
        .apply(&[update("a", None, true, 5_000)], Timestamp(6_000))
        .await
        .unwrap();
    let current = store
        .current_for_room(&RoomId::parse("a").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.view.key.started_at, current.view.state),
        (Timestamp(5_500), MeetingState::Running)
    );
}

async fn pruning_a_rooms_last_meeting_forgets_its_cutoff(store: &Store) {
    store
        .apply(
            &[
                update("gone", Some(1_000), true, 1_000),
                update("kept", Some(1_000), true, 1_000),
            ],
            Timestamp(2_000),
        )
        .await
        .unwrap();
    store
        .apply(&[track("kept", 5_000)], Timestamp(5_000))
        .await
        .unwrap();
    assert_eq!(store.prune(Timestamp(3_000)).await.unwrap(), 2);
    assert_eq!(store.guard(&key("gone", 0)).await.unwrap().cutoff, None);
    assert_eq!(
        store.guard(&key("kept", 0)).await.unwrap().cutoff,
        Some(Timestamp(1_000))
    );
}

async fn tracking_duplicates_and_ends(store: &Store) {
    let r = store
        .apply(&[track("a", 1_000), track("a", 1_000)], Timestamp(2_000))
        .await
        .unwrap();
    assert_eq!(r, vec![Applied::Tracked, Applied::AlreadyKnown]);
    let r = store
        .apply(&[update("a", Some(1_000), true, 5_000)], Timestamp(5_000))
        .await
        .unwrap();
    assert_eq!(r, vec![Applied::Ended(1)]);
    let r = store
        .apply(&[update("b", None, false, 5_000)], Timestamp(5_000))
        .await
        .unwrap();
    assert_eq!(r, vec![Applied::Ignored]);
    let counts = store.count_by_state().await.unwrap();
    assert_eq!(counts, vec![(MeetingState::Ended, 1)]);
}

async fn a_late_running_delivery_does_not_resurrect(store: &Store) {
    store
        .apply(&[update("a", Some(1_000), true, 3_000)], Timestamp(3_000))
        .await
        .unwrap();
    let r = store
        .apply(&[track("a", 1_000)], Timestamp(4_000))
        .await
        .unwrap();
    // Recorded ended by the shutdown delivery: stays ended.
    assert_eq!(r, vec![Applied::LateForEndedMeeting]);
    let r = store
        .apply(&[track("a", 500)], Timestamp(4_000))
        .await
        .unwrap();
    assert_eq!(r, vec![Applied::LateForEndedMeeting]);
    assert!(store
        .current_for_room(&RoomId::parse("a").unwrap())
        .await
        .unwrap()
        .is_none());
    // A later meeting in the room is tracked normally.
    let r = store
        .apply(&[track("a", 9_000)], Timestamp(9_000))
        .await
        .unwrap();
    assert_eq!(r, vec![Applied::Tracked]);
}

async fn a_newer_start_closes_older_meetings(store: &Store) {
    store
        .apply(&[track("a", 1_000), track("a", 2_000)], Timestamp(2_000))
        .await
        .unwrap();
    assert!(store.guard(&key("a", 1_000)).await.unwrap().newer_meeting);
    assert!(!store.guard(&key("a", 2_000)).await.unwrap().newer_meeting);
    let current = store
        .current_for_room(&RoomId::parse("a").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.view.key, key("a", 2_000));
    let list = store.list(Timestamp(i64::MIN), None, 10).await.unwrap();
    let states: Vec<_> = list.iter().map(|m| (m.key.clone(), m.state)).collect();
    assert_eq!(
        states,
        vec![
            (key("a", 2_000), MeetingState::Running),
            (key("a", 1_000), MeetingState::Ended)
        ]
    );
}

async fn claims_are_leases(store: &Store) {
    // Deadline = start + 60 s.
    store
        .apply(&[track("a", 0), track("b", 10_000)], Timestamp(0))
        .await
        .unwrap();
    assert!(store
        .claim_due(Timestamp(59_999), LEASE, "w1", 10)
        .await
        .unwrap()
        .is_empty());
    let c = store
        .claim_due(Timestamp(60_000), LEASE, "w1", 10)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].key.clone(), c[0].attempts), (key("a", 0), 1));
    assert_eq!(c[0].deadline, Timestamp(60_000));
    // Held: nobody else gets it until the lease expires.
    assert!(store
        .claim_due(Timestamp(89_999), LEASE, "w2", 10)
        .await
        .unwrap()
        .iter()
        .all(|c| c.key != key("a", 0)));
    let c = store
        .claim_due(Timestamp(90_000), LEASE, "w2", 10)
        .await
        .unwrap();
    let again: Vec<_> = c.iter().filter(|c| c.key == key("a", 0)).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    // The limit is respected.
    store
        .apply(&[track("c", 0), track("d", 0), track("e", 0)], Timestamp(0))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_due(Timestamp(200_000), LEASE, "w3", 2)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn only_the_lease_holder_records_the_outcome(store: &Store) {
    store.apply(&[track("a", 0)], Timestamp(0)).await.unwrap();
    store
        .claim_due(Timestamp(60_000), LEASE, "w1", 10)
        .await
        .unwrap();
    store
        .claim_due(Timestamp(90_000), LEASE, "w2", 10)
        .await
        .unwrap();
    let done = |state| Outcome {
        key: key("a", 0),
        state,
        at: Timestamp(95_000),
        attempts: 2,
        retry_at: None,
        ended_alone: false,
        participants: None,
    };
    assert_eq!(
        store
            .finish("w1", &[done(MeetingState::ShutDown)])
            .await
            .unwrap(),
        vec![false],
        "w1 lost its lease"
    );
    assert_eq!(
        store
            .finish("w2", &[done(MeetingState::ShutDown)])
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        store
            .finish("w2", &[done(MeetingState::Failed)])
            .await
            .unwrap(),
        vec![false],
        "final states never change"
    );
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(MeetingState::ShutDown, 1)]
    );
    assert_eq!(store.next_wake().await.unwrap(), None);
}

async fn next_wake_is_the_earliest_deadline_or_lease(store: &Store) {
    assert_eq!(store.next_wake().await.unwrap(), None);
    store
        .apply(&[track("a", 5_000), track("b", 1_000)], Timestamp(5_000))
        .await
        .unwrap();
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(61_000)));
    store
        .claim_due(Timestamp(61_000), LEASE, "w", 1)
        .await
        .unwrap();
    // b is stopping (lease until 91 s); a is due at 65 s.
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(65_000)));
    store
        .claim_due(Timestamp(65_000), LEASE, "w", 1)
        .await
        .unwrap();
    assert_eq!(store.next_wake().await.unwrap(), Some(Timestamp(91_000)));
}

async fn reads_answer_what_was_written(store: &Store) {
    let plans: Vec<Plan> = (0..50).map(|i| track(&format!("r{i}"), i * 10)).collect();
    let r = store.apply(&plans, Timestamp(1_000)).await.unwrap();
    assert!(r.iter().all(|a| *a == Applied::Tracked));
    assert_eq!(
        store
            .list(Timestamp(i64::MIN), None, 20)
            .await
            .unwrap()
            .len(),
        20
    );
    let all = store.list(Timestamp(i64::MIN), None, 1000).await.unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(all[0].key, key("r49", 490), "newest start first");
    assert_eq!(all[0].deadline, Timestamp(60_490));
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(MeetingState::Running, 50)]
    );
    store.ping().await.unwrap();
}

async fn close_unlisted_closes_only_old_unlisted_meetings(store: &Store) {
    store
        .apply(&[track("a", 0), track("b", 0)], Timestamp(1_000))
        .await
        .unwrap();
    store
        .apply(&[track("c", 0)], Timestamp(5_000))
        .await
        .unwrap();
    // Listed: a. Tracked before 3 s: a, b. So b is closed; c is too new.
    let closed = store
        .close_unlisted(&[key("a", 0)], Timestamp(3_000), Timestamp(6_000))
        .await
        .unwrap();
    assert_eq!(closed, Closing::Closed(1));
    let open: HashSet<_> = store
        .list(Timestamp(i64::MAX), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.room_id.as_str().to_owned())
        .collect();
    assert_eq!(open, HashSet::from(["a".to_owned(), "c".to_owned()]));
    // An empty list closes every old running meeting.
    assert_eq!(
        store
            .close_unlisted(&[], Timestamp(10_000), Timestamp(10_000))
            .await
            .unwrap(),
        Closing::Closed(2)
    );
}

async fn prune_forgets_only_old_finished_meetings(store: &Store) {
    store
        .apply(&[track("a", 0), track("b", 0)], Timestamp(0))
        .await
        .unwrap();
    store
        .apply(&[update("a", Some(0), true, 1)], Timestamp(1_000))
        .await
        .unwrap();
    assert_eq!(store.prune(Timestamp(1_000)).await.unwrap(), 0);
    assert_eq!(store.prune(Timestamp(1_001)).await.unwrap(), 1);
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(MeetingState::Running, 1)]
    );
}

async fn forget_future_forgets_only_future_starts_and_cutoffs(store: &Store) {
    // A meeting "started" far ahead (tracked before such starts were
    // refused) and a shutdown cutoff far ahead in another room.
    store
        .apply(
            &[
                track("room", 9_000_000),
                track("room", 1_000),
                update("other", Some(9_000_000), true, 2_000),
            ],
            Timestamp(2_000),
        )
        .await
        .unwrap();
    assert!(
        store
            .guard(&key("room", 1_000))
            .await
            .unwrap()
            .newer_meeting
    );
    assert_eq!(store.forget_future(Timestamp(10_000)).await.unwrap(), 3);
    assert!(
        !store
            .guard(&key("room", 1_000))
            .await
            .unwrap()
            .newer_meeting
    );
    assert_eq!(store.guard(&key("other", 0)).await.unwrap().cutoff, None);
    // The meeting that did start is kept; nothing more to forget.
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(MeetingState::Running, 1)]
    );
    assert_eq!(store.forget_future(Timestamp(10_000)).await.unwrap(), 0);
}

async fn close_unlisted_refuses_to_close_too_many(store: &Store) {
    let plans: Vec<Plan> = (0..30).map(|i| track(&format!("r{i:02}"), 1_000)).collect();
    store.apply(&plans, Timestamp(1_000)).await.unwrap();
    let listed =
        |n: usize| -> Vec<MeetingKey> { (0..n).map(|i| key(&format!("r{i:02}"), 1_000)).collect() };
    // A list of 5 of 30: 25 would close (more than 10 and 20%): none does.
    assert_eq!(
        store
            .close_unlisted(&listed(5), Timestamp(2_000), Timestamp(3_000))
            .await
            .unwrap(),
        Closing::Refused {
            would_close: 25,
            open: 30
        }
    );
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(MeetingState::Running, 30)]
    );
    // 6 of 30 (20%) is believable.
    assert_eq!(
        store
            .close_unlisted(&listed(24), Timestamp(2_000), Timestamp(3_000))
            .await
            .unwrap(),
        Closing::Closed(6)
    );
}

async fn list_pages_with_a_cursor(store: &Store) {
    // Ties on started_at are broken by room id, descending.
    let plans: Vec<Plan> = (0..25)
        .map(|i| track(&format!("r{i:02}"), 1_000 + (i % 3)))
        .collect();
    store.apply(&plans, Timestamp(2_000)).await.unwrap();
    let mut all = Vec::new();
    let mut after: Option<MeetingKey> = None;
    loop {
        let page = store
            .list(Timestamp(i64::MIN), after.as_ref(), 10)
            .await
            .unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        all.extend(page.into_iter().map(|m| m.key));
    }
    assert_eq!(all.len(), 25);
    let mut expected = all.clone();
    expected.sort_by(|a, b| {
        (b.started_at, b.room_id.as_str()).cmp(&(a.started_at, a.room_id.as_str()))
    });
    assert_eq!(all, expected);
}

async fn concurrent_claimers_never_share_a_meeting(store: &Store) {
    let plans: Vec<Plan> = (0..300).map(|i| track(&format!("r{i}"), i)).collect();
    store.apply(&plans, Timestamp(0)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = store
                    .claim_due(Timestamp(100_000), LEASE, &format!("w{w}"), 7)
                    .await
                    .unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.key));
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(mine) = tasks.join_next().await {
        for k in mine.unwrap() {
            assert!(seen.insert(k.clone()), "{k:?} claimed twice");
        }
    }
    assert_eq!(seen.len(), 300);
}

async fn concurrent_batches_for_the_same_rooms_all_commit(store: &Store) {
    // Batches touching the same rooms in different orders (as on several
    // replicas): none deadlocks or fails, each meeting is tracked once.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4i64 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut plans: Vec<Plan> = (0..40).map(|i| track(&format!("r{i}"), 1_000)).collect();
            if w % 2 == 1 {
                plans.reverse();
            }
            plans.push(update("r0", Some(1_000), true, 2_000));
            store.apply(&plans, Timestamp(2_000 + w)).await.unwrap()
        });
    }
    let mut tracked = 0;
    while let Some(r) = tasks.join_next().await {
        tracked += r
            .unwrap()
            .iter()
            .filter(|a| **a == Applied::Tracked)
            .count();
    }
    assert_eq!(tracked, 40);
    let counts = store.count_by_state().await.unwrap();
    assert!(counts.contains(&(MeetingState::Running, 39)), "{counts:?}");
    assert!(counts.contains(&(MeetingState::Ended, 1)), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_uses_the_database_clock() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::from(PgStore::connect(&db.url).await.unwrap());
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    // Deadline 60 s after start: started 61 s ago is due, 59 s ago is not,
    // whatever "now" the caller claims.
    store
        .apply(
            &[track("due", now.0 - 61_000), track("later", now.0 - 59_000)],
            Timestamp(0),
        )
        .await
        .unwrap();
    let c = store.claim_due(Timestamp(0), LEASE, "w", 10).await.unwrap();
    assert_eq!(c.len(), 1, "the database's clock decides, not the caller's");
    assert_eq!(c[0].key.room_id.as_str(), "due");
    assert!(store
        .claim_due(Timestamp(i64::MAX / 2), LEASE, "w", 10)
        .await
        .unwrap()
        .is_empty());
    // next_wake comes back in local time: about 1 s from now.
    let wake = store.next_wake().await.unwrap().unwrap();
    assert!(
        (wake.0 - (now.0 + 1_000)).abs() < 500,
        "{wake:?} vs {now:?}"
    );
    store.close().await;
}

async fn warnings_are_claimed_once_per_deadline(store: &Store) {
    // Deadline 61 s, warning due at 51 s.
    store
        .apply(&[track_with_token("w", 1_000)], Timestamp(1_000))
        .await
        .unwrap();
    assert_eq!(
        store.next_warning(Timestamp(1_000), WARN).await.unwrap(),
        Some(Timestamp(51_000))
    );
    assert!(claim_warnings(store, 50_999, LEASE, "a").await.is_empty());
    let c = claim_warnings(store, 51_000, LEASE, "a").await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].key.clone(), c[0].deadline, c[0].attempts),
        (key("w", 1_000), Timestamp(61_000), 1)
    );
    assert_eq!(
        c[0].guest_token.as_ref().map(GuestToken::expose),
        Some("gt-w")
    );
    // Held: nobody else claims it.
    assert!(claim_warnings(store, 52_000, LEASE, "b").await.is_empty());
    // Only the holder records it.
    let sent = record(&c[0], WarningOutcome::Sent, 52_000, None);
    assert_eq!(
        store
            .finish_warnings("b", std::slice::from_ref(&sent))
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        store
            .finish_warnings("a", std::slice::from_ref(&sent))
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(store.finish_warnings("a", &[sent]).await.unwrap(), [false]);
    // Sent for this deadline: never again, and nothing to wake for.
    assert!(claim_warnings(store, 60_000, Duration::from_secs(1), "b")
        .await
        .is_empty());
    assert_eq!(
        store.next_warning(Timestamp(53_000), WARN).await.unwrap(),
        None
    );
    assert_eq!(
        store.warning_for_tests(&key("w", 1_000)).await.unwrap(),
        Some((Some("sent".into()), Some(61_000)))
    );
}

async fn a_moved_deadline_rearms_the_warning(store: &Store) {
    store
        .apply(&[track_with_token("x", 0)], Timestamp(0))
        .await
        .unwrap();
    let c = claim_warnings(store, 50_000, LEASE, "a").await;
    assert_eq!(c.len(), 1);
    // Extended while the warning is in flight: its outcome is recorded for
    // the deadline it was for, and the new deadline's warning is due 10 s
    // before the new deadline, not at once.
    assert!(store
        .set_deadline_for_tests(&key("x", 0), Timestamp(120_000))
        .await
        .unwrap());
    assert_eq!(
        store
            .finish_warnings("a", &[record(&c[0], WarningOutcome::Sent, 51_000, None)])
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        store.warning_for_tests(&key("x", 0)).await.unwrap(),
        Some((Some("sent".into()), Some(60_000)))
    );
    assert_eq!(
        store.next_warning(Timestamp(51_000), WARN).await.unwrap(),
        Some(Timestamp(110_000))
    );
    assert!(claim_warnings(store, 109_999, LEASE, "b").await.is_empty());
    let again = claim_warnings(store, 110_000, LEASE, "b").await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].deadline, again[0].attempts),
        (Timestamp(120_000), 1)
    );
    assert_eq!(
        store
            .finish_warnings(
                "b",
                &[record(&again[0], WarningOutcome::Sent, 110_500, None)]
            )
            .await
            .unwrap(),
        [true]
    );
    // Shortened after it was sent: due again at once.
    assert!(store
        .set_deadline_for_tests(&key("x", 0), Timestamp(115_000))
        .await
        .unwrap());
    assert_eq!(claim_warnings(store, 111_000, LEASE, "c").await.len(), 1);
}

async fn a_lapsed_warning_claim_is_claimed_again(store: &Store) {
    store
        .apply(&[track_with_token("l", 0)], Timestamp(0))
        .await
        .unwrap();
    let short = Duration::from_secs(2);
    let first = claim_warnings(store, 50_000, short, "a").await;
    assert!(claim_warnings(store, 51_999, short, "b").await.is_empty());
    assert_eq!(
        store.next_warning(Timestamp(51_000), WARN).await.unwrap(),
        Some(Timestamp(52_000)),
        "wakes when the lease expires"
    );
    let second = claim_warnings(store, 52_000, short, "b").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 2);
    // The first claim lost its lease: its outcome does not apply.
    assert_eq!(
        store
            .finish_warnings(
                "a",
                &[record(&first[0], WarningOutcome::Sent, 52_100, None)]
            )
            .await
            .unwrap(),
        [false]
    );
    // Deferred: claimable again at the retry time, not before.
    assert_eq!(
        store
            .finish_warnings(
                "b",
                &[record(
                    &second[0],
                    WarningOutcome::Deferred,
                    53_000,
                    Some(56_000)
                )]
            )
            .await
            .unwrap(),
        [true]
    );
    assert!(claim_warnings(store, 55_999, short, "c").await.is_empty());
    let third = claim_warnings(store, 56_000, short, "c").await;
    assert_eq!((third.len(), third[0].attempts), (1, 3));
}

async fn no_warning_for_an_ended_meeting_or_after_the_deadline(store: &Store) {
    store
        .apply(
            &[track_with_token("ended", 0), track_with_token("late", 0)],
            Timestamp(0),
        )
        .await
        .unwrap();
    store
        .apply(&[update("ended", Some(0), true, 5_000)], Timestamp(5_000))
        .await
        .unwrap();
    // "late" was never claimed before its deadline: too late to warn.
    assert!(claim_warnings(store, 60_000, LEASE, "a").await.is_empty());
    assert_eq!(
        store.next_warning(Timestamp(60_000), WARN).await.unwrap(),
        None
    );
    let c = claim_warnings(store, 55_000, LEASE, "a").await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].key, key("late", 0));
    // Claimed for shutdown (stopping): no warning either.
    store
        .set_deadline_for_tests(&key("late", 0), Timestamp(70_000))
        .await
        .unwrap();
    store
        .claim_due(Timestamp(70_000), LEASE, "s", 10)
        .await
        .unwrap();
    assert!(claim_warnings(store, 65_000, LEASE, "a").await.is_empty());
}

async fn a_guest_token_that_arrives_later_makes_a_meeting_warnable(store: &Store) {
    store.apply(&[track("t", 0)], Timestamp(0)).await.unwrap();
    let room = RoomId::parse("t").unwrap();
    let current = store.current_for_room(&room).await.unwrap().unwrap();
    assert!(current.guest_token.is_none());
    let c = claim_warnings(store, 50_000, LEASE, "a").await;
    assert_eq!(c.len(), 1);
    assert!(c[0].guest_token.is_none());
    store
        .finish_warnings(
            "a",
            &[record(&c[0], WarningOutcome::NoGuestToken, 50_000, None)],
        )
        .await
        .unwrap();
    assert!(claim_warnings(store, 51_000, LEASE, "a").await.is_empty());
    // A redelivery with the token.
    assert_eq!(
        store
            .apply(&[track_with_token("t", 0)], Timestamp(51_000))
            .await
            .unwrap(),
        [Applied::AlreadyKnown]
    );
    let c = claim_warnings(store, 52_000, LEASE, "a").await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].guest_token.as_ref().map(GuestToken::expose),
        Some("gt-t")
    );
    // The public endpoint reads the same token.
    let current = store.current_for_room(&room).await.unwrap().unwrap();
    assert_eq!(
        current.guest_token.as_ref().map(GuestToken::expose),
        Some("gt-t")
    );
}

async fn concurrent_warning_claimers_never_share_a_meeting(store: &Store) {
    let plans: Vec<Plan> = (0..200)
        .map(|i| track_with_token(&format!("r{i}"), i))
        .collect();
    store.apply(&plans, Timestamp(0)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = store
                    .claim_warnings(Timestamp(55_000), WARN, LEASE, &format!("w{w}"), 7)
                    .await
                    .unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.key));
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(mine) = tasks.join_next().await {
        for k in mine.unwrap() {
            assert!(seen.insert(k.clone()), "{k:?} claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

/// The store handle's in-memory counts (for `/metrics`) equal a count of
/// the store after every write, with no recount in between.
async fn gauges_match(store: &Store, after: &str) {
    let counted = store.count_by_state().await.unwrap();
    for st in MeetingState::ALL {
        let n = counted
            .iter()
            .find(|(s, _)| *s == st)
            .map_or(0, |(_, n)| *n as i64);
        assert_eq!(store.gauges().signed(st), n, "{st} after {after}");
    }
}

async fn the_gauges_follow_every_write_exactly(store: &Store) {
    assert_eq!(store.gauges().recounts(), 0);
    let r = store
        .apply(
            &[
                track("a", 1_000),
                track("b", 1_000),
                track("c", 1_000),
                track("d", 1_000),
                track("a", 1_000),
            ],
            Timestamp(1_000),
        )
        .await
        .unwrap();
    assert_eq!(r[4], Applied::AlreadyKnown);
    gauges_match(store, "tracking and a duplicate").await;
    assert_eq!(store.gauges().get(MeetingState::Running), 4);
    // A newer start ends the room's older running meeting.
    store
        .apply(&[track("a", 2_000)], Timestamp(2_000))
        .await
        .unwrap();
    gauges_match(store, "a newer start").await;
    assert_eq!(store.gauges().get(MeetingState::Ended), 1);
    // An end by webhook; a late start for the ended meeting (stored
    // ended), twice; an end for a meeting never tracked (stored ended).
    store
        .apply(&[update("b", Some(1_000), true, 3_000)], Timestamp(3_000))
        .await
        .unwrap();
    gauges_match(store, "an end").await;
    for _ in 0..2 {
        let r = store
            .apply(&[track("b", 500)], Timestamp(3_000))
            .await
            .unwrap();
        assert_eq!(r, [Applied::LateForEndedMeeting]);
        gauges_match(store, "a late start").await;
    }
    store
        .apply(&[update("e", Some(1_000), true, 3_000)], Timestamp(3_000))
        .await
        .unwrap();
    gauges_match(store, "an end of an untracked meeting").await;
    assert_eq!(store.gauges().get(MeetingState::Ended), 4);
    // Claims (c, d due at 61 s; a's newer meeting at 62 s), outcomes, a
    // deferral, a re-claim after it, a stale outcome.
    let claims = store
        .claim_due(Timestamp(62_000), LEASE, "w", 8)
        .await
        .unwrap();
    assert_eq!(claims.len(), 3);
    gauges_match(store, "claims").await;
    assert_eq!(store.gauges().get(MeetingState::Stopping), 3);
    let outcome = |c: &Claim, state, retry_at: Option<i64>| Outcome {
        key: c.key.clone(),
        state,
        at: Timestamp(63_000),
        attempts: c.attempts,
        retry_at: retry_at.map(Timestamp),
        ended_alone: false,
        participants: None,
    };
    let of = |room: &str| {
        claims
            .iter()
            .find(|c| c.key.room_id.as_str() == room)
            .unwrap()
    };
    let applied = store
        .finish(
            "w",
            &[
                outcome(of("c"), MeetingState::ShutDown, None),
                outcome(of("d"), MeetingState::Stopping, Some(70_000)),
                outcome(of("a"), MeetingState::Failed, None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied, [true, true, true]);
    gauges_match(store, "outcomes and a deferral").await;
    let again = store
        .claim_due(Timestamp(70_000), LEASE, "v", 8)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    gauges_match(store, "a re-claim").await;
    let stale = outcome(of("d"), MeetingState::ShutDown, None);
    assert_eq!(store.finish("w", &[stale]).await.unwrap(), [false]);
    gauges_match(store, "a stale outcome").await;
    let skipped = outcome(&again[0], MeetingState::Skipped, None);
    assert_eq!(store.finish("v", &[skipped]).await.unwrap(), [true]);
    gauges_match(store, "the re-claim's outcome").await;
    // Reconciliation closes an unlisted meeting.
    store
        .apply(&[track("f", 60_000)], Timestamp(60_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .close_unlisted(&[], Timestamp(80_000), Timestamp(80_000))
            .await
            .unwrap(),
        Closing::Closed(1)
    );
    gauges_match(store, "a reconciliation close").await;
    // Pruning what finished before 70 s: every meeting but f (closed at
    // 80 s) and h: 4 ended, 1 shut down, 1 failed, 1 skipped.
    assert_eq!(store.prune(Timestamp(70_000)).await.unwrap(), 7);
    gauges_match(store, "a prune").await;
    // Starts of distinct rooms go in one batch (a statement per step): a
    // newer start ending its room's older meeting, a new room, a start
    // its room's cutoff covers (stored ended), a duplicate.
    let r = store
        .apply(
            &[track("p", 100_000), track("q", 100_000)],
            Timestamp(100_000),
        )
        .await
        .unwrap();
    assert_eq!(r, [Applied::Tracked, Applied::Tracked]);
    gauges_match(store, "a batch of starts").await;
    store
        .apply(
            &[update("r", Some(100_000), true, 100_000)],
            Timestamp(100_000),
        )
        .await
        .unwrap();
    let r = store
        .apply(
            &[
                track("p", 110_000),
                track("s", 110_000),
                track("r", 90_000),
                track("q", 100_000),
            ],
            Timestamp(110_000),
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        [
            Applied::Tracked,
            Applied::Tracked,
            Applied::LateForEndedMeeting,
            Applied::AlreadyKnown
        ]
    );
    gauges_match(store, "a batch ending an older meeting").await;
    // A write that fails changes nothing.
    if let Some(s) = store.sqlite() {
        s.refuse_writes_for_tests(true);
        assert!(store
            .apply(&[track("g", 90_000)], Timestamp(90_000))
            .await
            .is_err());
        s.refuse_writes_for_tests(false);
        gauges_match(store, "a failed write").await;
    }
    assert_eq!(store.gauges().recounts(), 0, "no recount in between");
    // A row written behind the handle's back shows after a recount only.
    let running = store.gauges().get(MeetingState::Running);
    let rows = [(key("h", 90_000), Timestamp(150_000), MeetingState::Running)];
    store.bulk_insert(&rows, Timestamp(90_000)).await.unwrap();
    assert_eq!(store.gauges().get(MeetingState::Running), running);
    store.gauges().recount(&**store).await.unwrap();
    assert_eq!(store.gauges().recounts(), 1);
    gauges_match(store, "a recount").await;
    assert_eq!(store.gauges().get(MeetingState::Running), running + 1);
}

fn to_forward(lane: &str, n: u8) -> NewForward {
    NewForward {
        lane: lane.to_owned(),
        // Bytes that are not UTF-8 come back as they went in.
        body: [lane.as_bytes(), &[b'-', n, 0xff, 0x00]].concat(),
        signature: format!("sig-{lane}-{n}"),
        content_type: (n == 1).then(|| "application/json".to_owned()),
    }
}

fn done(c: &ForwardClaim, retry_in: Option<Duration>) -> ForwardRecord {
    ForwardRecord {
        id: c.id,
        attempts: c.attempts,
        retry_in,
        error: retry_in.map(|_| "HTTP 503".to_owned()),
    }
}

async fn the_outbox_goes_out_in_order_per_lane_under_leases(store: &Store) {
    let t = 1_000_000;
    let applied = store
        .apply_deliveries(
            &[track("a", t)],
            &[
                to_forward("room:a", 1),
                to_forward("room:a", 2),
                to_forward("room:b", 1),
            ],
            Timestamp(t),
        )
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Tracked], "the plan applies as before");
    assert_eq!(store.pending_forwards().await.unwrap(), 3);
    // Only each lane's head, with what was written.
    let claims = store
        .claim_forwards(Timestamp(t), LEASE, "A", 10)
        .await
        .unwrap();
    assert_eq!(claims.len(), 2, "{claims:?}");
    let (a1, b1) = (&claims[0], &claims[1]);
    let want = to_forward("room:a", 1);
    assert_eq!(
        (&a1.lane, &a1.body, &a1.signature, &a1.content_type),
        (&want.lane, &want.body, &want.signature, &want.content_type)
    );
    assert_eq!((a1.received_at, a1.attempts), (Timestamp(t), 1));
    assert_eq!(b1.lane, "room:b");
    // Leased heads hold their lanes: nothing for another replica.
    assert!(store
        .claim_forwards(Timestamp(t), LEASE, "B", 10)
        .await
        .unwrap()
        .is_empty());
    // a1 failed (retry in 5 s), b1 delivered.
    let r = store
        .finish_forwards(
            "A",
            &[done(a1, Some(Duration::from_secs(5))), done(b1, None)],
            Timestamp(t + 1000),
        )
        .await
        .unwrap();
    assert_eq!(r, [true, true]);
    // Before the retry time nothing of lane a goes, a2 included.
    assert!(store
        .claim_forwards(Timestamp(t + 5999), LEASE, "B", 10)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_forwards(Timestamp(t + 6000), LEASE, "B", 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (a1.id, 2));
    // The earlier claim's record no longer applies.
    assert_eq!(
        store
            .finish_forwards("A", &[done(a1, None)], Timestamp(t + 6000))
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        store
            .finish_forwards("B", &[done(&again[0], None)], Timestamp(t + 6000))
            .await
            .unwrap(),
        [true]
    );
    // Now a2 is the head; a claim whose lease expired is claimed again.
    let a2 = store
        .claim_forwards(Timestamp(t + 6000), LEASE, "B", 10)
        .await
        .unwrap();
    assert_eq!(a2.len(), 1);
    assert_eq!(a2[0].body, to_forward("room:a", 2).body);
    assert_eq!(a2[0].content_type, None);
    let expired_lease = t + 6000 + LEASE.as_millis() as i64;
    let taken = store
        .claim_forwards(Timestamp(expired_lease), LEASE, "A", 10)
        .await
        .unwrap();
    assert_eq!((taken[0].id, taken[0].attempts), (a2[0].id, 2));
    assert_eq!(store.pending_forwards().await.unwrap(), 1);
}
