//! The SQLite engine (bundled, no server).
//!
//! - WAL with `synchronous = FULL`: a 204'd delivery survives a crash or
//!   power loss; only claims and outcomes, safe to lose, skip the flush.
//! - One writer connection (the pool's queue beats SQLite's busy-wait) and
//!   a few readers beside it (WAL).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};

use super::plan::{NewMeeting, Started, Steps};
use super::rows::SqlRow;
use super::sql::{
    claim_query, end_at, migrations, millis, open_pool, refused, writable, Bound, Dialect, Res,
    Unlisted, ALONE_COLUMN, END_AT, GUARD_COLUMNS,
};
use super::{Claim, ClaimReq, Closing, ForwardClaim, NewForward, Outcome, StateDelta, StoreError};
use crate::domain::{GuestToken, MeetingState, Timestamp};

/// The SQLite store. Cloning is cheap (the pools are shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Test hook: [`SqliteStore::limit_pages_for_tests`] (0: off).
    page_limit: Arc<AtomicU64>,
    /// Test hook: [`SqliteStore::refuse_writes_for_tests`] (`None`: off).
    query_only: Arc<std::sync::Mutex<Option<bool>>>,
    /// This process's lock on the file (none in memory), until closed.
    lock: Arc<std::sync::Mutex<Option<super::sqlite_lock::ProcessLock>>>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates a `sqlite:` URL's database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // Errors name the file, never the whole URL.
        let name = format!("the SQLite database {}", options.get_filename().display());
        let unusable = StoreError::unusable(name);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // A second service on the file stops here, having changed nothing.
        let lock = (!in_memory)
            .then(|| super::sqlite_lock::lock(options.get_filename()))
            .transpose()
            .map_err(&unusable)?;
        let pool = SqlitePoolOptions::new().max_connections(1);
        let migrator = migrations!("sqlite");
        let writer = open_pool(pool, options.clone(), "cannot open it", migrator, &unusable);
        let writer = writer.await?;
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
        writable(store, unusable).await
    }

    /// Test hook: later writes set `PRAGMA max_page_count = pages` (a full
    /// disk on demand; raise it to lift).
    #[doc(hidden)]
    pub fn limit_pages_for_tests(&self, pages: u64) {
        self.page_limit.store(pages.max(1), Ordering::SeqCst);
    }

    /// Test hook: `true` makes later writes fail as on a read-only file
    /// (`PRAGMA query_only`), `false` lifts that.
    #[doc(hidden)]
    pub fn refuse_writes_for_tests(&self, refuse: bool) {
        *self.query_only.lock().unwrap_or_else(|e| e.into_inner()) = Some(refuse);
    }

    /// Test hook: every row as `(room_id, started_at, state)`.
    #[doc(hidden)]
    pub async fn rows_for_tests(&self) -> Res<Vec<(String, i64, String)>> {
        let sql = "SELECT room_id, started_at, state FROM meetings ORDER BY room_id";
        Ok(sqlx::query_as(sql).fetch_all(&self.reader).await?)
    }

    /// How many pages the database file has (for tests).
    #[doc(hidden)]
    pub async fn page_count(&self) -> Res<u64> {
        let q = sqlx::query_scalar("PRAGMA page_count");
        let n: i64 = q.fetch_one(&self.writer).await?;
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

/// A write transaction by hand (`BEGIN IMMEDIATE` … `COMMIT`), not sqlx's:
/// after a failed statement or `COMMIT` (full disk) SQLite may roll back by
/// itself and sqlx's nesting count drifts (its next `begin()` is a
/// `SAVEPOINT` whose commits are lost). So one starts only outside any
/// transaction, and one not committed closes its connection.
pub(crate) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    committed: bool,
}

impl WriteTx {
    /// Starts a transaction on `conn`, with the test hooks' pragmas.
    async fn start(store: &SqliteStore, conn: &mut SqliteConnection, durable: bool) -> Res<()> {
        if conn.is_in_transaction() {
            return Err(StoreError::Corrupt(
                "the writer connection is inside a transaction".into(),
            ));
        }
        // Set for every transaction, never inherited from the one before.
        let sync = if durable { "FULL" } else { "NORMAL" };
        let mut pragmas = vec![format!("synchronous = {sync}")];
        match store.page_limit.load(Ordering::SeqCst) {
            0 => {}
            pages => pragmas.push(format!("max_page_count = {pages}")),
        }
        let query_only = *store.query_only.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(on) = query_only {
            pragmas.push(format!("query_only = {}", u8::from(on)));
        }
        for pragma in pragmas {
            let pragma = sqlx::AssertSqlSafe(format!("PRAGMA {pragma}"));
            sqlx::query(pragma).execute(&mut *conn).await?;
        }
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
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

/// A batch's rows as one JSON array for `json_each`: a statement per row
/// would cost a hop to sqlx's SQLite thread each.
fn json_rows<T: Into<serde_json::Value>>(rows: impl Iterator<Item = T>) -> String {
    serde_json::Value::Array(rows.map(Into::into).collect()).to_string()
}

/// SQLite's side of the shared SQL: the one writer is the lock, the
/// caller's clock the store's, batches JSON arrays, claims by `rowid`.
impl Dialect for SqliteStore {
    type DB = Sqlite;
    type Tx = WriteTx;
    // `BEGIN IMMEDIATE` already holds the one writer.
    const FOR_UPDATE: &'static str = "";
    // A real row: an empty transaction commits on a read-only file too.
    const PROBE_WRITE: &'static [&'static str] = &[
        "CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY CHECK (id = 1),
                                                 at INTEGER NOT NULL)",
        "INSERT INTO write_probe (id, at) VALUES (1, unixepoch())
         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
    ];
    // `e` is the meeting's end (`END_AT`), computed once per row.
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
    // Scalar `min(a, b)` is NULL if any is: one row per candidate instead.
    const NEXT_WAKE: &'static str = "(SELECT min(t) FROM (
               SELECT min(deadline) AS t FROM meetings WHERE state = 'running'
               UNION ALL
               SELECT min(alone_deadline) AS t FROM meetings WHERE state = 'running'
               UNION ALL
               SELECT min(lease_until) AS t FROM meetings WHERE state = 'stopping'))";
    // No `DISTINCT ON`: the first action by a correlated `min(id)`.
    const PLANNED_DEADLINES: &'static str =
        "SELECT room_id, started_at, old_deadline AS deadline FROM admin_actions a
             WHERE started_at >= $1 AND action IN ('extend', 'end')
               AND id = (SELECT min(id) FROM admin_actions b
                         WHERE b.room_id = a.room_id AND b.started_at = a.started_at
                           AND b.action IN ('extend', 'end'))";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Claims and outcomes are not durable (`synchronous = NORMAL`, flushed
    /// by the next durable commit): lost, they only repeat a call (a 404, as
    /// after a crash), and claims skip a flush.
    async fn begin(&self, durable: bool) -> Res<WriteTx> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = self.writer.acquire().await?;
            let Err(e) = WriteTx::start(self, &mut conn, durable).await else {
                return Ok(WriteTx {
                    conn,
                    committed: false,
                });
            };
            conn.close_on_drop();
            drop(conn);
            if tries >= 2 {
                return Err(e);
            }
            tracing::warn!(error = %e, "the SQLite writer connection was not usable; opening a new one");
        }
    }

    async fn commit(mut tx: WriteTx) -> Res<()> {
        sqlx::query("COMMIT").execute(&mut *tx.conn).await?;
        tx.committed = true;
        Ok(())
    }

    fn room_cutoffs(rooms: &[&str]) -> Bound<Sqlite> {
        sqlx::query(
            "SELECT room_id, cutoff FROM room_shutdowns
             WHERE room_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_rows(rooms.iter().copied()))
    }

    fn insert_many(rows: &[NewMeeting<'_>], now: Timestamp) -> Bound<Sqlite> {
        let rows = json_rows(rows.iter().map(|m| {
            serde_json::json!([
                m.key.room_id.as_str(),
                m.key.started_at.0,
                m.deadline.0,
                m.state.as_str(),
                (!m.state.is_open()).then_some(now.0),
                m.guest_token.map(GuestToken::expose),
            ])
        }));
        sqlx::query(
            "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at,
                                   finished_at, guest_token, presence_due)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?2, ?2,
                    value ->> 4, value ->> 5, ?2
             FROM json_each(?1) WHERE true
             ON CONFLICT (room_id, started_at) DO NOTHING
             RETURNING room_id",
        )
        .bind(rows)
        .bind(now.0)
    }

    async fn started_many(tx: &mut WriteTx, started: &[Started<'_>], now: Timestamp) -> Res<u64> {
        let rows = json_rows(started.iter().map(|(k, t)| {
            serde_json::json!([
                k.room_id.as_str(),
                k.started_at.0,
                t.map(GuestToken::expose)
            ])
        }));
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
    fn insert_forwards(forwards: &[NewForward], now: Timestamp) -> Bound<Sqlite> {
        let rows = json_rows(
            forwards
                .iter()
                .map(|f| serde_json::json!([f.lane, hex(&f.body), f.signature, f.content_type])),
        );
        sqlx::query(
            "INSERT INTO forward_outbox (lane, body, signature, content_type, received_at, next_at)
             SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3, ?2,
                    max(?2, coalesce((SELECT h.next_at FROM forward_outbox h
                                      WHERE h.lane = value ->> 0 ORDER BY h.id LIMIT 1), ?2))
             FROM json_each(?1) ORDER BY key",
        )
        .bind(rows)
        .bind(now.0)
    }

    /// Expired leases first (those meetings are the most overdue).
    async fn claim_due(&self, c: ClaimReq<'_>) -> Res<Vec<Claim>> {
        let mut tx = self.begin(false).await?;
        let mut claims = Vec::new();
        let running = (
            "running",
            "(deadline <= ?3 OR alone_deadline <= ?3)",
            END_AT,
        );
        for (state, due, order) in [("stopping", "lease_until <= ?3", "lease_until"), running] {
            let room = c.limit as usize - claims.len();
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
            let c = ClaimReq {
                limit: room as u32,
                ..c
            };
            let rows = claim_query(sqlx::AssertSqlSafe(sql), c, c.now);
            for row in rows.fetch_all(&mut *tx).await? {
                claims.push(row.claim()?);
            }
        }
        Self::commit(tx).await?;
        claims.sort_by_key(|c| c.deadline);
        Ok(claims)
    }

    /// One statement for the batch: the writer is free again for the next
    /// claim within a millisecond.
    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Res<Vec<bool>> {
        // A final state sets finished_at; a deferred shutdown (still
        // 'stopping') keeps it NULL and waits in lease_until.
        let rows = json_rows(outcomes.iter().map(|o| {
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
        }));
        let mut tx = self.begin(false).await?;
        let done: HashSet<(String, i64, i64)> = sqlx::query_as(
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
        .await?
        .into_iter()
        .collect();
        // A claim is its meeting and its attempt number.
        let mut applied = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let (room, start) = (o.key.room_id.as_str().to_owned(), o.key.started_at.0);
            let done = done.contains(&(room, start, o.attempts));
            if let Some(event) = o.alone_event().filter(|_| done) {
                let mut steps = Steps::<Self>(&mut tx);
                steps
                    .alone_event(&o.key, o.at.0, event, o.participants)
                    .await?;
            }
            applied.push(done);
        }
        Self::commit(tx).await?;
        Ok(applied)
    }

    /// The caller's clock is the store's: no translation.
    async fn next_of(&self, expr: &str) -> Res<Option<Timestamp>> {
        let t: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {expr}")))
            .fetch_one(&self.reader)
            .await?;
        Ok(t.map(Timestamp))
    }

    /// The listed keys go into a temporary table (no arrays in SQLite), so
    /// the anti-join runs in SQLite however many meetings run.
    async fn close_unlisted(&self, u: Unlisted<'_>) -> Res<Closing> {
        const CLEAR: &str = "DELETE FROM temp.listed";
        let mut tx = self.begin(true).await?;
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS listed (room_id TEXT NOT NULL, started_at INTEGER NOT NULL,
                                                     PRIMARY KEY (room_id, started_at))",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(CLEAR).execute(&mut *tx).await?;
        for key in u.listed {
            sqlx::query("INSERT OR IGNORE INTO temp.listed (room_id, started_at) VALUES (?1, ?2)")
                .bind(key.room_id.as_str())
                .bind(key.started_at.0)
                .execute(&mut *tx)
                .await?;
        }
        const UNLISTED: &str = "state = 'running' AND created_at < ?1
               AND NOT EXISTS (SELECT 1 FROM temp.listed l
                               WHERE l.room_id = meetings.room_id AND l.started_at = meetings.started_at)";
        let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM meetings WHERE {UNLISTED}),
                    (SELECT count(*) FROM meetings WHERE state IN ('running', 'stopping'))"
        )))
        .bind(u.known_before.0)
        .fetch_one(&mut *tx)
        .await?;
        let outcome = if let Some(refused) = refused(counts) {
            refused
        } else {
            let closed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE meetings SET state = 'ended', finished_at = ?2, updated_at = ?2
                 WHERE {UNLISTED}"
            )))
            .bind(u.known_before.0)
            .bind(u.now.0)
            .execute(&mut *tx)
            .await?;
            Closing::Closed(closed.rows_affected())
        };
        sqlx::query(CLEAR).execute(&mut *tx).await?;
        Self::commit(tx).await?;
        Ok(outcome)
    }

    /// No data-modifying CTEs: the deleted rooms come back here.
    async fn prune(&self, finished_before: Timestamp) -> Res<(u64, StateDelta)> {
        let mut tx = self.begin(true).await?;
        let gone: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM meetings WHERE finished_at IS NOT NULL AND finished_at < ?1
             RETURNING room_id, state",
        )
        .bind(finished_before.0)
        .fetch_all(&mut *tx)
        .await?;
        let mut delta = StateDelta::default();
        // An unknown state is not counted: the next recount reports it.
        for state in gone.iter().filter_map(|(_, s)| MeetingState::parse(s)) {
            delta.removed(state, 1);
        }
        let rooms: HashSet<&str> = gone.iter().map(|(room, _)| room.as_str()).collect();
        // A room's cutoff goes with its last meeting (as on PostgreSQL).
        for room in rooms {
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
        Self::commit(tx).await?;
        Ok((gone.len() as u64, delta))
    }

    /// The caller's clock is the store's: no translation.
    async fn next_warning(&self, now: Timestamp, warn_before: Duration) -> Res<Option<Timestamp>> {
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

    /// The search runs on a reader, off the one writer; the claim is a short
    /// update re-checking lease and due time (a head stays head: ids grow).
    async fn claim_forwards(&self, c: ClaimReq<'_>) -> Res<Vec<ForwardClaim>> {
        let heads: Vec<i64> = sqlx::query_scalar(
            "SELECT o.id FROM forward_outbox o
             WHERE o.next_at <= ?1 AND (o.lease_until IS NULL OR o.lease_until <= ?1)
               AND NOT EXISTS (SELECT 1 FROM forward_outbox p WHERE p.lane = o.lane AND p.id < o.id)
             ORDER BY o.next_at LIMIT ?2",
        )
        .bind(c.now.0)
        .bind(i64::from(c.limit))
        .fetch_all(&self.reader)
        .await?;
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin(false).await?;
        let rows = sqlx::query(
            "UPDATE forward_outbox SET lease_owner = ?1, lease_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT value FROM json_each(?3))
               AND next_at <= ?4 AND (lease_until IS NULL OR lease_until <= ?4)
             RETURNING id, lane, body, signature, content_type, received_at, attempts",
        )
        .bind(c.owner)
        .bind(c.now.plus(c.lease).0)
        .bind(json_rows(heads.into_iter()))
        .bind(c.now.0)
        .fetch_all(&mut *tx)
        .await?;
        Self::commit(tx).await?;
        let mut claims: Vec<_> = rows
            .iter()
            .map(|r| r.forward_claim(c.now))
            .collect::<Res<_>>()?;
        claims.sort_by_key(|c| c.id);
        Ok(claims)
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }
}

/// Lowercase hex, for binary values inside a JSON array (`unhex` in SQL).
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MeetingKey, Plan, RoomId};
    use crate::store::Applied;
    use crate::store_handle::Store;

    fn key(room: &str, start: i64) -> MeetingKey {
        let room_id = RoomId::parse(room).unwrap();
        MeetingKey {
            room_id,
            started_at: Timestamp(start),
        }
    }

    fn track(key: &MeetingKey, deadline: i64) -> Plan {
        Plan::Track {
            key: key.clone(),
            deadline: Timestamp(deadline),
            guest_token: None,
        }
    }

    /// An end delivery for `key`'s meeting (`None`: `started_at: null`).
    fn end(key: &MeetingKey, meeting: Option<i64>) -> Plan {
        Plan::End {
            room_id: key.room_id.clone(),
            cutoff: key.started_at,
            meeting: meeting.map(|d| (key.clone(), Timestamp(d))),
        }
    }

    /// A store in memory (`file`: on a file in a temporary directory, kept
    /// with it) and its handle.
    async fn open(file: bool) -> (SqliteStore, Store, Option<tempfile::TempDir>) {
        let dir = file.then(|| tempfile::tempdir().unwrap());
        let url = dir.as_ref().map_or("sqlite::memory:".into(), |d| {
            format!("sqlite://{}", d.path().join("d.db").display())
        });
        let store = SqliteStore::connect(&url).await.unwrap();
        (store.clone(), Store::from(store), dir)
    }

    /// One value the writer connection reads.
    async fn pragma<T>(store: &SqliteStore, sql: &'static str) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
    {
        let q = sqlx::query_scalar(sql);
        q.fetch_one(&store.writer).await.unwrap()
    }

    /// Of a claim its own process claimed again after its lease expired,
    /// only the latest (owner and attempts) may record an outcome.
    #[tokio::test]
    async fn only_the_latest_claim_of_an_owner_may_finish() {
        let (store, handle, _) = open(false).await;
        let key = key("r", 1_000);
        let plans = [track(&key, 2_000)];
        handle.apply(&plans, Timestamp(1_000)).await.unwrap();
        let lease = Duration::from_secs(1);
        let first = handle.claim_due(Timestamp(2_000), lease, "p", 8).await;
        let again = handle.claim_due(Timestamp(3_500), lease, "p", 8).await;
        let (first, again) = (first.unwrap(), again.unwrap());
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

    /// A write returns exactly the state changes it made and whether it
    /// changed anything (what the gauges and the health flag apply).
    #[tokio::test]
    async fn a_write_returns_what_it_changed() {
        use crate::store::Engine;
        let (store, _, _) = open(false).await;
        let key = key("r", 1_000);
        let apply = |plan: Plan, now| {
            let store = &store;
            async move {
                let plans = [plan];
                let w = store.apply_deliveries(&plans, &[], Timestamp(now));
                w.await.unwrap()
            }
        };
        let w = apply(track(&key, 2_000), 1_000).await;
        assert!(w.changed);
        assert_eq!(w.delta.get(MeetingState::Running), 1);
        let again = apply(track(&key, 2_000), 1_100).await;
        assert_eq!(again.value, [Applied::AlreadyKnown]);
        assert!(!again.changed && again.delta.is_zero());
        let w = apply(end(&key, Some(2_000)), 1_500).await;
        assert_eq!(w.delta.get(MeetingState::Running), -1);
        assert_eq!(w.delta.get(MeetingState::Ended), 1);
        let pruned = Engine::prune(&store, Timestamp(9_000)).await.unwrap();
        assert_eq!(pruned.value, 1);
        assert_eq!(pruned.delta.get(MeetingState::Ended), -1);
        store.close().await;
    }

    #[tokio::test]
    async fn pruning_a_rooms_last_meeting_forgets_its_shutdown_cutoff() {
        let (store, handle, _) = open(false).await;
        let (gone, kept) = (key("gone", 1_000), key("kept", 1_000));
        let ends = [end(&gone, Some(11_000)), end(&kept, Some(11_000))];
        handle.apply(&ends, Timestamp(2_000)).await.unwrap();
        // "kept" has a newer, running meeting.
        let newer = track(&key("kept", 5_000), 15_000);
        handle.apply(&[newer], Timestamp(5_000)).await.unwrap();
        assert_eq!(handle.prune(Timestamp(3_000)).await.unwrap(), 2);
        let sql = "SELECT room_id FROM room_shutdowns ORDER BY room_id";
        let rooms = sqlx::query_scalar::<_, String>(sql).fetch_all(&store.writer);
        assert_eq!(rooms.await.unwrap(), ["kept"]);
        store.close().await;
    }

    #[tokio::test]
    async fn commits_are_durable_wal_with_full_sync() {
        let (store, _, _dir) = open(true).await;
        let mode: String = pragma(&store, "PRAGMA journal_mode").await;
        assert_eq!(mode, "wal");
        let sync: i64 = pragma(&store, "PRAGMA synchronous").await;
        assert_eq!(sync, 2, "synchronous = FULL");
        store.close().await;
    }

    /// A claim skips the flush; the next delivery's transaction flushes
    /// again: the setting is made per transaction, never inherited.
    #[tokio::test]
    async fn only_claims_and_outcomes_skip_the_flush() {
        let (store, handle, _dir) = open(true).await;
        let sync = || pragma::<i64>(&store, "PRAGMA synchronous");
        let key = key("r", 0);
        let plans = [track(&key, 1_000)];
        handle.apply(&plans, Timestamp(0)).await.unwrap();
        assert_eq!(sync().await, 2, "a delivery commits with FULL");
        let lease = Duration::from_secs(30);
        let claims = handle.claim_due(Timestamp(1_000), lease, "w", 8).await;
        assert_eq!(claims.unwrap().len(), 1);
        assert_eq!(sync().await, 1, "a claim commits with NORMAL");
        let plans = [end(&key, None)];
        handle.apply(&plans, Timestamp(2_000)).await.unwrap();
        assert_eq!(sync().await, 2, "FULL again for the next delivery");
        store.close().await;
    }
}
