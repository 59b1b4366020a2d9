-- Schema version 2: the outbox, the events of successful mutations that the
-- Bus has not taken yet (servicelive.Outbox). Portable SQL.

-- One row per event. id is the event ID, a UUIDv7: ordering by it orders
-- the events by time. A relay claims a row by setting owner (its handle)
-- and lease_until (Unix milliseconds); other handles skip it until then.
CREATE TABLE servicelive_outbox (
	id          TEXT NOT NULL PRIMARY KEY,
	doc         TEXT NOT NULL,
	owner       TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0
);
