-- The alone rule (`--alone-after`): a meeting whose counted online
-- participants have been at most one for that long is ended.
--
-- The presence check is a leased job of its own: due at `presence_due`; a
-- claim sets `presence_owner` and moves `presence_due` to the lease's end,
-- so an abandoned claim is simply due again. A meeting is first due when it
-- is tracked; those running at this migration, now. `alone_since` is
-- the alone clock: set by the first check that counts at most one, cleared by
-- any that counts two or more; `alone_deadline` is when the meeting ends if
-- the clock keeps running (the scheduler claims it like a deadline).
ALTER TABLE meetings ADD COLUMN presence_due BIGINT NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN presence_owner TEXT;
ALTER TABLE meetings ADD COLUMN participants BIGINT;
ALTER TABLE meetings ADD COLUMN checked_at BIGINT;
ALTER TABLE meetings ADD COLUMN alone_since BIGINT;
ALTER TABLE meetings ADD COLUMN alone_deadline BIGINT;
-- 1 when the scheduler ended it for the alone rule (its state is 'shut_down').
ALTER TABLE meetings ADD COLUMN ended_alone BIGINT NOT NULL DEFAULT 0;
UPDATE meetings SET presence_due = CAST(extract(epoch FROM now()) * 1000 AS BIGINT) WHERE state = 'running';
CREATE INDEX meetings_presence ON meetings (presence_due) WHERE state = 'running';
CREATE INDEX meetings_alone ON meetings (alone_deadline) WHERE state = 'running';

-- Each alone period's story, for the history: 'alone' (clock started),
-- 'company' (a check counted two or more), 'cancelled' (someone joined
-- between the due end and the DELETE), 'warned' (the alone warning went
-- out), 'ended' (ended alone).
CREATE TABLE alone_events (
    id           BIGSERIAL PRIMARY KEY,
    room_id      TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    event        TEXT   NOT NULL CHECK (event IN ('alone', 'company', 'warned', 'cancelled', 'ended')),
    participants BIGINT
);
CREATE INDEX alone_events_meeting ON alone_events (room_id, started_at, id);
CREATE INDEX alone_events_at ON alone_events (at);

-- A rule may now set the alone rule without a limit of its own (`limit_ms`
-- NULL: the default applies). `alone_after_ms`: NULL inherits, 0 turns the
-- rule off for the room or prefix.
ALTER TABLE room_limits ALTER COLUMN limit_ms DROP NOT NULL;
ALTER TABLE room_limits ADD COLUMN alone_after_ms BIGINT CHECK (alone_after_ms >= 0);
