//! Row decoding shared by both engines: the columns are the same, only the
//! row type differs.

use std::time::Duration;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    ActionRecord, AloneEvent, AloneView, Claim, ForwardClaim, Guard, LimitKind, LimitRule,
    MeetingRecord, MeetingView, PresenceClaim, RoomMeeting, StoreError, WarnClaim,
};
use crate::domain::{AloneAfter, GuestToken, MeetingKey, MeetingState, RoomId, Timestamp};

/// What the store reads from a row: only the four column readers are bound
/// to the engine (one blanket impl), so generic code needs `Row: SqlRow`.
pub(crate) trait SqlRow {
    /// An integer column.
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    /// A blob column.
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;

    /// A text column.
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.opt_text(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is NULL")))
    }

    fn key(&self) -> Result<MeetingKey, StoreError> {
        let room = self.text("room_id")?;
        Ok(MeetingKey {
            room_id: RoomId::parse(&room)
                .map_err(|e| StoreError::Corrupt(format!("room id: {e}")))?,
            started_at: Timestamp(self.int("started_at")?),
        })
    }

    fn state(&self) -> Result<MeetingState, StoreError> {
        let state = self.text("state")?;
        MeetingState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))
    }

    fn view(&self) -> Result<MeetingView, StoreError> {
        Ok(MeetingView {
            key: self.key()?,
            deadline: Timestamp(self.int("deadline")?),
            state: self.state()?,
            alone: AloneView {
                participants: self.opt_int("participants")?,
                since: self.opt_int("alone_since")?.map(Timestamp),
                deadline: self.opt_int("alone_deadline")?.map(Timestamp),
                ended: self.int("ended_alone")? != 0,
            },
        })
    }

    /// A stored token that no longer parses is as good as none.
    fn guest_token(&self) -> Result<Option<GuestToken>, StoreError> {
        Ok(self
            .opt_text("guest_token")?
            .as_deref()
            .and_then(GuestToken::parse))
    }

    fn room_meeting(&self) -> Result<RoomMeeting, StoreError> {
        Ok(RoomMeeting {
            view: self.view()?,
            guest_token: self.guest_token()?,
        })
    }

    fn record(&self) -> Result<MeetingRecord, StoreError> {
        Ok(MeetingRecord {
            view: self.view()?,
            tracked_at: Timestamp(self.int("created_at")?),
            updated_at: Timestamp(self.int("updated_at")?),
            finished_at: self.opt_int("finished_at")?.map(Timestamp),
            attempts: self.int("attempts")?,
        })
    }

    fn action(&self) -> Result<ActionRecord, StoreError> {
        let t = |c: &str| Ok::<_, StoreError>(self.opt_int(c)?.map(Timestamp));
        Ok(ActionRecord {
            at: Timestamp(self.int("at")?),
            action: self.text("action")?,
            room_id: self.text("room_id")?,
            started_at: t("started_at")?,
            old_deadline: t("old_deadline")?,
            new_deadline: t("new_deadline")?,
            detail: self.opt_text("detail")?,
            caller: self.text("caller")?,
        })
    }

    fn alone_event(&self) -> Result<AloneEvent, StoreError> {
        Ok(AloneEvent {
            started_at: Timestamp(self.int("started_at")?),
            at: Timestamp(self.int("at")?),
            event: self.text("event")?,
            participants: self.opt_int("participants")?,
        })
    }

    fn warn_claim(&self) -> Result<WarnClaim, StoreError> {
        Ok(WarnClaim {
            key: self.key()?,
            deadline: Timestamp(self.int("deadline")?),
            alone: self.int("alone")? != 0,
            guest_token: self.guest_token()?,
            attempts: self.int("warn_attempts")?,
        })
    }

    fn claim(&self) -> Result<Claim, StoreError> {
        Ok(Claim {
            key: self.key()?,
            deadline: Timestamp(self.int("deadline")?),
            alone: self.int("alone")? != 0,
            attempts: self.int("attempts")?,
            guard: self.guard()?,
        })
    }

    fn presence_claim(&self) -> Result<PresenceClaim, StoreError> {
        Ok(PresenceClaim {
            key: self.key()?,
            until: Timestamp(self.int("presence_due")?),
            alone_since: self.opt_int("alone_since")?.map(Timestamp),
        })
    }

    /// The `cutoff` and `newer` (0 or 1) columns.
    fn guard(&self) -> Result<Guard, StoreError> {
        Ok(Guard {
            cutoff: self.opt_int("cutoff")?.map(Timestamp),
            newer_meeting: self.int("newer")? != 0,
        })
    }

    /// A claimed outbox row (`id, lane, body, signature, content_type,
    /// received_at, attempts`), claimed at `claimed_at`.
    fn forward_claim(&self, claimed_at: Timestamp) -> Result<ForwardClaim, StoreError> {
        Ok(ForwardClaim {
            id: self.int("id")?,
            lane: self.text("lane")?,
            body: self.bytes("body")?,
            signature: self.text("signature")?,
            content_type: self.opt_text("content_type")?,
            received_at: Timestamp(self.int("received_at")?),
            attempts: self.int("attempts")?,
            claimed_at,
        })
    }

    fn limit_rule(&self) -> Result<LimitRule, StoreError> {
        let kind = match self.text("kind")?.as_str() {
            "room" => LimitKind::Room,
            "prefix" => LimitKind::Prefix,
            other => return Err(StoreError::Corrupt(format!("limit kind {other:?}"))),
        };
        Ok(LimitRule {
            kind,
            key: self.text("key")?,
            limit: self
                .opt_int("limit_ms")?
                .map(|ms| Duration::from_millis(ms.max(1) as u64)),
            alone_after: self.opt_int("alone_after_ms")?.map(AloneAfter::from_millis),
        })
    }
}

impl<R: Row> SqlRow for R
where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(col)?)
    }
}
