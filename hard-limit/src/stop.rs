//! A stop signal: the [`crate::supervisor`] holds a [`Stopper`], each task
//! a [`StopSignal`]. A dropped [`Stopper`] counts as a stop, so no task can
//! wait forever on a supervisor that is gone.

use std::time::Duration;

use tokio::sync::watch;

/// Tells every [`StopSignal`] made from it to stop.
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// A task's view of the stop signal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

/// A new signal, not yet given.
pub fn signal() -> (Stopper, StopSignal) {
    let (tx, rx) = watch::channel(false);
    (Stopper(tx), StopSignal(rx))
}

impl Stopper {
    /// Gives the signal (again: harmless).
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl StopSignal {
    /// Whether the signal was given.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the signal is given (or its [`Stopper`] is gone).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Sleeps for `d`; true if the signal came first (or had come).
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_stopped(),
            () = self.stopped() => true,
        }
    }
}
