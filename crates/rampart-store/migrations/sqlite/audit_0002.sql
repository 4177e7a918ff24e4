-- The hash chain and signed checkpoints. Each record's `hash` is SHA-256 over the previous
-- record's hash and this record's canonical encoding (rampart_core::audit::encode); the first
-- record's previous hash is 32 zero bytes. Records written before the chain existed are chained
-- when the store next opens.
--
-- No trigger forbids UPDATE or DELETE here: anyone who can write this file can drop a trigger, so
-- tampering is detected by `rampart audit verify` instead; the application has no statement that
-- changes or removes a record (on PostgreSQL, grants and a trigger hold the app role to INSERT).
ALTER TABLE audit_log ADD COLUMN hash BLOB;

-- The chain's head as signed (Ed25519, key in key_dir) every N records or T seconds and at stop.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY NOT NULL,
    hash      BLOB NOT NULL,
    at        INTEGER NOT NULL,
    signature BLOB NOT NULL
) STRICT;
