//! The supervisor: runs the service's [`Task`]s until asked to stop or until
//! one dies (ends or panics: the health flag turns false at once, the others
//! finish what they can while HTTP still answers `/healthz` 503, and the run
//! ends with [`Failure::TaskEnded`]); then stops them phase by phase, in
//! an order that is data ([`ON_STOP`], [`ON_DEATH`]).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use tokio::task::{AbortHandle, JoinError, JoinHandle};

use crate::stop::{self, StopSignal, Stopper};

/// Why a run ended other than by being asked to stop (the app turns it
/// into its `StartError`: the supervisor knows nothing of the app).
#[derive(Debug)]
pub enum Failure {
    /// A task ended (or panicked): its name, and how.
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Panicked (with its message) or returned.
        how: String,
    },
    /// The HTTP servers failed to accept.
    Io(std::io::Error),
}

/// When a task stops, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The HTTP servers: told to stop accepting, awaited while they finish
    /// the requests in flight.
    Serve,
    /// The webhook writer: ends by itself once HTTP (every sender of a
    /// delivery) is gone, after committing what is queued; awaited.
    Intake,
    /// Tasks with calls in flight (shutdowns, warnings, forwards): told to
    /// stop, awaited while they finish them.
    Work,
    /// Tasks that hold nothing to finish: cut short.
    Chores,
}

/// Asked to stop: no new deliveries first, then the queue is committed,
/// the calls in flight finish, the chores are cut short.
pub const ON_STOP: [Phase; 4] = [Phase::Serve, Phase::Intake, Phase::Work, Phase::Chores];

/// A task died: HTTP keeps answering (503) while the calls in flight
/// finish; then it stops and the writer commits what is queued.
pub const ON_DEATH: [Phase; 4] = [Phase::Work, Phase::Chores, Phase::Serve, Phase::Intake];

/// The [`Task`] enum from one table: name, phase, and the `--inject-fault`
/// names that kill it.
macro_rules! tasks {
    ($($(#[doc = $doc:literal])* $task:ident: $name:literal, $phase:ident, [$($fault:literal),*];)*) => {
        /// Every task the service runs: the one place that names them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Task {
            $($(#[doc = $doc])* $task,)*
        }

        impl Task {
            /// Every task.
            pub const ALL: [Task; [$($name),*].len()] = [$(Task::$task),*];

            /// Its name in logs and in [`Failure::TaskEnded`].
            pub fn name(self) -> &'static str {
                match self { $(Task::$task => $name,)* }
            }

            /// When it stops.
            pub fn phase(self) -> Phase {
                match self { $(Task::$task => Phase::$phase,)* }
            }

            /// The `--inject-fault` names that kill it (test only): its own, if
            /// its future can be killed from outside, then its writer's.
            pub fn faults(self) -> &'static [&'static str] {
                match self { $(Task::$task => &[$($fault),*],)* }
            }
        }
    };
}

tasks! {
    /// The public and admin HTTP servers.
    Http: "HTTP server", Serve, [];
    /// The webhook writer (group-commits deliveries).
    WebhookWriter: "webhook writer", Intake, ["ingest-writer"];
    /// The scheduler (ends meetings at their deadline).
    Scheduler: "scheduler", Work, ["scheduler", "outcome-writer"];
    /// The warner (`--warn-before`).
    Warner: "warner", Work, ["warner", "warning-writer"];
    /// The alone rule's participants check.
    Presence: "presence", Work, ["presence", "presence-writer"];
    /// The forwarder (`--forward-to`).
    Forwarder: "forwarder", Work, ["forwarder", "forward-writer"];
    /// The reconciler (`GET /rooms`, registration, pruning).
    Reconciler: "reconciler", Chores, ["reconciler"];
    /// PostgreSQL's `LISTEN` (wakes, limits, replicas' counts).
    Listen: "LISTEN", Chores, [];
    /// The periodic recount of `/metrics`' meeting gauges.
    Recount: "recount", Chores, [];
}

/// What a task's end looks like to the supervisor.
type Ended = Result<std::io::Result<()>, JoinError>;

/// A task's future, boxed.
type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct Running {
    task: Task,
    end: Boxed<Ended>,
    abort: AbortHandle,
}

/// The registered tasks and the two stop signals (HTTP's, everyone
/// else's: they are given at different moments).
pub struct Supervisor {
    /// Spawned when the supervisor runs.
    pending: Vec<(Task, Boxed<()>)>,
    running: Vec<Running>,
    stopper: Stopper,
    stop: StopSignal,
    http_stopper: Stopper,
    http_stop: StopSignal,
    tasks_ok: Arc<AtomicBool>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.pending.iter().map(|(task, _)| *task);
        let tasks: Vec<_> = pending.chain(self.running.iter().map(|r| r.task)).collect();
        f.debug_struct("Supervisor").field("tasks", &tasks).finish()
    }
}

impl Supervisor {
    /// No tasks yet.
    pub fn new() -> Self {
        let (stopper, stop) = stop::signal();
        let (http_stopper, http_stop) = stop::signal();
        Supervisor {
            pending: Vec::new(),
            running: Vec::new(),
            stopper,
            stop,
            http_stopper,
            http_stop,
            tasks_ok: Arc::new(AtomicBool::new(true)),
        }
    }

    /// True until a task dies (what `/healthz`, the gauge and the watchdog
    /// follow).
    pub fn tasks_ok(&self) -> Arc<AtomicBool> {
        self.tasks_ok.clone()
    }

    /// The stop signal `task` is to watch.
    pub fn signal(&self, task: Task) -> StopSignal {
        match task.phase() {
            Phase::Serve => self.http_stop.clone(),
            _ => self.stop.clone(),
        }
    }

    /// Runs `task` once the supervisor runs.
    pub fn spawn(&mut self, task: Task, fut: impl Future<Output = ()> + Send + 'static) {
        self.pending.push((task, Box::pin(fut)));
    }

    /// Takes charge of `task`, spawned elsewhere.
    pub fn adopt(&mut self, task: Task, handle: JoinHandle<()>) {
        let abort = handle.abort_handle();
        let end = Box::pin(async move { handle.await.map(Ok) });
        self.running.push(Running { task, end, abort });
    }

    /// Runs the HTTP servers.
    pub fn spawn_http(&mut self, fut: impl Future<Output = std::io::Result<()>> + Send + 'static) {
        let handle = tokio::spawn(fut);
        let (task, abort) = (Task::Http, handle.abort_handle());
        let end = Box::pin(handle);
        self.running.push(Running { task, end, abort });
    }

    /// Runs until `stop` resolves or a task ends; stops every task (phase
    /// by phase), then runs `close` (the store closes last).
    pub async fn run(
        mut self,
        stop: impl Future<Output = ()>,
        close: impl Future<Output = ()>,
    ) -> Result<(), Failure> {
        for (task, fut) in std::mem::take(&mut self.pending) {
            self.adopt(task, tokio::spawn(fut));
        }
        let mut stop = pin!(stop);
        // The recount is only a correction of gauges: its end is no death.
        let first = poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            let watched = self.running.iter_mut().enumerate();
            for (i, r) in watched.filter(|(_, r)| r.task != Task::Recount) {
                if let Poll::Ready(ended) = r.end.as_mut().poll(cx) {
                    return Poll::Ready(Some((i, ended)));
                }
            }
            Poll::Pending
        })
        .await;
        let ended = |task: Task, how| Failure::TaskEnded {
            task: task.name(),
            how,
        };
        let Some((i, end)) = first else {
            let served = self.stop_phases(ON_STOP).await;
            close.await;
            tracing::info!("stopped");
            return match served {
                Some(Ok(r)) => r.map_err(Failure::Io),
                Some(Err(e)) => Err(ended(Task::Http, how_it_ended(Err(e)))),
                None => Ok(()),
            };
        };
        // Polled to its end, so it leaves the list.
        let task = self.running.remove(i).task;
        self.tasks_ok.store(false, Ordering::SeqCst);
        if task == Task::Http {
            // The servers ended by themselves: an accept error.
            self.stop_phases(ON_STOP).await;
            close.await;
            return match end {
                Ok(Err(e)) => Err(Failure::Io(e)),
                other => Err(ended(task, how_it_ended(other.map(drop)))),
            };
        }
        let how = how_it_ended(end.map(drop));
        tracing::error!(task = task.name(), how = %how, "a background task ended unexpectedly; /healthz answers 503; stopping");
        self.stop_phases(ON_DEATH).await;
        close.await;
        tracing::info!("stopped after a background task ended");
        Err(ended(task, how))
    }

    /// Stops the tasks in `order`; the HTTP servers' end, if they were
    /// still running.
    async fn stop_phases(&mut self, order: [Phase; 4]) -> Option<Ended> {
        let mut served = None;
        for phase in order {
            match phase {
                Phase::Serve => self.http_stopper.stop(),
                _ => self.stopper.stop(),
            }
            let (now, later) = std::mem::take(&mut self.running)
                .into_iter()
                .partition(|r| r.task.phase() == phase);
            self.running = later;
            for r in now {
                if phase == Phase::Chores {
                    r.abort.abort();
                }
                let ended = r.end.await;
                if r.task == Task::Http {
                    served = Some(ended);
                }
            }
        }
        served
    }
}

/// "returned", "cancelled", or "panicked: <message>".
fn how_it_ended(r: Result<(), JoinError>) -> String {
    match r {
        Ok(()) => "returned".into(),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic".into());
            format!("panicked: {msg}")
        }
        Err(_) => "cancelled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Each phase comes once in each order, and the orders keep what the
    /// service promises: on a stop HTTP goes first, on a death HTTP
    /// outlives the work and the writer outlives HTTP.
    #[test]
    fn the_orders_are_complete_and_keep_their_promises() {
        for order in [ON_STOP, ON_DEATH] {
            for p in [Phase::Serve, Phase::Intake, Phase::Work, Phase::Chores] {
                assert_eq!(order.iter().filter(|q| **q == p).count(), 1);
            }
        }
        let at = |order: [Phase; 4], p| order.iter().position(|q| *q == p).unwrap();
        assert_eq!(ON_STOP[0], Phase::Serve);
        assert!(at(ON_DEATH, Phase::Work) < at(ON_DEATH, Phase::Serve));
        assert!(at(ON_DEATH, Phase::Serve) < at(ON_DEATH, Phase::Intake));
        assert!(at(ON_STOP, Phase::Intake) < at(ON_STOP, Phase::Work));
        // Every name is unique, and so is every fault name.
        let unique = |mut names: Vec<&str>| {
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all);
        };
        unique(Task::ALL.iter().map(|t| t.name()).collect());
        unique(Task::ALL.iter().flat_map(|t| t.faults()).copied().collect());
    }

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// Logs `name` when dropped: when its task ended (or was aborted).
    struct Mark(Log, &'static str);

    impl Drop for Mark {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(self.1);
        }
    }

    /// A task that records when it ended (after the stop, or when aborted).
    fn recorder(s: &Supervisor, task: Task, log: &Log) -> impl Future<Output = ()> + Send {
        let (mut stop, mark) = (s.signal(task), Mark(log.clone(), task.name()));
        async move {
            let _mark = mark;
            stop.stopped().await;
            if task.phase() != Phase::Chores {
                // Work in flight, finished before it returns.
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                std::future::pending::<()>().await;
            }
        }
    }

    async fn run_with(death: bool) -> (Vec<&'static str>, Result<(), Failure>) {
        let log = Log::default();
        let mut s = Supervisor::new();
        for task in [Task::Reconciler, Task::Scheduler, Task::Warner] {
            if death && task == Task::Reconciler {
                s.spawn(task, async { panic!("the reconciler dies") });
            } else {
                let fut = recorder(&s, task, &log);
                s.spawn(task, fut);
            }
        }
        // The writer ends once every sender (HTTP) is gone.
        let (sender, gone) = tokio::sync::oneshot::channel::<()>();
        let mark = Mark(log.clone(), "webhook writer");
        s.spawn(Task::WebhookWriter, async move {
            let _ = gone.await;
            drop(mark);
        });
        let (mut stop, mark) = (s.signal(Task::Http), Mark(log.clone(), "HTTP server"));
        s.spawn_http(async move {
            stop.stopped().await;
            drop((mark, sender));
            Ok(())
        });
        let ok = s.tasks_ok();
        let closed = Mark(log.clone(), "closed");
        let stop = async move {
            if !death {
                tokio::time::sleep(Duration::from_millis(10)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let r = s.run(stop, async move { drop(closed) }).await;
        assert_eq!(ok.load(Ordering::SeqCst), !death);
        let log = log.lock().unwrap().clone();
        (log, r)
    }

    #[tokio::test]
    async fn a_stop_goes_phase_by_phase() {
        let (log, r) = run_with(false).await;
        assert!(r.is_ok());
        assert_eq!(log[..2], ["HTTP server", "webhook writer"]);
        assert_eq!(log[4..], ["reconciler", "closed"]);
    }

    #[tokio::test]
    async fn a_death_is_reported_and_http_outlives_the_work() {
        let (log, r) = run_with(true).await;
        match r {
            Err(Failure::TaskEnded { task, how }) => {
                assert_eq!(task, "reconciler");
                assert!(how.contains("panicked"), "{how}");
            }
            other => panic!("{other:?}"),
        }
        let at = |name| log.iter().position(|n| *n == name).unwrap();
        assert!(at("scheduler") < at("HTTP server"));
        assert!(at("warner") < at("HTTP server"));
        assert!(at("HTTP server") < at("webhook writer"));
        assert_eq!(log.last(), Some(&"closed"));
    }
}
