//! Pokes for the [`runner`](crate::runner) jobs that sleep until a time
//! the store knows. One [`Notify`] per sleeper: a shared one's `notify_one`
//! would wake one of them, and `notify_waiters` would lose a poke landing
//! while a job is busy.

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
        self.sleepers().iter().for_each(|s| s.notify_one());
    }

    /// A new sleeper that every [`Wake::poke`] wakes.
    pub fn subscribe(&self) -> Arc<Notify> {
        let sleeper = Arc::new(Notify::new());
        self.sleepers().push(sleeper.clone());
        sleeper
    }

    fn sleepers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Notify>>> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
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
