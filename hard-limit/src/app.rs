//! Start-up and the run loop, zero2prod style: [`Application::build`] opens
//! the store, binds the port (port 0 in tests) and wires the parts;
//! [`Application::run_until_stopped`] runs the HTTP server, the scheduler
//! and the reconciler side by side until the stop future resolves, then
//! stops accepting, lets in-flight work finish, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, SystemClock};
use crate::config::{ApiKey, Config, ConfigError};
use crate::domain::Policy;
use crate::eyeson::{ApiError, EyesonClient};
use crate::reconcile::Reconciler;
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError};
use crate::webhook::Ingest;
use crate::{http, metrics};

/// What every request handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The store (reads).
    pub store: Store,
    /// The group-commit writer for deliveries.
    pub ingest: Ingest,
    /// Deadline rules.
    pub policy: Arc<Policy>,
    /// For the signature check.
    pub api_key: ApiKey,
    /// Replay window for deliveries.
    pub webhook_max_age: Duration,
    /// Where now comes from.
    pub clock: Arc<dyn Clock>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
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
    /// The port could not be bound or served.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A built, not yet running, service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    scheduler: Scheduler,
    reconciler: Reconciler,
    ingest_task: tokio::task::JoinHandle<()>,
}

fn owner_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nonce = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{}-{:016x}", std::process::id(), nonce)
}

impl Application {
    /// Opens the store, binds the port, wires the parts.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let policy = Arc::new(config.policy()?);
        if config.lease < Duration::from_secs(20) {
            tracing::warn!(lease = ?config.lease, "a lease under 20s can expire during a slow shutdown call, which is then repeated");
        }
        let handle = metrics::install();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Store::connect(&config.database).await?;
        let client = EyesonClient::new(config.api_url.clone(), config.api_key.clone())?;
        let wake = Arc::new(Notify::new());
        let (ingest, ingest_task) = Ingest::start(store.clone(), clock.clone(), wake.clone());
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = AppState {
            store: store.clone(),
            ingest,
            policy: policy.clone(),
            api_key: config.api_key.clone(),
            webhook_max_age: config.webhook_max_age,
            clock: clock.clone(),
            metrics: handle,
        };
        let scheduler = Scheduler {
            store: store.clone(),
            client: client.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            owner: owner_id().into(),
            lease: config.lease,
            concurrency: config.shutdown_concurrency,
            dry_run: config.dry_run,
            retry_backoff: config.retry_backoff,
        };
        let reconciler = Reconciler {
            store,
            client,
            policy,
            clock,
            wake,
            every: config.reconcile_every,
            retention: config.retention,
            webhook_url: config.webhook_url.clone(),
            close_unlisted_after: config.close_unlisted_after,
            previous: Default::default(),
        };
        Ok(Application {
            listener,
            addr,
            state,
            scheduler,
            reconciler,
            ingest_task,
        })
    }

    /// The bound address (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store this service uses (for tests and benchmarks).
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `stop` resolves; then stops accepting, finishes
    /// requests and shutdown calls in flight, and returns.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let listener = self
            .state
            .store
            .spawn_listener(self.scheduler.wake.clone(), stop_rx.clone());
        let scheduler = tokio::spawn(self.scheduler.run(stop_rx.clone()));
        let reconciler = tokio::spawn(self.reconciler.run(stop_rx.clone()));
        let store = self.state.store.clone();
        tracing::info!(addr = %self.addr, "listening");
        let mut server_stop = stop_rx;
        let served = axum::serve(self.listener, http::router(self.state))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = stop => {}
                    _ = server_stop.wait_for(|s| *s) => {}
                }
                tracing::info!("stopping: no new connections");
            })
            .await;
        let _ = stop_tx.send(true);
        // The router (and with it every Ingest sender) is gone: the writer
        // commits what is queued and ends.
        let _ = self.ingest_task.await;
        let _ = scheduler.await;
        reconciler.abort();
        let _ = reconciler.await;
        if let Some(listener) = listener {
            listener.abort();
            let _ = listener.await;
        }
        store.close().await;
        tracing::info!("stopped");
        served.map_err(StartError::Io)
    }
}
