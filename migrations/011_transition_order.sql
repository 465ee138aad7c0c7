-- When the current card state / user status took effect: Marqeta's transition `created_time`, or the time of the admin
-- change. A transition webhook older than it arrived out of order and is not applied over a newer state.
ALTER TABLE cards ADD COLUMN state_since timestamptz;
ALTER TABLE users ADD COLUMN status_since timestamptz;
