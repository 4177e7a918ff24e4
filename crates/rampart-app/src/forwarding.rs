//! Forwarding the audit log to a SIEM collector: the forwarder's cursor per collector, the records
//! after it, and the backlog. The audit log is the durable outbox, so nothing is queued here; the
//! binary's forwarder owns the transport. Moving a cursor is not itself audited: each record would
//! make another one to forward, without end.

use rampart_store::AuditRow;

use crate::{App, AppError};

impl App {
    /// The last seq handed to the collector `target` (0 when none has been).
    pub async fn forward_cursor(&self, target: &str) -> Result<i64, AppError> {
        Ok(self.inner.audit.forward_cursor(target).await?)
    }

    /// Saves `target`'s cursor at `seq`; a lower `seq` than the saved one leaves it unchanged.
    pub async fn set_forward_cursor(&self, target: &str, seq: i64) -> Result<(), AppError> {
        Ok(self.inner.audit.set_forward_cursor(target, seq).await?)
    }

    /// Records with `seq > after`, oldest first, at most `limit`.
    pub async fn forward_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>, AppError> {
        self.audit_tail(Some(after), limit).await
    }

    /// The seq of the newest record (0 when the log is empty). The seq alone: a head without a
    /// valid hash is for `verify` to report, not for forwarding to stop on.
    pub async fn audit_head_seq(&self) -> Result<i64, AppError> {
        Ok(self.inner.audit.latest(1).await?.last().map_or(0, |row| row.seq))
    }

    /// Records not yet handed to `target` (head seq − cursor, never below 0), also kept in
    /// `counters().audit_forward_backlog` for the metrics endpoint.
    pub async fn forward_backlog(&self, target: &str) -> Result<i64, AppError> {
        let backlog = (self.audit_head_seq().await? - self.forward_cursor(target).await?).max(0);
        self.counters().set_audit_forward_backlog(backlog);
        Ok(backlog)
    }
}
