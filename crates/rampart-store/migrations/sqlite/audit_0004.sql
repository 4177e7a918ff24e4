-- Indexes for the lookups that read the audit log while it grows (issue 16 item 5): the security
-- events list (`list_action`: one action, by seq) and the new-IP check at an administrator's
-- sign-in (`has_record`: action, actor, outcome and ip). Without them both scan the whole log.
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_actor ON audit_log (action, actor, outcome, ip);
