//! The SQL both engines share, written once: generic over the sqlx
//! database, with a [`Dialect`] that supplies only what differs (how a
//! write transaction begins and commits, the database's "now", the row
//! lock of a read-then-write, the notifications to other replicas, how a
//! batch is bound, and the statements that really differ: claims, pruning,
//! the wake-up times). Placeholders are `$N`: sqlx's SQLite reads them as
//! `?N`. Casts are written `CAST(… AS …)`, which both parse.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use super::engine::{BoxFut, Engine};
use super::plan::{self, NewMeeting, PlanSteps};
use super::rows::SqlRow;
use super::{
    action_name, decide_move, describe, describe_limit, AloneEvent, Applied, Caller, Claim,
    Closing, DeadlineMoved, ForwardClaim, ForwardRecord, Guard, LimitKind, LimitRule, MeetingView,
    NewForward, Outcome, PresenceClaim, PresenceRecord, RoomHistory, RoomMeeting, RuleChange,
    RuleChanged, StateDelta, StoreError, WarnClaim, WarnRecord, Written,
};
use crate::domain::{
    AloneAfter, DeadlineChange, GuestToken, MeetingKey, MeetingState, Plan, RoomId, Timestamp,
    WarningOutcome,
};

/// The numbered migrations of one engine, from `migrations/<engine>/`
/// (each engine has its own SQL; the steps and their names are the same).
macro_rules! migrations {
    ($engine:literal) => {
        $crate::store::sql::migrator([
            (
                "meetings",
                include_str!(concat!("../../migrations/", $engine, "/0001_meetings.sql")),
            ),
            (
                "admin",
                include_str!(concat!("../../migrations/", $engine, "/0002_admin.sql")),
            ),
            (
                "warnings",
                include_str!(concat!("../../migrations/", $engine, "/0003_warnings.sql")),
            ),
            (
                "forward outbox",
                include_str!(concat!(
                    "../../migrations/",
                    $engine,
                    "/0004_forward_outbox.sql"
                )),
            ),
            (
                "alone rule",
                include_str!(concat!("../../migrations/", $engine, "/0005_alone.sql")),
            ),
        ])
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
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A duration in milliseconds, as stored.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// [`END_AT`] as a literal, for the engines' constant statements
/// (`concat!`).
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

/// Records an alone period's event (`$1` room, `$2` start, `$3` at, `$4`
/// event, `$5` participants).
pub(crate) const ALONE_EVENT: &str =
    "INSERT INTO alone_events (room_id, started_at, at, event, participants) VALUES ($1, $2, $3, $4, $5)";

/// What [`SqlRow::view`] reads.
pub(crate) const VIEW_COLUMNS: &str =
    "room_id, started_at, deadline, state, participants, alone_since, alone_deadline, ended_alone";

/// The [`Guard`] of the meeting `meetings` (`room_id`, `started_at`), as
/// columns `cutoff` and `newer` (0 or 1; a BIGINT on PostgreSQL too).
/// SQLite's `RETURNING` knows the updated table by its name only, so the
/// meeting is always called `meetings`.
pub(crate) const GUARD_COLUMNS: &str =
    "(SELECT r.cutoff FROM room_shutdowns r WHERE r.room_id = meetings.room_id) AS cutoff,
     CAST(CAST(EXISTS (SELECT 1 FROM meetings n
                       WHERE n.room_id = meetings.room_id AND n.started_at > meetings.started_at)
               AS INTEGER) AS BIGINT) AS newer";

/// What a committed write tells the other replicas (PostgreSQL `NOTIFY`;
/// nothing on SQLite, whose one host has no other replicas to wake).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Notice {
    /// A meeting was tracked or its deadline moved: schedulers re-plan.
    Meetings,
    /// A stored limit changed: limits reload.
    Limits,
}

/// What one engine supplies to the shared SQL ([`Engine`] is implemented
/// for every dialect, below).
pub(crate) trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// The sqlx database.
    type DB: Database;
    /// A write transaction, dereferencing to its connection.
    type Tx: DerefMut<Target = <Self::DB as Database>::Connection> + Send;
    /// Appended to a read whose row the transaction then updates: the row
    /// lock on PostgreSQL (SQLite's one writer needs none).
    const FOR_UPDATE: &'static str;
    /// Claims due warnings (see
    /// [`Store::claim_warnings`](crate::store_handle::Store::claim_warnings)):
    /// `$1` owner, `$2` lease end, `$3` now, `$4` limit, `$5` warn before
    /// (ms); returns the [`SqlRow::warn_claim`] columns. SET reads the old
    /// row: a claim for the same deadline counts on, one for a new deadline
    /// starts again at 1.
    const CLAIM_WARNINGS: &'static str;
    /// Claims due participants checks (see
    /// [`Store::claim_presence`](crate::store_handle::Store::claim_presence)):
    /// `$1` owner, `$2` lease end, `$3` now, `$4` limit; returns the
    /// [`SqlRow::presence_claim`] columns.
    const CLAIM_PRESENCE: &'static str;

    /// The pool for reads.
    fn reader(&self) -> &Pool<Self::DB>;
    /// Begins a write; `durable`: its commit must reach the disk (the
    /// leases make claims and their outcomes safe to lose, see SQLite).
    fn begin(&self, durable: bool) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
    /// Commits; `Ok` only if the database committed.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The database's "now" in the transaction, or `None` where the
    /// caller's clock is the store's.
    fn db_now(
        &self,
        tx: &mut Self::Tx,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Sends `notice` to the other replicas when `tx` commits.
    fn notify(
        tx: &mut Self::Tx,
        notice: Notice,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Orders this batch of deliveries against other writers' batches on
    /// the same rooms and lanes.
    fn lock_rooms(
        tx: &mut Self::Tx,
        plans: &[Plan],
        forwards: &[NewForward],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // Batches, bound as the engine binds many rows (arrays, JSON).

    /// See [`PlanSteps::room_cutoffs`].
    fn room_cutoffs(
        tx: &mut Self::Tx,
        rooms: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Timestamp>, StoreError>> + Send;
    /// See [`PlanSteps::insert_many`].
    fn insert_many(
        tx: &mut Self::Tx,
        meetings: &[NewMeeting<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<HashSet<String>, StoreError>> + Send;
    /// See [`PlanSteps::started_many`].
    fn started_many(
        tx: &mut Self::Tx,
        started: &[(&MeetingKey, Option<&GuestToken>)],
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Writes the batch's deliveries to forward, in order; a new entry
    /// waits at least as long as its lane's head.
    fn insert_forwards(
        tx: &mut Self::Tx,
        forwards: &[NewForward],
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // The statements that differ between the engines (each says why).

    /// See [`Store::claim_due`](crate::store_handle::Store::claim_due).
    fn claim_due(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send;
    /// See [`Store::finish`](crate::store_handle::Store::finish).
    fn finish(
        &self,
        owner: &str,
        outcomes: &[Outcome],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;
    /// See [`Engine::next_wake`].
    fn next_wake(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
    /// See [`Store::close_unlisted`](crate::store_handle::Store::close_unlisted).
    fn close_unlisted(
        &self,
        listed: &[MeetingKey],
        known_before: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Closing, StoreError>> + Send;
    /// See [`Store::prune`](crate::store_handle::Store::prune); also the
    /// states of the meetings it deleted.
    fn prune(
        &self,
        finished_before: Timestamp,
    ) -> impl Future<Output = Result<(u64, StateDelta), StoreError>> + Send;
    /// See [`Engine::planned_deadlines`].
    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> impl Future<Output = Result<Vec<(MeetingKey, Timestamp)>, StoreError>> + Send;
    /// See [`Engine::next_warning`].
    fn next_warning(
        &self,
        now: Timestamp,
        warn_before: Duration,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
    /// See [`Engine::next_presence`].
    fn next_presence(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
    /// See [`Store::claim_forwards`](crate::store_handle::Store::claim_forwards).
    fn claim_forwards(
        &self,
        now: Timestamp,
        lease: Duration,
        owner: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ForwardClaim>, StoreError>> + Send;
    /// Commits a real write.
    fn probe_write(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Closes the connections.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// How many rows a statement changed (each engine's result has it, under
/// no common trait).
pub(crate) trait RowsAffected {
    /// How many rows.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// "Now" for a write: the database's, or the caller's.
pub(crate) async fn now_in<D: Dialect>(
    d: &D,
    tx: &mut D::Tx,
    caller: Timestamp,
) -> Result<Timestamp, StoreError> {
    Ok(d.db_now(tx).await?.map_or(caller, Timestamp))
}

/// A committed write's answer; `changed`: whether the commit changed
/// anything.
fn written<T>(value: T, changed: impl FnOnce(&T) -> bool) -> Written<T> {
    let changed = changed(&value);
    Written::new(value, changed)
}

/// Commits and returns `value`.
async fn done<D: Dialect, T>(tx: D::Tx, value: T) -> Result<T, StoreError> {
    D::commit(tx).await?;
    Ok(value)
}

/// Plan application's steps ([`plan::apply`]) inside an engine's write
/// transaction.
pub(crate) struct Steps<'t, D: Dialect>(pub(crate) &'t mut D::Tx);

impl<D> PlanSteps for Steps<'_, D>
where
    D: Dialect,
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    <D::DB as Database>::Row: SqlRow,
    <D::DB as Database>::QueryResult: RowsAffected,
    for<'q> i64: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<&'q str>: Encode<'q, D::DB> + Type<D::DB>,
{
    async fn insert(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        state: MeetingState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let finished = (!state.is_open()).then_some(now.0);
        let n = sqlx::query(
            "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at, finished_at,
                                   presence_due)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $5)
             ON CONFLICT (room_id, started_at) DO NOTHING",
        )
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .bind(deadline.0)
        .bind(state.as_str())
        .bind(now.0)
        .bind(finished)
        .execute(&mut **self.0)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn newest_open(
        &mut self,
        room: &RoomId,
        upto: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT max(started_at) AS newest FROM meetings
             WHERE room_id = $1 AND started_at <= $2
               AND state IN ('running', 'stopping')",
        )
        .bind(room.as_str())
        .bind(upto.0)
        .fetch_one(&mut **self.0)
        .await?;
        Ok(row.opt_int("newest")?.map(Timestamp))
    }

    async fn raise_cutoff(&mut self, room: &RoomId, cutoff: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO room_shutdowns (room_id, cutoff) VALUES ($1, $2)
             ON CONFLICT (room_id) DO UPDATE
             SET cutoff = CASE WHEN excluded.cutoff > room_shutdowns.cutoff
                               THEN excluded.cutoff ELSE room_shutdowns.cutoff END",
        )
        .bind(room.as_str())
        .bind(cutoff.0)
        .execute(&mut **self.0)
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
            "UPDATE meetings SET state = 'ended', finished_at = $3, updated_at = $3
             WHERE room_id = $1 AND started_at <= $2 AND state = 'running'",
        )
        .bind(room.as_str())
        .bind(upto.0)
        .bind(now.0)
        .execute(&mut **self.0)
        .await?
        .rows_affected())
    }

    async fn room_cutoffs(
        &mut self,
        rooms: &[&str],
    ) -> Result<HashMap<String, Timestamp>, StoreError> {
        D::room_cutoffs(self.0, rooms).await
    }

    async fn insert_many(
        &mut self,
        meetings: &[NewMeeting<'_>],
        now: Timestamp,
    ) -> Result<HashSet<String>, StoreError> {
        D::insert_many(self.0, meetings, now).await
    }

    async fn started_many(
        &mut self,
        started: &[(&MeetingKey, Option<&GuestToken>)],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        D::started_many(self.0, started, now).await
    }
}

impl<D> Engine for D
where
    D: Dialect,
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    <D::DB as Database>::Row: SqlRow,
    <D::DB as Database>::QueryResult: RowsAffected,
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
            let (out, delta) = plan::apply_batch(&mut Steps::<D>(&mut tx), plans, now).await?;
            if !forwards.is_empty() {
                D::insert_forwards(&mut tx, forwards, now).await?;
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

    fn claim_due<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<Claim>>> {
        Box::pin(async move {
            let claims = Dialect::claim_due(self, now, lease, owner, limit).await?;
            // Only claims increment `attempts` (0 on insert), and only a
            // running row's first claim makes it stopping: a claim with
            // attempts 1 came from running, a later one from stopping.
            let mut delta = StateDelta::default();
            let first = claims.iter().filter(|c| c.attempts == 1).count() as u64;
            delta.moved(MeetingState::Running, MeetingState::Stopping, first);
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

    fn finish<'a>(
        &'a self,
        owner: &'a str,
        outcomes: &'a [Outcome],
    ) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            let applied = Dialect::finish(self, owner, outcomes).await?;
            let mut delta = StateDelta::default();
            for (o, _) in outcomes.iter().zip(&applied).filter(|(_, a)| **a) {
                // A deferral stays stopping: `moved` to itself is no change.
                delta.moved(MeetingState::Stopping, o.state, 1);
            }
            Ok(written(applied, |a| a.contains(&true)).with_delta(delta))
        })
    }

    fn next_wake(&self) -> BoxFut<'_, Option<Timestamp>> {
        Box::pin(Dialect::next_wake(self))
    }

    fn count_due_before(&self, until: Timestamp, cap: u32) -> BoxFut<'_, u64> {
        Box::pin(async move {
            // On PostgreSQL `until` is on this process's clock; a drift from
            // the database's of a few seconds does not matter for a window
            // of an hour.
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
            let closing = Dialect::close_unlisted(self, listed, known_before, now).await?;
            let mut delta = StateDelta::default();
            if let Closing::Closed(n) = closing {
                delta.moved(MeetingState::Running, MeetingState::Ended, n);
            }
            Ok(written(closing, |c| matches!(c, Closing::Closed(n) if *n > 0)).with_delta(delta))
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
            Ok(written(pruned, |n| *n > 0).with_delta(delta))
        })
    }

    fn forget_future(&self, starts_after: Timestamp) -> BoxFut<'_, Written<u64>> {
        Box::pin(async move {
            let mut tx = self.begin(true).await?;
            let meetings = sqlx::query("DELETE FROM meetings WHERE started_at > $1")
                .bind(starts_after.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let cutoffs = sqlx::query("DELETE FROM room_shutdowns WHERE cutoff > $1")
                .bind(starts_after.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            D::commit(tx).await?;
            let gone = meetings + cutoffs;
            // Which states the rows were in is not returned: count again.
            let mut w = written(gone, |n| *n > 0);
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
        now: Timestamp,
        warn_before: Duration,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<WarnClaim>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let now = now_in(self, &mut tx, now).await?;
            let rows = sqlx::query(D::CLAIM_WARNINGS)
                .bind(owner)
                .bind(now.plus(lease).0)
                .bind(now.0)
                .bind(i64::from(limit))
                .bind(millis(warn_before))
                .fetch_all(&mut *tx)
                .await?;
            let mut claims = rows
                .iter()
                .map(SqlRow::warn_claim)
                .collect::<Result<Vec<_>, _>>()?;
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
            let mut tx = self.begin(false).await?;
            let db_now = self.db_now(&mut tx).await?;
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
                    sqlx::query(ALONE_EVENT)
                        .bind(r.key.room_id.as_str())
                        .bind(r.key.started_at.0)
                        .bind(at)
                        .bind("warned")
                        .bind(None::<i64>)
                        .execute(&mut *tx)
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

    fn claim_presence<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<PresenceClaim>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let now = now_in(self, &mut tx, now).await?;
            let rows = sqlx::query(D::CLAIM_PRESENCE)
                .bind(owner)
                .bind(now.plus(lease).0)
                .bind(now.0)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            let claims = rows
                .iter()
                .map(SqlRow::presence_claim)
                .collect::<Result<Vec<_>, _>>()?;
            done::<D, _>(tx, written(claims, |c| !c.is_empty())).await
        })
    }

    /// The alone clock moves in SQL, as [`crate::alone::AloneClock`] does
    /// (a check that failed keeps it; at most one starts or keeps it; two
    /// or more reset it; the rule off clears it), so that it starts on the
    /// store's clock.
    fn finish_presence<'a>(
        &'a self,
        owner: &'a str,
        records: &'a [PresenceRecord],
    ) -> BoxFut<'a, Written<Vec<bool>>> {
        Box::pin(async move {
            let mut tx = self.begin(false).await?;
            let db_now = self.db_now(&mut tx).await?;
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
                if n == 1 {
                    started |= r.event == Some("alone");
                    if let Some(event) = r.event {
                        sqlx::query(ALONE_EVENT)
                            .bind(r.key.room_id.as_str())
                            .bind(r.key.started_at.0)
                            .bind(at)
                            .bind(event)
                            .bind(r.participants)
                            .execute(&mut *tx)
                            .await?;
                    }
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
        Box::pin(Dialect::next_presence(self))
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
            // No claim can slip between the read and the update: SQLite has
            // one writer; on PostgreSQL a claim in flight (which skips
            // locked rows) either committed first, and the row reads
            // `stopping`, or waits for this.
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
            sqlx::query(
                "INSERT INTO admin_actions (at, action, room_id, started_at, old_deadline, new_deadline, detail, caller)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(now.0)
            .bind(action_name(change))
            .bind(room.as_str())
            .bind(meeting.key.started_at.0)
            .bind(old.0)
            .bind(meeting.deadline.0)
            .bind(describe(change).as_str())
            .bind(caller.addr.as_str())
            .execute(&mut *tx)
            .await?;
            // Every replica's scheduler re-plans: an earlier deadline (end
            // now) is enforced at once wherever it is claimed.
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
                alone: alone
                    .iter()
                    .map(|r| {
                        Ok(AloneEvent {
                            started_at: Timestamp(r.int("started_at")?),
                            at: Timestamp(r.int("at")?),
                            event: r.text("event")?,
                            participants: r.opt_int("participants")?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?,
                meetings: meetings
                    .iter()
                    .map(SqlRow::record)
                    .collect::<Result<_, _>>()?,
                actions: actions
                    .iter()
                    .map(SqlRow::action)
                    .collect::<Result<_, _>>()?,
            })
        })
    }

    fn planned_deadlines(
        &self,
        started_since: Timestamp,
    ) -> BoxFut<'_, Vec<(MeetingKey, Timestamp)>> {
        Box::pin(Dialect::planned_deadlines(self, started_since))
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
            if old.is_none() && new.is_none() {
                return done::<D, _>(tx, Written::new(changed, true)).await;
            }
            match new {
                Some(rule) => {
                    sqlx::query(
                        "INSERT INTO room_limits (kind, key, limit_ms, alone_after_ms, updated_at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (kind, key) DO UPDATE SET limit_ms = excluded.limit_ms,
                             alone_after_ms = excluded.alone_after_ms, updated_at = excluded.updated_at",
                    )
                    .bind(kind.as_str())
                    .bind(key)
                    .bind(rule.limit.map(millis))
                    .bind(rule.alone_after.map(AloneAfter::as_millis))
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM room_limits WHERE kind = $1 AND key = $2")
                        .bind(kind.as_str())
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
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

    fn claim_forwards<'a>(
        &'a self,
        now: Timestamp,
        lease: Duration,
        owner: &'a str,
        limit: u32,
    ) -> BoxFut<'a, Written<Vec<ForwardClaim>>> {
        Box::pin(async move {
            let claims = Dialect::claim_forwards(self, now, lease, owner, limit).await?;
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
                let done = match r.retry_in {
                    None => {
                        sqlx::query(
                            "DELETE FROM forward_outbox WHERE id = $1 AND lease_owner = $2 AND attempts = $3",
                        )
                        .bind(r.id)
                        .bind(owner)
                        .bind(r.attempts)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    }
                    Some(delay) => {
                        let at = now.plus(delay).0;
                        let lane = sqlx::query(
                            "UPDATE forward_outbox
                             SET next_at = $4, lease_owner = NULL, lease_until = NULL, last_error = $5
                             WHERE id = $1 AND lease_owner = $2 AND attempts = $3
                             RETURNING lane",
                        )
                        .bind(r.id)
                        .bind(owner)
                        .bind(r.attempts)
                        .bind(at)
                        .bind(r.error.as_deref())
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|row| row.text("lane"))
                        .transpose()?;
                        if let Some(lane) = &lane {
                            // The lane's later entries wait for its head's
                            // retry: the claim's search then skips the
                            // whole lane until then.
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
                        lane.is_some()
                    }
                };
                applied.push(done);
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
            Dialect::probe_write(self).await?;
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
