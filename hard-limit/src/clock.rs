//! Where "now" comes from. The core never reads the wall clock itself; the
//! adapters ask a [`Clock`], so tests and benchmarks can reason about time.

use std::fmt::Debug;
use std::time::SystemTime;

use crate::domain::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock (eyeson's timestamps are wall-clock times too).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}
