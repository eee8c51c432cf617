//! PostgreSQL replicas working as one, beside the store: the `LISTEN`
//! task that hears what other replicas did, the publishing of this
//! replica's meeting counts, and the advisory-lock leader election for the
//! singleton chores. Nothing here decides what an event means: the
//! listener emits [`Event`]s and the application routes them (the
//! scheduler's wake, the limits, the gauges).
//!
//! - **Wake-ups**: a transaction that tracks a new meeting or moves a
//!   deadline sends `NOTIFY hard_limit_meetings`; every replica listens
//!   ([`spawn_listener`]), so a deadline written through one replica wakes
//!   all of them, not only after their next sleep.
//! - **Meeting counts** (`/metrics`): each replica `NOTIFY`s the changes of
//!   its own writes on [`COUNTS_CHANNEL`] every [`COUNTS_EVERY`] (one
//!   notification per period, off the write path); the others apply them.
//! - **Singleton chores** (reconciliation, pruning, webhook registration)
//!   run only on the replica holding a session-level advisory lock on its
//!   own connection ([`Leader`]); if that replica or its connection dies,
//!   PostgreSQL releases the lock and another takes over.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use sqlx::Connection;
use tokio::sync::Mutex;

use crate::meeting_gauges::MeetingGauges;
use crate::stop::StopSignal;
use crate::store::postgres::{PgStore, CHANNEL, LIMITS_CHANNEL};

/// The channel each replica publishes its changes of the meetings' counts
/// on (at most every [`COUNTS_EVERY`]), so the others' `/metrics` follow
/// them between recounts ([`crate::meeting_gauges`]).
pub const COUNTS_CHANNEL: &str = "hard_limit_counts";

/// How often a replica publishes its count changes (one `NOTIFY` for all
/// the writes of the period, off the write path).
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
    /// [`MeetingGauges::apply_published`]).
    Counts(String),
    /// Notifications may have been missed (the connection was just made,
    /// or lost): re-plan, reload and recount.
    Missed,
}

/// Listens on the store's channels and calls `on_event` for each
/// notification, until `stop`; publishes `gauges`' own changes meanwhile.
/// Reconnects on its own after losing the database, with [`Event::Missed`]
/// after each (re)connection, since notifications sent meanwhile are lost.
pub fn spawn_listener(
    store: &PgStore,
    gauges: Arc<MeetingGauges>,
    on_event: impl Fn(Event) + Send + Sync + 'static,
    mut stop: StopSignal,
) -> tokio::task::JoinHandle<()> {
    let pool = store.pool().clone();
    let publisher = publish_counts(pool.clone(), gauges, stop.clone());
    tokio::spawn(async move {
        // Dropped (so aborted) with this task.
        let _publisher = AbortOnDrop(tokio::spawn(publisher));
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener
                    .listen_all([CHANNEL, LIMITS_CHANNEL, COUNTS_CHANNEL])
                    .await
                {
                    Ok(()) => {
                        on_event(Event::Missed);
                        loop {
                            tokio::select! {
                                r = listener.try_recv() => match r {
                                    Ok(Some(n)) if n.channel() == LIMITS_CHANNEL => on_event(Event::Limits),
                                    Ok(Some(n)) if n.channel() == COUNTS_CHANNEL => {
                                        on_event(Event::Counts(n.payload().to_owned()))
                                    }
                                    Ok(Some(_)) => on_event(Event::Meetings),
                                    // Connection lost; the next call reconnects
                                    // and re-listens.
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
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "could not connect to LISTEN; retrying"),
            }
            if stop.sleep(Duration::from_secs(1)).await {
                return;
            }
        }
    })
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every [`COUNTS_EVERY`], `NOTIFY`s this process's count changes of the
/// period to the other replicas. A failed `NOTIFY` drops them (the others
/// then catch up at their next recount): sent late, they could land after
/// a recount that already counted them.
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

    /// Whether this replica runs the singleton chores. The first replica
    /// to take the advisory lock keeps it on a dedicated connection for as
    /// long as that connection lives; the others get `false` until it is
    /// released.
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
