-- Forwarding to a SIEM: the last `seq` handed to each collector (named by its configured URL).
-- The audit log itself is the durable outbox; this cursor says how far each collector has got, so
-- records written while a collector was down are sent, in order, once it is back. The cursor only
-- moves forward; a forwarder re-sends a window before it on each new connection (at-least-once).
CREATE TABLE audit_forward_cursor (
    target TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;
