//! Property tests of the meeting state transitions, run against the real
//! SQLite and PostgreSQL stores through the `Store` handle, with the scheduler's
//! protocol (claim → guard → call → finish) modelled step by step and a
//! fake clock.
//!
//! For any interleaving of duplicated, reordered deliveries, clock advances,
//! claims and crashed workers:
//! - no meeting is ever called before its deadline;
//! - no meeting is called while a newer meeting of its room is known;
//! - each meeting is called at most once per crashed or deferred claim
//!   plus once; in particular, at most one call completes;
//! - a deferred meeting is not claimed again before its retry time;
//! - final states never change;
//! - a meeting eyeson reported ended before its deadline is never called.

use std::collections::HashMap;
use std::time::Duration;

use eyeson_hard_limit::domain::{
    ended_by_cutoff, plan, retry_delay, Limits, MeetingKey, MeetingState, Policy, RoomId,
    RoomUpdate, Timestamp,
};
use eyeson_hard_limit::store::Outcome;
use eyeson_hard_limit::store_handle::Store;
use proptest::prelude::*;

const LIMIT_MS: i64 = 10_000;
const LEASE: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
enum Op {
    /// A `room_update` for room `room`, meeting number `start` (or null).
    Deliver {
        room: u8,
        start: Option<u8>,
        shutdown: bool,
    },
    /// The clock moves.
    Advance(u16),
    /// A scheduler pass; `crash` workers die after calling, before finishing.
    Claim { crash: bool, answer: Answer },
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    NotFound,
    Forbidden,
    /// 429/5xx until the claim's budget ran out: deferred, not final.
    Unavailable,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, proptest::option::weighted(0.9, 0u8..4), proptest::bool::weighted(0.3))
            .prop_map(|(room, start, shutdown)| Op::Deliver { room, start, shutdown }),
        3 => (0u16..8_000).prop_map(Op::Advance),
        3 => (proptest::bool::weighted(0.2), prop_oneof![Just(Answer::Ok), Just(Answer::NotFound), Just(Answer::Forbidden), Just(Answer::Unavailable)])
            .prop_map(|(crash, answer)| Op::Claim { crash, answer }),
    ]
}

fn key(room: u8, start: u8) -> MeetingKey {
    MeetingKey {
        room_id: RoomId::parse(&format!("room-{room}")).unwrap(),
        // Meetings of a room start 5 s apart: consecutive meetings.
        started_at: Timestamp(1_000_000 + i64::from(start) * 5_000),
    }
}

fn outcome(key: &MeetingKey, state: MeetingState, at: Timestamp, attempts: i64) -> Outcome {
    Outcome {
        key: key.clone(),
        state,
        at,
        attempts,
        retry_at: None,
        ended_alone: false,
        participants: None,
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    run_on(&store, ops).await
}

async fn run_on(store: &Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let policy = Policy {
        limits: Limits::new(Duration::from_millis(LIMIT_MS as u64)),
        grace: Duration::ZERO,
    };
    let mut now = Timestamp(1_000_000);
    let mut calls: HashMap<MeetingKey, u32> = HashMap::new();
    let mut crashes: HashMap<MeetingKey, u32> = HashMap::new();
    let mut completed: HashMap<MeetingKey, u32> = HashMap::new();
    let mut deferrals: HashMap<MeetingKey, u32> = HashMap::new();
    let mut deferred_until: HashMap<MeetingKey, Timestamp> = HashMap::new();
    let mut reported_ended_before_deadline: Vec<MeetingKey> = Vec::new();
    let mut finals: HashMap<MeetingKey, MeetingState> = HashMap::new();
    let mut worker = 0u32;

    for op in ops {
        match op {
            Op::Deliver {
                room,
                start,
                shutdown,
            } => {
                let k = start.map(|s| key(room, s));
                let update = RoomUpdate {
                    room_id: RoomId::parse(&format!("room-{room}")).unwrap(),
                    started_at: k.as_ref().map(|k| k.started_at),
                    shutdown,
                    event_time: Timestamp(now.0 - now.0 % 1000),
                    guest_token: None,
                };
                if shutdown {
                    if let Some(k) = &k {
                        if now < policy.deadline(k) {
                            reported_ended_before_deadline.push(k.clone());
                        }
                    }
                }
                store.apply(&[plan(&update, &policy)], now).await.unwrap();
            }
            Op::Advance(ms) => now = Timestamp(now.0 + i64::from(ms)),
            Op::Claim { crash, answer } => {
                worker += 1;
                let owner = format!("w{worker}");
                let claims = store.claim_due(now, LEASE, &owner, 8).await.unwrap();
                for c in claims {
                    prop_assert!(
                        c.deadline <= now,
                        "claimed before its deadline: {c:?} at {now:?}"
                    );
                    if let Some(t) = deferred_until.get(&c.key) {
                        prop_assert!(now >= *t, "claimed before its retry time: {c:?}");
                    }
                    // The guard read with the claim is the store's.
                    prop_assert_eq!(c.guard, store.guard(&c.key).await.unwrap());
                    // The scheduler's guards, in its order.
                    if ended_by_cutoff(&c.key, c.guard.cutoff) {
                        let ok = store
                            .finish(
                                &owner,
                                &[outcome(&c.key, MeetingState::Ended, now, c.attempts)],
                            )
                            .await
                            .unwrap();
                        prop_assert_eq!(ok, [true]);
                        continue;
                    }
                    if c.guard.newer_meeting {
                        let ok = store
                            .finish(
                                &owner,
                                &[outcome(&c.key, MeetingState::Skipped, now, c.attempts)],
                            )
                            .await
                            .unwrap();
                        prop_assert_eq!(ok, [true]);
                        continue;
                    }
                    prop_assert!(
                        !reported_ended_before_deadline.contains(&c.key),
                        "called a meeting eyeson reported ended: {:?}",
                        c.key
                    );
                    *calls.entry(c.key.clone()).or_default() += 1;
                    if crash {
                        *crashes.entry(c.key.clone()).or_default() += 1;
                        continue;
                    }
                    let state = match answer {
                        Answer::Ok => MeetingState::ShutDown,
                        Answer::NotFound => MeetingState::Ended,
                        Answer::Forbidden => MeetingState::Failed,
                        Answer::Unavailable => {
                            let at = now.plus(retry_delay(Duration::from_secs(2), c.attempts));
                            let mut o = outcome(&c.key, MeetingState::Stopping, now, c.attempts);
                            o.retry_at = Some(at);
                            prop_assert_eq!(store.finish(&owner, &[o]).await.unwrap(), [true]);
                            *deferrals.entry(c.key.clone()).or_default() += 1;
                            deferred_until.insert(c.key.clone(), at);
                            continue;
                        }
                    };
                    if store
                        .finish(&owner, &[outcome(&c.key, state, now, c.attempts)])
                        .await
                        .unwrap()
                        == [true]
                    {
                        *completed.entry(c.key.clone()).or_default() += 1;
                    }
                }
            }
        }
        // Invariants after every step.
        for m in store.list(Timestamp(i64::MIN), None, 10_000).await.unwrap() {
            if let Some(prev) = finals.get(&m.key) {
                prop_assert_eq!(*prev, m.state, "a final state changed for {:?}", m.key);
            }
            if !m.state.is_open() {
                finals.insert(m.key.clone(), m.state);
            }
        }
        for (k, n) in &calls {
            let crashed = crashes.get(k).copied().unwrap_or(0);
            let deferred = deferrals.get(k).copied().unwrap_or(0);
            prop_assert!(
                *n <= crashed + deferred + 1,
                "{k:?} called {n} times with {crashed} crashes and {deferred} deferrals"
            );
            prop_assert!(completed.get(k).copied().unwrap_or(0) <= 1);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_keeps_the_shutdown_rules(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

/// The same properties on PostgreSQL (fewer cases: each starts from an
/// emptied database), with the caller's clock so time can be stepped.
#[test]
fn any_interleaving_keeps_the_shutdown_rules_on_postgres() {
    use eyeson_hard_limit::store::PgStore;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(crate::pg::PgDb::create()) else {
        return;
    };
    let store = rt.block_on(async {
        Store::from(PgStore::connect_with_caller_clock(&db.url).await.unwrap())
    });
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        rt.block_on(async {
            let Some(pg) = store.postgres() else {
                unreachable!()
            };
            sqlx::query("TRUNCATE meetings, room_shutdowns")
                .execute(pg.pool())
                .await
                .unwrap();
            run_on(&store, ops).await
        })
    });
    rt.block_on(store.close());
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

proptest! {
    /// The stable twin of the cargo-fuzz target (`fuzz/` at the repository root, `webhook`): arbitrary bytes
    /// never panic the signature check, the parser or the decision; a body
    /// signed with the key verifies, a changed signature does not.
    #[test]
    fn arbitrary_bytes_never_panic_the_webhook_path(
        header in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..400),
        json_ish in "\\{\"timestamp\":[0-9]{1,12},\"type\":\"room_update\",\"room\":\\{\"id\":\"[ -~]{0,12}\",\"started_at\":(null|\"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z\"),\"shutdown\":(true|false)\\}\\}",
    ) {
        use eyeson_hard_limit::webhook::{parse_delivery, sign, verify_signature, Event};
        const K: &[u8] = b"prop-key";
        let policy = Policy { limits: Limits::new(Duration::from_secs(60)), grace: Duration::ZERO };
        for b in [&body[..], json_ish.as_bytes()] {
            let _ = verify_signature(K, b, Some(&header));
            let good = sign(K, b);
            prop_assert!(verify_signature(K, b, Some(good.as_bytes())).is_ok());
            let mut bad = good.into_bytes();
            bad[63] = if bad[63] == b'0' { b'1' } else { b'0' };
            prop_assert!(verify_signature(K, b, Some(&bad)).is_err());
            if let Ok(d) = parse_delivery(b) {
                if let Event::RoomUpdate(u) = d.event {
                    let _ = plan(&u, &policy);
                }
            }
        }
    }
}
