-- The forwarding outbox (`--forward-to`): every delivery the service
-- acknowledged, written in the same transaction as the delivery's plan, and
-- deleted once the app's receiver took it (or it expired or was refused).
--
-- `lane` orders deliveries: only the lowest `id` of a lane is ever claimed,
-- so a lane's deliveries go out one after the other (a lane per room; see
-- src/forward.rs). A claim is a lease (`lease_owner`, `lease_until`), like a
-- shutdown's; `next_at` is when the entry may be tried (again).
CREATE TABLE forward_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    lane         TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    signature    TEXT    NOT NULL,
    content_type TEXT,
    received_at  INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT
);
CREATE INDEX forward_outbox_lane ON forward_outbox (lane, id);
CREATE INDEX forward_outbox_due ON forward_outbox (next_at);
