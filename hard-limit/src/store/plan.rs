//! Applying a [`Plan`]: the sequence of steps is written once, here; each
//! engine supplies the SQL of the steps ([`PlanSteps`]), run inside its own
//! write transaction (which holds the engine's lock: SQLite's single
//! writer, PostgreSQL's per-room advisory locks) and committed by it.
//!
//! Each step's effect on the per-state counts is [`record`]ed as it runs
//! (exact: inserted or not, how many rows an update ended); the
//! [`super::Store`] wrapper applies the sum once the transaction commits.
//! An engine that retried a transaction would have to start a new
//! [`crate::meeting_gauges::counting`] scope for the retry.

use super::{Applied, StoreError};
use crate::domain::{self, GuestToken, MeetingKey, MeetingState, Plan, RoomId, Timestamp};
use crate::meeting_gauges::record;

/// One engine's SQL for the steps of [`apply`], inside a write transaction.
pub(crate) trait PlanSteps {
    /// The room's shutdown cutoff, if eyeson has reported one.
    async fn room_cutoff(&mut self, room: &RoomId) -> Result<Option<Timestamp>, StoreError>;

    /// Inserts a meeting unless it is known; whether it was new.
    async fn insert(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        state: MeetingState,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Tracks a running meeting unless it is known (whether it was new),
    /// ends the room's older `running` meetings (a newer start proves them
    /// over; `stopping` rows are left to their worker, which re-checks), and
    /// stores a guest token newer than the one known (a meeting tracked from
    /// a list without it; one recorded as not warnable for want of a token
    /// becomes warnable). Returns whether it was new and how many older
    /// meetings it ended.
    async fn track(
        &mut self,
        key: &MeetingKey,
        deadline: Timestamp,
        guest_token: Option<&GuestToken>,
        now: Timestamp,
    ) -> Result<(bool, u64), StoreError>;

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
}

/// Applies one plan through `steps`; `now` is the store's clock (the
/// database's, where it is the source of time).
pub(crate) async fn apply<S: PlanSteps>(
    steps: &mut S,
    plan: &Plan,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    match plan {
        Plan::Ignore(_) => Ok(Applied::Ignored),
        Plan::Track {
            key,
            deadline,
            guest_token,
        } => {
            let cutoff = steps.room_cutoff(&key.room_id).await?;
            if domain::ended_by_cutoff(key, cutoff) {
                if steps
                    .insert(key, *deadline, MeetingState::Ended, now)
                    .await?
                {
                    record(|d| d.added(MeetingState::Ended, 1));
                }
                return Ok(Applied::LateForEndedMeeting);
            }
            let (inserted, ended_older) = steps
                .track(key, *deadline, guest_token.as_ref(), now)
                .await?;
            record(|d| {
                d.added(MeetingState::Running, u64::from(inserted));
                d.moved(MeetingState::Running, MeetingState::Ended, ended_older);
            });
            Ok(if inserted {
                Applied::Tracked
            } else {
                Applied::AlreadyKnown
            })
        }
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
                    record(|d| d.added(MeetingState::Ended, 1));
                }
            }
            let ended = steps.end_running(room_id, cutoff, now).await?;
            record(|d| d.moved(MeetingState::Running, MeetingState::Ended, ended));
            Ok(Applied::Ended(ended))
        }
    }
}
