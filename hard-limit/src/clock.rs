//! Where "now" comes from, and the sleeps until a time: the adapters ask a
//! [`Clock`] and the waiting tasks sleep on it, so tests and benchmarks can
//! drive time without waiting for it.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::domain::Timestamp;

/// A wait on a [`Clock`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Resolves once [`Clock::now`] has reached `at` (at once if it has).
    fn sleep_until(&self, at: Timestamp) -> Sleep<'_>;
}

/// The system's wall clock (eyeson's timestamps are wall-clock times too).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Sleeps on tokio's monotonic timer for the distance to `at`; a wall
    /// clock jump is noticed at the next look ([`sleep_until_or`] caps waits).
    fn sleep_until(&self, at: Timestamp) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(at.since(self.now())))
    }
}

/// Waits until `at` on `clock` (never, for `None`) or `poll` of real time,
/// whichever is first. The poll (how often a task looks at the store for
/// other processes' rows) stays on the real timer whatever the clock.
pub async fn sleep_until_or(clock: &dyn Clock, at: Option<Timestamp>, poll: Duration) {
    let due = async {
        match at {
            Some(at) => clock.sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = due => {}
        () = tokio::time::sleep(poll) => {}
    }
}

/// The clock a service runs on: the system's, or a test's [`ManualClock`]
/// (`TestHooks::clock`).
#[derive(Clone, Debug)]
pub struct SharedClock(pub std::sync::Arc<dyn Clock>);

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock(std::sync::Arc::new(SystemClock))
    }
}

/// A clock that moves only when told to (tests), waking exactly the
/// sleepers whose time it reaches.
#[derive(Debug)]
pub struct ManualClock(tokio::sync::watch::Sender<i64>);

impl ManualClock {
    /// Starts at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(tokio::sync::watch::Sender::new(t.0))
    }

    /// Moves it by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.send_modify(|t| *t = Timestamp(*t).plus(d).0);
    }

    /// How many waits on this clock are pending, so a test can see a task
    /// asleep before it moves the clock.
    pub fn sleepers(&self) -> usize {
        self.0.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.0.borrow())
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep<'_> {
        let mut moved = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this cannot fail.
            let _ = moved.wait_for(|t| *t >= at.0).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_reaches_its_time_and_not_before() {
        let clock = ManualClock::new(Timestamp(1_000));
        let mut sleep = clock.sleep_until(Timestamp(2_000));
        let pending = |s: &mut Sleep<'_>| {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            s.as_mut().poll(&mut cx).is_pending()
        };
        assert!(pending(&mut sleep));
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_millis(999));
        assert!(pending(&mut sleep));
        clock.advance(Duration::from_millis(1));
        assert!(!pending(&mut sleep));
        drop(sleep);
        assert_eq!(clock.sleepers(), 0);
        // A time already reached resolves at once.
        assert!(!pending(&mut clock.sleep_until(Timestamp(1_500))));
    }
}
