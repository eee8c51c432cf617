-- The PostgreSQL schema: the same rows as SQLite's (times are milliseconds
-- since the Unix epoch, UTC, as BIGINT), so both engines answer the same
-- questions the same way and one test suite covers both.
CREATE TABLE meetings (
    room_id     TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    deadline    BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN
                  ('running', 'stopping', 'shut_down', 'ended', 'skipped', 'failed')),
    lease_owner TEXT,
    lease_until BIGINT,
    attempts    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (room_id, started_at)
);

-- Partial indexes: "earliest running deadline" and "expired leases" stay
-- O(log n) however many finished meetings the table holds.
CREATE INDEX meetings_due ON meetings (deadline) WHERE state = 'running';
CREATE INDEX meetings_lease ON meetings (lease_until) WHERE state = 'stopping';
CREATE INDEX meetings_finished ON meetings (finished_at) WHERE finished_at IS NOT NULL;

-- Per room, the latest "meetings started at or before this are over".
CREATE TABLE room_shutdowns (
    room_id TEXT   NOT NULL PRIMARY KEY,
    cutoff  BIGINT NOT NULL
);
