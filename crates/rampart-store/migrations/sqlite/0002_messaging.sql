-- Channels, membership, messages and the per-channel event log. `channels.last_seq` is the
-- channel's event counter: each event takes the next value in the transaction that writes it,
-- so `seq` is dense and increasing per channel.
CREATE TABLE channels (
    id         TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name       TEXT UNIQUE,
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

CREATE TABLE channel_members (
    channel_id    TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at     INTEGER NOT NULL,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX channel_members_by_user ON channel_members (user_id, channel_id);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY NOT NULL,
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    sender_id   TEXT NOT NULL REFERENCES users (id),
    -- NULL once deleted: the body is destroyed, the tombstone stays.
    body        TEXT,
    thread_id   TEXT REFERENCES messages (id),
    client_id   TEXT,
    created_at  INTEGER NOT NULL,
    edited_at   INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    reply_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel_id, seq),
    CHECK (deleted = 1 OR body IS NOT NULL)
) STRICT;
CREATE UNIQUE INDEX messages_by_client_id ON messages (channel_id, sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_by_thread ON messages (thread_id, seq) WHERE thread_id IS NOT NULL;

-- Events reference the row they concern; replay reads its current state, so a deleted body is
-- gone from the log too.
CREATE TABLE events (
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT REFERENCES messages (id),
    user_id    TEXT REFERENCES users (id),
    at         INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq)
) STRICT, WITHOUT ROWID;
