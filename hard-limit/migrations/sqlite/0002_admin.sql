-- Operator actions (extend, end, limit changes): who, when, what moved.
-- Pruned with the meetings' retention.
CREATE TABLE admin_actions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    action       TEXT    NOT NULL,
    room_id      TEXT    NOT NULL,
    started_at   INTEGER,
    old_deadline INTEGER,
    new_deadline INTEGER,
    detail       TEXT,
    caller       TEXT    NOT NULL
);
CREATE INDEX admin_actions_room ON admin_actions (room_id, id);
CREATE INDEX admin_actions_started ON admin_actions (started_at) WHERE started_at IS NOT NULL;
CREATE INDEX admin_actions_at ON admin_actions (at);

-- Per-room and per-prefix limits set at run time (and seeded from the
-- limits file at start): shared by every process on the store; they apply
-- to meetings tracked afterwards.
CREATE TABLE room_limits (
    kind       TEXT    NOT NULL CHECK (kind IN ('room', 'prefix')),
    key        TEXT    NOT NULL,
    limit_ms   INTEGER NOT NULL CHECK (limit_ms > 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
