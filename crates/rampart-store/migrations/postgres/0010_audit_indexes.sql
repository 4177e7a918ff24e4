-- The new-IP check at an administrator's sign-in (`has_record`: action, actor, outcome and ip)
-- scanned every record of the action (issue 16 item 5); `audit_log_by_action` (0005) already
-- serves the security events list.
CREATE INDEX audit_log_by_actor ON audit_log (action, actor, outcome, ip);
