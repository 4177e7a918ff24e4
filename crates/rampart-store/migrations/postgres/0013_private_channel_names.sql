-- Channel names are unique among public channels only (issue 16, item 3). A name unique across
-- every channel let anyone learn that a private channel of a given name exists: creating or
-- renaming to it answered 409. Private channels' names now collide with nothing (two private
-- channels, or a private and a public one, may share a name; clients tell them apart by id), and
-- DMs have no name at all.
ALTER TABLE channels DROP CONSTRAINT channels_name_key;
CREATE UNIQUE INDEX channels_public_name ON channels (name) WHERE kind = 'public';
