-- The audit log, hash-chained as on SQLite (rampart_core::audit::encode, rampart_crypto's link),
-- with its signed checkpoints and the SIEM forwarding cursor. On PostgreSQL the log is append-only
-- in the database itself: the app role is granted only INSERT and SELECT on these tables (by
-- `rampart db provision`), and the trigger below refuses UPDATE, DELETE and TRUNCATE from anyone,
-- the tables' owner included, so a changed record needs DDL that leaves its own trace.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY CHECK (seq > 0),
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    ip         TEXT,
    user_agent TEXT,
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    details    TEXT NOT NULL,
    hash       BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    at        BIGINT NOT NULL,
    signature BYTEA NOT NULL
);

-- Not a record: how far each collector has got. The app moves it forward.
CREATE TABLE audit_forward_cursor (
    target TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL CHECK (seq >= 0)
);

CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- Per statement, so even a statement that matches no row is refused (and says so).
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
