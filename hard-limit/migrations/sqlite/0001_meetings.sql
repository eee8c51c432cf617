-- One row per meeting: (room_id, started_at) is its identity. Times are
-- milliseconds since the Unix epoch (UTC).
CREATE TABLE meetings (
    room_id     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN
                  ('running', 'stopping', 'shut_down', 'ended', 'skipped', 'failed')),
    lease_owner TEXT,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (room_id, started_at)
);

-- The scheduler's questions ("earliest running deadline", "expired leases")
-- are answered from these partial indexes: O(log n) however many finished
-- meetings the table holds.
CREATE INDEX meetings_due ON meetings (deadline) WHERE state = 'running';
CREATE INDEX meetings_lease ON meetings (lease_until) WHERE state = 'stopping';
CREATE INDEX meetings_finished ON meetings (finished_at) WHERE finished_at IS NOT NULL;

-- Per room, the latest "meetings started at or before this are over" that
-- eyeson reported, so a late "running" delivery cannot resurrect a meeting.
CREATE TABLE room_shutdowns (
    room_id TEXT    NOT NULL PRIMARY KEY,
    cutoff  INTEGER NOT NULL
);
