-- Shared files. The content lives in a blob file under data_dir/blobs named by the file's random
-- id, sealed chunk by chunk with the channel's data key of `key_epoch`; the name and the SHA-256
-- of the content are sealed here with the same key, each bound by its AAD to this row. Size and
-- type stay clear (quota sums, download headers).
CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    uploader_id  TEXT NOT NULL REFERENCES users (id),
    -- The message that carries the file; NULL until it is attached (an unattached file is
    -- deleted after a grace period). Deleting the message deletes the file.
    message_id   TEXT REFERENCES messages (id),
    name         BYTEA NOT NULL,
    sha256       BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    key_epoch    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    FOREIGN KEY (channel_id, key_epoch) REFERENCES data_keys (channel_id, epoch)
);
CREATE INDEX files_by_uploader ON files (uploader_id);
CREATE INDEX files_by_message ON files (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX files_unattached ON files (created_at) WHERE message_id IS NULL;
