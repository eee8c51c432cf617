//! What a write changed, for the [`Store`](crate::store_handle::Store)
//! handle to apply once committed (gauges, the write-health flag).

use crate::domain::MeetingState;

/// Per-state changes one write made (negative: meetings left that state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateDelta(pub(crate) [i64; StateDelta::LEN]);

impl StateDelta {
    /// How many states there are.
    pub(crate) const LEN: usize = MeetingState::ALL.len();

    /// The slot of `state`: its place in [`MeetingState::ALL`].
    pub(crate) fn index(state: MeetingState) -> usize {
        state as usize
    }

    /// `n` meetings appeared in `state`.
    pub fn added(&mut self, state: MeetingState, n: u64) {
        let slot = &mut self.0[Self::index(state)];
        *slot = slot.saturating_add_unsigned(n);
    }

    /// `n` meetings left `state` (deleted).
    pub fn removed(&mut self, state: MeetingState, n: u64) {
        let slot = &mut self.0[Self::index(state)];
        *slot = slot.saturating_sub_unsigned(n);
    }

    /// A change of `n` meetings moving from `from` to `to`.
    pub fn moving(from: MeetingState, to: MeetingState, n: u64) -> Self {
        let mut d = Self::default();
        d.moved(from, to, n);
        d
    }

    /// `n` meetings moved from `from` to `to`.
    pub fn moved(&mut self, from: MeetingState, to: MeetingState, n: u64) {
        if from != to {
            self.removed(from, n);
            self.added(to, n);
        }
    }

    /// The change for `state`.
    pub fn get(&self, state: MeetingState) -> i64 {
        self.0[Self::index(state)]
    }

    /// Whether nothing changed.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

/// A committed write's result and what it changed (no `Deref`: only the
/// handle, which applies the effect, hands the value on).
#[must_use = "a write's effect is applied by the handle: call the write on `Store`, not on the engine"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written<T> {
    /// What the write answers.
    pub value: T,
    /// The meetings' exact per-state changes.
    pub delta: StateDelta,
    /// Whether the commit changed something (only that proves the store
    /// writable).
    pub changed: bool,
    /// Rows went whose states the write cannot tell: count again.
    pub recount: bool,
}

impl<T> Written<T> {
    /// A write that changed no meeting's state; `changed`: whether it
    /// changed anything at all.
    pub fn new(value: T, changed: bool) -> Self {
        Written {
            value,
            delta: StateDelta::default(),
            changed,
            recount: false,
        }
    }

    /// The same write, having made these state changes.
    pub fn with_delta(mut self, delta: StateDelta) -> Self {
        self.delta = delta;
        self
    }
}
