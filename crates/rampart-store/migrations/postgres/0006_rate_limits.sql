-- Rate limits the nodes of a cluster share (GCRA: one "theoretical arrival time" per bucket, in
-- microseconds). A bucket whose time has passed is full again, and is swept.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
