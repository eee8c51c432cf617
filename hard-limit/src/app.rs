//! Start-up and the run loop, zero2prod style: [`Application::build`] opens
//! the store, binds the port (port 0 in tests) and wires the parts;
//! [`Application::run_until_stopped`] runs the HTTP servers (public and
//! admin), the scheduler, the warner and the reconciler side by side until
//! the stop future resolves, then
//! stops accepting, lets in-flight work finish, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::eyeson::{ApiError, EyesonClient};
use crate::fault::Faults;
use crate::forward::Forwarder;
use crate::http::admin::AdminState;
use crate::http::PublicState;
use crate::limits::LimitsHandle;
use crate::reconcile::Reconciler;
use crate::scheduler::Scheduler;
use crate::serve::{self, ConnLimits};
use crate::shutdown::{self, Stopper};
use crate::store::StoreError;
use crate::store_handle::Store;
use crate::warner::Warner;
use crate::webhook::{Ingest, WebhookState};
use crate::{http, metrics};

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
    /// A listener's address could not be bound: names the flag and the
    /// address (three replicas on one host meet the admin port's default).
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
    /// A background task ended (or panicked) while the service ran; the
    /// service stopped after finishing what it could.
    #[error("the {task} task ended unexpectedly ({how}); stopped")]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Panicked (with its message) or returned.
        how: String,
    },
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
    scheduler: Scheduler,
    reconciler: Reconciler,
    warner: Option<Warner>,
    forwarder: Option<Forwarder>,
    ingest_task: tokio::task::JoinHandle<()>,
    faults: Faults,
    conn_limits: ConnLimits,
    recount_every: Duration,
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { flag, addr, source })
}

fn owner_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nonce = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{}-{:016x}", std::process::id(), nonce)
}

impl Application {
    /// Opens the store, binds the port, wires the parts.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let policy = config.policy()?;
        let file_rules = crate::config::load_limit_rules(config.limits.as_deref())?;
        let warning = config.warning()?;
        if config.lease < Duration::from_secs(20) {
            tracing::warn!(lease = ?config.lease, "a lease under 20s can expire during a slow shutdown call, which is then repeated");
        }
        let handle = metrics::install();
        let clock: Arc<dyn Clock> = config.clock.0.clone();
        let store = Store::connect(&config.database).await?;
        // The gauges of /metrics start from a count, taken before anything
        // is served (so no delivery races it); then they follow the writes.
        if let Err(e) = store.gauges().recount(&store).await {
            tracing::warn!(error = %e, "could not count the meetings by state; /metrics shows them from the next recount");
        }
        let limits = LimitsHandle::start(
            store.clone(),
            policy.limits.default_limit(),
            policy.grace,
            file_rules,
            clock.now(),
        )
        .await?;
        let client = EyesonClient::new(config.api_url.clone(), config.api_key.clone())?;
        let registration = config.registration_mode();
        if let Some(url) = &config.webhook_url {
            check_registration(&client, url, registration).await?;
        }
        let wake = Arc::new(crate::wake::Wake::default());
        let faults = match crate::fault::parse(config.inject_fault.as_deref()) {
            Some((task, after)) => {
                tracing::warn!(task = %task, after = ?after, "test fault injected: this task dies");
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
            None => config.faults.clone(),
        };
        let (ingest, ingest_task) =
            Ingest::start(store.clone(), clock.clone(), wake.clone(), &faults);
        let listener = bind("--listen", config.listen).await?;
        let addr = listener.local_addr()?;
        let admin_listener = bind("--admin-listen", config.admin_listen).await?;
        let admin_addr = admin_listener.local_addr()?;
        let tasks_ok = Arc::new(AtomicBool::new(true));
        let state = PublicState {
            store: store.clone(),
            webhook: WebhookState {
                ingest,
                limits: limits.clone(),
                api_key: config.api_key.clone(),
                webhook_max_age: config.webhook_max_age,
                clock: clock.clone(),
                body_read_timeout: config.body_read_timeout,
                forward: config.forward_to.is_some(),
            },
            tasks_ok: tasks_ok.clone(),
            public_deadlines: config.public_deadlines,
        };
        let admin = AdminState {
            store: store.clone(),
            clock: clock.clone(),
            metrics: handle,
            token: config.admin_token.clone(),
            wake: wake.clone(),
            limits: limits.clone(),
            listen: admin_addr,
            hosts: config.admin_host.clone().into(),
            failures: Arc::default(),
            refusals: Arc::default(),
            tasks_ok: tasks_ok.clone(),
        };
        let owner: Arc<str> = owner_id().into();
        let forwarder = match &config.forward_to {
            Some(target) => {
                metrics::forwarding_on();
                Some(Forwarder {
                    store: store.clone(),
                    clock: clock.clone(),
                    target: target.clone(),
                    http: crate::forward::http_client().map_err(ApiError::Transport)?,
                    owner: owner.clone(),
                    lease: config.lease,
                    retention: config.forward_retention,
                    concurrency: FORWARD_CONCURRENCY,
                    wake: wake.forwarder(),
                    faults: faults.clone(),
                    tasks_ok: tasks_ok.clone(),
                })
            }
            None => None,
        };
        let warner = warning.map(|warning| Warner {
            store: store.clone(),
            client: client.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            owner: owner.clone(),
            lease: config.lease,
            concurrency: config.shutdown_concurrency,
            dry_run: config.dry_run,
            retry_backoff: config.retry_backoff,
            warning: Arc::new(warning),
            faults: faults.clone(),
            tasks_ok: tasks_ok.clone(),
        });
        let scheduler = Scheduler {
            store: store.clone(),
            client: client.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            owner,
            lease: config.lease,
            concurrency: config.shutdown_concurrency,
            dry_run: config.dry_run,
            retry_backoff: config.retry_backoff,
            faults: faults.clone(),
            tasks_ok: tasks_ok.clone(),
        };
        let reconciler = Reconciler {
            store,
            client,
            limits: limits.clone(),
            clock,
            wake,
            every: config.reconcile_every,
            retention: config.retention,
            webhook_url: config.webhook_url.clone(),
            registration,
            close_unlisted_after: config.close_unlisted_after,
            previous: Default::default(),
            max_start_ahead: crate::domain::max_start_ahead(config.webhook_max_age),
        };
        Ok(Application {
            listener,
            addr,
            admin_listener,
            admin_addr,
            state,
            admin,
            scheduler,
            reconciler,
            warner,
            forwarder,
            ingest_task,
            faults,
            recount_every: config.recount_every,
            conn_limits: ConnLimits {
                header_read_timeout: config.header_read_timeout,
                keep_alive_timeout: config.keep_alive_timeout,
                max_connections: config.max_connections,
            },
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

    /// Serves until `stop` resolves; then stops accepting, finishes
    /// requests and shutdown calls in flight, and returns.
    ///
    /// Supervision: the scheduler, the warner (with `--warn-before`), the
    /// reconciler, the webhook writer and (on PostgreSQL) the `LISTEN` task
    /// run until the stop (one [`Shutdown`](crate::shutdown::Shutdown)
    /// signal for all); if one ends or
    /// panics before, `/healthz` answers 503 at once, the others finish
    /// what they can (the scheduler its shutdown calls in flight, the
    /// writer what is queued) while HTTP still answers, then HTTP stops and
    /// this returns [`StartError::TaskEnded`] (the binary exits non-zero
    /// for its supervisor to restart it).
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop_tx, stop_rx) = shutdown::signal();
        let (http_stop_tx, http_stop_rx) = shutdown::signal();
        let faults = self.faults;
        // PostgreSQL only: what other replicas did reaches this one's
        // scheduler, limits and gauges (on SQLite the scheduler's capped
        // sleep covers other processes).
        let mut listener = self.state.store.postgres().map(|pg| {
            let (wake, limits) = (self.scheduler.wake.clone(), self.admin.limits.clone());
            let gauges = self.state.store.gauges().clone();
            let route = gauges.clone();
            crate::cluster::spawn_listener(
                pg,
                gauges,
                move |event| match event {
                    crate::cluster::Event::Meetings => wake.poke(),
                    crate::cluster::Event::Limits => limits.mark_stale(),
                    crate::cluster::Event::Counts(payload) => route.apply_published(&payload),
                    crate::cluster::Event::Missed => {
                        wake.poke();
                        limits.mark_stale();
                        // Other replicas' changes are seen only by
                        // recounting: do it now, not in a minute.
                        route.request_recount();
                    }
                },
                stop_rx.clone(),
            )
        });
        let mut scheduler =
            tokio::spawn(faults.wrap("scheduler", self.scheduler.run(stop_rx.clone())));
        let mut reconciler =
            tokio::spawn(faults.wrap("reconciler", self.reconciler.run(stop_rx.clone())));
        let mut warner = self
            .warner
            .map(|w| tokio::spawn(faults.wrap("warner", w.run(stop_rx.clone()))));
        let mut forwarder = self
            .forwarder
            .map(|f| tokio::spawn(faults.wrap("forwarder", f.run(stop_rx.clone()))));
        let mut ingest_task = self.ingest_task;
        let store = self.state.store.clone();
        // Cut short (dropped) when this returns; it holds no work to finish.
        let _recounts = AbortOnDrop(tokio::spawn(crate::meeting_gauges::run(
            store.gauges().clone(),
            store.clone(),
            self.recount_every,
            stop_rx.clone(),
        )));
        let tasks_ok = self.state.tasks_ok.clone();
        tracing::info!(addr = %self.addr, admin = %self.admin_addr, auth = self.admin.token.is_some(), "listening");
        let mut server = tokio::spawn(serve::serve_all(
            vec![
                (self.listener, http::public_router(self.state)),
                (self.admin_listener, http::admin::admin_router(self.admin)),
            ],
            self.conn_limits,
            http_stop_rx,
        ));
        let ended = tokio::select! {
            () = stop => None,
            r = &mut scheduler => Some(("scheduler", r)),
            r = &mut reconciler => Some(("reconciler", r)),
            r = &mut ingest_task => Some(("webhook writer", r)),
            r = async { listener.as_mut().expect("guarded").await }, if listener.is_some() => {
                listener = None;
                Some(("LISTEN", r))
            }
            r = async { warner.as_mut().expect("guarded").await }, if warner.is_some() => {
                warner = None;
                Some(("warner", r))
            }
            r = async { forwarder.as_mut().expect("guarded").await }, if forwarder.is_some() => {
                forwarder = None;
                Some(("forwarder", r))
            }
            r = &mut server => {
                // The server ended by itself: an accept error.
                tasks_ok.store(false, Ordering::SeqCst);
                stop_background(&stop_tx, ingest_task, scheduler, reconciler, [warner, forwarder], listener, &store).await;
                return match r {
                    Ok(Ok(())) => Err(StartError::TaskEnded { task: "HTTP server", how: "returned".into() }),
                    Ok(Err(e)) => Err(StartError::Io(e)),
                    Err(e) => Err(StartError::TaskEnded { task: "HTTP server", how: how_it_ended(Err(e)) }),
                };
            }
        };
        let Some((task, result)) = ended else {
            // Asked to stop: no new connections, finish the requests in
            // flight; then the router (and with it every Ingest sender) is
            // gone and the writer commits what is queued and ends.
            http_stop_tx.stop();
            let served = server.await;
            stop_background(
                &stop_tx,
                ingest_task,
                scheduler,
                reconciler,
                [warner, forwarder],
                listener,
                &store,
            )
            .await;
            tracing::info!("stopped");
            return match served {
                Ok(r) => r.map_err(StartError::Io),
                Err(e) => Err(StartError::TaskEnded {
                    task: "HTTP server",
                    how: how_it_ended(Err(e)),
                }),
            };
        };
        // A task died: unhealthy at once, then finish what can be finished.
        tasks_ok.store(false, Ordering::SeqCst);
        let how = how_it_ended(result);
        tracing::error!(task, how = %how, "a background task ended unexpectedly; /healthz answers 503; stopping");
        stop_tx.stop();
        if task != "scheduler" {
            let _ = scheduler.await;
        }
        // The warner finishes its calls in flight, like the scheduler (it
        // is `None` here if it is the task that ended).
        if let Some(warner) = warner {
            let _ = warner.await;
        }
        // The forwarder finishes its sends in flight (each bounded).
        if let Some(forwarder) = forwarder {
            let _ = forwarder.await;
        }
        if task != "reconciler" {
            reconciler.abort();
            let _ = reconciler.await;
        }
        if let Some(listener) = listener {
            listener.abort();
            let _ = listener.await;
        }
        http_stop_tx.stop();
        let _ = server.await;
        if task != "webhook writer" {
            let _ = ingest_task.await;
        }
        store.close().await;
        tracing::info!("stopped after a background task ended");
        Err(StartError::TaskEnded { task, how })
    }
}

/// Once HTTP no longer accepts deliveries: the writer commits what is
/// queued, the scheduler and the warner finish their calls in flight, the
/// reconciler and the `LISTEN` task are cut short, then the store closes.
/// (When a background task died, `run_until_stopped` winds down in another
/// order: HTTP keeps answering 503 until the other tasks are done.)
async fn stop_background(
    stop_tx: &Stopper,
    ingest_task: JoinHandle<()>,
    scheduler: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    finishing: [Option<JoinHandle<()>>; 2],
    listener: Option<JoinHandle<()>>,
    store: &Store,
) {
    stop_tx.stop();
    let _ = ingest_task.await;
    let _ = scheduler.await;
    // The warner and the forwarder finish their calls in flight.
    for task in finishing.into_iter().flatten() {
        let _ = task.await;
    }
    reconciler.abort();
    let _ = reconciler.await;
    if let Some(listener) = listener {
        listener.abort();
        let _ = listener.await;
    }
    store.close().await;
}

/// Sends to `--forward-to` in flight at once (per replica).
const FORWARD_CONCURRENCY: usize = 16;

/// At start, with `--webhook-url`: refuses to go on when another URL's
/// webhook is registered and the configuration does not say what to do
/// about it. If `GET /webhooks` fails, starts anyway (eyeson may be down
/// for a moment): the registration checks again before it registers.
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

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// "returned", or "panicked: <message>".
fn how_it_ended(r: Result<(), tokio::task::JoinError>) -> String {
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
