//! Pokes for the tasks that sleep until a time the store knows: the
//! scheduler (deadlines), the warner (deadline − `--warn-before`), and any
//! later [`runner`](crate::runner) job that [`Wake::subscribe`]s.
//!
//! One [`Notify`] per sleeper, not one shared: `notify_one` stores a permit
//! for one waiter only, so a shared one would wake the scheduler or the
//! warner, not both; `notify_waiters` stores none, so a poke landing while a
//! task is busy (not waiting) would be lost.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Pokes every sleeping task when something they wait for may have moved
/// (a meeting tracked, a deadline changed, a `NOTIFY` from another replica).
#[derive(Debug, Default)]
pub struct Wake {
    sleepers: Mutex<Vec<Arc<Notify>>>,
    forwarder: Arc<Notify>,
}

impl Wake {
    /// Wakes every subscriber (each keeps the poke until it next waits).
    pub fn poke(&self) {
        for sleeper in self
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            sleeper.notify_one();
        }
    }

    /// A new sleeper that every [`Wake::poke`] wakes.
    pub fn subscribe(&self) -> Arc<Notify> {
        let sleeper = Arc::new(Notify::new());
        self.sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sleeper.clone());
        sleeper
    }

    /// Wakes the forwarder only: deliveries to forward were committed.
    pub fn poke_forwarder(&self) {
        self.forwarder.notify_one();
    }

    /// What the forwarder waits on.
    pub fn forwarder(&self) -> Arc<Notify> {
        self.forwarder.clone()
    }
}
