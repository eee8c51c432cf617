//! Test-only fault injection: makes one named background task die (panic)
//! on demand, so the supervision in [`crate::app`] can be tested. Off
//! unless armed, by the hidden `--inject-fault TASK[@DELAY]` flag
//! (`HARD_LIMIT_INJECT_FAULT`, the task dies at once, or `DELAY` after
//! start, say `reconciler@3s`) or by a test through
//! [`Config::faults`](crate::config::Config::faults) (it dies when the
//! test calls [`Faults::fire`]).
//!
//! The fault wraps the task's future from outside ([`Faults::wrap`]): the
//! task's own code carries no test branches.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// The background tasks a fault can be injected into.
pub const TASKS: [&str; 8] = [
    "scheduler",
    "reconciler",
    "ingest-writer",
    "outcome-writer",
    "warner",
    "warning-writer",
    "forwarder",
    "forward-writer",
];

/// `TASK` or `TASK@DELAY` from `--inject-fault`: the task and how long
/// after start it dies; `None` if unset or malformed (the configuration
/// check refuses malformed values first).
pub fn parse(flag: Option<&str>) -> Option<(&str, std::time::Duration)> {
    let flag = flag?;
    let (task, after) = match flag.split_once('@') {
        Some((task, delay)) => (task, humantime::parse_duration(delay).ok()?),
        None => (flag, std::time::Duration::ZERO),
    };
    TASKS.contains(&task).then_some((task, after))
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
    /// `task` (one of [`TASKS`]) will die once [`Faults::fire`] is called.
    pub fn arm(task: &str) -> Self {
        Faults {
            armed: Some(Arc::new(Armed {
                task: task.to_owned(),
                fired: watch::channel(false).0,
            })),
        }
    }

    /// Makes the armed task die now (if it runs).
    pub fn fire(&self) {
        if let Some(a) = &self.armed {
            a.fired.send_replace(true);
        }
    }

    /// Runs `fut`, unless the fault for `task` fires first: then panics,
    /// dropping `fut` (the task is dead, as after a bug).
    pub(crate) fn wrap<T>(
        &self,
        task: &'static str,
        fut: impl Future<Output = T>,
    ) -> impl Future<Output = T> {
        let me = self.clone();
        async move {
            tokio::select! {
                biased;
                () = me.fired(task) => panic!("injected fault: the {task} task dies"),
                v = fut => v,
            }
        }
    }

    async fn fired(&self, task: &str) {
        match &self.armed {
            Some(a) if a.task == task => {
                let mut rx = a.fired.subscribe();
                if rx.wait_for(|f| *f).await.is_ok() {
                    return;
                }
                std::future::pending::<()>().await
            }
            _ => std::future::pending::<()>().await,
        }
    }
}
