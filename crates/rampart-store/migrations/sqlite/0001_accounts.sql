-- Accounts, invitations, sessions and login throttling. Times are milliseconds since the Unix
-- epoch (UTC). Tokens are stored only as SHA-256 hex.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('guest', 'member', 'admin', 'owner')),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    mfa_enabled   INTEGER NOT NULL DEFAULT 0 CHECK (mfa_enabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT;

CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('guest', 'member', 'admin', 'owner')),
    created_by TEXT REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT REFERENCES users (id)
) STRICT;

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE login_throttle (
    scope           TEXT NOT NULL CHECK (scope IN ('account', 'ip')),
    key             TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    blocked_until   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;
