-- The search index as postings: (token, message rowid). The channel and key version need no
-- column of their own, since a token is already keyed by its channel's search key; the message is
-- named by its integer rowid, which grows with insertion, so "newest first" is a backward range
-- scan of one token's postings. Much smaller and faster than 0005's layout; the index is rebuilt
-- from the sealed messages at the next start (the search keys are dropped to trigger it).
DROP TABLE search_index;
DROP TABLE search_keys;
-- `retiring`: replaced by a rebuilt key, its postings being removed.
CREATE TABLE search_keys (
    channel_id        TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    version           INTEGER NOT NULL CHECK (version > 0),
    kek_version       INTEGER NOT NULL REFERENCES kek_versions (version),
    wrapped           BLOB NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('active', 'building', 'retiring')),
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (channel_id, version)
) STRICT, WITHOUT ROWID;
CREATE INDEX search_keys_by_kek ON search_keys (kek_version);
CREATE TABLE search_index (
    token         BLOB NOT NULL,
    message_rowid INTEGER NOT NULL,
    PRIMARY KEY (token, message_rowid)
) STRICT, WITHOUT ROWID;
DROP INDEX messages_by_time;
