//! The PostgreSQL engine: any number of replicas on one database.
//!
//! - Claims take rows `FOR UPDATE SKIP LOCKED` under a lease, so replicas
//!   skip each other's rows and a dead replica's lapse to another.
//! - The database's clock decides what is due and "now" (tests may use
//!   [`PgStore::connect_with_caller_clock`]): replicas agree despite drift.
//! - A commit that tracks a meeting or moves a deadline (or a limit)
//!   `NOTIFY`s [`CHANNEL`] ([`LIMITS_CHANNEL`]) for [`crate::cluster`].
//! - A batch first takes advisory locks on its rooms (SQLite's one writer).
//! - Without the database a caller waits a few seconds, then fails (503).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::plan::{self, NewMeeting, Started};
use super::rows::SqlRow;
use super::sql::{
    migrations, millis, now_in, open_pool, refused, writable, Bound, Dialect, Notice, Res,
    Unlisted, ALONE_COLUMN, END_AT, GUARD_COLUMNS,
};
use super::{Claim, ClaimReq, Closing, ForwardClaim, NewForward, Outcome, StateDelta, StoreError};
use crate::domain::{GuestToken, MeetingState, Plan, Timestamp};

/// One array parameter of a batch: `f` of each item.
macro_rules! col {
    ($items:expr, $f:expr) => {
        $items.iter().map($f).collect::<Vec<_>>()
    };
}

/// `NOTIFY`'d when a meeting is tracked or its deadline moved: every
/// replica's scheduler re-plans.
pub const CHANNEL: &str = "hard_limit_meetings";

/// `NOTIFY`'d when a stored limit changed: every replica reloads them.
pub const LIMITS_CHANNEL: &str = "hard_limit_limits";

/// First key of the rooms' two-key advisory locks (never conflicting with
/// the one 64-bit chores key of [`crate::cluster`]).
const ROOM_LOCK_SPACE: i32 = 0x686c;

/// How long a caller waits for a pooled connection before failing (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The PostgreSQL store. Cloning is cheap (the pool is shared).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// For connections of their own (boxed: the options are large).
    options: Arc<PgConnectOptions>,
    /// Use `now()` of the database (true) or the caller's `now` (tests).
    db_clock: bool,
}

/// A timestamp in epoch milliseconds, rounded down (rounded to the nearest,
/// a deadline could pass half a millisecond early).
macro_rules! epoch_ms {
    ($ts:literal) => {
        concat!("floor(extract(epoch FROM ", $ts, ") * 1000)::bigint")
    };
}

/// "Now" in a statement: the caller's (`$3`, for tests) unless NULL, else
/// the database's.
const NOW_MS: &str = concat!("COALESCE($3::bigint, ", epoch_ms!("now()"), ")");

/// The database's "now" (the transaction's start), in milliseconds.
const DB_NOW_MS: &str = epoch_ms!("now()");

/// The database's wall clock at this instant, in milliseconds.
const DB_CLOCK_MS: &str = epoch_ms!("clock_timestamp()");

impl PgStore {
    /// Connects to a `postgres://` URL and migrates (under sqlx's lock, so
    /// replicas migrate once), on the database's clock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    /// Like [`PgStore::connect`], but "now" is the caller's (for tests).
    pub async fn connect_with_caller_clock(url: &str) -> Result<Self, StoreError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, db_clock: bool) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("eyeson-hard-limit");
        // Errors name the database, never the URL (it may hold a password).
        let db = options.get_database().unwrap_or("(default)");
        let unusable = StoreError::unusable(format!("the PostgreSQL database {db:?}"));
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        let migrator = migrations!("postgres");
        let pool = open_pool(pool, options.clone(), "cannot connect", migrator, &unusable).await?;
        let store = PgStore {
            pool,
            options: Arc::new(options),
            db_clock,
        };
        // A standby or a user without UPDATE passes applied migrations.
        writable(store, unusable).await
    }

    /// How it connects (for connections of their own, as [`crate::cluster`]'s).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The pool (for tests and benchmarks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A row's time `t` on the caller's clock, which it sleeps against: "in
    /// d" from the row's `db_now` becomes local now + d.
    fn local_t(&self, row: &PgRow) -> Res<Option<Timestamp>> {
        let t: Option<i64> = row.try_get("t")?;
        if !self.db_clock {
            return Ok(t.map(Timestamp));
        }
        let db_now: i64 = row.try_get("db_now")?;
        let local = Timestamp::from_system_time(SystemTime::now());
        Ok(t.map(|t| Timestamp(local.0.saturating_add(t.saturating_sub(db_now)))))
    }

    /// Runs a claim statement: `$1` owner, `$2` lease in ms, `$3` the
    /// caller's "now" ([`NOW_MS`]), `$4` limit.
    async fn claim_rows(&self, sql: String, c: ClaimReq<'_>) -> Res<Vec<PgRow>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(c.owner)
            .bind(millis(c.lease))
            .bind((!self.db_clock).then_some(c.now.0))
            .bind(i64::from(c.limit))
            .fetch_all(&self.pool)
            .await?)
    }
}

/// A PostgreSQL write transaction.
type PgTx = Transaction<'static, Postgres>;

/// PostgreSQL's side of the shared SQL: row locks, the database's clock,
/// `NOTIFY`, batches as arrays (`unnest`), claims `FOR UPDATE SKIP LOCKED`.
impl Dialect for PgStore {
    type DB = Postgres;
    type Tx = PgTx;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    // Changes nothing, yet read-only or unprivileged it is refused.
    const PROBE_WRITE: &'static [&'static str] = &["UPDATE meetings SET state = state WHERE false"];
    // `due.at` is the meeting's end (`END_AT`).
    const CLAIM_WARNINGS: &'static str = "UPDATE meetings m
             SET warn_for = due.at, warn_state = 'claimed', warn_owner = $1, warn_until = $2,
                 warn_attempts = CASE WHEN m.warn_for = due.at THEN m.warn_attempts + 1 ELSE 1 END
             FROM (SELECT room_id, started_at, LEAST(deadline, alone_deadline) AS at FROM meetings
                   WHERE state = 'running' AND LEAST(deadline, alone_deadline) > $3
                     AND LEAST(deadline, alone_deadline) <= $3 + $5
                     AND (warn_for IS NULL OR warn_for <> LEAST(deadline, alone_deadline)
                          OR (warn_state = 'claimed' AND warn_until <= $3))
                   ORDER BY at LIMIT $4
                   FOR UPDATE SKIP LOCKED) due
             WHERE m.room_id = due.room_id AND m.started_at = due.started_at
             RETURNING m.room_id, m.started_at, m.warn_for AS deadline, m.guest_token, m.warn_attempts,
                       CAST(CASE WHEN m.alone_deadline = m.warn_for AND m.alone_deadline < m.deadline
                            THEN 1 ELSE 0 END AS BIGINT) AS alone";
    const CLAIM_PRESENCE: &'static str =
        "UPDATE meetings m SET presence_owner = $1, presence_due = $2
             FROM (SELECT room_id, started_at FROM meetings
                   WHERE state = 'running' AND presence_due <= $3
                   ORDER BY presence_due LIMIT $4
                   FOR UPDATE SKIP LOCKED) due
             WHERE m.room_id = due.room_id AND m.started_at = due.started_at
             RETURNING m.room_id, m.started_at, m.presence_due, m.alone_since";
    const NEXT_WAKE: &'static str =
        "LEAST((SELECT min(deadline) FROM meetings WHERE state = 'running'),
               (SELECT min(alone_deadline) FROM meetings WHERE state = 'running'),
               (SELECT min(lease_until) FROM meetings WHERE state = 'stopping'))";
    const PLANNED_DEADLINES: &'static str =
        "SELECT DISTINCT ON (room_id, started_at) room_id, started_at, old_deadline AS deadline
             FROM admin_actions
             WHERE started_at >= $1 AND action IN ('extend', 'end')
             ORDER BY room_id, started_at, id";

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self, _durable: bool) -> Res<PgTx> {
        Ok(self.pool.begin().await?)
    }

    async fn commit(tx: PgTx) -> Res<()> {
        Ok(tx.commit().await?)
    }

    async fn db_now(&self, tx: &mut PgTx) -> Res<Option<i64>> {
        if !self.db_clock {
            return Ok(None);
        }
        let now = sqlx::query_scalar(concat!("SELECT ", epoch_ms!("now()")));
        Ok(Some(now.fetch_one(&mut **tx).await?))
    }

    /// Delivered at commit, to every replica's listener.
    async fn notify(tx: &mut PgTx, notice: Notice) -> Res<()> {
        let channel = match notice {
            Notice::Meetings => CHANNEL,
            Notice::Limits => LIMITS_CHANNEL,
        };
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The batch's rooms in one round trip, in key order (no deadlock): two
    /// replicas' deliveries for a room apply one after the other. Lanes too,
    /// so their ids are drawn in commit order (never visible out of order).
    async fn lock_rooms(tx: &mut PgTx, plans: &[Plan], forwards: &[NewForward]) -> Res<()> {
        let mut rooms: Vec<&str> = plans.iter().filter_map(plan::room_of).collect();
        rooms.extend(forwards.iter().map(|f| super::lock_key(&f.lane)));
        rooms.sort_unstable();
        rooms.dedup();
        if !rooms.is_empty() {
            sqlx::query(
                "SELECT count(pg_advisory_xact_lock($1, k))
                 FROM (SELECT DISTINCT hashtext(r) AS k FROM unnest($2::text[]) AS r ORDER BY k) keys",
            )
            .bind(ROOM_LOCK_SPACE)
            .bind(rooms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    fn room_cutoffs(rooms: &[&str]) -> Bound<Postgres> {
        sqlx::query("SELECT room_id, cutoff FROM room_shutdowns WHERE room_id = ANY($1::text[])")
            .bind(rooms)
    }

    fn insert_many(rows: &[NewMeeting<'_>], now: Timestamp) -> Bound<Postgres> {
        sqlx::query(
            "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at,
                                   finished_at, guest_token, presence_due)
             SELECT room_id, started_at, deadline, state, $7, $7, finished_at, guest_token, $7
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
                  AS m(room_id, started_at, deadline, state, finished_at, guest_token)
             ORDER BY room_id
             ON CONFLICT (room_id, started_at) DO NOTHING
             RETURNING room_id",
        )
        .bind(col!(rows, |m| m.key.room_id.as_str()))
        .bind(col!(rows, |m| m.key.started_at.0))
        .bind(col!(rows, |m| m.deadline.0))
        .bind(col!(rows, |m| m.state.as_str()))
        .bind(col!(rows, |m| (!m.state.is_open()).then_some(now.0)))
        .bind(col!(rows, |m| m.guest_token.map(GuestToken::expose)))
        .bind(now.0)
    }

    /// Two data-modifying CTEs in one round trip (on different rows).
    async fn started_many(tx: &mut PgTx, started: &[Started<'_>], now: Timestamp) -> Res<u64> {
        let (ended_older, _tokens): (i64, i64) = sqlx::query_as(
            "WITH s AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
                        AS s(room_id, started_at, token)),
             older AS (
               UPDATE meetings m SET state = 'ended', finished_at = $4, updated_at = $4
               FROM s
               WHERE m.room_id = s.room_id AND m.started_at < s.started_at AND m.state = 'running'
               RETURNING 1),
             tok AS (
               UPDATE meetings m SET guest_token = s.token,
                   warn_for = CASE WHEN m.warn_state = 'no_guest_token' THEN NULL ELSE m.warn_for END,
                   warn_state = CASE WHEN m.warn_state = 'no_guest_token' THEN NULL ELSE m.warn_state END
               FROM s
               WHERE s.token IS NOT NULL AND m.room_id = s.room_id AND m.started_at = s.started_at
                 AND m.guest_token IS DISTINCT FROM s.token
               RETURNING 1)
             SELECT (SELECT count(*) FROM older), (SELECT count(*) FROM tok)",
        )
        .bind(col!(started, |(k, _)| k.room_id.as_str()))
        .bind(col!(started, |(k, _)| k.started_at.0))
        .bind(col!(started, |(_, t)| t.map(GuestToken::expose)))
        .bind(now.0)
        .fetch_one(&mut **tx)
        .await?;
        Ok(u64::try_from(ended_older).unwrap_or(0))
    }

    /// One statement (arrays, in order).
    fn insert_forwards(forwards: &[NewForward], now: Timestamp) -> Bound<Postgres> {
        sqlx::query(
            "INSERT INTO forward_outbox (lane, body, signature, content_type, received_at, next_at)
             SELECT f.lane, f.body, f.signature, f.content_type, $5,
                    GREATEST($5, (SELECT h.next_at FROM forward_outbox h
                                  WHERE h.lane = f.lane ORDER BY h.id LIMIT 1))
             FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[]) WITH ORDINALITY
                  AS f(lane, body, signature, content_type, i)
             ORDER BY f.i",
        )
        .bind(col!(forwards, |f| f.lane.as_str()))
        .bind(col!(forwards, |f| f.body.as_slice()))
        .bind(col!(forwards, |f| f.signature.as_str()))
        .bind(col!(forwards, |f| f.content_type.as_deref()))
        .bind(now.0)
    }

    /// One statement, guard included (at the top of the hour every round
    /// trip is lateness); expired leases, the most overdue, first.
    async fn claim_due(&self, c: ClaimReq<'_>) -> Res<Vec<Claim>> {
        // Each branch locks what it picks (rows beyond the limit unlock at
        // commit). "Now" is written out in each condition, not joined from
        // a CTE: only so does it bound the partial indexes' range.
        let sql = format!(
            "WITH expired AS (SELECT room_id, started_at, 0 AS pri, lease_until AS at FROM meetings
                         WHERE state = 'stopping' AND lease_until <= {NOW_MS}
                         ORDER BY lease_until LIMIT $4
                         FOR UPDATE SKIP LOCKED),
             due AS (SELECT room_id, started_at, 1 AS pri, {END_AT} AS at FROM meetings
                     WHERE state = 'running'
                       AND (deadline <= {NOW_MS} OR alone_deadline <= {NOW_MS})
                     ORDER BY at LIMIT $4
                     FOR UPDATE SKIP LOCKED),
             pick AS (SELECT room_id, started_at FROM (TABLE expired UNION ALL TABLE due) c
                      ORDER BY pri, at LIMIT $4)
             UPDATE meetings
             SET state = 'stopping', lease_owner = $1, lease_until = {NOW_MS} + $2,
                 attempts = meetings.attempts + 1, updated_at = {NOW_MS}
             FROM pick
             WHERE meetings.room_id = pick.room_id AND meetings.started_at = pick.started_at
             RETURNING meetings.room_id, meetings.started_at, {END_AT} AS deadline, {ALONE_COLUMN},
                       meetings.attempts, {GUARD_COLUMNS}"
        );
        let rows = self.claim_rows(sql, c).await?;
        let mut claims = rows.iter().map(SqlRow::claim).collect::<Res<Vec<_>>>()?;
        claims.sort_by_key(|c| c.deadline);
        Ok(claims)
    }

    /// One statement per batch (`unnest`). A final state sets finished_at;
    /// a deferral waits in lease_until (the caller's delay, the db's clock).
    async fn finish(&self, owner: &str, outcomes: &[Outcome]) -> Res<Vec<bool>> {
        let at = if self.db_clock { DB_NOW_MS } else { "o.at" };
        let done: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH done AS (
               UPDATE meetings m
               SET state = o.state,
                   finished_at = CASE WHEN o.is_final THEN {at} END,
                   updated_at = {at}, lease_owner = NULL,
                   lease_until = CASE WHEN o.state = 'stopping' THEN {at} + o.retry_after END,
                   ended_alone = CASE WHEN o.event = 'ended' THEN 1 ELSE 0 END,
                   -- An alone end cancelled (someone joined): the clock is reset.
                   presence_due = CASE WHEN o.state = 'running' THEN {at} + o.retry_after
                                       ELSE m.presence_due END,
                   participants = CASE WHEN o.state = 'running' THEN COALESCE(o.participants, m.participants)
                                       ELSE m.participants END,
                   checked_at = CASE WHEN o.state = 'running' THEN {at} ELSE m.checked_at END,
                   alone_since = CASE WHEN o.state = 'running' THEN NULL ELSE m.alone_since END,
                   alone_deadline = CASE WHEN o.state = 'running' THEN NULL ELSE m.alone_deadline END
               FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bool[], $6::bigint[],
                           $7::bigint[], $8::bigint[], $9::text[], $10::bigint[])
                    WITH ORDINALITY AS o(room_id, started_at, state, is_final, at, retry_after, attempts,
                                         event, participants, i)
               WHERE m.room_id = o.room_id AND m.started_at = o.started_at
                 AND m.state = 'stopping' AND m.lease_owner = $1 AND m.attempts = o.attempts
               RETURNING o.i, m.room_id, m.started_at, {at} AS at, o.event, o.participants),
             history AS (
               INSERT INTO alone_events (room_id, started_at, at, event, participants)
               SELECT room_id, started_at, at, event, participants FROM done WHERE event IS NOT NULL)
             SELECT i FROM done"
        )))
        .bind(owner)
        .bind(col!(outcomes, |o| o.key.room_id.as_str()))
        .bind(col!(outcomes, |o| o.key.started_at.0))
        .bind(col!(outcomes, |o| o.state.as_str()))
        .bind(col!(outcomes, |o| !o.state.is_open()))
        .bind(col!(outcomes, |o| o.at.0))
        .bind(col!(outcomes, |o| o.retry_at.map(|r| r.0.saturating_sub(o.at.0))))
        .bind(col!(outcomes, |o| o.attempts))
        .bind(col!(outcomes, |o| o.alone_event()))
        .bind(col!(outcomes, |o| o.participants))
        .fetch_all(&self.pool)
        .await?;
        // `WITH ORDINALITY` numbers the outcomes from 1.
        Ok((1..)
            .take(outcomes.len())
            .map(|i| done.contains(&i))
            .collect())
    }

    async fn next_of(&self, expr: &str) -> Res<Option<Timestamp>> {
        let sql = format!("SELECT {expr} AS t, {DB_CLOCK_MS} AS db_now");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?;
        self.local_t(&row)
    }

    async fn close_unlisted(&self, u: Unlisted<'_>) -> Res<Closing> {
        let rooms = col!(u.listed, |k| k.room_id.as_str().to_owned());
        let starts = col!(u.listed, |k| k.started_at.0);
        const UNLISTED: &str = "state = 'running' AND created_at < $3
               AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS l(room_id, started_at)
                               WHERE l.room_id = meetings.room_id AND l.started_at = meetings.started_at)";
        let mut tx = self.pool.begin().await?;
        let now = now_in(self, &mut tx, u.now).await?.0;
        let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM meetings WHERE {UNLISTED}),
                    (SELECT count(*) FROM meetings WHERE state IN ('running', 'stopping'))"
        )))
        .bind(&rooms)
        .bind(&starts)
        .bind(u.known_before.0)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(refused) = refused(counts) {
            tx.rollback().await?;
            return Ok(refused);
        }
        let closed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE meetings SET state = 'ended', finished_at = $4, updated_at = $4
             WHERE {UNLISTED}"
        )))
        .bind(rooms)
        .bind(starts)
        .bind(u.known_before.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Closing::Closed(closed.rows_affected()))
    }

    /// A room's shutdown cutoff goes with its last meeting (older
    /// deliveries are refused as stale anyway).
    async fn prune(&self, finished_before: Timestamp) -> Res<(u64, StateDelta)> {
        let gone: Vec<(String, i64)> = sqlx::query_as(
            "WITH gone AS (
               DELETE FROM meetings WHERE finished_at IS NOT NULL AND finished_at < $1
               RETURNING room_id, state),
             forgotten AS (
               DELETE FROM room_shutdowns r
               WHERE r.room_id IN (SELECT room_id FROM gone)
                 -- One snapshot for all CTEs: the rows that remain are those `gone` did not match.
                 AND NOT EXISTS (SELECT 1 FROM meetings m
                                 WHERE m.room_id = r.room_id
                                   AND NOT (m.finished_at IS NOT NULL AND m.finished_at < $1))
               RETURNING 1)
             SELECT state, count(*) FROM gone GROUP BY state",
        )
        .bind(finished_before.0)
        .fetch_all(&self.pool)
        .await?;
        let mut delta = StateDelta::default();
        let mut pruned = 0u64;
        for (state, n) in &gone {
            let n = u64::try_from(*n).unwrap_or(0);
            // An unknown state is not counted: the next recount reports it.
            if let Some(state) = MeetingState::parse(state) {
                delta.removed(state, n);
            }
            pruned += n;
        }
        // The audit is kept as long as the meetings it is about.
        sqlx::query("DELETE FROM admin_actions WHERE at < $1")
            .bind(finished_before.0)
            .execute(&self.pool)
            .await?;
        Ok((pruned, delta))
    }

    async fn next_warning(&self, now: Timestamp, warn_before: Duration) -> Res<Option<Timestamp>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH c AS (SELECT CASE WHEN $2 THEN {DB_CLOCK_MS} ELSE $1 END AS now),
                  e AS (SELECT warn_for, warn_state, warn_until, {END_AT} AS e
                        FROM meetings WHERE state = 'running')
             SELECT (SELECT min(CASE WHEN warn_for IS NULL OR warn_for <> e THEN e - $3
                                     ELSE GREATEST(warn_until, e - $3) END)
                     FROM e, c
                     WHERE e > c.now
                       AND (warn_for IS NULL OR warn_for <> e
                            OR (warn_state = 'claimed' AND warn_until IS NOT NULL))) AS t,
                    (SELECT now FROM c) AS db_now"
        )))
        .bind(now.0)
        .bind(self.db_clock)
        .bind(millis(warn_before))
        .fetch_one(&self.pool)
        .await?;
        self.local_t(&row)
    }

    /// One statement: due lane heads, `FOR UPDATE SKIP LOCKED`.
    async fn claim_forwards(&self, c: ClaimReq<'_>) -> Res<Vec<ForwardClaim>> {
        let sql = format!(
            "WITH heads AS (
               SELECT o.id FROM forward_outbox o
               WHERE o.next_at <= {NOW_MS} AND (o.lease_until IS NULL OR o.lease_until <= {NOW_MS})
                 AND NOT EXISTS (SELECT 1 FROM forward_outbox p WHERE p.lane = o.lane AND p.id < o.id)
               ORDER BY o.next_at LIMIT $4
               FOR UPDATE SKIP LOCKED)
             UPDATE forward_outbox f
             SET lease_owner = $1, lease_until = {NOW_MS} + $2, attempts = f.attempts + 1
             FROM heads WHERE f.id = heads.id
             RETURNING f.id, f.lane, f.body, f.signature, f.content_type, f.received_at,
                       f.attempts, {NOW_MS} AS claimed_at"
        );
        let rows = self.claim_rows(sql, c).await?;
        let mut claims = (rows.iter())
            .map(|r| r.forward_claim(Timestamp(r.int("claimed_at")?)))
            .collect::<Res<Vec<_>>>()?;
        claims.sort_by_key(|c| c.id);
        Ok(claims)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgConnection;
    use sqlx::Connection;

    /// The database's milliseconds are rounded down (see `epoch_ms!`; seen
    /// in `bench burst --kill-one`). Skipped without `HARD_LIMIT_TEST_PG`.
    #[tokio::test]
    async fn the_database_clock_never_rounds_up() {
        let url = std::env::var("HARD_LIMIT_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let connect = PgConnection::connect(&url);
        let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
            eprintln!("skipping: no PostgreSQL at HARD_LIMIT_TEST_PG");
            return;
        };
        let at = "'2026-12-04 10:00:00.9996+00'::timestamptz";
        for sql in [
            DB_NOW_MS.replace("now()", at),
            NOW_MS
                .replace("now()", at)
                .replace("$3::bigint", "NULL::bigint"),
            DB_CLOCK_MS.replace("clock_timestamp()", at),
        ] {
            let ms: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {sql}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(ms, 1_796_378_400_999, "{sql}");
        }
        let _ = conn.close().await;
    }
}
