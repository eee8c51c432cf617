//! Applying a batch of [`Plan`]s for both engines, inside the caller's write
//! transaction (which holds the engine's lock); each step's exact effect on
//! the per-state counts is summed for the caller to apply once committed.

use std::collections::{HashMap, HashSet};

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::rows::SqlRow;
use super::sql::{Dialect, RowsAffected};
use super::{Applied, StateDelta, StoreError};
use crate::domain::{self, GuestToken, MeetingKey, MeetingState, Plan, Timestamp};

/// A meeting to insert unless it is known ([`Dialect::insert_many`]).
pub(crate) struct NewMeeting<'a> {
    pub key: &'a MeetingKey,
    pub deadline: Timestamp,
    pub state: MeetingState,
    pub guest_token: Option<&'a GuestToken>,
}

/// A meeting's start: its key, deadline and guest token.
type Start<'a> = (&'a MeetingKey, Timestamp, Option<&'a GuestToken>);

/// A meeting tracked as running, with its guest token
/// ([`Dialect::started_many`]).
pub(crate) type Started<'a> = (&'a MeetingKey, Option<&'a GuestToken>);

/// The room a plan is about, if any.
pub(crate) fn room_of(plan: &Plan) -> Option<&str> {
    match plan {
        Plan::Ignore(_) => None,
        Plan::Track { key, .. } => Some(key.room_id.as_str()),
        Plan::End { room_id, .. } => Some(room_id.as_str()),
    }
}

/// The shared write steps, inside an engine's write transaction.
pub(crate) struct Steps<'t, D: Dialect>(pub(crate) &'t mut D::Tx);

impl<D> Steps<'_, D>
where
    D: Dialect,
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> i64: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<&'q str>: Encode<'q, D::DB> + Type<D::DB>,
{
    /// Applies plans as if one by one, in order: starts of rooms that appear
    /// once (nearly all, in a busy hour) share a few statements, the rest go
    /// one by one; rooms are independent, so each sees its plans in order.
    pub(crate) async fn apply_batch(
        &mut self,
        plans: &[Plan],
        now: Timestamp,
    ) -> Result<(Vec<Applied>, StateDelta), StoreError> {
        let mut delta = StateDelta::default();
        let mut per_room: HashMap<&str, usize> = HashMap::new();
        for room in plans.iter().filter_map(room_of) {
            *per_room.entry(room).or_default() += 1;
        }
        let mut out = vec![Applied::Ignored; plans.len()];
        let (mut at, mut starts) = (Vec::new(), Vec::new());
        for (i, plan) in plans.iter().enumerate() {
            match plan {
                Plan::Track {
                    key,
                    deadline,
                    guest_token,
                } if per_room[key.room_id.as_str()] == 1 => {
                    at.push(i);
                    starts.push((key, *deadline, guest_token.as_ref()));
                }
                _ => out[i] = self.apply(plan, now, &mut delta).await?,
            }
        }
        if !starts.is_empty() {
            let tracked = self.track(&starts, now, &mut delta).await?;
            at.into_iter().zip(tracked).for_each(|(i, a)| out[i] = a);
        }
        Ok((out, delta))
    }

    /// Tracks starts (one per room) in a few statements: one its room's
    /// cutoff covers is recorded as ended, any other inserted as running.
    async fn track(
        &mut self,
        starts: &[Start<'_>],
        now: Timestamp,
        delta: &mut StateDelta,
    ) -> Result<Vec<Applied>, StoreError> {
        use MeetingState::{Ended, Running};
        let rooms: Vec<&str> = starts.iter().map(|s| s.0.room_id.as_str()).collect();
        let mut cutoffs = HashMap::new();
        for r in D::room_cutoffs(&rooms).fetch_all(&mut **self.0).await? {
            cutoffs.insert(r.text("room_id")?, Timestamp(r.int("cutoff")?));
        }
        let late: Vec<bool> = starts
            .iter()
            .map(|(key, ..)| {
                domain::ended_by_cutoff(key, cutoffs.get(key.room_id.as_str()).copied())
            })
            .collect();
        let rows: Vec<NewMeeting> = starts
            .iter()
            .zip(&late)
            .map(|(&(key, deadline, token), &late)| NewMeeting {
                key,
                deadline,
                state: if late { Ended } else { Running },
                guest_token: token.filter(|_| !late),
            })
            .collect();
        let mut new_rooms = HashSet::new();
        for r in D::insert_many(&rows, now).fetch_all(&mut **self.0).await? {
            new_rooms.insert(r.text("room_id")?);
        }
        let is_new = |m: &NewMeeting| new_rooms.contains(m.key.room_id.as_str());
        let inserted: Vec<bool> = rows.iter().map(is_new).collect();
        for (row, new) in rows.iter().zip(&inserted) {
            delta.added(row.state, u64::from(*new));
        }
        let started: Vec<Started> = starts
            .iter()
            .zip(&late)
            .filter(|(_, &late)| !late)
            .map(|(&(key, _, token), _)| (key, token))
            .collect();
        if !started.is_empty() {
            let ended_older = D::started_many(self.0, &started, now).await?;
            delta.moved(Running, Ended, ended_older);
        }
        Ok(late
            .into_iter()
            .zip(inserted)
            .map(|(late, new)| match (late, new) {
                (true, _) => Applied::LateForEndedMeeting,
                (false, true) => Applied::Tracked,
                (false, false) => Applied::AlreadyKnown,
            })
            .collect())
    }

    /// Applies one plan; `now` is the store's clock.
    async fn apply(
        &mut self,
        plan: &Plan,
        now: Timestamp,
        delta: &mut StateDelta,
    ) -> Result<Applied, StoreError> {
        let (room, cutoff, meeting) = match plan {
            Plan::Ignore(_) => return Ok(Applied::Ignored),
            Plan::Track {
                key,
                deadline,
                guest_token,
            } => {
                // `track` answers once per start.
                let start = (key, *deadline, guest_token.as_ref());
                return Ok(self.track(&[start], now, delta).await?[0]);
            }
            Plan::End {
                room_id,
                cutoff,
                meeting,
            } => (room_id, *cutoff, meeting),
        };
        let cutoff = if meeting.is_some() {
            cutoff
        } else {
            // `started_at: null`: the newest open meeting up to `cutoff` decides.
            let row = sqlx::query(
                "SELECT max(started_at) AS newest FROM meetings
                 WHERE room_id = $1 AND started_at <= $2 AND state IN ('running', 'stopping')",
            )
            .bind(room.as_str())
            .bind(cutoff.0)
            .fetch_one(&mut **self.0)
            .await?;
            let newest_open = row.opt_int("newest")?.map(Timestamp);
            match domain::null_start_cutoff(cutoff, newest_open) {
                Some(c) => c,
                None => return Ok(Applied::Ended(0)),
            }
        };
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
        if let Some((key, deadline)) = meeting {
            if self
                .insert(key, *deadline, MeetingState::Ended, now)
                .await?
            {
                delta.added(MeetingState::Ended, 1);
            }
        }
        let ended = sqlx::query(
            "UPDATE meetings SET state = 'ended', finished_at = $3, updated_at = $3
             WHERE room_id = $1 AND started_at <= $2 AND state = 'running'",
        )
        .bind(room.as_str())
        .bind(cutoff.0)
        .bind(now.0)
        .execute(&mut **self.0)
        .await?
        .rows_affected();
        delta.moved(MeetingState::Running, MeetingState::Ended, ended);
        Ok(Applied::Ended(ended))
    }

    /// Inserts a meeting unless it is known; whether it was new.
    pub(crate) async fn insert(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        state: MeetingState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO meetings (room_id, started_at, deadline, state, created_at, updated_at,
                                   finished_at, presence_due)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $5)
             ON CONFLICT (room_id, started_at) DO NOTHING",
        )
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .bind(deadline.0)
        .bind(state.as_str())
        .bind(now.0)
        .bind((!state.is_open()).then_some(now.0))
        .execute(&mut **self.0)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records an alone period's event.
    pub(crate) async fn alone_event(
        &mut self,
        key: &MeetingKey,
        at: i64,
        event: &str,
        participants: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alone_events (room_id, started_at, at, event, participants)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.room_id.as_str())
        .bind(key.started_at.0)
        .bind(at)
        .bind(event)
        .bind(participants)
        .execute(&mut **self.0)
        .await?;
        Ok(())
    }
}
