-- The in-meeting warning (`--warn-before`): joined as a guest with the
-- room's guest token, then a chat message. Claimed under a lease like a
-- shutdown, in columns of its own so the two never contend for one lease.
--
-- `warn_for` is the deadline the last claim or outcome was for. A warning is
-- due when it differs from the meeting's current deadline (never warned, or
-- the deadline moved since: any change re-arms it) and `deadline - warn`
-- has come, or when a claim for the current deadline lapsed (`warn_state`
-- 'claimed' with `warn_until` passed: an expired lease or a deferred retry).
ALTER TABLE meetings ADD COLUMN guest_token TEXT;
ALTER TABLE meetings ADD COLUMN warn_for BIGINT;
ALTER TABLE meetings ADD COLUMN warn_state TEXT CHECK (warn_state IN
    ('claimed', 'sent', 'ended', 'no_guest_token', 'skipped', 'failed'));
ALTER TABLE meetings ADD COLUMN warn_owner TEXT;
ALTER TABLE meetings ADD COLUMN warn_until BIGINT;
ALTER TABLE meetings ADD COLUMN warn_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN warned_at BIGINT;
