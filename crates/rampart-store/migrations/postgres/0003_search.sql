-- The blind search index (as SQLite's migration 7 left it). Each message's terms are stored only
-- as keyed hashes (HMAC-SHA256 under the channel's search key, truncated to 12 bytes); the search
-- key is stored only wrapped by the KEK. A channel has one active key and, while `rampart search
-- rebuild` runs, a second one being built (`retiring`: replaced, its postings being removed).
CREATE TABLE search_keys (
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL CHECK (version > 0),
    kek_version INTEGER NOT NULL REFERENCES kek_versions (version),
    wrapped     BYTEA NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('active', 'building', 'retiring')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, version)
);
CREATE INDEX search_keys_by_kek ON search_keys (kek_version);

-- Postings: (token, message position). A token is already keyed by its channel's search key, so
-- channel and key version need no column; "newest first" is a backward range scan of one token.
CREATE TABLE search_index (
    token         BYTEA NOT NULL CHECK (octet_length(token) = 12),
    message_rowid BIGINT NOT NULL,
    PRIMARY KEY (token, message_rowid)
);
