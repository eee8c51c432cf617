//! The inactivity state machine: one deadline in wall-clock milliseconds.
//!
//! Pure logic, no browser types: the caller passes the current time into
//! every input, so the same code runs under `cargo test` with a fake clock and
//! in the browser with `Date.now()`. Wall-clock time (not a monotonic timer)
//! is the point: time a laptop spends asleep must count as inactivity.
//!
//! ```text
//!  waiting ──start──▶ active ──(deadline − prompt)──▶ prompted ──deadline──▶ terminated
//!                       ▲                                 │
//!                       └────────── activity ─────────────┘
//!  any of waiting/active/prompted ──stop──▶ stopped
//! ```
//!
//! Activity only moves the deadline; it never arms or clears a timer. The
//! caller keeps at most one timer, armed for [`Machine::next_wake`], and calls
//! [`Machine::check`] when it fires or when the page wakes up.
//!
//! Two conditions change the rules without being input events:
//! - a *hold* ([`Machine::hold`]): the user is present without touching the
//!   page (speaking, or active elsewhere on the computer). While held the
//!   deadline cannot pass; the release counts as activity.
//! - being *solo* ([`Machine::set_solo`]): the only participant left. The
//!   shorter alone limits apply, measured from the last activity, but
//!   becoming solo never ends a session at once: the user is asked first.

/// Milliseconds since the Unix epoch (what `Date.now()` returns).
pub type Millis = u64;

/// The guard's phase, as exposed to JavaScript by [`Phase::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, not armed yet (armed by `start()` or the SDK's `accept`).
    Waiting,
    /// Armed, the user counts as present.
    Active,
    /// In the "Are you still there?" window before the deadline.
    Prompted,
    /// `session_termination` was sent. Final.
    Terminated,
    /// Stopped without sending anything. Final.
    Stopped,
}

impl Phase {
    /// The state name of the JavaScript API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Active => "active",
            Phase::Prompted => "prompted",
            Phase::Terminated => "terminated",
            Phase::Stopped => "stopped",
        }
    }

    /// Whether the guard is armed (watching for activity).
    pub fn is_armed(self) -> bool {
        matches!(self, Phase::Active | Phase::Prompted)
    }
}

/// The soft limit and its prompt window. `prompt < timeout` always holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    timeout: Millis,
    prompt: Millis,
}

impl Limits {
    /// `None` unless `0 < timeout` and `prompt < timeout` (options.rs turns
    /// that into an error message naming the option).
    pub fn new(timeout: Millis, prompt: Millis) -> Option<Self> {
        (timeout > 0 && prompt < timeout).then_some(Limits { timeout, prompt })
    }

    /// Inactivity that ends the session.
    pub fn timeout(self) -> Millis {
        self.timeout
    }

    /// Length of the prompt window at the end of the timeout (0 = no prompt).
    pub fn prompt(self) -> Millis {
        self.prompt
    }
}

/// What an input changed; the caller turns it into side effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing observable changed (the deadline may have moved).
    None,
    /// `waiting → active`.
    Armed,
    /// `active → prompted`: show the prompt, `remaining` ms are left.
    Prompted {
        /// Time left until the deadline, > 0.
        remaining: Millis,
    },
    /// `prompted → active`: the user answered or was active.
    Resumed,
    /// `→ terminated`: send `session_termination` now. Returned at most once.
    Terminate,
    /// `→ stopped`: release everything, send nothing.
    Stopped,
}

/// The state machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct Machine {
    normal: Limits,
    /// The limits while solo; `None` = being alone changes nothing.
    alone: Option<Limits>,
    solo: bool,
    held: bool,
    phase: Phase,
    /// Valid while armed: the instant the session ends without activity.
    deadline: Millis,
    /// Valid while armed: the latest activity counted (or the start).
    last: Millis,
}

impl Machine {
    /// A machine in [`Phase::Waiting`].
    pub fn new(limits: Limits) -> Self {
        Machine {
            normal: limits,
            alone: None,
            solo: false,
            held: false,
            phase: Phase::Waiting,
            deadline: 0,
            last: 0,
        }
    }

    /// The limits that apply while the local user is the only participant.
    pub fn with_alone(mut self, alone: Option<Limits>) -> Self {
        self.alone = alone;
        self
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The limits in force now (the alone limits while solo).
    pub fn limits(&self) -> Limits {
        match (self.solo, self.alone) {
            (true, Some(alone)) => alone,
            _ => self.normal,
        }
    }

    /// Whether a hold is on (see [`Machine::hold`]).
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Whether the local user is the only participant.
    pub fn is_solo(&self) -> bool {
        self.solo
    }

    /// The deadline, while armed.
    pub fn deadline(&self) -> Option<Millis> {
        self.phase.is_armed().then_some(self.deadline)
    }

    /// Arms the guard: `waiting → active` with a full timeout. A no-op in
    /// every other phase (the SDK may announce `accept` more than once).
    pub fn start(&mut self, now: Millis) -> Transition {
        if self.phase != Phase::Waiting {
            return Transition::None;
        }
        self.phase = Phase::Active;
        self.last = now;
        self.deadline = now.saturating_add(self.limits().timeout);
        Transition::Armed
    }

    /// User activity observed at `at`.
    ///
    /// Activity that arrives at or after the deadline does not revive the
    /// session (the machine slept through it): it terminates. Activity older
    /// than the last one already counted changes nothing, so replaying a
    /// stale timestamp can neither resume a prompt nor end the session early.
    pub fn activity(&mut self, at: Millis) -> Transition {
        if !self.phase.is_armed() {
            return Transition::None;
        }
        if at >= self.deadline && !self.held {
            return self.terminate();
        }
        if at <= self.last {
            return Transition::None;
        }
        self.last = at;
        self.extend_to(at, at.saturating_add(self.limits().timeout))
    }

    /// Turns a hold on or off at `now`. Holding counts as activity now (it
    /// resumes a prompt; like any activity it cannot revive a session whose
    /// deadline already passed). Releasing counts as activity at `seen` (the
    /// last instant the user was known present, at most `now`); the new
    /// deadline leaves at least the prompt window, so a release never ends
    /// the session at once.
    pub fn hold(&mut self, now: Millis, on: bool, seen: Millis) -> Transition {
        if on == self.held {
            return Transition::None;
        }
        if !self.phase.is_armed() {
            self.held = on;
            return Transition::None;
        }
        if on {
            let t = self.activity(now);
            if t == Transition::Terminate {
                return t;
            }
            self.held = true;
            // Even when the clock went back and `now` moved nothing.
            if self.phase == Phase::Prompted {
                self.phase = Phase::Active;
                return Transition::Resumed;
            }
            return t;
        }
        self.held = false;
        let limits = self.limits();
        self.last = self.last.max(seen.min(now));
        let floor = now.saturating_add(limits.prompt.max(1));
        self.deadline = self.last.saturating_add(limits.timeout).max(floor);
        Transition::None
    }

    /// The local user became, or stopped being, the only participant.
    ///
    /// Becoming solo moves the deadline to `last activity + alone timeout`,
    /// or to `now + prompt window` if that is later, and never later than
    /// it was. Someone joining restores the normal timeout from the last
    /// activity (ending a prompt the alone limit started).
    pub fn set_solo(&mut self, now: Millis, solo: bool) -> Transition {
        if solo == self.solo {
            return Transition::None;
        }
        self.solo = solo;
        if !self.phase.is_armed() || self.alone.is_none() {
            return Transition::None;
        }
        let limits = self.limits();
        if solo {
            let target = self
                .last
                .saturating_add(limits.timeout)
                .max(now.saturating_add(limits.prompt.max(1)));
            self.deadline = self.deadline.min(target);
            return Transition::None;
        }
        self.extend_to(now, self.last.saturating_add(limits.timeout))
    }

    /// Moves the deadline later (never earlier). A prompt ends if `now` is
    /// no longer in the prompt window.
    fn extend_to(&mut self, now: Millis, deadline: Millis) -> Transition {
        if deadline <= self.deadline {
            return Transition::None;
        }
        self.deadline = deadline;
        if self.phase == Phase::Prompted && now < self.prompt_at() {
            self.phase = Phase::Active;
            return Transition::Resumed;
        }
        Transition::None
    }

    /// Re-checks the deadline at `now` (the timer fired, or the page became
    /// visible / focused / resumed after a possible sleep). If both the prompt
    /// start and the deadline passed, it terminates without prompting.
    pub fn check(&mut self, now: Millis) -> Transition {
        if !self.phase.is_armed() || self.held {
            return Transition::None;
        }
        if now >= self.deadline {
            return self.terminate();
        }
        if self.phase == Phase::Active && self.limits().prompt > 0 && now >= self.prompt_at() {
            self.phase = Phase::Prompted;
            return Transition::Prompted {
                remaining: self.deadline - now,
            };
        }
        Transition::None
    }

    /// Stops without terminating: `waiting/active/prompted → stopped`.
    pub fn stop(&mut self) -> Transition {
        match self.phase {
            Phase::Terminated | Phase::Stopped => Transition::None,
            _ => {
                self.phase = Phase::Stopped;
                Transition::Stopped
            }
        }
    }

    /// Milliseconds until termination: the full timeout while waiting, 0 once
    /// final, else the distance to the deadline.
    pub fn remaining(&self, now: Millis) -> Millis {
        match self.phase {
            Phase::Waiting => self.limits().timeout,
            _ if self.held => self.limits().timeout,
            Phase::Active | Phase::Prompted => self.deadline.saturating_sub(now),
            Phase::Terminated | Phase::Stopped => 0,
        }
    }

    /// When the caller's one timer should next fire (absolute time), or
    /// `None` when no timer is needed. While prompted with a visible
    /// countdown (`countdown = true`), that is the next instant the displayed
    /// whole seconds change, so the display is recomputed from the deadline.
    pub fn next_wake(&self, now: Millis, countdown: bool) -> Option<Millis> {
        if self.held {
            return None;
        }
        match self.phase {
            Phase::Active if self.limits().prompt > 0 => Some(self.prompt_at()),
            Phase::Active => Some(self.deadline),
            Phase::Prompted if countdown => {
                let left = self.deadline.saturating_sub(now);
                // The display shows ceil(left / 1000); it drops by one when
                // `left` reaches the next lower multiple of 1000.
                let shown = left.div_ceil(1000);
                Some(self.deadline - shown.saturating_sub(1) * 1000)
            }
            Phase::Prompted => Some(self.deadline),
            _ => None,
        }
    }

    /// Activity before this instant only needs recording, not a decision:
    /// it cannot change the phase. This lets the per-event hot path stay in
    /// a few lines of JavaScript that store a timestamp. 0 = report every event.
    pub fn quiet_until(&self) -> Millis {
        match self.phase {
            Phase::Active => self.prompt_at(),
            _ => 0,
        }
    }

    fn prompt_at(&self) -> Millis {
        self.deadline.saturating_sub(self.limits().prompt)
    }

    fn terminate(&mut self) -> Transition {
        self.phase = Phase::Terminated;
        Transition::Terminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 10_000;
    const P: Millis = 3_000;
    const T0: Millis = 1_700_000_000_000;

    fn armed() -> Machine {
        let mut m = Machine::new(Limits::new(T, P).unwrap());
        assert_eq!(m.start(T0), Transition::Armed);
        m
    }

    #[test]
    fn limits_reject_zero_timeout_and_long_prompts() {
        assert!(Limits::new(0, 0).is_none());
        assert!(Limits::new(10, 10).is_none());
        assert!(Limits::new(10, 11).is_none());
        assert_eq!(Limits::new(10, 9).unwrap().prompt(), 9);
        assert_eq!(Limits::new(10, 0).unwrap().timeout(), 10);
    }

    #[test]
    fn waits_until_started() {
        let mut m = Machine::new(Limits::new(T, P).unwrap());
        assert_eq!(m.phase(), Phase::Waiting);
        assert_eq!(m.activity(T0), Transition::None);
        assert_eq!(m.check(T0 + 10 * T), Transition::None);
        assert_eq!(m.remaining(T0), T);
        assert_eq!(m.next_wake(T0, true), None);
        assert_eq!(m.start(T0), Transition::Armed);
        assert_eq!(
            m.start(T0 + 5),
            Transition::None,
            "a second accept does not re-arm"
        );
        assert_eq!(m.deadline(), Some(T0 + T));
    }

    #[test]
    fn prompts_then_terminates_once() {
        let mut m = armed();
        assert_eq!(m.next_wake(T0, true), Some(T0 + T - P));
        assert_eq!(m.check(T0 + T - P - 1), Transition::None);
        assert_eq!(m.check(T0 + T - P), Transition::Prompted { remaining: P });
        assert_eq!(m.phase(), Phase::Prompted);
        assert_eq!(m.check(T0 + T - 1), Transition::None);
        assert_eq!(m.check(T0 + T), Transition::Terminate);
        assert_eq!(m.phase(), Phase::Terminated);
        assert_eq!(m.check(T0 + T + 1), Transition::None);
        assert_eq!(m.activity(T0 + T + 1), Transition::None);
        assert_eq!(m.stop(), Transition::None, "terminated stays terminated");
        assert_eq!(m.remaining(T0), 0);
    }

    #[test]
    fn activity_moves_the_deadline_without_a_transition() {
        let mut m = armed();
        assert_eq!(m.activity(T0 + 4_000), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + 4_000 + T));
        assert_eq!(m.quiet_until(), T0 + 4_000 + T - P);
        assert_eq!(m.remaining(T0 + 5_000), T - 1_000);
    }

    #[test]
    fn activity_during_the_prompt_resumes() {
        let mut m = armed();
        m.check(T0 + T - P);
        assert_eq!(m.quiet_until(), 0, "every event matters while prompted");
        assert_eq!(m.activity(T0 + T - 1), Transition::Resumed);
        assert_eq!(m.phase(), Phase::Active);
        assert_eq!(m.deadline(), Some(T0 + T - 1 + T));
    }

    #[test]
    fn stale_activity_does_not_resume_a_prompt() {
        let mut m = armed();
        m.activity(T0 + 1_000);
        m.check(T0 + 1_000 + T - P);
        assert_eq!(m.activity(T0 + 500), Transition::None);
        assert_eq!(m.activity(T0 + 1_000), Transition::None);
        assert_eq!(m.phase(), Phase::Prompted);
    }

    #[test]
    fn activity_after_a_sleep_past_the_deadline_terminates() {
        let mut m = armed();
        assert_eq!(m.activity(T0 + 3 * T), Transition::Terminate);
        assert_eq!(m.phase(), Phase::Terminated);
    }

    #[test]
    fn waking_past_the_deadline_skips_the_prompt() {
        let mut m = armed();
        assert_eq!(m.check(T0 + 3 * T), Transition::Terminate);
    }

    #[test]
    fn no_prompt_when_prompt_is_zero() {
        let mut m = Machine::new(Limits::new(T, 0).unwrap());
        m.start(T0);
        assert_eq!(m.next_wake(T0, true), Some(T0 + T));
        assert_eq!(m.quiet_until(), T0 + T);
        assert_eq!(m.check(T0 + T - 1), Transition::None);
        assert_eq!(m.phase(), Phase::Active);
        assert_eq!(m.check(T0 + T), Transition::Terminate);
    }

    #[test]
    fn countdown_wakes_on_each_displayed_second() {
        let mut m = armed();
        m.check(T0 + T - P + 250); // 2750 ms left: shows "3"
        assert_eq!(m.next_wake(T0 + T - P + 250, true), Some(T0 + T - 2_000));
        assert_eq!(m.next_wake(T0 + T - 2_000, true), Some(T0 + T - 1_000));
        assert_eq!(m.next_wake(T0 + T - 1, true), Some(T0 + T));
        assert_eq!(m.next_wake(T0 + T - 1_500, false), Some(T0 + T));
    }

    #[test]
    fn stop_is_final_and_never_terminates() {
        let mut m = armed();
        assert_eq!(m.stop(), Transition::Stopped);
        assert_eq!(m.stop(), Transition::None);
        assert_eq!(m.check(T0 + 10 * T), Transition::None);
        assert_eq!(m.start(T0), Transition::None);
        assert_eq!(m.phase().as_str(), "stopped");
    }

    fn alone(timeout: Millis, prompt: Millis) -> Machine {
        let mut m = Machine::new(Limits::new(T, P).unwrap())
            .with_alone(Some(Limits::new(timeout, prompt).unwrap()));
        m.start(T0);
        m
    }

    #[test]
    fn a_hold_keeps_the_deadline_from_passing_and_its_end_counts_as_activity() {
        let mut m = armed();
        assert_eq!(m.hold(T0 + 1_000, true, T0 + 1_000), Transition::None);
        assert_eq!(m.next_wake(T0 + 1_000, true), None, "no timer while held");
        assert_eq!(m.check(T0 + 5 * T), Transition::None);
        assert_eq!(
            m.activity(T0 + 5 * T),
            Transition::None,
            "late input while held"
        );
        assert_eq!(m.remaining(T0 + 6 * T), T);
        assert_eq!(m.hold(T0 + 6 * T, false, T0 + 6 * T), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + 7 * T));
        assert_eq!(
            m.check(T0 + 7 * T - 1),
            Transition::Prompted { remaining: 1 }
        );
        assert_eq!(m.check(T0 + 7 * T), Transition::Terminate);
    }

    #[test]
    fn a_hold_ends_a_prompt_but_cannot_revive_a_passed_deadline() {
        let mut m = armed();
        m.check(T0 + T - P);
        assert_eq!(m.hold(T0 + T - 1, true, T0 + T - 1), Transition::Resumed);
        let mut late = armed();
        assert_eq!(late.hold(T0 + T, true, T0 + T), Transition::Terminate);
        assert!(!late.is_held());
    }

    #[test]
    fn a_release_seen_long_ago_still_leaves_the_prompt_window() {
        let mut m = armed();
        m.hold(T0, true, T0);
        // The OS reports idle: the user was last seen a full timeout ago.
        m.hold(T0 + 2 * T, false, T0 + T);
        assert_eq!(m.deadline(), Some(T0 + 2 * T + P));
        assert_eq!(
            m.check(T0 + 2 * T),
            Transition::Prompted { remaining: P },
            "asked first, never ended at once"
        );
    }

    #[test]
    fn being_alone_applies_the_alone_timeout_from_the_last_activity() {
        let mut m = alone(4_000, 1_000);
        m.activity(T0 + 500);
        assert_eq!(m.set_solo(T0 + 1_000, true), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + 4_500));
        assert_eq!(m.limits().prompt(), 1_000);
        assert_eq!(
            m.check(T0 + 3_500),
            Transition::Prompted { remaining: 1_000 }
        );
        // Someone joins: the normal timeout from the last activity again.
        assert_eq!(m.set_solo(T0 + 3_600, false), Transition::Resumed);
        assert_eq!(m.deadline(), Some(T0 + 500 + T));
        assert_eq!(m.phase(), Phase::Active);
    }

    #[test]
    fn becoming_alone_after_long_quiet_asks_first() {
        let mut m = alone(4_000, 1_000);
        assert_eq!(m.set_solo(T0 + 8_000, true), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + 9_000), "now + the prompt window");
        assert_eq!(
            m.check(T0 + 8_000),
            Transition::Prompted { remaining: 1_000 }
        );
        assert_eq!(m.check(T0 + 8_999), Transition::None);
        assert_eq!(m.check(T0 + 9_000), Transition::Terminate);
    }

    #[test]
    fn becoming_alone_never_moves_the_deadline_later() {
        let mut m = alone(4_000, 1_000);
        m.check(T0 + T - P); // prompted, 3 s left under the normal limit
        m.set_solo(T0 + T - 500, true);
        assert_eq!(m.deadline(), Some(T0 + T));
    }

    #[test]
    fn without_alone_limits_solo_changes_nothing() {
        let mut m = armed();
        assert_eq!(m.set_solo(T0 + 9_000, true), Transition::None);
        assert!(m.is_solo());
        assert_eq!(m.deadline(), Some(T0 + T));
    }

    #[test]
    fn solo_before_the_start_applies_from_the_start() {
        let mut m = Machine::new(Limits::new(T, P).unwrap())
            .with_alone(Some(Limits::new(4_000, 1_000).unwrap()));
        m.set_solo(T0 - 1, true);
        m.start(T0);
        assert_eq!(m.deadline(), Some(T0 + 4_000));
    }

    #[test]
    fn a_clock_that_jumps_back_never_shortens_the_deadline() {
        let mut m = armed();
        assert_eq!(m.activity(T0 - 60_000), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + T));
        assert_eq!(m.check(T0 - 60_000), Transition::None);
    }
}
