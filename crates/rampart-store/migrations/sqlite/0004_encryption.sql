-- Encryption at rest. Message bodies are stored sealed (XChaCha20-Poly1305) under their channel's
-- data key of one epoch; data keys are stored only wrapped by a key-encryption key (KEK) whose
-- material lives in key_dir, never here. `kek_versions` keeps each KEK's key check value, so a
-- wrong key_dir is detected at start.
--
-- `messages` is rebuilt (SQLite cannot change a CHECK constraint in place), following SQLite's
-- documented procedure: copy, drop, rename. Migrations run on a connection with foreign keys off
-- (the store opens it so), which the drop needs while `events` still points at the old table.
-- Bodies stored in clear before this migration move to `legacy_body`; the server seals them
-- at its next start and clears the column.
CREATE TABLE kek_versions (
    version     INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),
    check_value BLOB NOT NULL,
    -- active: wraps new data keys (exactly one); retiring: still wraps some; retired: wraps none
    -- and its file may be gone.
    state       TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
) STRICT;
CREATE UNIQUE INDEX kek_versions_one_active ON kek_versions (state) WHERE state = 'active';

CREATE TABLE data_keys (
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL CHECK (epoch > 0),
    kek_version  INTEGER NOT NULL REFERENCES kek_versions (version),
    wrapped      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Messages sealed under this key (kept by the trigger below), for the epoch limit.
    sealed_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, epoch)
) STRICT, WITHOUT ROWID;
CREATE INDEX data_keys_by_kek ON data_keys (kek_version);

CREATE TABLE messages_sealed (
    id          TEXT PRIMARY KEY NOT NULL,
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    sender_id   TEXT NOT NULL REFERENCES users (id),
    -- The sealed body; NULL once deleted (the body is destroyed, the tombstone stays).
    body        BLOB,
    -- The epoch of the channel's data key that sealed `body`.
    key_epoch   INTEGER,
    -- A body stored in clear before encryption at rest, until the server seals it.
    legacy_body TEXT,
    thread_id   TEXT REFERENCES messages (id),
    client_id   TEXT,
    created_at  INTEGER NOT NULL,
    edited_at   INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    reply_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel_id, seq),
    FOREIGN KEY (channel_id, key_epoch) REFERENCES data_keys (channel_id, epoch),
    CHECK ((body IS NULL) = (key_epoch IS NULL)),
    CHECK (deleted = 1 OR body IS NOT NULL OR legacy_body IS NOT NULL)
) STRICT;

INSERT INTO messages_sealed
    (id, channel_id, seq, sender_id, body, key_epoch, legacy_body, thread_id, client_id, created_at, edited_at, deleted, reply_count)
    SELECT id, channel_id, seq, sender_id, NULL, NULL, body, thread_id, client_id, created_at, edited_at, deleted, reply_count
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_sealed RENAME TO messages;

CREATE UNIQUE INDEX messages_by_client_id ON messages (channel_id, sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_by_thread ON messages (thread_id, seq) WHERE thread_id IS NOT NULL;
CREATE INDEX messages_legacy ON messages (id) WHERE legacy_body IS NOT NULL;

-- As in 0003, plus the count of messages sealed under the data key.
CREATE TRIGGER messages_created AFTER INSERT ON messages
BEGIN
    UPDATE channels SET last_seq = NEW.seq WHERE id = NEW.channel_id;
    INSERT INTO events (channel_id, seq, kind, message_id, user_id, at)
        VALUES (NEW.channel_id, NEW.seq, 'message.created', NEW.id, NULL, NEW.created_at);
    UPDATE messages SET reply_count = reply_count + 1 WHERE NEW.thread_id IS NOT NULL AND id = NEW.thread_id;
    UPDATE data_keys SET sealed_count = sealed_count + 1
        WHERE NEW.key_epoch IS NOT NULL AND channel_id = NEW.channel_id AND epoch = NEW.key_epoch;
END;
