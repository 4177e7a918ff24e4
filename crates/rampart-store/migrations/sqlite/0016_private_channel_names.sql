-- Channel names are unique among public channels only (issue 16, item 3). A name unique across
-- every channel let anyone learn that a private channel of a given name exists: creating or
-- renaming to it answered 409. Private channels' names now collide with nothing (two private
-- channels, or a private and a public one, may share a name; clients tell them apart by id), and
-- DMs have no name at all.
--
-- SQLite cannot drop a column's UNIQUE constraint, so the table is rebuilt (SQLite's own
-- procedure: new table, copy, drop, rename; the migration runs with foreign keys off).
-- `SELECT *` copies the columns in order, so a column added to `channels` since 0002 and not
-- named here fails this migration loudly instead of being lost. `legacy_alter_table` keeps the
-- rename from re-checking the triggers on `messages`, which name `channels` and would otherwise
-- be refused while it is briefly missing.
PRAGMA legacy_alter_table = ON;

CREATE TABLE channels_rebuilt (
    id         TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name       TEXT,
    topic      TEXT NOT NULL DEFAULT '',
    created_by TEXT REFERENCES users (id),
    created_at INTEGER NOT NULL,
    archived   INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
    last_seq   INTEGER NOT NULL DEFAULT 0,
    -- "user-a:user-b" (sorted) for direct-message channels: one per pair.
    dm_key     TEXT UNIQUE,
    CHECK ((kind = 'dm') = (name IS NULL)),
    CHECK ((kind = 'dm') = (dm_key IS NOT NULL))
) STRICT;
INSERT INTO channels_rebuilt SELECT * FROM channels;
DROP TABLE channels;
ALTER TABLE channels_rebuilt RENAME TO channels;

PRAGMA legacy_alter_table = OFF;

CREATE UNIQUE INDEX channels_public_name ON channels (name) WHERE kind = 'public';
