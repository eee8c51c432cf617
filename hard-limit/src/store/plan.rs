//! Applying a [`Plan`]: the sequence of steps is written once, here; each
//! engine supplies the SQL of the steps ([`PlanSteps`]), run inside its own
//! write transaction (which holds the engine's lock: SQLite's single
//! writer, PostgreSQL's per-room advisory locks) and committed by it.
//!
//! Each step's effect on the per-state counts is added up as it runs
//! (exact: inserted or not, how many rows an update ended) and returned
//! with the answers; the caller applies the sum once the transaction
//! commits.

use std::collections::{HashMap, HashSet};

use super::{Applied, StateDelta, StoreError};
use crate::domain::{self, GuestToken, MeetingKey, MeetingState, Plan, RoomId, Timestamp};

/// A meeting to insert unless it is known ([`PlanSteps::insert_many`]).
pub(crate) struct NewMeeting<'a> {
    pub key: &'a MeetingKey,
    pub deadline: Timestamp,
    pub state: MeetingState,
    pub guest_token: Option<&'a GuestToken>,
}

/// One engine's SQL for the steps of [`apply`], inside a write transaction.
pub(crate) trait PlanSteps {
    /// Inserts a meeting unless it is known; whether it was new.
    async fn insert(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        state: MeetingState,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The start of the room's newest open meeting started at or before
    /// `upto`.
    async fn newest_open(
        &mut self,
        room: &RoomId,
        upto: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;

    /// Raises the room's shutdown cutoff to `cutoff` (never lowers it).
    async fn raise_cutoff(&mut self, room: &RoomId, cutoff: Timestamp) -> Result<(), StoreError>;

    /// Ends the room's `running` meetings started at or before `upto`; how
    /// many.
    async fn end_running(
        &mut self,
        room: &RoomId,
        upto: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    // Starts, one or many at once (each statement covers them all): see
    // `track`.

    /// The shutdown cutoffs of those `rooms` that have one.
    async fn room_cutoffs(
        &mut self,
        rooms: &[&str],
    ) -> Result<HashMap<String, Timestamp>, StoreError>;

    /// Inserts each meeting (each of its own room) unless it is known (a
    /// final state with `finished_at = now`); the rooms whose meeting was
    /// new.
    async fn insert_many(
        &mut self,
        meetings: &[NewMeeting<'_>],
        now: Timestamp,
    ) -> Result<HashSet<String>, StoreError>;

    /// For each started meeting (each of its own room): ends the room's
    /// older `running` meetings (a newer start proves them over; `stopping`
    /// rows are left to their worker, which re-checks) and stores its guest
    /// token where the row holds another (a meeting tracked from a list
    /// without it; one recorded as not warnable for want of a token becomes
    /// warnable). Returns how many older meetings it ended.
    async fn started_many(
        &mut self,
        started: &[(&MeetingKey, Option<&GuestToken>)],
        now: Timestamp,
    ) -> Result<u64, StoreError>;
}

/// The room a plan is about, if any.
pub(crate) fn room_of(plan: &Plan) -> Option<&str> {
    match plan {
        Plan::Ignore(_) => None,
        Plan::Track { key, .. } => Some(key.room_id.as_str()),
        Plan::End { room_id, .. } => Some(room_id.as_str()),
    }
}

/// Applies a batch of plans, with the answers and the effect of applying
/// them one by one in order: the starts of rooms that appear once in the
/// batch (nearly every delivery of a busy hour) take a few statements
/// between them, whatever their number; the rest go one by one, in order.
/// Rooms are independent of each other, so each room still sees its plans
/// in the batch's order.
pub(crate) async fn apply_batch<S: PlanSteps>(
    steps: &mut S,
    plans: &[Plan],
    now: Timestamp,
) -> Result<(Vec<Applied>, StateDelta), StoreError> {
    let mut delta = StateDelta::default();
    let mut per_room: HashMap<&str, usize> = HashMap::new();
    for room in plans.iter().filter_map(room_of) {
        *per_room.entry(room).or_default() += 1;
    }
    let mut out = vec![Applied::Ignored; plans.len()];
    let mut at = Vec::new();
    let mut starts = Vec::new();
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
            _ => out[i] = apply(steps, plan, now, &mut delta).await?,
        }
    }
    if !starts.is_empty() {
        for (i, applied) in at
            .into_iter()
            .zip(track(steps, &starts, now, &mut delta).await?)
        {
            out[i] = applied;
        }
    }
    Ok((out, delta))
}

/// A meeting's start: its key, deadline and guest token.
type Start<'a> = (&'a MeetingKey, Timestamp, Option<&'a GuestToken>);

/// Tracks started meetings, each of its own room, in a few statements
/// whatever their number: a start the room's cutoff covers is recorded as
/// ended (eyeson reported its end before its start reached us); any other
/// is inserted as running unless it is known, ends its room's older
/// meetings and stores a newer guest token. One result per start.
async fn track<S: PlanSteps>(
    steps: &mut S,
    starts: &[Start<'_>],
    now: Timestamp,
    delta: &mut StateDelta,
) -> Result<Vec<Applied>, StoreError> {
    let rooms: Vec<&str> = starts.iter().map(|s| s.0.room_id.as_str()).collect();
    let cutoffs = steps.room_cutoffs(&rooms).await?;
    let late: Vec<bool> = starts
        .iter()
        .map(|(key, ..)| domain::ended_by_cutoff(key, cutoffs.get(key.room_id.as_str()).copied()))
        .collect();
    let rows: Vec<NewMeeting> = starts
        .iter()
        .zip(&late)
        .map(|(&(key, deadline, token), &late)| NewMeeting {
            key,
            deadline,
            state: if late {
                MeetingState::Ended
            } else {
                MeetingState::Running
            },
            guest_token: if late { None } else { token },
        })
        .collect();
    let new_rooms = steps.insert_many(&rows, now).await?;
    let inserted: Vec<bool> = rows
        .iter()
        .map(|m| new_rooms.contains(m.key.room_id.as_str()))
        .collect();
    for (row, new) in rows.iter().zip(&inserted) {
        delta.added(row.state, u64::from(*new));
    }
    let started: Vec<(&MeetingKey, Option<&GuestToken>)> = starts
        .iter()
        .zip(&late)
        .filter(|(_, &late)| !late)
        .map(|(&(key, _, token), _)| (key, token))
        .collect();
    if !started.is_empty() {
        let ended_older = steps.started_many(&started, now).await?;
        delta.moved(MeetingState::Running, MeetingState::Ended, ended_older);
    }
    Ok(late
        .into_iter()
        .zip(inserted)
        .map(|(late, new)| {
            if late {
                Applied::LateForEndedMeeting
            } else if new {
                Applied::Tracked
            } else {
                Applied::AlreadyKnown
            }
        })
        .collect())
}

/// Applies one plan through `steps`; `now` is the store's clock (the
/// database's, where it is the source of time).
async fn apply<S: PlanSteps>(
    steps: &mut S,
    plan: &Plan,
    now: Timestamp,
    delta: &mut StateDelta,
) -> Result<Applied, StoreError> {
    match plan {
        Plan::Ignore(_) => Ok(Applied::Ignored),
        Plan::Track {
            key,
            deadline,
            guest_token,
        } => track(steps, &[(key, *deadline, guest_token.as_ref())], now, delta)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a start was tracked without a result".into())),
        Plan::End {
            room_id,
            cutoff,
            meeting,
        } => {
            let cutoff = if meeting.is_some() {
                *cutoff
            } else {
                // `started_at: null`: `cutoff` is an upper bound; the newest
                // meeting open now decides (see the domain).
                let newest_open = steps.newest_open(room_id, *cutoff).await?;
                match domain::null_start_cutoff(*cutoff, newest_open) {
                    Some(c) => c,
                    None => return Ok(Applied::Ended(0)),
                }
            };
            steps.raise_cutoff(room_id, cutoff).await?;
            if let Some((key, deadline)) = meeting {
                if steps
                    .insert(key, *deadline, MeetingState::Ended, now)
                    .await?
                {
                    delta.added(MeetingState::Ended, 1);
                }
            }
            let ended = steps.end_running(room_id, cutoff, now).await?;
            delta.moved(MeetingState::Running, MeetingState::Ended, ended);
            Ok(Applied::Ended(ended))
        }
    }
}
