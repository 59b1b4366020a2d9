-- Schema version 1: the topologies and their deckies. Portable SQL: the same
-- file runs on PostgreSQL and on SQLite.

-- Every scope that exists; '' is the fleet, which always exists. A topology
-- is created by the first Put into it and outlives its last decky.
CREATE TABLE servicelive_topologies (
	id TEXT NOT NULL PRIMARY KEY
);

-- One row per decky: the decky as a JSON document whose config values carry
-- their Go types (see the package documentation).
CREATE TABLE servicelive_deckies (
	topology TEXT NOT NULL REFERENCES servicelive_topologies (id),
	name     TEXT NOT NULL,
	doc      TEXT NOT NULL,
	PRIMARY KEY (topology, name)
);

INSERT INTO servicelive_topologies (id) VALUES ('');
