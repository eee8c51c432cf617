//! Property tests of the pure state machine: whatever the interleaving of
//! activity, timer firings, clock jumps and stops, `session_termination` is
//! asked for at most once, and never before `timeout` ms without activity
//! (the alone timeout while solo), never while a hold (speech, OS presence)
//! is on, and never in the same instant the user became solo.
#![cfg(not(target_arch = "wasm32"))]

use eyeson_guard::machine::{Limits, Machine, Millis, Phase, Transition};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Input {
    /// The clock moves by this many ms (negative: the user set it back).
    Jump(i64),
    Activity,
    Check,
    Start,
    Stop,
    Hold(bool),
    Solo(bool),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (-5_000i64..50_000).prop_map(Input::Jump),
        1 => (0i64..10_000_000).prop_map(Input::Jump), // a long sleep
        3 => Just(Input::Activity),
        3 => Just(Input::Check),
        1 => Just(Input::Start),
        1 => Just(Input::Stop),
        1 => any::<bool>().prop_map(Input::Hold),
        2 => any::<bool>().prop_map(Input::Solo),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn terminates_at_most_once_and_never_early(
        timeout in 1u64..100_000,
        prompt_frac in 0u64..100,
        alone_frac in prop::option::of(1u64..100),
        inputs in prop::collection::vec(input(), 0..200),
    ) {
        let prompt = timeout * prompt_frac / 100;
        // As options.rs builds them: shorter, the prompt at most half of it.
        let alone = alone_frac
            .map(|f| (timeout * f / 100).max(1))
            .filter(|&a| a < timeout)
            .map(|a| Limits::new(a, prompt.min(a / 2)).unwrap());
        let shortest = alone.map_or(timeout, |a| a.timeout());
        let longest_prompt = prompt.max(alone.map_or(0, |a| a.prompt()));
        let mut m = Machine::new(Limits::new(timeout, prompt).unwrap()).with_alone(alone);
        let mut now: Millis = 1_700_000_000_000;
        // The latest instant that counted as presence (start or activity).
        let mut latest: Option<Millis> = None;
        let mut terminations = 0;

        for i in inputs {
            let before = m.phase();
            let was_held = m.is_held();
            let t = match i {
                Input::Jump(d) => { now = now.saturating_add_signed(d); continue; }
                Input::Start => { let t = m.start(now); if t == Transition::Armed { latest = Some(now); } t }
                Input::Activity => m.activity(now),
                Input::Check => m.check(now),
                Input::Stop => m.stop(),
                Input::Hold(on) => m.hold(now, on, now),
                Input::Solo(solo) => {
                    let due = m.clone().check(now) == Transition::Terminate;
                    let t = m.set_solo(now, solo);
                    if !due {
                        prop_assert_ne!(m.clone().check(now), Transition::Terminate, "becoming solo ended at once");
                    }
                    t
                }
            };
            if m.is_held() {
                prop_assert_ne!(m.clone().check(now.saturating_add(10 * timeout)), Transition::Terminate);
            }
            match t {
                Transition::Terminate => {
                    terminations += 1;
                    let l = latest.expect("terminated without ever being armed");
                    prop_assert!(now >= l + shortest, "terminated at {now}, last presence {l}, timeout {shortest}");
                    prop_assert!(before.is_armed());
                }
                Transition::Prompted { remaining } => {
                    prop_assert!(remaining > 0 && remaining <= longest_prompt);
                    prop_assert_eq!(before, Phase::Active);
                }
                Transition::Resumed => prop_assert_eq!(before, Phase::Prompted),
                _ => {}
            }
            let presence = matches!(i, Input::Activity)
                || (matches!(i, Input::Hold(_)) && was_held != m.is_held());
            if presence && t != Transition::Terminate && before.is_armed() {
                latest = Some(latest.map_or(now, |l| l.max(now)));
            }
            if matches!(before, Phase::Terminated | Phase::Stopped) {
                prop_assert_eq!(m.phase(), before, "final phases are final");
                prop_assert_eq!(t, Transition::None);
            }
            // The single timer always has somewhere sensible to be.
            if m.is_held() && m.phase().is_armed() {
                prop_assert_eq!(m.next_wake(now, true), None, "no timer while held");
            } else if m.phase().is_armed() {
                let wake = m.next_wake(now, true).unwrap();
                prop_assert!(wake <= m.deadline().unwrap());
                prop_assert!(m.quiet_until() <= m.deadline().unwrap());
            } else {
                prop_assert_eq!(m.next_wake(now, true), None);
            }
        }
        prop_assert!(terminations <= 1);
        // Liveness: an armed guard always ends once its deadline is reached
        // (after a hold, once released).
        m.hold(now, false, now);
        if let Some(deadline) = m.deadline() {
            prop_assert_eq!(m.check(deadline), Transition::Terminate);
        }
    }

    #[test]
    fn recorded_activity_before_quiet_until_never_changes_the_phase(
        timeout in 2u64..100_000,
        prompt_frac in 0u64..100,
        offsets in prop::collection::vec(0u64..1_000_000, 1..50),
    ) {
        // The JS hot path only records events before `quiet_until()` and
        // folds the latest one in later; that is sound only if such events
        // could never have caused a transition.
        let prompt = timeout * prompt_frac / 100;
        let mut m = Machine::new(Limits::new(timeout, prompt).unwrap());
        let t0: Millis = 1_000;
        m.start(t0);
        for off in offsets {
            let at = t0 + off;
            if at < m.quiet_until() {
                let before = m.phase();
                prop_assert_eq!(m.activity(at), Transition::None);
                prop_assert_eq!(m.phase(), before);
            } else {
                m.check(at);
            }
        }
    }
}
