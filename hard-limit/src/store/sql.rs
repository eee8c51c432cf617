//! The SQL both engines share, generic over the sqlx database, with a
//! [`Dialect`] for what differs. Placeholders are `$N` (SQLite reads `?N`);
//! casts are `CAST(… AS …)`, which both parse.

use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use sqlx::postgres::PgQueryResult;
use sqlx::query::Query;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use super::engine::{BoxFut, Engine};
use super::plan::{NewMeeting, Started, Steps};
use super::rows::SqlRow;
use super::{
    decide_move, describe, describe_limit, Applied, Caller, Claim, ClaimReq, Closing,
    DeadlineMoved, ForwardClaim, ForwardRecord, Guard, LimitKind, LimitRule, MeetingView,
    NewForward, Outcome, PresenceClaim, PresenceRecord, RoomHistory, RoomMeeting, RuleChange,
    RuleChanged, StateDelta, StoreError, WarnClaim, WarnRecord, Written,
};
use crate::domain::{
    mass_close_refused, AloneAfter, DeadlineChange, MeetingKey, MeetingState, Plan, RoomId,
    Timestamp, WarningOutcome,
};

/// A store call's result.
pub(crate) type Res<T> = Result<T, StoreError>;

/// A statement with its parameters bound, for the caller to run.
pub(crate) type Bound<DB> = Query<'static, DB, <DB as Database>::Arguments>;

/// The numbered migrations of one engine, from `migrations/<engine>/`.
macro_rules! migrations {
    ($engine:literal) => {
        migrations!($engine: "meetings" "0001_meetings", "admin" "0002_admin",
            "warnings" "0003_warnings", "forward outbox" "0004_forward_outbox",
            "alone rule" "0005_alone")
    };
    ($engine:literal: $($name:literal $file:literal),*) => {
        $crate::store::sql::migrator([$((
            $name,
            include_str!(concat!("../../migrations/", $engine, "/", $file, ".sql")),
        )),*])
    };
}
pub(crate) use migrations;

/// A migrator for `steps` (name, SQL), numbered from 1.
pub(crate) fn migrator<const N: usize>(
    steps: [(&'static str, &'static str); N],
) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::SqlSafeStr;
    Migrator::with_migrations(
        steps
            .into_iter()
            .zip(1..)
            .map(|((name, sql), version)| {
                let sql = sql.into_sql_str();
                Migration::new(version, name.into(), MigrationType::Simple, sql, false)
            })
            .collect(),
    )
}

/// A duration in milliseconds, as stored.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// [`END_AT`] as a literal, for `concat!`.
macro_rules! end_at {
    () => {
        "CASE WHEN alone_deadline < deadline THEN alone_deadline ELSE deadline END"
    };
}
pub(crate) use end_at;

/// A meeting's end: its deadline, or its alone deadline if sooner (a NULL
/// compares false).
pub(crate) const END_AT: &str = end_at!();

/// Whether [`END_AT`] is the alone deadline, as the `alone` column (0 or 1).
pub(crate) const ALONE_COLUMN: &str =
    "CAST(CASE WHEN alone_deadline < deadline THEN 1 ELSE 0 END AS BIGINT) AS alone";

/// What [`SqlRow::view`] reads.
pub(crate) const VIEW_COLUMNS: &str =
    "room_id, started_at, deadline, state, participants, alone_since, alone_deadline, ended_alone";

/// The [`Guard`] of the row `meetings` as `cutoff` and `newer` (0/1); named
/// `meetings` as SQLite's `RETURNING` knows the table by its name only.
pub(crate) const GUARD_COLUMNS: &str =
    "(SELECT r.cutoff FROM room_shutdowns r WHERE r.room_id = meetings.room_id) AS cutoff,
     CAST(CAST(EXISTS (SELECT 1 FROM meetings n
                       WHERE n.room_id = meetings.room_id AND n.started_at > meetings.started_at)
               AS INTEGER) AS BIGINT) AS newer";

/// When the next participants check is due, as an expression.
const NEXT_PRESENCE: &str = "(SELECT min(presence_due) FROM meetings WHERE state = 'running')";

/// What a committed write tells the other replicas (PostgreSQL `NOTIFY`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Notice {
    /// A meeting was tracked or its deadline moved: schedulers re-plan.
    Meetings,
    /// A stored limit changed: limits reload.
    Limits,
}

/// What an engine supplies to the shared SQL, which implements [`Engine`]
/// for it; an undocumented method is the bare [`Engine`] one.
pub(crate) trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// The sqlx database.
    type DB: Database<Row: SqlRow, QueryResult: RowsAffected>;
    /// A write transaction, dereferencing to its connection.
    type Tx: DerefMut<Target = <Self::DB as Database>::Connection> + Send;
    /// Appended to a read whose row the transaction then updates (a lock).
    const FOR_UPDATE: &'static str;
    /// Claims due warnings (`$1` owner, `$2` lease end, `$3` now, `$4` limit,
    /// `$5` warn before in ms) as [`SqlRow::warn_claim`], counting attempts
    /// per deadline.
    const CLAIM_WARNINGS: &'static str;
    /// Claims due participants checks (`$1`–`$4` as above) as
    /// [`SqlRow::presence_claim`].
    const CLAIM_PRESENCE: &'static str;
    /// [`Engine::probe_write`]'s statements: a real write, committed.
    const PROBE_WRITE: &'static [&'static str];
    /// [`Engine::next_wake`] as one expression, for [`Dialect::next_of`].
    const NEXT_WAKE: &'static str;
    /// [`Engine::planned_deadlines`] since `$1` (`room_id, started_at, deadline`).
    const PLANNED_DEADLINES: &'static str;

    /// The pool for reads.
    fn reader(&self) -> &Pool<Self::DB>;
    /// Begins a write; `durable`: its commit must reach the disk (claims and
    /// outcomes need not: leases make them safe to lose).
    fn begin(&self, durable: bool) -> impl Future<Output = Res<Self::Tx>> + Send;
    /// Commits; `Ok` only if the database committed.
    fn commit(tx: Self::Tx) -> impl Future<Output = Res<()>> + Send;
    /// The database's "now" in `tx`; `None` (default): the caller's clock.
    fn db_now(&self, _: &mut Self::Tx) -> impl Future<Output = Res<Option<i64>>> + Send {
        async { Ok(None) }
    }
    /// Sends `notice` to the other replicas when `tx` commits (default: none).
    fn notify(_: &mut Self::Tx, _: Notice) -> impl Future<Output = Res<()>> + Send {
        async { Ok(()) }
    }
    /// Orders this batch against other writers' on the same rooms and lanes
    /// (default: the one writer does).
    fn lock_rooms(
        _: &mut Self::Tx,
        _: &[Plan],
        _: &[NewForward],
    ) -> impl Future<Output = Res<()>> + Send {
        async { Ok(()) }
    }

    // Batches, bound as the engine binds many rows (arrays, JSON).

    /// Selects `room_id, cutoff` of the `rooms` with a shutdown cutoff.
    fn room_cutoffs(rooms: &[&str]) -> Bound<Self::DB>;
    /// Inserts each meeting (one per room) unless known (a final state with
    /// `finished_at = now`), returning the new ones' `room_id`.
    fn insert_many(rows: &[NewMeeting<'_>], now: Timestamp) -> Bound<Self::DB>;
    /// Per started meeting (one per room): ends the room's older `running`
    /// ones and stores a changed guest token (making one not warned for want
    /// of a token warnable). How many it ended.
    fn started_many(
        tx: &mut Self::Tx,
        started: &[Started<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Res<u64>> + Send;
    /// Writes the deliveries to forward, in order; each waits at least as
    /// long as its lane's head.
    fn insert_forwards(forwards: &[NewForward], now: Timestamp) -> Bound<Self::DB>;

    // The statements that differ (each engine says why).

    fn claim_due(&self, c: ClaimReq<'_>) -> impl Future<Output = Res<Vec<Claim>>> + Send;
    fn finish(&self, owner: &str, o: &[Outcome]) -> impl Future<Output = Res<Vec<bool>>> + Send;
    /// The time a SQL expression gives, on the caller's clock.
    fn next_of(&self, expr: &str) -> impl Future<Output = Res<Option<Timestamp>>> + Send;
    fn close_unlisted(&self, u: Unlisted<'_>) -> impl Future<Output = Res<Closing>> + Send;
    /// Also the states of the meetings it deleted.
    fn prune(
        &self,
        finished_before: Timestamp,
    ) -> impl Future<Output = Res<(u64, StateDelta)>> + Send;
    /// Never before `deadline - warn_before`, even for a lapsed claim (the
    /// warner would spin).
    fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> impl Future<Output = Res<Option<Timestamp>>> + Send;
    fn claim_forwards(
        &self,
        c: ClaimReq<'_>,
    ) -> impl Future<Output = Res<Vec<ForwardClaim>>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// [`Engine::close_unlisted`]'s question: close at `now` the running
/// meetings tracked before `known_before` and not `listed`.
#[derive(Clone, Copy)]
pub(crate) struct Unlisted<'a> {
    pub listed: &'a [MeetingKey],
    pub known_before: Timestamp,
    pub now: Timestamp,
}

/// How many rows a statement changed (no sqlx trait has it).
pub(crate) trait RowsAffected {
    /// How many rows.
    fn rows_affected(&self) -> u64;
}

macro_rules! rows_affected {
    ($($result:ty),*) => {$(
        impl RowsAffected for $result {
            fn rows_affected(&self) -> u64 {
                self.rows_affected()
            }
        }
    )*};
}
rows_affected!(SqliteQueryResult, PgQueryResult);

/// "Now" for a write: the database's, or the caller's.
pub(crate) async fn now_in<D: Dialect>(d: &D, tx: &mut D::Tx, caller: Timestamp) -> Res<Timestamp> {
    Ok(d.db_now(tx).await?.map_or(caller, Timestamp))
}

/// A claim statement bound as [`Dialect::CLAIM_PRESENCE`] says.
pub(crate) fn claim_query<'q, DB: Database>(
    sql: impl sqlx::SqlSafeStr,
    c: ClaimReq<'_>,
    now: Timestamp,
) -> Query<'q, DB, DB::Arguments>
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(sql)
        .bind(c.owner)
        .bind(now.plus(c.lease).0)
        .bind(now.0)
        .bind(i64::from(c.limit))
}

/// A migrated pool on `options`; `fail`: what a failed connection says.
pub(crate) async fn open_pool<DB: Database>(
    pool: sqlx::pool::PoolOptions<DB>,
    options: <DB::Connection as sqlx::Connection>::Options,
    fail: &str,
    migrator: sqlx::migrate::Migrator,
    unusable: &impl Fn(String) -> StoreError,
) -> Res<Pool<DB>>
where
    DB::Connection: sqlx::migrate::Migrate,
{
    let pool = pool.connect_with(options).await;
    let pool = pool.map_err(|e| unusable(format!("{fail}: {e}")))?;
    let migrated = migrator.run(&pool).await;
    migrated.map_err(|e| unusable(format!("cannot migrate it: {e}")))?;
    Ok(pool)
}

/// `store`, once a committed write proved it writable: reads work on a
/// read-only store, and the first delivery would find out (503 forever).
pub(crate) async fn writable<D: Engine>(
    store: D,
    unusable: impl Fn(String) -> StoreError,
) -> Res<D> {
    match store.probe_write().await {
        Ok(_) => Ok(store),
        Err(e) => Err(unusable(format!(
            "it is not writable (the service must write its store): {e}"
        ))),
    }
}

/// [`Closing::Refused`] if closing `would_close` of the `open` meetings is
/// too many to believe ([`mass_close_refused`]).
pub(crate) fn refused((would_close, open): (i64, i64)) -> Option<Closing> {
    let (would_close, open) = (would_close.max(0) as u64, open.max(0) as u64);
    mass_close_refused(would_close, open).then_some(Closing::Refused { would_close, open })
}

/// A committed write's answer; `changed`: whether it changed anything.
fn written<T>(value: T, changed: impl FnOnce(&T) -> bool) -> Written<T> {
    let changed = changed(&value);
    Written::new(value, changed)
}

/// A recoverable write ([`Dialect::begin`]) and the database's "now".
async fn begin_at<D: Dialect>(d: &D) -> Res<(D::Tx, Option<i64>)> {
    let mut tx = d.begin(false).await?;
    let now = d.db_now(&mut tx).await?;
    Ok((tx, now))
}

/// Commits and returns `value`.
async fn done<D: Dialect, T>(tx: D::Tx, value: T) -> Res<T> {
    D::commit(tx).await?;
    Ok(value)
}

impl<D> Engine for D
where
    D: Dialect,
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> i64: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<&'q str>: Encode<'q, D::DB> + Type<D::DB>,
{
    fn apply_deliveries<'a>(
        &'a self,
        plans: &'a [Plan],
        forwards: &'a [NewForward],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<Applied>>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let now = now_in(self, &mut tx, now).await?;
            D::lock_rooms(&mut tx, plans, forwards).await?;
            let (out, delta) = Steps::<D>(&mut tx).apply_batch(plans, now).await?;
            if !forwards.is_empty() {
                D::insert_forwards(forwards, now).execute(&mut *tx).await?;
            }
            if out.contains(&Applied::Tracked) {
                D::notify(&mut tx, Notice::Meetings).await?;
            }
            D::commit(tx).await?;
            let changed = !forwards.is_empty()
                || out
                    .iter()
                    .any(|a| !matches!(a, Applied::Ignored | Applied::AlreadyKnown));
            Ok(Written::new(out, changed).with_delta(delta))
        })
    }

    fn claim_due<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<Claim>>> {
        Box::pin(async move {
            let claims = Dialect::claim_due(self, c).await?;
            // Only a running row's first claim (attempts 1) makes it stopping.
            let first = claims.iter().filter(|c| c.attempts == 1).count() as u64;
            let delta = StateDelta::moving(MeetingState::Running, MeetingState::Stopping, first);
            Ok(written(claims, |c| !c.is_empty()).with_delta(delta))
        })
    }

    fn guard<'a>(&'a self, key: &'a MeetingKey) -> BoxFut<'a, Guard> {
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {GUARD_COLUMNS}
                 FROM (SELECT CAST($1 AS TEXT) AS room_id, CAST($2 AS BIGINT) AS started_at) AS meetings"
            )))
            .bind(key.room_id.as_str())
            .bind(key.started_at.0)
            .fetch_one(self.reader())
            .await?;
            row.guard()
        })
    }

    fn finish<'a>(&'a self, owner: &'a str, o: &'a [Outcome]) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            debug_assert!(o.iter().all(|o| MeetingState::Stopping.may_become(o.state)));
            if o.is_empty() {
                return Ok(Written::new(Vec::new(), false));
            }
            let applied = Dialect::finish(self, owner, o).await?;
            let mut delta = StateDelta::default();
            for (o, _) in o.iter().zip(&applied).filter(|(_, a)| **a) {
                // A deferral stays stopping: `moved` to itself is no change.
                delta.moved(MeetingState::Stopping, o.state, 1);
            }
            Ok(written(applied, |a| a.contains(&true)).with_delta(delta))
        })
    }

    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>> {
        Box::pin(self.next_of(D::NEXT_WAKE))
    }

    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64> {
        Box::pin(async move {
            // `until` is this process's clock: drift is nothing in an hour.
            let row = sqlx::query(
                "SELECT count(*) AS n FROM (SELECT 1 FROM meetings
                   WHERE state = 'running' AND (deadline <= $1 OR alone_deadline <= $1)
                   LIMIT $2) AS due",
            )
            .bind(until.0)
            .bind(i64::from(cap))
            .fetch_one(self.reader())
            .await?;
            Ok(u64::try_from(row.int("n")?).unwrap_or(0))
        })
    }

    fn close_unlisted<'a>(
        &'a self,
        listed: &'a [MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Written<Closing>> {
        Box::pin(async move {
            let u = Unlisted {
                listed,
                known_before,
                now,
            };
            let closing = Dialect::close_unlisted(self, u).await?;
            let n = match closing {
                Closing::Closed(n) => n,
                Closing::Refused { .. } => 0,
            };
            let delta = StateDelta::moving(MeetingState::Running, MeetingState::Ended, n);
            Ok(Written::new(closing, n > 0).with_delta(delta))
        })
    }

    fn list<'a>(
        &'a self,
        finished_since: Timestamp,
        after: Option<&'a MeetingKey>,
        limit: u32,
    ) -> BoxFut<'a, Vec<MeetingView>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VIEW_COLUMNS} FROM meetings
                 WHERE (finished_at IS NULL OR finished_at >= $1)
                   AND (CAST($3 AS BIGINT) IS NULL OR started_at < $3
                        OR (started_at = $3 AND room_id < CAST($4 AS TEXT)))
                 ORDER BY started_at DESC, room_id DESC LIMIT $2"
            )))
            .bind(finished_since.0)
            .bind(i64::from(limit))
            .bind(after.map(|k| k.started_at.0))
            .bind(after.map(|k| k.room_id.as_str()))
            .fetch_all(self.reader())
            .await?;
            rows.iter().map(SqlRow::view).collect()
        })
    }

    fn current_for_room<'a>(&'a self, room: &'a RoomId) -> BoxFut<'a, Option<RoomMeeting>> {
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VIEW_COLUMNS}, guest_token FROM meetings
                 WHERE room_id = $1 AND state IN ('running', 'stopping')
                 ORDER BY started_at DESC LIMIT 1"
            )))
            .bind(room.as_str())
            .fetch_optional(self.reader())
            .await?;
            row.as_ref().map(SqlRow::room_meeting).transpose()
        })
    }

    fn count_by_state(&self) -> BoxFut<'_, Vec<(MeetingState, u64)>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT state, count(*) AS n FROM meetings GROUP BY state")
                .fetch_all(self.reader())
                .await?;
            rows.iter()
                .map(|r| Ok((r.state()?, u64::try_from(r.int("n")?).unwrap_or(0))))
                .collect()
        })
    }

    fn prune(&self, finished_before: Timestamp) -> BoxFut<'_, Written<u64>> {
        Box::pin(async move {
            let (pruned, delta) = Dialect::prune(self, finished_before).await?;
            Ok(Written::new(pruned, pruned > 0).with_delta(delta))
        })
    }

    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let mut gone = 0;
            for sql in [
                "DELETE FROM meetings WHERE started_at > $1",
                "DELETE FROM room_shutdowns WHERE cutoff > $1",
            ] {
                let q = sqlx::query(sql).bind(starts_after.0);
                gone += q.execute(&mut *tx).await?.rows_affected();
            }
            D::commit(tx).await?;
            // Which states the rows were in is not returned: count again.
            let mut w = Written::new(gone, gone > 0);
            w.recount = gone > 0;
            Ok(w)
        })
    }

    fn ping(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(self.reader()).await?;
            Ok(())
        })
    }

    fn claim_warnings<'a>(
        &'a self,
        c: ClaimReq<'a>,
        warn_before: Duration,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let now = now_in(self, &mut tx, c.now).await?;
            let rows = claim_query(D::CLAIM_WARNINGS, c, now)
                .bind(millis(warn_before))
                .fetch_all(&mut *tx)
                .await?;
            let mut claims: Vec<_> = rows.iter().map(SqlRow::warn_claim).collect::<Res<_>>()?;
            claims.sort_by_key(|c| c.deadline);
            done::<D, _>(tx, written(claims, |c| !c.is_empty())).await
        })
    }

    fn finish_warnings<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [WarnRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            let (mut tx, db_now) = begin_at(self).await?;
            let mut applied = Vec::with_capacity(records.len());
            for r in records {
                let at = db_now.unwrap_or(r.at.0);
                // The caller's retry delay, applied to the store's clock.
                let retry_at = r
                    .retry_at
                    .map(|t| at.saturating_add(t.0.saturating_sub(r.at.0)));
                let n = sqlx::query(
                    "UPDATE meetings
                     SET warn_state = $6, warn_owner = NULL, warn_until = $7,
                         warned_at = CASE WHEN $6 = 'claimed' THEN warned_at ELSE $8 END
                     WHERE room_id = $1 AND started_at = $2 AND warn_state = 'claimed'
                       AND warn_owner = $3 AND warn_attempts = $4 AND warn_for = $5",
                )
                .bind(r.key.room_id.as_str())
                .bind(r.key.started_at.0)
                .bind(owner)
                .bind(r.attempts)
                .bind(r.deadline.0)
                .bind(r.outcome.as_str())
                .bind(retry_at)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 && r.alone && r.outcome == WarningOutcome::Sent {
                    Steps::<D>(&mut tx)
                        .alone_event(&r.key, at, "warned", None)
                        .await?;
                }
                applied.push(n == 1);
            }
            done::<D, _>(tx, written(applied, |a| a.contains(&true))).await
        })
    }

    fn next_warning(&self, now: Timestamp, warn_before: Duration) -> BoxFut<'_, Option<Timestamp>> {
        Box::pin(Dialect::next_warning(self, now, warn_before))
    }

    fn claim_presence<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<PresenceClaim>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let now = now_in(self, &mut tx, c.now).await?;
            let rows = claim_query(D::CLAIM_PRESENCE, c, now)
                .fetch_all(&mut *tx)
                .await?;
            let claims: Vec<_> = rows
                .iter()
                .map(SqlRow::presence_claim)
                .collect::<Res<_>>()?;
            done::<D, _>(tx, written(claims, |c| !c.is_empty())).await
        })
    }

    /// The alone clock moves in SQL as [`crate::alone::AloneClock`] does (a
    /// failed check keeps it, one starts it, two reset it, the rule off
    /// clears it), so it starts on the store's clock.
    fn finish_presence<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [PresenceRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            let (mut tx, db_now) = begin_at(self).await?;
            let mut applied = Vec::with_capacity(records.len());
            let mut started = false;
            for r in records {
                let at = db_now.unwrap_or(r.at.0);
                let next = at.saturating_add(r.next.0.saturating_sub(r.at.0));
                let n = sqlx::query(
                    "UPDATE meetings
                     SET presence_owner = NULL, presence_due = $4,
                         participants = COALESCE(CAST($5 AS BIGINT), participants),
                         checked_at = CASE WHEN CAST($5 AS BIGINT) IS NULL THEN checked_at ELSE $6 END,
                         alone_since = CASE
                             WHEN CAST($7 AS BIGINT) IS NULL OR CAST($5 AS BIGINT) >= 2 THEN NULL
                             WHEN CAST($5 AS BIGINT) IS NULL THEN alone_since
                             ELSE COALESCE(alone_since, $6) END,
                         alone_deadline = CASE
                             WHEN CAST($7 AS BIGINT) IS NULL OR CAST($5 AS BIGINT) >= 2 THEN NULL
                             WHEN CAST($5 AS BIGINT) IS NULL THEN alone_deadline
                             ELSE COALESCE(alone_since, $6) + CAST($7 AS BIGINT) END
                     WHERE room_id = $1 AND started_at = $2 AND state = 'running'
                       AND presence_owner = $3 AND presence_due = $8",
                )
                .bind(r.key.room_id.as_str())
                .bind(r.key.started_at.0)
                .bind(owner)
                .bind(next)
                .bind(r.participants)
                .bind(at)
                .bind(r.alone_after.map(millis))
                .bind(r.until.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if let Some(event) = r.event.filter(|_| n == 1) {
                    started |= event == "alone";
                    let mut steps = Steps::<D>(&mut tx);
                    steps.alone_event(&r.key, at, event, r.participants).await?;
                }
                applied.push(n == 1);
            }
            if started {
                // A new alone deadline: every replica's scheduler looks.
                D::notify(&mut tx, Notice::Meetings).await?;
            }
            done::<D, _>(tx, written(applied, |a| a.contains(&true))).await
        })
    }

    fn next_presence(&self) -> BoxFut<'_, Option<Timestamp>> {
        Box::pin(self.next_of(NEXT_PRESENCE))
    }

    fn move_deadline<'a>(
        &'a self,
        room: &'a RoomId,
        expected_start: Option<Timestamp>,
        change: DeadlineChange,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<DeadlineMoved>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let now = now_in(self, &mut tx, now).await?;
            // No claim slips between read and update: SQLite has one writer;
            // a PostgreSQL claim in flight committed first or waits (row lock).
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VIEW_COLUMNS} FROM meetings
                 WHERE room_id = $1 AND state IN ('running', 'stopping')
                 ORDER BY started_at DESC LIMIT 1{}",
                D::FOR_UPDATE
            )))
            .bind(room.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(view) = row.as_ref().map(SqlRow::view).transpose()? else {
                return done::<D, _>(tx, Written::new(DeadlineMoved::NoOpenMeeting, false)).await;
            };
            let decided = decide_move(&view, expected_start, change, now);
            let DeadlineMoved::Moved { meeting, old } = &decided else {
                return done::<D, _>(tx, Written::new(decided, false)).await;
            };
            sqlx::query(
                "UPDATE meetings SET deadline = $3, updated_at = $4
                 WHERE room_id = $1 AND started_at = $2 AND state = 'running'",
            )
            .bind(room.as_str())
            .bind(meeting.key.started_at.0)
            .bind(meeting.deadline.0)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            let (action, detail) = describe(change);
            sqlx::query(
                "INSERT INTO admin_actions (at, action, room_id, started_at, old_deadline, new_deadline, detail, caller)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(now.0)
            .bind(action)
            .bind(room.as_str())
            .bind(meeting.key.started_at.0)
            .bind(old.0)
            .bind(meeting.deadline.0)
            .bind(detail.as_str())
            .bind(caller.addr.as_str())
            .execute(&mut *tx)
            .await?;
            // Every replica re-plans: an earlier deadline is enforced at once.
            D::notify(&mut tx, Notice::Meetings).await?;
            done::<D, _>(tx, Written::new(decided, true)).await
        })
    }

    fn history<'a>(&'a self, room: &'a RoomId, limit: u32) -> BoxFut<'a, RoomHistory> {
        Box::pin(async move {
            let meetings = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VIEW_COLUMNS}, created_at, updated_at, finished_at, attempts
                 FROM meetings WHERE room_id = $1 ORDER BY started_at DESC LIMIT $2"
            )))
            .bind(room.as_str())
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
            let actions = sqlx::query(
                "SELECT at, action, room_id, started_at, old_deadline, new_deadline, detail, caller
                 FROM admin_actions WHERE room_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(room.as_str())
            .bind(i64::from(limit) * 4)
            .fetch_all(self.reader())
            .await?;
            let alone = sqlx::query(
                "SELECT started_at, at, event, participants FROM alone_events
                 WHERE room_id = $1 AND started_at >= $2 ORDER BY id LIMIT $3",
            )
            .bind(room.as_str())
            .bind(meetings.last().map_or(Ok(0), |m| m.int("started_at"))?)
            .bind(i64::from(limit) * 16)
            .fetch_all(self.reader())
            .await?;
            Ok(RoomHistory {
                alone: alone.iter().map(SqlRow::alone_event).collect::<Res<_>>()?,
                meetings: meetings.iter().map(SqlRow::record).collect::<Res<_>>()?,
                actions: actions.iter().map(SqlRow::action).collect::<Res<_>>()?,
            })
        })
    }

    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>> {
        Box::pin(async move {
            let rows = sqlx::query(D::PLANNED_DEADLINES)
                .bind(started_since.0)
                .fetch_all(self.reader())
                .await?;
            rows.iter()
                .map(|r| Ok((r.key()?, Timestamp(r.int("deadline")?))))
                .collect()
        })
    }

    fn limit_rules(&self) -> BoxFut<'_, Vec<LimitRule>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT kind, key, limit_ms, alone_after_ms FROM room_limits ORDER BY kind, key",
            )
            .fetch_all(self.reader())
            .await?;
            rows.iter().map(SqlRow::limit_rule).collect()
        })
    }

    fn set_limit<'a>(
        &'a self,
        kind: LimitKind,
        key: &'a str,
        change: Option<RuleChange>,
        now: Timestamp,
        caller: &'a Caller,
    ) -> BoxFut<'a, Written<RuleChanged>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let now = now_in(self, &mut tx, now).await?;
            let old = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT kind, key, limit_ms, alone_after_ms FROM room_limits WHERE kind = $1 AND key = $2{}",
                D::FOR_UPDATE
            )))
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.limit_rule())
            .transpose()?
            .map(|r| r.rule());
            let new = change
                .map(|c| c.merged(old.unwrap_or_default()))
                .filter(|r| !r.is_empty());
            let changed = RuleChanged {
                previous: old,
                current: new,
            };
            // Nothing to remove: committed, but no proof the store takes writes.
            if old.is_none() && new.is_none() {
                return done::<D, _>(tx, Written::new(changed, false)).await;
            }
            let write = match new {
                Some(rule) => sqlx::query(
                    "INSERT INTO room_limits (kind, key, limit_ms, alone_after_ms, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (kind, key) DO UPDATE SET limit_ms = excluded.limit_ms,
                         alone_after_ms = excluded.alone_after_ms, updated_at = excluded.updated_at",
                )
                .bind(kind.as_str())
                .bind(key)
                .bind(rule.limit.map(millis))
                .bind(rule.alone_after.map(AloneAfter::as_millis))
                .bind(now.0),
                None => sqlx::query("DELETE FROM room_limits WHERE kind = $1 AND key = $2")
                    .bind(kind.as_str())
                    .bind(key),
            };
            write.execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO admin_actions (at, action, room_id, detail, caller) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(now.0)
            .bind(if new.is_some() { "limit_set" } else { "limit_removed" })
            .bind(key)
            .bind(describe_limit(kind, change, old, new).as_str())
            .bind(caller.addr.as_str())
            .execute(&mut *tx)
            .await?;
            D::notify(&mut tx, Notice::Limits).await?;
            done::<D, _>(tx, Written::new(changed, true)).await
        })
    }

    fn claim_forwards<'a>(&'a self, c: ClaimReq<'a>) -> BoxFut<'a, Written<Vec<ForwardClaim>>> {
        Box::pin(async move {
            let claims = Dialect::claim_forwards(self, c).await?;
            Ok(written(claims, |c| !c.is_empty()))
        })
    }

    fn finish_forwards<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [ForwardRecord],
        now: Timestamp,
    ) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let now = now_in(self, &mut tx, now).await?;
            let mut applied = Vec::with_capacity(records.len());
            for r in records {
                // Both statements name the claim as `$1`-`$3`.
                let claim = |sql| sqlx::query(sql).bind(r.id).bind(owner).bind(r.attempts);
                let Some(delay) = r.retry_in else {
                    let delete = claim(
                        "DELETE FROM forward_outbox WHERE id = $1 AND lease_owner = $2 AND attempts = $3",
                    );
                    applied.push(delete.execute(&mut *tx).await?.rows_affected() == 1);
                    continue;
                };
                let at = now.plus(delay).0;
                let lane = claim(
                    "UPDATE forward_outbox
                     SET next_at = $4, lease_owner = NULL, lease_until = NULL, last_error = $5
                     WHERE id = $1 AND lease_owner = $2 AND attempts = $3
                     RETURNING lane",
                )
                .bind(at)
                .bind(r.error.as_deref())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.text("lane"))
                .transpose()?;
                if let Some(lane) = &lane {
                    // The lane's later entries wait for its head's retry.
                    sqlx::query(
                        "UPDATE forward_outbox SET next_at = $3
                         WHERE lane = $1 AND id > $2 AND next_at < $3",
                    )
                    .bind(lane.as_str())
                    .bind(r.id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                applied.push(lane.is_some());
            }
            done::<D, _>(tx, written(applied, |a| a.contains(&true))).await
        })
    }

    fn pending_forwards(&self) -> BoxFut<'_, u64> {
        Box::pin(async move {
            let row = sqlx::query("SELECT count(*) AS n FROM forward_outbox")
                .fetch_one(self.reader())
                .await?;
            Ok(u64::try_from(row.int("n")?).unwrap_or(0))
        })
    }

    fn probe_write(&self) -> BoxFut<'_, Written<()>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            for sql in D::PROBE_WRITE {
                sqlx::query(*sql).execute(&mut *tx).await?;
            }
            D::commit(tx).await?;
            Ok(Written::new((), true))
        })
    }

    fn close(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Dialect::close(self))
    }

    fn bulk_insert<'a>(
        &'a self,
        rows: &'a [(MeetingKey, Timestamp, MeetingState)],
        now: Timestamp,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            for (key, deadline, state) in rows {
                Steps::<D>(&mut tx)
                    .insert(key, *deadline, *state, now)
                    .await?;
            }
            D::commit(tx).await
        })
    }

    fn set_deadline_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
        deadline: Timestamp,
    ) -> BoxFut<'a, bool> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let n = sqlx::query(
                "UPDATE meetings SET deadline = $3
                 WHERE room_id = $1 AND started_at = $2 AND state IN ('running', 'stopping')",
            )
            .bind(key.room_id.as_str())
            .bind(key.started_at.0)
            .bind(deadline.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            done::<D, _>(tx, n == 1).await
        })
    }

    fn warning_for_tests<'a>(
        &'a self,
        key: &'a MeetingKey,
    ) -> BoxFut<'a, Option<(Option<String>, Option<i64>)>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT warn_state, warn_for FROM meetings WHERE room_id = $1 AND started_at = $2",
            )
            .bind(key.room_id.as_str())
            .bind(key.started_at.0)
            .fetch_optional(self.reader())
            .await?;
            row.map(|r| Ok((r.opt_text("warn_state")?, r.opt_int("warn_for")?)))
                .transpose()
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
