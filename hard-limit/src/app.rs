//! Start-up and the run loop, zero2prod style: [`Application::build`]
//! opens the store, binds the ports (port 0 in tests) and wires the parts
//! from a checked [`Config`]; [`Application::run_until_stopped`] hands the
//! tasks to the [`Supervisor`], which runs them until the stop future
//! resolves (or one dies) and stops them in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::{Clock, SharedClock};
use crate::config::{Config, ConfigError};
use crate::eyeson::{ApiError, EyesonClient};
use crate::fault::Faults;
use crate::forward::Forwarder;
use crate::http::admin::AdminState;
use crate::http::PublicState;
use crate::limits::LimitsHandle;
use crate::presence::{Headcount, Pace, Presence};
use crate::reconcile::Reconciler;
use crate::runner::{Context, Runner};
use crate::scheduler::{Calls, Scheduler};
use crate::serve::{self, ConnLimits};
use crate::stop::StopSignal;
use crate::store::StoreError;
use crate::store_handle::Store;
use crate::supervisor::{Supervisor, Task};
use crate::warner::Warner;
use crate::webhook::{Ingest, WebhookState};
use crate::{http, metrics};

/// What tests (and benchmarks) hand the service besides its configuration.
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    /// A fault the test fires when it wants (see [`crate::fault`]).
    pub faults: Faults,
    /// Where "now" comes from for every part of the service.
    pub clock: SharedClock,
}

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("eyeson client: {0}")]
    Client(#[from] ApiError),
    /// A listener's address could not be bound (named: three replicas on
    /// one host meet the admin port's default).
    #[error("{flag} {addr}: {source}")]
    Bind {
        /// `--listen` or `--admin-listen`.
        flag: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another URL's webhook is registered for the API key, and neither
    /// `--forward-to` nor `--webhook-replace` says what to do about it.
    #[error("refusing to start: {0}")]
    ForeignWebhook(#[from] crate::registration::ForeignWebhook),
    /// The port could not be served.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    /// A background task ended (or panicked); the service stopped.
    #[error("the {task} task ended unexpectedly ({how}); stopped")]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Panicked (with its message) or returned.
        how: String,
    },
}

impl From<crate::supervisor::Failure> for StartError {
    fn from(f: crate::supervisor::Failure) -> Self {
        match f {
            crate::supervisor::Failure::TaskEnded { task, how } => {
                StartError::TaskEnded { task, how }
            }
            crate::supervisor::Failure::Io(e) => StartError::Io(e),
        }
    }
}

/// A built, not yet running, service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    admin_listener: TcpListener,
    admin_addr: SocketAddr,
    state: PublicState,
    admin: AdminState,
    supervisor: Supervisor,
    conn_limits: ConnLimits,
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { flag, addr, source })
}

impl Application {
    /// Opens the store, binds the ports, wires the parts.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, TestHooks::default()).await
    }

    /// [`Application::build`] with a test's hooks.
    pub async fn build_with(config: Config, hooks: TestHooks) -> Result<Self, StartError> {
        let Config {
            eyeson,
            listen,
            webhooks,
            database,
            enforcement,
            warning,
            forwarding,
            registration,
            presence,
            inject_fault,
        } = config;
        if enforcement.lease < Duration::from_secs(20) {
            tracing::warn!(lease = ?enforcement.lease, "a lease under 20s can expire during a slow shutdown call, which is then repeated");
        }
        let handle = metrics::install();
        let clock: Arc<dyn Clock> = hooks.clock.0.clone();
        let store = Store::connect(&database.url).await?;
        // Counted before anything is served, so no delivery races the count.
        if let Err(e) = store.gauges().recount(&*store).await {
            tracing::warn!(error = %e, "could not count the meetings by state; /metrics shows them from the next recount");
        }
        let limits = LimitsHandle::start(
            store.clone(),
            enforcement.max_duration,
            enforcement.grace,
            enforcement.alone_after,
            enforcement.limit_rules.rooms,
            enforcement.limit_rules.prefixes,
            clock.now(),
        )
        .await?;
        let client = EyesonClient::new(eyeson.api_url, eyeson.api_key.clone())?;
        if let Some(url) = &registration.webhook_url {
            check_registration(&client, url, registration.mode).await?;
        }
        let wake = Arc::new(crate::wake::Wake::default());
        let faults = match inject_fault {
            Some((task, after)) => {
                tracing::warn!(task = %task, after = ?after, "test fault injected: this task dies");
                Faults::arm_after(task, after)
            }
            None => hooks.faults,
        };
        let mut supervisor = Supervisor::new();
        let (ingest, ingest_task) =
            Ingest::start(store.clone(), clock.clone(), wake.clone(), &faults);
        supervisor.adopt(Task::WebhookWriter, ingest_task);
        let listener = bind("--listen", listen.public).await?;
        let addr = listener.local_addr()?;
        let admin_listener = bind("--admin-listen", listen.admin).await?;
        let admin_addr = admin_listener.local_addr()?;
        let tasks_ok = supervisor.tasks_ok();
        let state = PublicState {
            store: store.clone(),
            webhook: WebhookState {
                ingest,
                limits: limits.clone(),
                api_key: eyeson.api_key,
                webhook_max_age: webhooks.max_age,
                clock: clock.clone(),
                body_read_timeout: webhooks.body_read_timeout,
                forward: forwarding.is_some(),
            },
            tasks_ok: tasks_ok.clone(),
            public_deadlines: listen.public_deadlines,
        };
        let admin = AdminState {
            store: store.clone(),
            clock: clock.clone(),
            metrics: handle,
            token: listen.admin_token,
            wake: wake.clone(),
            limits: limits.clone(),
            listen: admin_addr,
            hosts: listen.admin_hosts.into(),
            failures: Arc::default(),
            refusals: Arc::default(),
            tasks_ok: tasks_ok.clone(),
        };
        let cx = Context {
            owner: format!("{}-{:016x}", std::process::id(), crate::runner::random()).into(),
            lease: enforcement.lease,
            clock: clock.clone(),
            faults: faults.clone(),
            tasks_ok: tasks_ok.clone(),
        };
        let sup = &mut supervisor;
        // PostgreSQL only: other replicas' doings reach this one (on SQLite
        // the jobs' capped sleep covers other processes).
        if let Some(pg) = store.postgres() {
            use crate::cluster::{listener, Event};
            let (wake, limits, gauges) = (wake.clone(), limits.clone(), store.gauges().clone());
            let route = gauges.clone();
            let on_event = move |event| match event {
                Event::Meetings => wake.poke(),
                Event::Limits => limits.mark_stale(),
                Event::Counts(payload) => route.apply_published(&payload),
                Event::Missed => {
                    wake.poke();
                    limits.mark_stale();
                    // Other replicas' changes: recount now, not in a minute.
                    route.request_recount();
                }
            };
            spawn(sup, &faults, Task::Listen, |stop| {
                listener(pg, gauges, on_event, stop)
            });
        }
        let gauges = store.gauges().clone();
        let recount = |stop| {
            crate::meeting_gauges::run(gauges, store.clone(), enforcement.recount_every, stop)
        };
        spawn(sup, &faults, Task::Recount, recount);
        if let Some(forwarding) = forwarding {
            metrics::forwarding_on();
            let job = Forwarder::new(store.clone(), forwarding.to, forwarding.retention)
                .map_err(ApiError::Transport)?;
            let runner = Runner::new(job, cx.clone(), FORWARD_CONCURRENCY, wake.forwarder());
            spawn(sup, &faults, Task::Forwarder, |stop| runner.run(stop));
        }
        let headcount = Arc::new(Headcount {
            client: client.clone(),
            limits: limits.clone(),
            ignore: presence.ignore,
            own_guest: presence.own_guest,
            pace: Pace::new(presence.rate),
        });
        let calls = Calls {
            store: store.clone(),
            client: client.clone(),
            dry_run: enforcement.dry_run,
            retry_backoff: enforcement.retry_backoff,
            headcount: headcount.clone(),
        };
        if let Some(warning) = warning {
            let job = Warner {
                calls: calls.clone(),
                warning: Arc::new(warning),
            };
            let runner = Runner::new(job, cx.clone(), enforcement.concurrency, wake.subscribe());
            spawn(sup, &faults, Task::Warner, |stop| runner.run(stop));
        }
        let job = Presence {
            store: store.clone(),
            headcount,
            every: presence.every,
            retry_backoff: enforcement.retry_backoff,
            logged: Default::default(),
            wake: wake.clone(),
        };
        // Enough calls for the rate at a slow eyeson (~2 s); the pace bounds it.
        let in_flight = (presence.rate as usize * 2).clamp(2, 256);
        let runner = Runner::new(job, cx.clone(), in_flight, wake.subscribe());
        spawn(sup, &faults, Task::Presence, |stop| runner.run(stop));
        let job = Scheduler {
            calls,
            presence_every: presence.every,
        };
        let runner = Runner::new(job, cx, enforcement.concurrency, wake.subscribe());
        spawn(sup, &faults, Task::Scheduler, |stop| runner.run(stop));
        let reconciler = Reconciler {
            store: store.clone(),
            client,
            limits,
            clock,
            wake,
            every: enforcement.reconcile_every,
            retention: database.retention,
            webhook_url: registration.webhook_url,
            registration: registration.mode,
            close_unlisted_after: enforcement.close_unlisted_after,
            previous: Default::default(),
            max_start_ahead: crate::domain::max_start_ahead(webhooks.max_age),
        };
        spawn(sup, &faults, Task::Reconciler, |stop| reconciler.run(stop));
        Ok(Application {
            listener,
            addr,
            admin_listener,
            admin_addr,
            state,
            admin,
            supervisor,
            conn_limits: listen.conn,
        })
    }

    /// The bound public address (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound admin address (the real port when the config said port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// False once a background task ended (what `/healthz` and the
    /// watchdog pings follow).
    pub fn tasks_ok(&self) -> Arc<AtomicBool> {
        self.state.tasks_ok.clone()
    }

    /// The store this service uses (for tests and benchmarks).
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `stop` resolves (or a task dies: then this returns
    /// [`StartError::TaskEnded`], and the binary exits non-zero); then stops
    /// every task under the [`Supervisor`], in order.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let mut sup = self.supervisor;
        let store = self.state.store.clone();
        tracing::info!(addr = %self.addr, admin = %self.admin_addr, auth = self.admin.token.is_some(), "listening");
        sup.spawn_http(serve::serve_all(
            vec![
                (self.listener, http::public_router(self.state)),
                (self.admin_listener, http::admin::admin_router(self.admin)),
            ],
            self.conn_limits,
            sup.signal(Task::Http),
        ));
        Ok(sup.run(stop, async move { store.close().await }).await?)
    }
}

/// Runs `task` (once the supervisor runs) on its stop signal, killed by its
/// own fault if a test armed it.
fn spawn<F: Future<Output = ()> + Send + 'static>(
    sup: &mut Supervisor,
    faults: &Faults,
    task: Task,
    run: impl FnOnce(StopSignal) -> F,
) {
    let fut = run(sup.signal(task));
    sup.spawn(task, faults.wrap_task(task, fut));
}

/// Sends to `--forward-to` in flight at once (per replica).
const FORWARD_CONCURRENCY: usize = 16;

/// At start, with `--webhook-url`: refuses another URL's registration unless
/// told what to do about it; starts anyway if `GET /webhooks` fails (the
/// registration checks again).
async fn check_registration(
    client: &EyesonClient,
    url: &reqwest::Url,
    mode: crate::registration::Mode,
) -> Result<(), StartError> {
    use crate::registration::{decide, Decision, ForeignWebhook};
    match client.current_webhook().await {
        Ok(current) => match decide(current.as_ref(), url, mode) {
            Decision::RefuseForeign(hook) => {
                ::metrics::counter!(metrics::REGISTRATIONS, "outcome" => "refused_foreign")
                    .increment(1);
                Err(ForeignWebhook::of(&hook).into())
            }
            _ => Ok(()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "could not read the registered webhook at start; the registration checks again before it registers");
            Ok(())
        }
    }
}
