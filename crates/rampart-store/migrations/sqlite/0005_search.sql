-- The blind search index. Each message's terms are stored only as keyed hashes (HMAC-SHA256
-- under the channel's search key, truncated to 12 bytes); the search key is stored only wrapped
-- by the KEK. A channel has one active key and, while `rampart search rebuild` runs, a second one
-- being built; new and edited messages are indexed under both.
CREATE TABLE search_keys (
    channel_id        TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    version           INTEGER NOT NULL CHECK (version > 0),
    kek_version       INTEGER NOT NULL REFERENCES kek_versions (version),
    wrapped           BLOB NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('active', 'building')),
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (channel_id, version)
) STRICT, WITHOUT ROWID;
CREATE INDEX search_keys_by_kek ON search_keys (kek_version);

CREATE TABLE search_index (
    channel_id  TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    token       BLOB NOT NULL,
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (channel_id, key_version, token, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX search_index_by_message ON search_index (message_id);
CREATE INDEX messages_by_time ON messages (created_at, id);
