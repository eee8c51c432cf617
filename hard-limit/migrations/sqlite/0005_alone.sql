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
ALTER TABLE meetings ADD COLUMN presence_due INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN presence_owner TEXT;
ALTER TABLE meetings ADD COLUMN participants INTEGER;
ALTER TABLE meetings ADD COLUMN checked_at INTEGER;
ALTER TABLE meetings ADD COLUMN alone_since INTEGER;
ALTER TABLE meetings ADD COLUMN alone_deadline INTEGER;
-- 1 when the scheduler ended it for the alone rule (its state is 'shut_down').
ALTER TABLE meetings ADD COLUMN ended_alone INTEGER NOT NULL DEFAULT 0;
UPDATE meetings SET presence_due = CAST(strftime('%s', 'now') AS INTEGER) * 1000 WHERE state = 'running';
CREATE INDEX meetings_presence ON meetings (presence_due) WHERE state = 'running';
CREATE INDEX meetings_alone ON meetings (alone_deadline) WHERE state = 'running';

-- Each alone period's story, for the history: 'alone' (clock started),
-- 'company' (a check counted two or more), 'cancelled' (someone joined
-- between the due end and the DELETE), 'warned' (the alone warning went
-- out), 'ended' (ended alone).
CREATE TABLE alone_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    event        TEXT    NOT NULL CHECK (event IN ('alone', 'company', 'warned', 'cancelled', 'ended')),
    participants INTEGER
);
CREATE INDEX alone_events_meeting ON alone_events (room_id, started_at, id);
CREATE INDEX alone_events_at ON alone_events (at);

-- A rule may now set the alone rule without a limit of its own (`limit_ms`
-- NULL: the default applies). `alone_after_ms`: NULL inherits, 0 turns the
-- rule off for the room or prefix. SQLite cannot drop a NOT NULL, so the
-- (small) table is copied.
CREATE TABLE room_limits_new (
    kind           TEXT    NOT NULL CHECK (kind IN ('room', 'prefix')),
    key            TEXT    NOT NULL,
    limit_ms       INTEGER CHECK (limit_ms > 0),
    alone_after_ms INTEGER CHECK (alone_after_ms >= 0),
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
INSERT INTO room_limits_new (kind, key, limit_ms, updated_at)
    SELECT kind, key, limit_ms, updated_at FROM room_limits;
DROP TABLE room_limits;
ALTER TABLE room_limits_new RENAME TO room_limits;
