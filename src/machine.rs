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
    limits: Limits,
    phase: Phase,
    /// Valid while armed: the instant the session ends without activity.
    deadline: Millis,
}

impl Machine {
    /// A machine in [`Phase::Waiting`].
    pub fn new(limits: Limits) -> Self {
        Machine {
            limits,
            phase: Phase::Waiting,
            deadline: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The limits this machine enforces.
    pub fn limits(&self) -> Limits {
        self.limits
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
        self.deadline = now.saturating_add(self.limits.timeout);
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
        if at >= self.deadline {
            return self.terminate();
        }
        let deadline = at.saturating_add(self.limits.timeout);
        if deadline <= self.deadline {
            return Transition::None;
        }
        self.deadline = deadline;
        if self.phase == Phase::Prompted {
            self.phase = Phase::Active;
            return Transition::Resumed;
        }
        Transition::None
    }

    /// Re-checks the deadline at `now` (the timer fired, or the page became
    /// visible / focused / resumed after a possible sleep). If both the prompt
    /// start and the deadline passed, it terminates without prompting.
    pub fn check(&mut self, now: Millis) -> Transition {
        if !self.phase.is_armed() {
            return Transition::None;
        }
        if now >= self.deadline {
            return self.terminate();
        }
        if self.phase == Phase::Active && self.limits.prompt > 0 && now >= self.prompt_at() {
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
            Phase::Waiting => self.limits.timeout,
            Phase::Active | Phase::Prompted => self.deadline.saturating_sub(now),
            Phase::Terminated | Phase::Stopped => 0,
        }
    }

    /// When the caller's one timer should next fire (absolute time), or
    /// `None` when no timer is needed. While prompted with a visible
    /// countdown (`countdown = true`), that is the next instant the displayed
    /// whole seconds change, so the display is recomputed from the deadline.
    pub fn next_wake(&self, now: Millis, countdown: bool) -> Option<Millis> {
        match self.phase {
            Phase::Active if self.limits.prompt > 0 => Some(self.prompt_at()),
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
        self.deadline - self.limits.prompt
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

    #[test]
    fn a_clock_that_jumps_back_never_shortens_the_deadline() {
        let mut m = armed();
        assert_eq!(m.activity(T0 - 60_000), Transition::None);
        assert_eq!(m.deadline(), Some(T0 + T));
        assert_eq!(m.check(T0 - 60_000), Transition::None);
    }
}
