//! Test-only fault injection: one named background task dies (panics) on
//! demand, to test the [`crate::supervisor`]. Armed by the hidden
//! `--inject-fault TASK[@DELAY]` (say `reconciler@3s`) or by a test through
//! [`TestHooks::faults`](crate::app::TestHooks::faults) and
//! [`Faults::fire`]. The fault wraps the task's future from outside, so the
//! task carries no test branches; the names are
//! [`crate::supervisor::Task::faults`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::supervisor::Task;

/// The names a fault can be injected into, from the supervisor's tasks.
pub fn tasks() -> impl Iterator<Item = &'static str> {
    Task::ALL.into_iter().flat_map(Task::faults).copied()
}

/// `TASK` or `TASK@DELAY` from `--inject-fault`: the task and how long
/// after start it dies; `None` if malformed or no task has that name.
pub fn parse(flag: &str) -> Option<(&'static str, Duration)> {
    let (task, after) = match flag.split_once('@') {
        Some((task, delay)) => (task, humantime::parse_duration(delay).ok()?),
        None => (flag, Duration::ZERO),
    };
    tasks().find(|t| *t == task).map(|t| (t, after))
}

/// Which task dies, and when. Cheap to clone; the default arms nothing.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    armed: Option<Arc<Armed>>,
}

#[derive(Debug)]
struct Armed {
    task: String,
    fired: watch::Sender<bool>,
}

impl Faults {
    /// `task` (one of [`tasks`]) will die once [`Faults::fire`] is called.
    pub fn arm(task: &str) -> Self {
        Faults {
            armed: Some(Arc::new(Armed {
                task: task.to_owned(),
                fired: watch::channel(false).0,
            })),
        }
    }

    /// `task` dies `after` from now (at once for zero); inside the runtime.
    pub fn arm_after(task: &str, after: Duration) -> Self {
        let f = Faults::arm(task);
        if after.is_zero() {
            f.fire();
        } else {
            let fire = f.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                fire.fire();
            });
        }
        f
    }

    /// Makes the armed task die now (if it runs).
    pub fn fire(&self) {
        if let Some(a) = &self.armed {
            a.fired.send_replace(true);
        }
    }

    /// Runs `task`'s future, killed by its own fault name if it has one
    /// ([`Task::faults`]).
    pub fn wrap_task<T>(
        &self,
        task: Task,
        fut: impl Future<Output = T>,
    ) -> impl Future<Output = T> {
        let me = self.clone();
        async move {
            match task.faults().first().filter(|f| **f == task.name()) {
                Some(name) => me.wrap(name, fut).await,
                None => fut.await,
            }
        }
    }

    /// Runs `fut`, unless the fault for `task` fires first: then panics,
    /// dropping `fut` (the task is dead, as after a bug).
    pub(crate) fn wrap<T>(
        &self,
        task: &'static str,
        fut: impl Future<Output = T>,
    ) -> impl Future<Output = T> {
        debug_assert!(
            tasks().any(|t| t == task),
            "{task} is not a fault name of the supervisor's tasks"
        );
        let me = self.clone();
        async move {
            tokio::select! {
                biased;
                () = me.fired(task) => panic!("injected fault: the {task} task dies"),
                v = fut => v,
            }
        }
    }

    /// Resolves once `task`'s fault fires; never if it is not armed.
    async fn fired(&self, task: &str) {
        if let Some(a) = self.armed.as_ref().filter(|a| a.task == task) {
            if a.fired.subscribe().wait_for(|f| *f).await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_names_a_task_of_the_supervisor() {
        let names: Vec<_> = tasks().collect();
        for n in [
            "scheduler",
            "reconciler",
            "ingest-writer",
            "outcome-writer",
            "warner",
            "warning-writer",
            "forwarder",
            "forward-writer",
            "presence",
            "presence-writer",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        assert_eq!(names.len(), 10);
        let three = Duration::from_secs(3);
        assert_eq!(parse("reconciler@3s"), Some(("reconciler", three)));
        assert_eq!(parse("warner"), Some(("warner", Duration::ZERO)));
        assert_eq!(parse("nobody"), None);
        assert_eq!(parse("warner@soon"), None);
    }
}
