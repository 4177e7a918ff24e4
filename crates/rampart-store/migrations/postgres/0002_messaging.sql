-- Channels, membership, the keys of encryption at rest, messages and the per-channel event log.
--
-- `channels.last_seq` is the channel's event counter. Every event takes the next value by
-- `UPDATE channels SET last_seq = last_seq + 1 … RETURNING`, which holds the channel row's lock
-- until the transaction ends: a concurrent writer waits, then reads the committed value, so `seq`
-- stays dense (no gap, no duplicate) under any number of writers on any number of nodes. A rolled
-- back transaction gives its value back with it.
CREATE TABLE channels (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name       TEXT UNIQUE,
    topic      TEXT NOT NULL DEFAULT '',
    created_by TEXT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq   BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    -- "user-a:user-b" (sorted) for direct-message channels: one per pair.
    dm_key     TEXT UNIQUE,
    CHECK ((kind = 'dm') = (name IS NULL)),
    CHECK ((kind = 'dm') = (dm_key IS NOT NULL))
);

CREATE TABLE channel_members (
    channel_id    TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at     BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_by_user ON channel_members (user_id, channel_id);

-- Key-encryption keys: only their versions, states and key check values; the key material lives
-- in each node's key_dir, never here.
CREATE TABLE kek_versions (
    version     INTEGER PRIMARY KEY CHECK (version > 0),
    check_value BYTEA NOT NULL,
    -- active: wraps new data keys (exactly one); retiring: still wraps some; retired: wraps none
    -- and its file may be gone.
    state       TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
CREATE UNIQUE INDEX kek_versions_one_active ON kek_versions (state) WHERE state = 'active';

-- One data key per channel epoch, stored only wrapped by a KEK.
CREATE TABLE data_keys (
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    epoch        BIGINT NOT NULL CHECK (epoch > 0),
    kek_version  INTEGER NOT NULL REFERENCES kek_versions (version),
    wrapped      BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Messages sealed under this key (kept by the trigger below), for the epoch limit.
    sealed_count BIGINT NOT NULL DEFAULT 0 CHECK (sealed_count >= 0),
    PRIMARY KEY (channel_id, epoch)
);
CREATE INDEX data_keys_by_kek ON data_keys (kek_version);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    -- Storage order: search pages walk it newest first (SQLite's rowid).
    position    BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- Set by the `messages_take_seq` trigger, never by the writer.
    seq         BIGINT NOT NULL CHECK (seq > 0),
    sender_id   TEXT NOT NULL REFERENCES users (id),
    -- The sealed body (XChaCha20-Poly1305, AAD = channel, message id, epoch); NULL once deleted:
    -- the body is destroyed, the tombstone stays.
    body        BYTEA,
    -- The epoch of the channel's data key that sealed `body`.
    key_epoch   BIGINT,
    thread_id   TEXT REFERENCES messages (id),
    client_id   TEXT,
    created_at  BIGINT NOT NULL,
    edited_at   BIGINT,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    reply_count BIGINT NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    UNIQUE (channel_id, seq),
    FOREIGN KEY (channel_id, key_epoch) REFERENCES data_keys (channel_id, epoch),
    CHECK ((body IS NULL) = (key_epoch IS NULL)),
    CHECK (deleted OR body IS NOT NULL)
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (channel_id, sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_by_thread ON messages (thread_id, seq) WHERE thread_id IS NOT NULL;

-- Events reference the row they concern; replay reads its current state, so a deleted body is
-- gone from the log too.
CREATE TABLE events (
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL CHECK (seq > 0),
    kind       TEXT NOT NULL,
    message_id TEXT REFERENCES messages (id),
    user_id    TEXT REFERENCES users (id),
    at         BIGINT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

-- A new message takes its channel's next seq before it is written (the channel row stays locked
-- until commit), and after it is written its `message.created` event, its thread parent's reply
-- count and its data key's use count follow in the same statement: the send path is one INSERT,
-- as on SQLite. `SET search_path FROM CURRENT` pins the functions to this schema, so a caller's
-- search_path cannot redirect what they touch.
CREATE FUNCTION messages_take_seq() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE channels SET last_seq = last_seq + 1 WHERE id = NEW.channel_id RETURNING last_seq INTO NEW.seq;
    IF NEW.seq IS NULL THEN
        RAISE EXCEPTION 'message for a missing channel' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER messages_take_seq BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_take_seq();

CREATE FUNCTION messages_created() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO events (channel_id, seq, kind, message_id, user_id, at)
        VALUES (NEW.channel_id, NEW.seq, 'message.created', NEW.id, NULL, NEW.created_at);
    IF NEW.thread_id IS NOT NULL THEN
        UPDATE messages SET reply_count = reply_count + 1 WHERE id = NEW.thread_id;
    END IF;
    IF NEW.key_epoch IS NOT NULL THEN
        UPDATE data_keys SET sealed_count = sealed_count + 1
            WHERE channel_id = NEW.channel_id AND epoch = NEW.key_epoch;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER messages_created AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_created();
