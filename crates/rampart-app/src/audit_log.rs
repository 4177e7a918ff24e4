//! The audit log alone, as `rampart audit` reads it: verify, export and tail work on an audit store
//! the caller opened without creating or migrating anything, and need neither the application's
//! database nor its encryption keys (verification takes the signing key's public half).
//!
//! An export is itself audited, as through `App`: an `audit.export` record, and a `security.alert`
//! record when it trips the mass-export detector. They are appended without a new checkpoint,
//! which needs the signing key: the running server signs the head with its next one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rampart_core::detect::{DetectorPolicy, Detectors};
use rampart_core::Timestamp;
use rampart_crypto::AuditVerifier;
use rampart_store::{AuditEntry, AuditRow, AuditStore, VerifyReport};
use serde_json::json;

use crate::alerts::ALERT_ACTION;
use crate::audit::{export_details, verify_log, SYSTEM_ACTOR};
use crate::{now, AppError, AuditPolicy, ExportFormat, Outcome};

/// An audit store and what reading it needs: the checkpoint file and the detectors' policy.
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    policy: AuditPolicy,
    detectors: Mutex<Detectors>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("store", &self.store).finish_non_exhaustive()
    }
}

impl AuditLog {
    pub fn new(store: Arc<dyn AuditStore>, policy: AuditPolicy, detectors: DetectorPolicy) -> Self {
        AuditLog { store, policy, detectors: Mutex::new(Detectors::new(detectors)) }
    }

    /// Recomputes the chain against the stored checkpoints, those in `extra_file` and those in
    /// the configured checkpoint file, each signature checked by `verifier`.
    pub async fn verify(
        &self,
        verifier: &AuditVerifier,
        extra_file: Option<PathBuf>,
    ) -> Result<VerifyReport, AppError> {
        let head = self.store.latest(1).await?.last().map(|row| row.seq);
        verify_log(self.store.as_ref(), verifier, &self.policy, extra_file, head).await
    }

    /// Records from `after` (and `since`), for export; on the first page the export is audited
    /// before anything is read.
    pub async fn export(
        &self,
        format: ExportFormat,
        since: Option<Timestamp>,
        after: i64,
        limit: u32,
        first_page: bool,
    ) -> Result<Vec<AuditRow>, AppError> {
        if first_page {
            self.append("audit.export", None, export_details(format, since)).await?;
            let alert = self.detectors.lock().unwrap_or_else(|p| p.into_inner()).exported(SYSTEM_ACTOR, now());
            if let Some(alert) = alert {
                let details = json!({ "kind": alert.kind.as_str(), "count": alert.count });
                let seq = self.append(ALERT_ACTION, Some(&alert.subject), details).await?;
                tracing::warn!(alert = alert.kind.as_str(), subject = %alert.subject, audit_seq = seq, "SECURITY ALERT");
            }
        }
        Ok(self.store.list(after, since, limit).await?)
    }

    /// The newest `limit` records, or those after `after`, oldest first.
    pub async fn tail(&self, after: Option<i64>, limit: u32) -> Result<Vec<AuditRow>, AppError> {
        match after {
            Some(after) => Ok(self.store.list(after, None, limit).await?),
            None => Ok(self.store.latest(limit).await?),
        }
    }

    async fn append(&self, action: &str, target: Option<&str>, details: serde_json::Value) -> Result<i64, AppError> {
        let entry = AuditEntry {
            at: now(),
            actor: SYSTEM_ACTOR.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            ip: None,
            user_agent: None,
            outcome: Outcome::Success.as_str(),
            details: details.to_string(),
        };
        Ok(self.store.append(&entry).await?.seq)
    }
}
