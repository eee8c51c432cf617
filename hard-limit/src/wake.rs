//! Pokes for the tasks that sleep until a time the store knows: the
//! scheduler (deadlines) and the warner (deadline − `--warn-before`).
//!
//! One [`Notify`] each, not one shared: `notify_one` stores a permit for one
//! waiter only, so a shared one would wake the scheduler or the warner, not
//! both; `notify_waiters` stores none, so a poke landing while a task is
//! busy (not waiting) would be lost.

use tokio::sync::Notify;

/// Pokes every sleeping task when something they wait for may have moved
/// (a meeting tracked, a deadline changed, a `NOTIFY` from another replica).
#[derive(Debug, Default)]
pub struct Wake {
    scheduler: Notify,
    warner: Notify,
    forwarder: std::sync::Arc<Notify>,
}

impl Wake {
    /// Wakes every task (each keeps the poke until it next waits).
    pub fn poke(&self) {
        self.scheduler.notify_one();
        self.warner.notify_one();
    }

    /// What the scheduler waits on.
    pub fn scheduler(&self) -> &Notify {
        &self.scheduler
    }

    /// Wakes the forwarder only: deliveries to forward were committed.
    pub fn poke_forwarder(&self) {
        self.forwarder.notify_one();
    }

    /// What the forwarder waits on.
    pub fn forwarder(&self) -> std::sync::Arc<Notify> {
        self.forwarder.clone()
    }

    /// What the warner waits on.
    pub fn warner(&self) -> &Notify {
        &self.warner
    }
}
