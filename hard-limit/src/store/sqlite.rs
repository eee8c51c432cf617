//! The SQLite engine (bundled SQLite, no server).
//!
//! - WAL journal with `synchronous = FULL`: a commit is on disk before
//!   [`Store::apply`](crate::store_handle::Store::apply) returns, so a
//!   204 means the delivery survives a crash or power loss. Claims and
//!   outcomes alone skip the flush (`synchronous = NORMAL`, see
//!   [`WriteTx::begin_recoverable`]): their leases make them safe to lose.
//! - Two pools: one connection for writes (SQLite has one writer anyway;
//!   queueing in the pool is cheaper than SQLite's busy-wait), a few for
//!   reads, which WAL lets run beside the writer.
//! - Leases make claims safe across processes on the same file, and across
//!   a crash: a `stopping` row whose lease expired is claimed again.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};

use super::plan::NewMeeting;
use super::rows::SqlRow;
use super::sql::{
    end_at, migrations, millis, Dialect, Notice, ALONE_COLUMN, ALONE_EVENT, END_AT, GUARD_COLUMNS,
};
use super::{Claim, Closing, ForwardClaim, NewForward, Outcome, StateDelta, StoreError};
use crate::domain::{self, GuestToken, MeetingKey, MeetingState, Plan, Timestamp};

/// The SQLite store. Cloning is cheap (the pools are shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Test hook: when not 0, every write transaction first sets
    /// `PRAGMA max_page_count` to this on its connection (a full disk on
    /// demand, without root). See [`SqliteStore::limit_pages_for_tests`].
    page_limit: Arc<AtomicU64>,
    /// Test hook: when set, every write transaction first runs `PRAGMA
    /// query_only` with it (true: the store refuses writes, as a read-only
    /// file would). See [`SqliteStore::refuse_writes_for_tests`].
    query_only: Arc<std::sync::Mutex<Option<bool>>>,
    /// This process's claim on the file (none in memory); released by
    /// [`SqliteStore::close`] or when the last clone drops.
    lock: Arc<std::sync::Mutex<Option<super::sqlite_lock::ProcessLock>>>,
}

fn migrator() -> Migrator {
    migrations!("sqlite")
}

impl SqliteStore {
    /// Opens the database a `sqlite:` URL names (creating the file if
    /// missing) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // Every error from here on names the file (never the whole URL).
        let store = format!("the SQLite database {}", options.get_filename().display());
        let unusable = |reason: String| StoreError::Unusable {
            store: store.clone(),
            reason,
        };
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // Before anything touches the file: a second service on it stops
        // here, having changed nothing.
        let lock = if in_memory {
            None
        } else {
            Some(super::sqlite_lock::lock(options.get_filename()).map_err(unusable)?)
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| unusable(format!("cannot open it: {e}")))?;
        migrator()
            .run(&writer)
            .await
            .map_err(|e| unusable(format!("cannot migrate it: {e}")))?;
        // An in-memory database exists once per connection: share the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| unusable(format!("cannot open it for reading: {e}")))?
        };
        let store = SqliteStore {
            writer,
            reader,
            page_limit: Arc::new(AtomicU64::new(0)),
            query_only: Arc::new(std::sync::Mutex::new(None)),
            lock: Arc::new(std::sync::Mutex::new(lock)),
        };
        // Reads work on a read-only file or directory, writes do not: find
        // out now, not at the first delivery (which would get 503 forever).
        store.probe_write().await.map_err(|e| {
            unusable(format!(
                "it is not writable (the service must write its store): {e}"
            ))
        })?;
        Ok(store)
    }

    /// Commits a real write (one row of its own table): at start-up, so a
    /// store that cannot be written is found at once, and for `/healthz`
    /// after a failed write.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY CHECK (id = 1),
                                                     at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO write_probe (id, at) VALUES (1, unixepoch())
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Test hook: from now on every write transaction runs `PRAGMA
    /// max_page_count = pages` on its connection first, so the database
    /// cannot grow past `pages` pages (SQLite answers "database or disk is
    /// full", as on a full filesystem). Raise it to lift the limit. Not for
    /// production use.
    #[doc(hidden)]
    pub fn limit_pages_for_tests(&self, pages: u64) {
        self.page_limit.store(pages.max(1), Ordering::SeqCst);
    }

    /// Test hook: `true` makes every later write transaction fail as on a
    /// read-only file (`PRAGMA query_only`), `false` lifts that. Not for
    /// production use.
    #[doc(hidden)]
    pub fn refuse_writes_for_tests(&self, refuse: bool) {
        *self.query_only.lock().unwrap_or_else(|e| e.into_inner()) = Some(refuse);
    }

    /// Every row as `(room_id, started_at, state)`, for tests that check
    /// what reached the file.
    #[doc(hidden)]
    pub async fn rows_for_tests(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT room_id, started_at, state FROM meetings ORDER BY room_id")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// How many pages the database file has (for tests).
    #[doc(hidden)]
    pub async fn page_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.writer)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Closes both pools (waits for connections to be returned).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
        // Only now may another process open the file.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A write transaction on the writer connection, run by hand (`BEGIN
/// IMMEDIATE` … `COMMIT`) rather than through sqlx's `Transaction`.
///
/// Why: after a failed statement or `COMMIT` (a full disk), SQLite may or
/// may not have rolled the transaction back by itself, and sqlx's own
/// bookkeeping of the nesting depth then drifts from SQLite's: its next
/// `begin()` becomes a `SAVEPOINT` inside a transaction that never ends,
/// each `commit()` releases only that savepoint and reports success, and
/// every later "committed" write is lost when the process stops. So:
/// - before each batch the connection must be outside any transaction:
///   sqlx must not think it is in one, and SQLite must accept a plain
///   `BEGIN IMMEDIATE` (it refuses one inside a transaction); otherwise the
///   connection is closed and a fresh one opened;
/// - a transaction that did not commit (any error, or dropped on the way)
///   closes its connection instead of returning it to the pool: closing
///   rolls back whatever SQLite still holds, and the pool opens a new one.
///
/// Only `Ok` from [`WriteTx::commit`] means durable (WAL, `synchronous =
/// FULL`).
/// The test hooks a write transaction applies first (none in production).
#[derive(Clone, Copy)]
struct Hooks {
    page_limit: u64,
    query_only: Option<bool>,
}

pub(crate) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    committed: bool,
}

impl WriteTx {
    /// A transaction whose commit is on disk before it returns.
    async fn begin(store: &SqliteStore) -> Result<Self, StoreError> {
        Self::begin_with(store, true).await
    }

    /// A transaction the leases make safe to lose in a power failure
    /// (claims and their outcomes): its commit is not flushed (WAL with
    /// `synchronous = NORMAL`) but made durable by the next durable commit.
    /// Lost, a claim or an outcome only repeats a call, which then meets
    /// 404, as after a crash between eyeson's answer and the commit. At the
    /// top of the hour this takes a flush off the path of every claim.
    async fn begin_recoverable(store: &SqliteStore) -> Result<Self, StoreError> {
        Self::begin_with(store, false).await
    }

    async fn begin_with(store: &SqliteStore, durable: bool) -> Result<Self, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = store.writer.acquire().await?;
            let hooks = Hooks {
                page_limit: store.page_limit.load(Ordering::SeqCst),
                query_only: *store.query_only.lock().unwrap_or_else(|e| e.into_inner()),
            };
            match Self::start(&mut conn, hooks, durable).await {
                Ok(()) => {
                    return Ok(WriteTx {
                        conn,
                        committed: false,
                    })
                }
                Err(e) => {
                    conn.close_on_drop();
                    drop(conn);
                    if tries >= 2 {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "the SQLite writer connection was not usable; opening a new one");
                }
            }
        }
    }

    async fn start(
        conn: &mut SqliteConnection,
        hooks: Hooks,
        durable: bool,
    ) -> Result<(), StoreError> {
        if conn.is_in_transaction() {
            return Err(StoreError::Corrupt(
                "the writer connection is inside a transaction".into(),
            ));
        }
        // Set for every transaction, never inherited from the one before.
        sqlx::query(if durable {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        })
        .execute(&mut *conn)
        .await?;
        if hooks.page_limit != 0 {
            let _: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "PRAGMA max_page_count = {}",
                hooks.page_limit
            )))
            .fetch_one(&mut *conn)
            .await?;
        }
        if let Some(on) = hooks.query_only {
            sqlx::query(if on {
                "PRAGMA query_only = 1"
            } else {
                "PRAGMA query_only = 0"
            })
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        Ok(())
    }

    /// Commits; `Ok` only if SQLite committed. On error the connection is
    /// closed (with whatever SQLite kept of the transaction).
    async fn commit(mut self) -> Result<(), StoreError> {
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.committed = true;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

/// SQLite's side of the shared SQL ([`super::sql`]): the one writer
/// connection is the lock, the caller's clock is the store's, and batches
/// are bound as one JSON array (`json_each`): each statement is a hop to
/// sqlx's SQLite thread, which costs more than the work.
impl Dialect for SqliteStore {
    type DB = Sqlite;
    type Tx = WriteTx;
    // `BEGIN IMMEDIATE` already holds the one writer.
    const FOR_UPDATE: &'static str = "";
    /// No `SKIP LOCKED` (one writer): picked by `rowid`.
    // `e` is the meeting's end (`END_AT`: the deadline or a sooner alone
    // deadline), computed once per row.
    const CLAIM_WARNINGS: &'static str = concat!(
        "UPDATE meetings
             SET warn_for = e.at, warn_state = 'claimed', warn_owner = $1, warn_until = $2,
                 warn_attempts = CASE WHEN warn_for = e.at THEN warn_attempts + 1 ELSE 1 END
             FROM (SELECT rowid AS id, e.at FROM
                     (SELECT rowid, warn_for, warn_state, warn_until, ",
        end_at!(),
        " AS at
                      FROM meetings WHERE state = 'running') AS e
                   WHERE e.at > $3 AND e.at <= $3 + $5
                     AND (e.warn_for IS NULL OR e.warn_for <> e.at
                          OR (e.warn_state = 'claimed' AND e.warn_until <= $3))
                   ORDER BY e.at LIMIT $4) AS e
             WHERE meetings.rowid = e.id
             RETURNING room_id, started_at, warn_for AS deadline, guest_token, warn_attempts,
                       CAST(CASE WHEN alone_deadline = warn_for AND alone_deadline < deadline
                            THEN 1 ELSE 0 END AS BIGINT) AS alone"
    );

    const CLAIM_PRESENCE: &'static str =
        "UPDATE meetings SET presence_owner = $1, presence_due = $2
             WHERE rowid IN (SELECT rowid FROM meetings
                             WHERE state = 'running' AND presence_due <= $3
                             ORDER BY presence_due LIMIT $4)
             RETURNING room_id, started_at, presence_due, alone_since";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    async fn begin(&self, durable: bool) -> Result<WriteTx, StoreError> {
        WriteTx::begin_with(self, durable).await
    }

    async fn commit(tx: WriteTx) -> Result<(), StoreError> {
        tx.commit().await
    }

    async fn db_now(&self, _: &mut WriteTx) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    // One host: no other replica to tell.
    async fn notify(_: &mut WriteTx, _: Notice) -> Result<(), StoreError> {
        Ok(())
    }

    // The one writer connection orders all writes.
    async fn lock_rooms(_: &mut WriteTx, _: &[Plan], _: &[NewForward]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn room_cutoffs(
        tx: &mut WriteTx,
        rooms: &[&str],
    ) -> Result<HashMap<String, Timestamp>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT room_id, cutoff FROM room_shutdowns
             WHERE room_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::json!(rooms).to_string())
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows.into_iter().map(|(r, c)| (r, Timestamp(c))).collect())
    }

    async fn insert_many(
        tx: &mut WriteTx,
        meetings: &[NewMeeting<'_>],
        now: Timestamp,
    ) -> Result<HashSet<String>, StoreError> {
        let rows: Vec<serde_json::Value> = meetings
            .iter()
            .map(|m| {
                serde_json::json!([
                    m.key.room_id.as_str(),
                    m.key.started_at.0,
                    m.deadline.0,
                    m.state.as_str(),
                    (!m.state.is_open()).then_some(now.0),
                    m.guest_token.map(GuestToken::expose),
                ])
            })
            .collect();
        let new: Vec<String> = sqlx::query_scalar(
            "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at,
                                   finished_at, guest_token, presence_due)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?2, ?2,
                    value ->> 4, value ->> 5, ?2
             FROM json_each(?1) WHERE true
             ON CONFLICT (room_id, started_at) DO NOTHING
             RETURNING room_id",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now.0)
        .fetch_all(&mut **tx)
        .await?;
        Ok(new.into_iter().collect())
    }

    async fn started_many(
        tx: &mut WriteTx,
        started: &[(&MeetingKey, Option<&GuestToken>)],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let rows = serde_json::Value::Array(
            started
                .iter()
                .map(|(k, t)| {
                    serde_json::json!([
                        k.room_id.as_str(),
                        k.started_at.0,
                        t.map(GuestToken::expose)
                    ])
                })
                .collect(),
        )
        .to_string();
        let ended_older = sqlx::query(
            "UPDATE meetings SET state = 'ended', finished_at = ?2, updated_at = ?2
             FROM (SELECT value ->> 0 AS room_id, value ->> 1 AS started_at FROM json_each(?1)) AS s
             WHERE meetings.room_id = s.room_id AND meetings.started_at < s.started_at
               AND meetings.state = 'running'",
        )
        .bind(&rows)
        .bind(now.0)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE meetings SET guest_token = s.token,
                 warn_for = CASE WHEN warn_state = 'no_guest_token' THEN NULL ELSE warn_for END,
                 warn_state = CASE WHEN warn_state = 'no_guest_token' THEN NULL ELSE warn_state END
             FROM (SELECT value ->> 0 AS room_id, value ->> 1 AS started_at, value ->> 2 AS token
                   FROM json_each(?1)) AS s
             WHERE s.token IS NOT NULL AND meetings.room_id = s.room_id
               AND meetings.started_at = s.started_at AND meetings.guest_token IS NOT s.token",
        )
        .bind(&rows)
        .execute(&mut **tx)
        .await?;
        Ok(ended_older)
    }

    /// A lane whose receiver fails is not scanned again before its retry.
    async fn insert_forwards(
        tx: &mut WriteTx,
        forwards: &[NewForward],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let rows = serde_json::Value::Array(
            forwards
                .iter()
                .map(|f| serde_json::json!([f.lane, hex(&f.body), f.signature, f.content_type]))
                .collect(),
        );
        sqlx::query(
            "INSERT INTO forward_outbox (lane, body, signature, content_type, received_at, next_at)
             SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3, ?2,
                    max(?2, coalesce((SELECT h.next_at FROM forward_outbox h
                                      WHERE h.lane = value ->> 0 ORDER BY h.id LIMIT 1), ?2))
             FROM json_each(?1) ORDER BY key",
        )
        .bind(rows.to_string())
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// No `SKIP LOCKED` in SQLite (one writer): picked by `rowid`, expired
    /// leases first (those meetings are the most overdue).
    async fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let until = now.plus(lease);
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let mut claims = Vec::new();
        let running = (
            "running",
            "(deadline <= ?3 OR alone_deadline <= ?3)",
            END_AT,
        );
        for (state, due, order) in [("stopping", "lease_until <= ?3", "lease_until"), running] {
            let room = limit as usize - claims.len();
            if room == 0 {
                break;
            }
            let sql = format!(
                "UPDATE meetings
                 SET state = 'stopping', lease_owner = ?1, lease_until = ?2,
                     attempts = attempts + 1, updated_at = ?3
                 WHERE rowid IN (SELECT rowid FROM meetings
                                 WHERE state = '{state}' AND {due}
                                 ORDER BY {order} LIMIT ?4)
                 RETURNING room_id, started_at, {END_AT} AS deadline, {ALONE_COLUMN}, attempts,
                           {GUARD_COLUMNS}"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(until.0)
                .bind(now.0)
                .bind(room as i64)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                claims.push(row.claim()?);
            }
        }
        tx.commit().await?;
        claims.sort_by_key(|c| c.deadline);
        Ok(claims)
    }

    /// One statement for the batch (its rows as a JSON array): the writer
    /// is free again for the next claim within a millisecond.
    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = serde_json::Value::Array(
            outcomes
                .iter()
                .map(|o| {
                    debug_assert!(MeetingState::Stopping.may_become(o.state));
                    // A final state sets finished_at; a deferred shutdown
                    // (state stays 'stopping') keeps it NULL and waits in
                    // lease_until.
                    serde_json::json!([
                        o.key.room_id.as_str(),
                        o.key.started_at.0,
                        o.state.as_str(),
                        (!o.state.is_open()).then_some(o.at.0),
                        o.at.0,
                        o.retry_at.map(|t| t.0),
                        o.attempts,
                        i64::from(o.ended_alone),
                        o.participants,
                    ])
                })
                .collect(),
        )
        .to_string();
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let done: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE meetings
             SET state = o.state, finished_at = o.finished_at, updated_at = o.at,
                 lease_owner = NULL,
                 lease_until = CASE WHEN o.state = 'stopping' THEN o.retry_at END,
                 ended_alone = o.ended_alone,
                 -- An alone end cancelled (someone joined): the clock is reset.
                 presence_due = CASE WHEN o.state = 'running' THEN o.retry_at ELSE presence_due END,
                 participants = CASE WHEN o.state = 'running'
                                     THEN coalesce(o.participants, meetings.participants)
                                     ELSE meetings.participants END,
                 checked_at = CASE WHEN o.state = 'running' THEN o.at ELSE meetings.checked_at END,
                 alone_since = CASE WHEN o.state = 'running' THEN NULL ELSE meetings.alone_since END,
                 alone_deadline = CASE WHEN o.state = 'running' THEN NULL
                                       ELSE meetings.alone_deadline END
             FROM (SELECT value ->> 0 AS room_id, value ->> 1 AS started_at, value ->> 2 AS state,
                          value ->> 3 AS finished_at, value ->> 4 AS at, value ->> 5 AS retry_at,
                          value ->> 6 AS attempts, value ->> 7 AS ended_alone,
                          value ->> 8 AS participants
                   FROM json_each(?1)) AS o
             WHERE meetings.room_id = o.room_id AND meetings.started_at = o.started_at
               AND meetings.state = 'stopping' AND meetings.lease_owner = ?2
               AND meetings.attempts = o.attempts
             RETURNING room_id, started_at, attempts",
        )
        .bind(rows)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        // A claim is its meeting and its attempt number.
        let done: HashSet<(String, i64, i64)> = done.into_iter().collect();
        let applied: Vec<bool> = outcomes
            .iter()
            .map(|o| {
                done.contains(&(
                    o.key.room_id.as_str().to_owned(),
                    o.key.started_at.0,
                    o.attempts,
                ))
            })
            .collect();
        for (o, _) in outcomes.iter().zip(&applied).filter(|(_, a)| **a) {
            if let Some(event) = o.alone_event() {
                sqlx::query(ALONE_EVENT)
                    .bind(o.key.room_id.as_str())
                    .bind(o.key.started_at.0)
                    .bind(o.at.0)
                    .bind(event)
                    .bind(o.participants)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The caller's clock is the store's: no translation.
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM (
               SELECT min(deadline) AS t FROM meetings WHERE state = 'running'
               UNION ALL
               SELECT min(alone_deadline) AS t FROM meetings WHERE state = 'running'
               UNION ALL
               SELECT min(lease_until) AS t FROM meetings WHERE state = 'stopping')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(t.map(Timestamp))
    }

    /// The listed keys go into a temporary table on the writer connection
    /// (no arrays in SQLite), so the anti-join runs in SQLite however many
    /// meetings are running.
    async fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> Result<Closing, StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS listed (room_id TEXT NOT NULL, started_at INTEGER NOT NULL,
                                                     PRIMARY KEY (room_id, started_at))",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM temp.listed")
            .execute(&mut *tx)
            .await?;
        for key in listed {
            sqlx::query("INSERT OR IGNORE INTO temp.listed (room_id, started_at) VALUES (?1, ?2)")
                .bind(key.room_id.as_str())
                .bind(key.started_at.0)
                .execute(&mut *tx)
                .await?;
        }
        const UNLISTED: &str = "state = 'running' AND created_at < ?1
               AND NOT EXISTS (SELECT 1 FROM temp.listed l
                               WHERE l.room_id = meetings.room_id AND l.started_at = meetings.started_at)";
        let would_close: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM meetings WHERE {UNLISTED}"
        )))
        .bind(known_before.0)
        .fetch_one(&mut *tx)
        .await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM meetings WHERE state IN ('running', 'stopping')",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (would_close, open) = (would_close.max(0) as u64, open.max(0) as u64);
        let outcome = if domain::mass_close_refused(would_close, open) {
            Closing::Refused { would_close, open }
        } else {
            let closed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE meetings SET state = 'ended', finished_at = ?2, updated_at = ?2
                 WHERE {UNLISTED}"
            )))
            .bind(known_before.0)
            .bind(now.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Closing::Closed(closed)
        };
        sqlx::query("DELETE FROM temp.listed")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// One transaction; SQLite's `DELETE … RETURNING` cannot feed a second
    /// statement (no data-modifying CTEs), so the rooms come back here.
    async fn prune(&self, finished_before: Timestamp) -> Result<(u64, StateDelta), StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        let gone: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM meetings WHERE finished_at IS NOT NULL AND finished_at < ?1
             RETURNING room_id, state",
        )
        .bind(finished_before.0)
        .fetch_all(&mut *tx)
        .await?;
        let pruned = gone.len() as u64;
        let mut delta = StateDelta::default();
        for (_, state) in &gone {
            // An unknown state is not counted: the next recount reports it.
            if let Some(state) = MeetingState::parse(state) {
                delta.removed(state, 1);
            }
        }
        let mut rooms: Vec<String> = gone.into_iter().map(|(room, _)| room).collect();
        rooms.sort_unstable();
        rooms.dedup();
        // A room's shutdown cutoff is forgotten with its last meeting (a
        // delivery that old is refused as stale anyway).
        for room in &rooms {
            sqlx::query(
                "DELETE FROM room_shutdowns WHERE room_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM meetings WHERE room_id = ?1)",
            )
            .bind(room)
            .execute(&mut *tx)
            .await?;
        }
        // The audit is kept as long as the meetings it is about.
        sqlx::query("DELETE FROM admin_actions WHERE at < ?1")
            .bind(finished_before.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((pruned, delta))
    }

    /// No `DISTINCT ON` in SQLite: the first action by a correlated `min(id)`.
    async fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> Result<Vec<(MeetingKey, Timestamp)>, StoreError> {
        let rows = sqlx::query(
            "SELECT room_id, started_at, old_deadline AS deadline FROM admin_actions a
             WHERE started_at >= ?1 AND action IN ('extend', 'end')
               AND id = (SELECT min(id) FROM admin_actions b
                         WHERE b.room_id = a.room_id AND b.started_at = a.started_at
                           AND b.action IN ('extend', 'end'))",
        )
        .bind(started_since.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.key()?, Timestamp(r.int("deadline")?))))
            .collect()
    }

    async fn next_presence(&self) -> Result<Option<Timestamp>, StoreError> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT min(presence_due) FROM meetings WHERE state = 'running'")
                .fetch_one(&self.reader)
                .await?;
        Ok(t.map(Timestamp))
    }

    /// The caller's clock is the store's: no translation.
    async fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> Result<Option<Timestamp>, StoreError> {
        // Never earlier than `deadline - warn`, also for a lapsed claim: a
        // time the claim query would not take would make the warner spin.
        let t: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT min(CASE WHEN warn_for IS NULL OR warn_for <> e THEN e - ?2
                             ELSE max(warn_until, e - ?2) END)
             FROM (SELECT warn_for, warn_state, warn_until, {END_AT} AS e
                   FROM meetings WHERE state = 'running')
             WHERE e > ?1
               AND (warn_for IS NULL OR warn_for <> e
                    OR (warn_state = 'claimed' AND warn_until IS NOT NULL))"
        )))
        .bind(now.0)
        .bind(millis(warn_before))
        .fetch_one(&self.reader)
        .await?;
        Ok(t.map(Timestamp))
    }

    /// The search runs on a reader (WAL), off the single writer that
    /// deliveries wait for; the claim itself is a short conditional update.
    /// A lane's head stays its head until it is removed (ids only grow), and
    /// the update re-checks lease and due time.
    async fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ForwardClaim>, StoreError> {
        let heads: Vec<i64> = sqlx::query_scalar(
            "SELECT o.id FROM forward_outbox o
             WHERE o.next_at <= ?1 AND (o.lease_until IS NULL OR o.lease_until <= ?1)
               AND NOT EXISTS (SELECT 1 FROM forward_outbox p WHERE p.lane = o.lane AND p.id < o.id)
             ORDER BY o.next_at LIMIT ?2",
        )
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let rows = sqlx::query(
            "UPDATE forward_outbox SET lease_owner = ?1, lease_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT value FROM json_each(?3))
               AND next_at <= ?4 AND (lease_until IS NULL OR lease_until <= ?4)
             RETURNING id, lane, body, signature, content_type, received_at, attempts",
        )
        .bind(owner)
        .bind(now.plus(lease).0)
        .bind(serde_json::json!(heads).to_string())
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claims = rows
            .iter()
            .map(|r| r.forward_claim(now))
            .collect::<Result<Vec<_>, _>>()?;
        claims.sort_by_key(|c| c.id);
        Ok(claims)
    }

    /// A real write (one row of its own table): an empty transaction
    /// commits on a read-only file too.
    async fn probe_write(&self) -> Result<(), StoreError> {
        SqliteStore::probe_write(self).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }
}

/// Lowercase hex, for binary values inside a JSON array (`unhex` in SQL).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Plan, RoomId};
    use crate::store::Applied;
    use crate::store_handle::Store;

    /// A claim whose lease expired and which its own process claimed again
    /// (the first worker's call still in flight) cannot record an outcome:
    /// only the latest claim (owner and attempts) can.
    #[tokio::test]
    async fn only_the_latest_claim_of_an_owner_may_finish() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let handle = Store::from(store.clone());
        let key = MeetingKey {
            room_id: RoomId::parse("r").unwrap(),
            started_at: Timestamp(1_000),
        };
        let plan = Plan::Track {
            key: key.clone(),
            deadline: Timestamp(2_000),
            guest_token: None,
        };
        handle.apply(&[plan], Timestamp(1_000)).await.unwrap();
        let lease = Duration::from_secs(1);
        let first = handle
            .claim_due(Timestamp(2_000), lease, "p", 8)
            .await
            .unwrap();
        let again = handle
            .claim_due(Timestamp(3_500), lease, "p", 8)
            .await
            .unwrap();
        assert_eq!((first[0].attempts, again[0].attempts), (1, 2));
        let outcome = |attempts| Outcome {
            key: key.clone(),
            state: MeetingState::ShutDown,
            at: Timestamp(4_000),
            attempts,
            retry_at: None,
            ended_alone: false,
            participants: None,
        };
        assert_eq!(handle.finish("p", &[outcome(1)]).await.unwrap(), [false]);
        assert_eq!(handle.finish("p", &[outcome(2)]).await.unwrap(), [true]);
        store.close().await;
    }

    /// A write returns, with its answer, exactly the state changes its
    /// steps made and whether it changed anything (what the gauges and the
    /// health flag apply once it committed).
    #[tokio::test]
    async fn a_write_returns_what_it_changed() {
        use crate::store::Engine;
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let key = MeetingKey {
            room_id: RoomId::parse("r").unwrap(),
            started_at: Timestamp(1_000),
        };
        let track = Plan::Track {
            key: key.clone(),
            deadline: Timestamp(2_000),
            guest_token: None,
        };
        let w = store
            .apply_deliveries(std::slice::from_ref(&track), &[], Timestamp(1_000))
            .await
            .unwrap();
        assert!(w.changed);
        assert_eq!(w.delta.get(MeetingState::Running), 1);
        let again = store
            .apply_deliveries(&[track], &[], Timestamp(1_100))
            .await
            .unwrap();
        assert_eq!(again.value, [Applied::AlreadyKnown]);
        assert!(!again.changed && again.delta.is_zero());
        let end = Plan::End {
            room_id: key.room_id.clone(),
            cutoff: key.started_at,
            meeting: Some((key, Timestamp(2_000))),
        };
        let w = store
            .apply_deliveries(&[end], &[], Timestamp(1_500))
            .await
            .unwrap();
        assert_eq!(w.delta.get(MeetingState::Running), -1);
        assert_eq!(w.delta.get(MeetingState::Ended), 1);
        let pruned = Engine::prune(&store, Timestamp(9_000)).await.unwrap();
        assert_eq!(pruned.value, 1);
        assert_eq!(pruned.delta.get(MeetingState::Ended), -1);
        store.close().await;
    }

    #[tokio::test]
    async fn pruning_a_rooms_last_meeting_forgets_its_shutdown_cutoff() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let handle = Store::from(store.clone());
        let end = |room: &str, start: i64| {
            let key = MeetingKey {
                room_id: RoomId::parse(room).unwrap(),
                started_at: Timestamp(start),
            };
            Plan::End {
                room_id: key.room_id.clone(),
                cutoff: key.started_at,
                meeting: Some((key, Timestamp(start + 10_000))),
            }
        };
        handle
            .apply(&[end("gone", 1_000), end("kept", 1_000)], Timestamp(2_000))
            .await
            .unwrap();
        // "kept" has a newer, running meeting.
        let newer = Plan::Track {
            key: MeetingKey {
                room_id: RoomId::parse("kept").unwrap(),
                started_at: Timestamp(5_000),
            },
            deadline: Timestamp(15_000),
            guest_token: None,
        };
        handle.apply(&[newer], Timestamp(5_000)).await.unwrap();
        assert_eq!(handle.prune(Timestamp(3_000)).await.unwrap(), 2);
        let rooms: Vec<String> =
            sqlx::query_scalar("SELECT room_id FROM room_shutdowns ORDER BY room_id")
                .fetch_all(&store.writer)
                .await
                .unwrap();
        assert_eq!(rooms, ["kept"]);
        store.close().await;
    }

    #[tokio::test]
    async fn commits_are_durable_wal_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        store.close().await;
    }

    /// A claim skips the flush; the next delivery's transaction flushes
    /// again: the setting is made per transaction, never inherited.
    #[tokio::test]
    async fn only_claims_and_outcomes_skip_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let handle = Store::from(store.clone());
        let writer_sync = || async {
            sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                .fetch_one(&store.writer)
                .await
                .unwrap()
        };
        let key = MeetingKey {
            room_id: RoomId::parse("r").unwrap(),
            started_at: Timestamp(0),
        };
        let track = Plan::Track {
            key: key.clone(),
            deadline: Timestamp(1_000),
            guest_token: None,
        };
        handle.apply(&[track], Timestamp(0)).await.unwrap();
        assert_eq!(writer_sync().await, 2, "a delivery commits with FULL");
        let claims = handle
            .claim_due(Timestamp(1_000), Duration::from_secs(30), "w", 8)
            .await
            .unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(writer_sync().await, 1, "a claim commits with NORMAL");
        let end = Plan::End {
            room_id: key.room_id.clone(),
            cutoff: Timestamp(0),
            meeting: None,
        };
        handle.apply(&[end], Timestamp(2_000)).await.unwrap();
        assert_eq!(writer_sync().await, 2, "FULL again for the next delivery");
        store.close().await;
    }
}
