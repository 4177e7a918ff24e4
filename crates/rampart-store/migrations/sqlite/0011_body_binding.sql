-- A message body's AAD binds its sender, thread, creation time and edit counter as well as its
-- channel, row and epoch (AAD version 2), so someone with write access to the database cannot
-- change who sent a message, where or when, nor put back an earlier edit's ciphertext, unseen.
--
-- `edit_count` counts the edits of the body (each re-seals it with the next count); it starts at
-- the edits the event log already records. `aad_version` says which AAD sealed `body`: rows
-- already here are version 1 until the server re-seals them at its next start (SQL cannot
-- decrypt); `upgrades_pending` tells it to, and is cleared when that is done. From then on a
-- version-1 body is refused. Every write names the version it seals with.
ALTER TABLE messages ADD COLUMN edit_count INTEGER NOT NULL DEFAULT 0 CHECK (edit_count >= 0);
ALTER TABLE messages ADD COLUMN aad_version INTEGER NOT NULL DEFAULT 1 CHECK (aad_version IN (1, 2));

-- What a read counts to check the edit counter against the event log.
CREATE INDEX events_edits ON events (message_id) WHERE kind = 'message.edited';

UPDATE messages SET edit_count =
    (SELECT COUNT(*) FROM events e WHERE e.message_id = messages.id AND e.kind = 'message.edited');

CREATE TABLE upgrades_pending (name TEXT PRIMARY KEY NOT NULL) STRICT;
INSERT INTO upgrades_pending (name) SELECT 'message_aad_v2' WHERE EXISTS (SELECT 1 FROM messages WHERE body IS NOT NULL);
