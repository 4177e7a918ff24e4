-- Accounts, invitations, sessions and login throttling: the end state of SQLite's migrations, as
-- one fresh PostgreSQL schema. Times are milliseconds since the Unix epoch (UTC), as BIGINT.
-- Tokens are stored only as SHA-256 hex. Every object is created in the schema named first on
-- the search_path (the one `rampart db provision` made, or a test's own).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('guest', 'member', 'admin', 'owner')),
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('guest', 'member', 'admin', 'owner')),
    created_by TEXT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    TEXT REFERENCES users (id),
    CHECK ((used_at IS NULL) = (used_by IS NULL))
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE login_throttle (
    scope           TEXT NOT NULL CHECK (scope IN ('account', 'ip')),
    key             TEXT NOT NULL,
    failures        INTEGER NOT NULL CHECK (failures >= 0),
    last_failure_at BIGINT NOT NULL,
    blocked_until   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
