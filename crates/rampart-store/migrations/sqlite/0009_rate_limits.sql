-- Rate limits kept in the database (GCRA: one "theoretical arrival time" per bucket, in
-- microseconds), so that the nodes of a cluster share them; a single node uses them too when
-- configured so. A bucket whose time has passed is full again, and is swept.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
) WITHOUT ROWID;
