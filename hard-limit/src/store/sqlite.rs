//! The SQLite engine (bundled SQLite, no server).
//!
//! - WAL journal with `synchronous = FULL`: a commit is on disk before
//!   [`MeetingStore::apply`] returns, so a 204 means the delivery survives a
//!   crash or power loss. Claims and outcomes alone skip the flush
//!   (`synchronous = NORMAL`, see [`WriteTx::begin_recoverable`]): their
//!   leases make them safe to lose.
//! - Two pools: one connection for writes (SQLite has one writer anyway;
//!   queueing in the pool is cheaper than SQLite's busy-wait), a few for
//!   reads, which WAL lets run beside the writer.
//! - Leases make claims safe across processes on the same file, and across
//!   a crash: a `stopping` row whose lease expired is claimed again.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlSafeStr, Sqlite};

use super::plan::{self, NewMeeting, PlanSteps};
use super::rows::MeetingRow;
use super::{
    describe, AdminStore, Applied, Caller, Claim, Closing, DeadlineMoved, ForwardClaim,
    ForwardRecord, ForwardStore, Guard, LimitKind, LimitRule, MeetingStore, MeetingView,
    NewForward, Outcome, RoomHistory, RoomMeeting, StoreError, WarnClaim, WarnRecord,
};
use crate::domain::{
    self, DeadlineChange, GuestToken, MeetingKey, MeetingState, Plan, RoomId, Timestamp,
};

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
    /// Whether the last write that changed something committed (for
    /// `/healthz`; kept by [`super::Store`]).
    pub(super) write_ok: Arc<AtomicBool>,
    /// Meetings by state, kept by [`super::Store`] (for `/metrics`).
    pub(super) gauges: Arc<crate::meeting_gauges::MeetingGauges>,
    /// This process's claim on the file (none in memory); released by
    /// [`SqliteStore::close`] or when the last clone drops.
    lock: Arc<std::sync::Mutex<Option<super::sqlite_lock::ProcessLock>>>,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "meetings".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_meetings.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "admin".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_admin.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "warnings".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_warnings.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "forward outbox".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_forward_outbox.sql").into_sql_str(),
            false,
        ),
    ])
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
            write_ok: Arc::new(AtomicBool::new(true)),
            gauges: Arc::default(),
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

    /// Test hook: moves an open meeting's deadline. See
    /// [`super::Store::set_deadline_for_tests`].
    #[doc(hidden)]
    pub async fn set_deadline_for_tests(
        &self,
        key: &MeetingKey,
        deadline: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE meetings SET deadline = ?3
             WHERE room_id = ?1 AND started_at = ?2 AND state IN ('running', 'stopping')",
        )
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .bind(deadline.0)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Test hook: `(warn_state, warn_for)` of a meeting.
    #[doc(hidden)]
    pub async fn warning_for_tests(
        &self,
        key: &MeetingKey,
    ) -> Result<Option<(Option<String>, Option<i64>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT warn_state, warn_for FROM meetings WHERE room_id = ?1 AND started_at = ?2",
        )
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .fetch_optional(&self.writer)
        .await?)
    }

    /// Closes both pools (waits for connections to be returned).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
        // Only now may another process open the file.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Inserts many meetings at once, in one transaction (for benchmarks
    /// and imports; the service itself goes through [`MeetingStore::apply`]).
    pub async fn bulk_insert(
        &self,
        rows: &[(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        for (key, deadline, state) in rows {
            insert(&mut tx, key, *deadline, *state, now).await?;
        }
        tx.commit().await?;
        Ok(())
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

struct WriteTx {
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

/// Inserts a meeting unless it is known; returns whether it was new.
async fn insert(
    tx: &mut WriteTx,
    key: &MeetingKey,
    deadline: Timestamp,
    state: MeetingState,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let finished = (!state.is_open()).then_some(now.0);
    let n = sqlx::query(
        "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
         ON CONFLICT (room_id, started_at) DO NOTHING",
    )
    .bind(key.room_id.as_str())
    .bind(key.started_at.0)
    .bind(deadline.0)
    .bind(state.as_str())
    .bind(now.0)
    .bind(finished)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The plan-application steps ([`plan::apply`]) in SQLite's SQL, on the
/// one writer connection (so no other write can interleave). The batch
/// steps take their rows as one JSON array (`json_each`): each statement
/// is a hop to sqlx's SQLite thread, which costs more than the work.
impl PlanSteps for WriteTx {
    async fn room_cutoffs(
        &mut self,
        rooms: &[&str],
    ) -> Result<HashMap<String, Timestamp>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT room_id, cutoff FROM room_shutdowns
             WHERE room_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::json!(rooms).to_string())
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().map(|(r, c)| (r, Timestamp(c))).collect())
    }

    async fn insert_many(
        &mut self,
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
                                   finished_at, guest_token)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?2, ?2,
                    value ->> 4, value ->> 5
             FROM json_each(?1) WHERE true
             ON CONFLICT (room_id, started_at) DO NOTHING
             RETURNING room_id",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now.0)
        .fetch_all(&mut **self)
        .await?;
        Ok(new.into_iter().collect())
    }

    async fn started_many(
        &mut self,
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
        .execute(&mut **self)
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
        .execute(&mut **self)
        .await?;
        Ok(ended_older)
    }

    async fn insert(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        state: MeetingState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        insert(self, key, deadline, state, now).await
    }

    async fn newest_open(
        &mut self,
        room: &RoomId,
        upto: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let newest: Option<i64> = sqlx::query_scalar(
            "SELECT max(started_at) FROM meetings
             WHERE room_id = ?1 AND started_at <= ?2
               AND state IN ('running', 'stopping')",
        )
        .bind(room.as_str())
        .bind(upto.0)
        .fetch_one(&mut **self)
        .await?;
        Ok(newest.map(Timestamp))
    }

    async fn raise_cutoff(&mut self, room: &RoomId, cutoff: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO room_shutdowns (room_id, cutoff) VALUES (?1, ?2)
             ON CONFLICT (room_id) DO UPDATE SET cutoff = max(cutoff, excluded.cutoff)",
        )
        .bind(room.as_str())
        .bind(cutoff.0)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn end_running(
        &mut self,
        room: &RoomId,
        upto: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE meetings SET state = 'ended', finished_at = ?3, updated_at = ?3
             WHERE room_id = ?1 AND started_at <= ?2 AND state = 'running'",
        )
        .bind(room.as_str())
        .bind(upto.0)
        .bind(now.0)
        .execute(&mut **self)
        .await?
        .rows_affected())
    }
}

impl AdminStore for SqliteStore {
    async fn move_deadline(
        &self,
        room: &RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<DeadlineMoved, StoreError> {
        // BEGIN IMMEDIATE: no claim can slip between the read and the
        // update (SQLite has one writer).
        let mut tx = WriteTx::begin(self).await?;
        let row = sqlx::query(
            "SELECT room_id, started_at, deadline, state FROM meetings
             WHERE room_id = ?1 AND state IN ('running', 'stopping')
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(room.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(view) = row.as_ref().map(MeetingRow::view).transpose()? else {
            tx.commit().await?;
            return Ok(DeadlineMoved::NoOpenMeeting);
        };
        let decided = super::decide_move(&view, expected_start, change, now);
        let DeadlineMoved::Moved { meeting, old } = &decided else {
            tx.commit().await?;
            return Ok(decided);
        };
        sqlx::query(
            "UPDATE meetings SET deadline = ?3, updated_at = ?4
             WHERE room_id = ?1 AND started_at = ?2 AND state = 'running'",
        )
        .bind(room.as_str())
        .bind(meeting.key.started_at.0)
        .bind(meeting.deadline.0)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO admin_actions (at, action, room_id, started_at, old_deadline, new_deadline, detail, caller)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(now.0)
        .bind(super::action_name(change))
        .bind(room.as_str())
        .bind(meeting.key.started_at.0)
        .bind(old.0)
        .bind(meeting.deadline.0)
        .bind(describe(change))
        .bind(&caller.addr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(decided)
    }

    async fn history(&self, room: &RoomId, limit: u32) -> Result<RoomHistory, StoreError> {
        let meetings = sqlx::query(
            "SELECT room_id, started_at, deadline, state, created_at, updated_at, finished_at, attempts
             FROM meetings WHERE room_id = ?1 ORDER BY started_at DESC LIMIT ?2",
        )
        .bind(room.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let actions = sqlx::query(
            "SELECT at, action, room_id, started_at, old_deadline, new_deadline, detail, caller
             FROM admin_actions WHERE room_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(room.as_str())
        .bind(i64::from(limit) * 4)
        .fetch_all(&self.reader)
        .await?;
        Ok(RoomHistory {
            meetings: meetings
                .iter()
                .map(MeetingRow::record)
                .collect::<Result<_, _>>()?,
            actions: actions
                .iter()
                .map(MeetingRow::action)
                .collect::<Result<_, _>>()?,
        })
    }

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
            .map(|r| Ok((r.key()?, Timestamp(r.try_get("deadline")?))))
            .collect()
    }

    async fn limit_rules(&self) -> Result<Vec<LimitRule>, StoreError> {
        let rows = sqlx::query("SELECT kind, key, limit_ms FROM room_limits ORDER BY kind, key")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(super::limit_rule).collect()
    }

    async fn set_limit(
        &self,
        kind: LimitKind,
        key: &str,
        limit: Option<Duration>,
        now: Timestamp,
        caller: &Caller,
    ) -> Result<Option<Duration>, StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        let old: Option<i64> =
            sqlx::query_scalar("SELECT limit_ms FROM room_limits WHERE kind = ?1 AND key = ?2")
                .bind(kind.as_str())
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if limit.is_none() && old.is_none() {
            tx.commit().await?;
            return Ok(None);
        }
        match limit {
            Some(d) => {
                sqlx::query(
                    "INSERT INTO room_limits (kind, key, limit_ms, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, key) DO UPDATE SET limit_ms = excluded.limit_ms, updated_at = excluded.updated_at",
                )
                .bind(kind.as_str())
                .bind(key)
                .bind(super::millis(d))
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM room_limits WHERE kind = ?1 AND key = ?2")
                    .bind(kind.as_str())
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO admin_actions (at, action, room_id, detail, caller) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(now.0)
        .bind(if limit.is_some() { "limit_set" } else { "limit_removed" })
        .bind(key)
        .bind(super::describe_limit(kind, old, limit))
        .bind(&caller.addr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }
}

impl SqliteStore {
    /// Applies plans and writes the deliveries to forward, in one durable
    /// transaction (see [`super::Store::apply_deliveries`]).
    pub async fn apply_deliveries(
        &self,
        plans: &[Plan],
        forwards: &[NewForward],
        now: Timestamp,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        let out = plan::apply_batch(&mut tx, plans, now).await?;
        if !forwards.is_empty() {
            insert_forwards(&mut tx, forwards, now).await?;
        }
        tx.commit().await?;
        Ok(out)
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

/// The batch's deliveries to forward, in one statement (their rows as one
/// JSON array), in order. A new entry waits at least as long as its lane's
/// head (a lane whose receiver fails is not scanned again before its retry).
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

impl ForwardStore for SqliteStore {
    async fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ForwardClaim>, StoreError> {
        // The search runs on a reader (WAL), off the single writer that
        // deliveries wait for; the claim itself is a short conditional
        // update. A lane's head stays its head until it is removed (ids only
        // grow), and the update re-checks lease and due time.
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
            .map(|r| super::forward_claim(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        claims.sort_by_key(|c| c.id);
        Ok(claims)
    }

    async fn finish_forwards(
        &self,
        owner: &str,
        records: &[ForwardRecord],
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let mut applied = Vec::with_capacity(records.len());
        for r in records {
            let done = match r.retry_in {
                None => sqlx::query(
                    "DELETE FROM forward_outbox WHERE id = ?1 AND lease_owner = ?2 AND attempts = ?3",
                )
                .bind(r.id)
                .bind(owner)
                .bind(r.attempts)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1,
                Some(delay) => {
                    let at = now.plus(delay).0;
                    let lane: Option<String> = sqlx::query_scalar(
                        "UPDATE forward_outbox
                         SET next_at = ?4, lease_owner = NULL, lease_until = NULL, last_error = ?5
                         WHERE id = ?1 AND lease_owner = ?2 AND attempts = ?3
                         RETURNING lane",
                    )
                    .bind(r.id)
                    .bind(owner)
                    .bind(r.attempts)
                    .bind(at)
                    .bind(r.error.as_deref())
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(lane) = &lane {
                        push_back_lane(&mut tx, lane, r.id, at).await?;
                    }
                    lane.is_some()
                }
            };
            applied.push(done);
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn pending_forwards(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM forward_outbox")
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// The lane's later entries wait for its head's retry: the claim's search
/// then skips the whole lane until then.
async fn push_back_lane(
    tx: &mut WriteTx,
    lane: &str,
    head: i64,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE forward_outbox SET next_at = ?3 WHERE lane = ?1 AND id > ?2 AND next_at < ?3",
    )
    .bind(lane)
    .bind(head)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MeetingStore for SqliteStore {
    async fn apply(&self, plans: &[Plan], now: Timestamp) -> Result<Vec<Applied>, StoreError> {
        self.apply_deliveries(plans, &[], now).await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let until = now.plus(lease);
        let mut tx = WriteTx::begin_recoverable(self).await?;
        // Expired leases first: those meetings are the most overdue.
        let mut claims = Vec::new();
        for (state, order_col) in [("stopping", "lease_until"), ("running", "deadline")] {
            let room = limit as usize - claims.len();
            if room == 0 {
                break;
            }
            let sql = format!(
                "UPDATE meetings
                 SET state = 'stopping', lease_owner = ?1, lease_until = ?2,
                     attempts = attempts + 1, updated_at = ?3
                 WHERE rowid IN (SELECT rowid FROM meetings
                                 WHERE state = '{state}' AND {order_col} <= ?3
                                 ORDER BY {order_col} LIMIT ?4)
                 RETURNING room_id, started_at, deadline, attempts, {GUARD_COLUMNS}"
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

    async fn guard(&self, key: &MeetingKey) -> Result<Guard, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GUARD_COLUMNS} FROM (SELECT ?1 AS room_id, ?2 AS started_at) AS meetings"
        )))
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .fetch_one(&self.reader)
        .await?;
        row.guard()
    }

    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for the batch (its rows as a JSON array): the
        // writer is free again for the next claim within a millisecond.
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
                    ])
                })
                .collect(),
        )
        .to_string();
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let done: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE meetings
             SET state = o.state, finished_at = o.finished_at, updated_at = o.at,
                 lease_owner = NULL, lease_until = o.retry_at
             FROM (SELECT value ->> 0 AS room_id, value ->> 1 AS started_at, value ->> 2 AS state,
                          value ->> 3 AS finished_at, value ->> 4 AS at, value ->> 5 AS retry_at,
                          value ->> 6 AS attempts
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
        tx.commit().await?;
        // A claim is its meeting and its attempt number.
        let done: HashSet<(String, i64, i64)> = done.into_iter().collect();
        Ok(outcomes
            .iter()
            .map(|o| {
                done.contains(&(
                    o.key.room_id.as_str().to_owned(),
                    o.key.started_at.0,
                    o.attempts,
                ))
            })
            .collect())
    }

    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM (
               SELECT min(deadline) AS t FROM meetings WHERE state = 'running'
               UNION ALL
               SELECT min(lease_until) AS t FROM meetings WHERE state = 'stopping')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(t.map(Timestamp))
    }

    async fn count_due_before(&self, until: Timestamp, cap: u32) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM meetings
               WHERE state = 'running' AND deadline <= ?1 LIMIT ?2)",
        )
        .bind(until.0)
        .bind(i64::from(cap))
        .fetch_one(&self.reader)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> Result<Closing, StoreError> {
        // The listed keys go into a temporary table on the writer
        // connection, so the anti-join runs in SQLite however many
        // meetings are running.
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

    async fn list(
        &self,
        finished_since: Timestamp,
        after: Option<&MeetingKey>,
        limit: u32,
    ) -> Result<Vec<MeetingView>, StoreError> {
        let rows = sqlx::query(
            "SELECT room_id, started_at, deadline, state FROM meetings
             WHERE (finished_at IS NULL OR finished_at >= ?1)
               AND (?3 IS NULL OR started_at < ?3 OR (started_at = ?3 AND room_id < ?4))
             ORDER BY started_at DESC, room_id DESC LIMIT ?2",
        )
        .bind(finished_since.0)
        .bind(i64::from(limit))
        .bind(after.map(|k| k.started_at.0))
        .bind(after.map(|k| k.room_id.as_str()))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(MeetingRow::view).collect()
    }

    async fn current_for_room(&self, room: &RoomId) -> Result<Option<RoomMeeting>, StoreError> {
        let row = sqlx::query(
            "SELECT room_id, started_at, deadline, state, guest_token FROM meetings
             WHERE room_id = ?1 AND state IN ('running', 'stopping')
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(room.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(MeetingRow::room_meeting).transpose()
    }

    async fn count_by_state(&self) -> Result<Vec<(MeetingState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM meetings GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("state")?;
                let n: i64 = r.try_get("n")?;
                let st = MeetingState::parse(&s)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {s:?}")))?;
                Ok((st, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn prune(&self, finished_before: Timestamp) -> Result<u64, StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        let gone: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM meetings WHERE finished_at IS NOT NULL AND finished_at < ?1
             RETURNING room_id, state",
        )
        .bind(finished_before.0)
        .fetch_all(&mut *tx)
        .await?;
        let pruned = gone.len() as u64;
        for (_, state) in &gone {
            crate::meeting_gauges::record_removed(state, 1);
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
        Ok(pruned)
    }

    async fn forget_future(&self, starts_after: Timestamp) -> Result<u64, StoreError> {
        let mut tx = WriteTx::begin(self).await?;
        let meetings = sqlx::query("DELETE FROM meetings WHERE started_at > ?1")
            .bind(starts_after.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let cutoffs = sqlx::query("DELETE FROM room_shutdowns WHERE cutoff > ?1")
            .bind(starts_after.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(meetings + cutoffs)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn claim_warnings(
        &self,
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<WarnClaim>, StoreError> {
        let mut tx = WriteTx::begin_recoverable(self).await?;
        // SET reads the old row: a claim for the same deadline counts on,
        // one for a new deadline starts again at 1.
        let rows = sqlx::query(
            "UPDATE meetings
             SET warn_for = deadline, warn_state = 'claimed', warn_owner = ?1, warn_until = ?2,
                 warn_attempts = CASE WHEN warn_for = deadline THEN warn_attempts + 1 ELSE 1 END
             WHERE rowid IN (SELECT rowid FROM meetings
                             WHERE state = 'running' AND deadline > ?3 AND deadline <= ?3 + ?5
                               AND (warn_for IS NULL OR warn_for <> deadline
                                    OR (warn_state = 'claimed' AND warn_until <= ?3))
                             ORDER BY deadline LIMIT ?4)
             RETURNING room_id, started_at, deadline, guest_token, warn_attempts",
        )
        .bind(owner)
        .bind(now.plus(lease).0)
        .bind(now.0)
        .bind(i64::from(limit))
        .bind(millis(warn_before))
        .fetch_all(&mut *tx)
        .await?;
        let mut claims = rows
            .iter()
            .map(MeetingRow::warn_claim)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        claims.sort_by_key(|c| c.deadline);
        Ok(claims)
    }

    async fn finish_warnings(
        &self,
        owner: &str,
        records: &[WarnRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = WriteTx::begin_recoverable(self).await?;
        let mut applied = Vec::with_capacity(records.len());
        for r in records {
            let n = sqlx::query(
                "UPDATE meetings
                 SET warn_state = ?6, warn_owner = NULL, warn_until = ?7,
                     warned_at = CASE WHEN ?6 = 'claimed' THEN warned_at ELSE ?8 END
                 WHERE room_id = ?1 AND started_at = ?2 AND warn_state = 'claimed'
                   AND warn_owner = ?3 AND warn_attempts = ?4 AND warn_for = ?5",
            )
            .bind(r.key.room_id.as_str())
            .bind(r.key.started_at.0)
            .bind(owner)
            .bind(r.attempts)
            .bind(r.deadline.0)
            .bind(r.outcome.as_str())
            .bind(r.retry_at.map(|t| t.0))
            .bind(r.at.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            applied.push(n == 1);
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> Result<Option<Timestamp>, StoreError> {
        // Never earlier than `deadline - warn`, also for a lapsed claim: a
        // time the claim query would not take would make the warner spin.
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(CASE WHEN warn_for IS NULL OR warn_for <> deadline THEN deadline - ?2
                             ELSE max(warn_until, deadline - ?2) END)
             FROM meetings
             WHERE state = 'running' AND deadline > ?1
               AND (warn_for IS NULL OR warn_for <> deadline
                    OR (warn_state = 'claimed' AND warn_until IS NOT NULL))",
        )
        .bind(now.0)
        .bind(millis(warn_before))
        .fetch_one(&self.reader)
        .await?;
        Ok(t.map(Timestamp))
    }
}

/// The [`Guard`] of the meeting `meetings` (`room_id`, `started_at`), as
/// columns `cutoff` and `newer` (0 or 1). SQLite's `RETURNING` knows the
/// updated table by its name only, not by an alias.
const GUARD_COLUMNS: &str =
    "(SELECT r.cutoff FROM room_shutdowns r WHERE r.room_id = meetings.room_id) AS cutoff,
     EXISTS (SELECT 1 FROM meetings n
             WHERE n.room_id = meetings.room_id AND n.started_at > meetings.started_at) AS newer";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim whose lease expired and which its own process claimed again
    /// (the first worker's call still in flight) cannot record an outcome:
    /// only the latest claim (owner and attempts) can.
    #[tokio::test]
    async fn only_the_latest_claim_of_an_owner_may_finish() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let key = MeetingKey {
            room_id: RoomId::parse("r").unwrap(),
            started_at: Timestamp(1_000),
        };
        let plan = Plan::Track {
            key: key.clone(),
            deadline: Timestamp(2_000),
            guest_token: None,
        };
        store.apply(&[plan], Timestamp(1_000)).await.unwrap();
        let lease = Duration::from_secs(1);
        let first = store
            .claim_due(Timestamp(2_000), lease, "p", 8)
            .await
            .unwrap();
        let again = store
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
        };
        assert_eq!(store.finish("p", &[outcome(1)]).await.unwrap(), [false]);
        assert_eq!(store.finish("p", &[outcome(2)]).await.unwrap(), [true]);
        store.close().await;
    }

    #[tokio::test]
    async fn pruning_a_rooms_last_meeting_forgets_its_shutdown_cutoff() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
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
        store
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
        store.apply(&[newer], Timestamp(5_000)).await.unwrap();
        assert_eq!(store.prune(Timestamp(3_000)).await.unwrap(), 2);
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
        store.apply(&[track], Timestamp(0)).await.unwrap();
        assert_eq!(writer_sync().await, 2, "a delivery commits with FULL");
        let claims = store
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
        store.apply(&[end], Timestamp(2_000)).await.unwrap();
        assert_eq!(writer_sync().await, 2, "FULL again for the next delivery");
        store.close().await;
    }
}
