//! PostgreSQL replicas as one: the `LISTEN` task that hears what other
//! replicas did (a meeting tracked or a deadline moved wakes every
//! replica's jobs, not only after their sleep) and emits [`Event`]s for the
//! application to route; the publishing of this replica's meeting counts;
//! and the chores [`Leader`], whose session advisory lock PostgreSQL
//! releases to another replica if it or its connection dies.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use sqlx::Connection;
use tokio::sync::Mutex;

use crate::meeting_gauges::MeetingGauges;
use crate::stop::StopSignal;
use crate::store::postgres::{PgStore, CHANNEL, LIMITS_CHANNEL};

/// The channel each replica publishes its changes of the meetings' counts
/// on ([`crate::meeting_gauges`]).
pub const COUNTS_CHANNEL: &str = "hard_limit_counts";

/// How often a replica publishes its count changes.
pub const COUNTS_EVERY: Duration = Duration::from_millis(250);

/// The session advisory lock (one 64-bit key) the chores leader holds.
const CHORES_LOCK: i64 = 0x6579_6573_6f6e_686c;

/// What the other replicas did, as this replica's `LISTEN` heard it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A meeting was tracked or a deadline moved: the scheduler re-plans.
    Meetings,
    /// A stored limit changed: the limits reload.
    Limits,
    /// Another replica's count changes (for
    /// `MeetingGauges::apply_published`).
    Counts(String),
    /// Notifications may have been missed (the connection was just made,
    /// or lost): re-plan, reload and recount.
    Missed,
}

/// The `LISTEN` task: calls `on_event` for each notification on the
/// store's channels, until `stop`, and publishes `gauges`' own changes
/// meanwhile. Reconnects after losing the database, with [`Event::Missed`]
/// after each (re)connection: notifications sent meanwhile are lost.
pub fn listener(
    store: &PgStore,
    gauges: Arc<MeetingGauges>,
    on_event: impl Fn(Event) + Send + Sync + 'static,
    mut stop: StopSignal,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let pool = store.pool().clone();
    let publisher = publish_counts(pool.clone(), gauges, stop.clone());
    let listener = async move {
        loop {
            match subscribe(&pool).await {
                Ok(mut listener) => {
                    on_event(Event::Missed);
                    loop {
                        tokio::select! {
                            r = listener.try_recv() => match r {
                                Ok(Some(n)) if n.channel() == LIMITS_CHANNEL => on_event(Event::Limits),
                                Ok(Some(n)) if n.channel() == COUNTS_CHANNEL => {
                                    on_event(Event::Counts(n.payload().to_owned()))
                                }
                                Ok(Some(_)) => on_event(Event::Meetings),
                                // Lost; the next call reconnects.
                                Ok(None) => on_event(Event::Missed),
                                Err(e) => {
                                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                                    break;
                                }
                            },
                            () = stop.stopped() => return,
                        }
                    }
                }
                Err((e, what)) => tracing::warn!(error = %e, "{what}; retrying"),
            }
            if stop.sleep(Duration::from_secs(1)).await {
                return;
            }
        }
    };
    async move {
        tokio::join!(publisher, listener);
    }
}

/// A listener on the store's channels, or why not.
async fn subscribe(pool: &PgPool) -> Result<PgListener, (sqlx::Error, &'static str)> {
    let mut listener =
        (PgListener::connect_with(pool).await).map_err(|e| (e, "could not connect to LISTEN"))?;
    let channels = [CHANNEL, LIMITS_CHANNEL, COUNTS_CHANNEL];
    let listening = listener.listen_all(channels).await;
    listening.map_err(|e| (e, "LISTEN failed"))?;
    Ok(listener)
}

/// Every [`COUNTS_EVERY`], `NOTIFY`s this process's count changes to the
/// other replicas. A failed `NOTIFY` drops them (sent late, they could land
/// after a recount that counted them); the next recount catches up.
async fn publish_counts(pool: PgPool, gauges: Arc<MeetingGauges>, mut stop: StopSignal) {
    gauges.start_publishing();
    loop {
        if stop.sleep(COUNTS_EVERY).await {
            return;
        }
        if let Some(payload) = gauges.take_unpublished() {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(COUNTS_CHANNEL)
                .bind(payload)
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "could not publish count changes to the other replicas");
            }
        }
    }
}

/// The chores leader election: a session advisory lock held on a
/// connection of its own.
#[derive(Debug)]
pub struct Leader {
    /// For the lock's own connection.
    options: PgConnectOptions,
    /// The connection holding the lock, while this replica leads.
    conn: Mutex<Option<PgConnection>>,
}

impl Leader {
    /// Not leading yet; the lock is taken by [`Leader::leads`].
    pub fn new(store: &PgStore) -> Self {
        Leader {
            options: store.connect_options().clone(),
            conn: Mutex::new(None),
        }
    }

    /// Whether this replica runs the singleton chores: the first to take
    /// the lock keeps it for as long as its connection lives.
    pub async fn leads(&self) -> bool {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return true;
            }
            tracing::warn!("lost the connection holding the chores lock");
            *slot = None;
        }
        let mut conn = match PgConnection::connect_with(&self.options).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not connect to take the chores lock");
                return false;
            }
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(CHORES_LOCK)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(false);
        if got {
            tracing::info!("this replica now runs the singleton chores");
            *slot = Some(conn);
        } else {
            let _ = conn.close().await;
        }
        got
    }

    /// Gives up the lock (another replica takes over at its next check).
    pub async fn release(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}
