-- Shared files. The content lives in a blob file under data_dir/blobs named by the file's random
-- id, sealed chunk by chunk (STREAM over XChaCha20-Poly1305) with the channel's data key of
-- `key_epoch`; the name and the SHA-256 of the content are sealed here with the same key, each
-- bound by its AAD to this row. Size and type stay clear (quota sums, download headers).
CREATE TABLE files (
    id           TEXT PRIMARY KEY NOT NULL,
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    uploader_id  TEXT NOT NULL REFERENCES users (id),
    -- The message that carries the file; NULL until it is attached (an unattached file is
    -- deleted after a grace period). Deleting the message deletes the file.
    message_id   TEXT REFERENCES messages (id),
    name         BLOB NOT NULL,
    sha256       BLOB NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    key_epoch    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    FOREIGN KEY (channel_id, key_epoch) REFERENCES data_keys (channel_id, epoch)
) STRICT;
CREATE INDEX files_by_uploader ON files (uploader_id);
CREATE INDEX files_by_message ON files (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX files_unattached ON files (created_at) WHERE message_id IS NULL;
