//! Fuzzes the browser guard's pure option validation and then its state
//! machine with the limits that passed: a number the page hands over
//! either becomes a valid limit or an error that names the option it came
//! from, and the machine then terminates at most once, never before
//! `timeoutMs` without activity, whatever the inputs and clock jumps.
#![no_main]

use eyeson_guard::machine::{Machine, Millis, Transition};
use eyeson_guard::options::{limits, millis, DEFAULT_PROMPT_MS, MAX_TIMEOUT_MS};
use libfuzzer_sys::fuzz_target;

fn f64_at(data: &[u8], at: usize) -> Option<f64> {
    let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
    Some(f64::from_le_bytes(bytes))
}

fuzz_target!(|data: &[u8]| {
    let Some(timeout_in) = f64_at(data, 0) else {
        return;
    };
    // Byte 8 says whether promptMs was given; bytes 9..17 are its value.
    let prompt_in = match data.get(8) {
        Some(b) if b & 1 == 1 => f64_at(data, 9),
        _ => None,
    };
    let ops = data.get(17..).unwrap_or_default();

    let valid = |v: f64, min: f64| v.is_finite() && v >= min && v <= MAX_TIMEOUT_MS;
    let timeout = millis("timeoutMs", timeout_in, false);
    match &timeout {
        Ok(t) => assert!(valid(timeout_in, 1.0) && *t >= 1 && *t as f64 <= timeout_in),
        Err(e) => {
            assert!(!valid(timeout_in, 1.0), "{timeout_in} refused: {e}");
            assert!(e.starts_with("eyeson-guard: timeoutMs "), "{e}");
        }
    }
    let prompt = prompt_in.map(|p| millis("promptMs", p, true));
    if let (Some(p_in), Some(p)) = (prompt_in, &prompt) {
        match p {
            Ok(_) => assert!(valid(p_in, 0.0)),
            Err(e) => {
                assert!(!valid(p_in, 0.0), "{p_in} refused: {e}");
                assert!(e.starts_with("eyeson-guard: promptMs "), "{e}");
            }
        }
    }
    let Ok(timeout) = timeout else { return };
    let prompt = match prompt {
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => return,
        None => None,
    };
    let limits = match limits(timeout, prompt) {
        Ok(l) => l,
        Err(e) => {
            assert!(
                prompt.is_some_and(|p| p >= timeout),
                "{timeout}/{prompt:?}: {e}"
            );
            assert!(e.contains("promptMs must be less than timeoutMs"), "{e}");
            return;
        }
    };
    assert_eq!(limits.timeout(), timeout);
    assert!(limits.prompt() < limits.timeout());
    assert_eq!(
        limits.prompt(),
        prompt.unwrap_or(DEFAULT_PROMPT_MS.min(timeout / 2))
    );

    // The machine under those limits: each op byte is an input; jumps move
    // the clock forward or (rarely) back.
    let mut m = Machine::new(limits);
    let mut now: Millis = 1_700_000_000_000;
    let mut presence: Option<Millis> = None;
    let mut terminations = 0;
    for &op in ops {
        let before = m.phase();
        let activity = op % 8 == 4 || op % 8 == 5;
        let t = match op % 8 {
            0 | 1 => {
                now = now.saturating_add(u64::from(op) * 977);
                continue;
            }
            2 => {
                now = now.saturating_sub(u64::from(op));
                continue;
            }
            3 => {
                let t = m.start(now);
                if t == Transition::Armed {
                    presence = Some(now);
                }
                t
            }
            4 | 5 => m.activity(now),
            6 => m.check(now),
            _ => m.stop(),
        };
        if t == Transition::Terminate {
            terminations += 1;
            let since = presence.expect("terminated without being armed");
            assert!(now >= since + limits.timeout(), "terminated early");
            assert!(before.is_armed());
        }
        if activity && t != Transition::Terminate && before.is_armed() {
            presence = Some(presence.map_or(now, |p| p.max(now)));
        }
    }
    assert!(terminations <= 1, "terminated {terminations} times");
    // An armed guard always ends once its deadline is reached.
    if let Some(deadline) = m.deadline() {
        assert_eq!(m.check(deadline), Transition::Terminate);
    }
});
