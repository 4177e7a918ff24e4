//! Security alerts. The detectors (`rampart_core::detect`) watch login failures and exports; this
//! module adds the checks that need the store (an administrator signing in from an IP never seen
//! for them, a role raised to admin or owner) and raises each alert four ways: an audit record
//! (`security.alert`, which `GET /api/v1/admin/security/events` lists), a log line, a counter, and
//! a notice on a bounded queue that the webhook sender drains (dropped and counted when full).

use std::sync::Mutex;

use rampart_core::detect::{Alert, AlertKind, Detectors};
use rampart_core::policy::Action;
use rampart_core::{Role, Timestamp, UserId};
use rampart_store::AuditRow;
use serde_json::json;
use tokio::sync::mpsc;

use crate::audit::SYSTEM_ACTOR;
use crate::{now, App, AppError, Authenticated, Outcome};

/// The audit action of an alert.
pub const ALERT_ACTION: &str = "security.alert";

/// An alert as the webhook sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertNotice {
    /// The seq of the alert's audit record.
    pub seq: i64,
    pub kind: AlertKind,
    pub subject: String,
    pub at: Timestamp,
    pub details: serde_json::Value,
}

/// The detectors' state and the webhook queue.
pub(crate) struct AlertState {
    pub detectors: Mutex<Detectors>,
    pub queue: mpsc::Sender<AlertNotice>,
    pub receiver: Mutex<Option<mpsc::Receiver<AlertNotice>>>,
}

impl std::fmt::Debug for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertState").finish_non_exhaustive()
    }
}

impl AlertState {
    pub fn new(policy: rampart_core::detect::DetectorPolicy) -> Self {
        let (queue, receiver) = mpsc::channel(rampart_core::limits::ALERT_QUEUE_LEN_MAX);
        AlertState { detectors: Mutex::new(Detectors::new(policy)), queue, receiver: Mutex::new(Some(receiver)) }
    }
}

impl App {
    /// The queue of raised alerts, for the webhook sender; `None` after the first call.
    pub fn take_alert_notices(&self) -> Option<mpsc::Receiver<AlertNotice>> {
        self.inner.alerts.receiver.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Alerts after `after`, oldest first: the `security.alert` audit records.
    pub async fn security_events(
        &self,
        auth: &Authenticated,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, AppError> {
        self.check(auth, Action::ReadAudit)?;
        Ok(self.inner.audit.list_action(ALERT_ACTION, after, limit).await?)
    }

    async fn raise(&self, kind: AlertKind, subject: &str, details: serde_json::Value) -> Result<(), AppError> {
        let mut record = json!({ "kind": kind.as_str() });
        if let (Some(record), Some(extra)) = (record.as_object_mut(), details.as_object()) {
            record.extend(extra.clone());
        }
        let seq =
            self.audit_seq(SYSTEM_ACTOR, ALERT_ACTION, Some(subject), None, Outcome::Success, record.clone()).await?;
        tracing::warn!(alert = kind.as_str(), subject, audit_seq = seq, "SECURITY ALERT");
        self.inner.counters.alert(kind.as_str());
        let notice = AlertNotice { seq, kind, subject: subject.to_owned(), at: now(), details: record };
        if self.inner.alerts.queue.try_send(notice).is_err() {
            tracing::warn!(
                alert = kind.as_str(),
                "the alert webhook queue is full; this notice is dropped (the audit record stays)"
            );
        }
        Ok(())
    }

    async fn raise_all(&self, alerts: Vec<Alert>) -> Result<(), AppError> {
        for alert in alerts {
            self.raise(alert.kind, &alert.subject, json!({ "count": alert.count })).await?;
        }
        Ok(())
    }

    /// A failed or throttled login for `account` (folded) from `ip`.
    pub(crate) async fn detect_login_failure(&self, ip: &str, account: &str) -> Result<(), AppError> {
        let alerts =
            self.inner.alerts.detectors.lock().unwrap_or_else(|p| p.into_inner()).login_failed(ip, account, now());
        self.raise_all(alerts).await
    }

    /// A role change: raising anyone to admin, or to owner, is an alert.
    pub(crate) async fn detect_role_change(
        &self,
        by: &UserId,
        target: &UserId,
        from: Role,
        to: Role,
    ) -> Result<(), AppError> {
        if to.is_administrator() && to > from {
            let details = json!({ "by": by.as_str(), "from": from.as_str(), "to": to.as_str() });
            self.raise(AlertKind::PrivilegeEscalation, target.as_str(), details).await?;
        }
        Ok(())
    }

    /// A successful sign-in: an administrator coming from an IP their earlier sign-ins never
    /// used is an alert (their very first sign-in is not). Call before the sign-in is recorded.
    pub(crate) async fn detect_admin_login(&self, user: &UserId, role: Role, ip: &str) -> Result<(), AppError> {
        if !role.is_administrator() {
            return Ok(());
        }
        let audit = &self.inner.audit;
        let signed_in_before = audit.has_record("auth.login", user.as_str(), "success", None).await?;
        if signed_in_before && !audit.has_record("auth.login", user.as_str(), "success", Some(ip)).await? {
            self.raise(AlertKind::AdminNewIp, user.as_str(), json!({ "ip": ip, "role": role.as_str() })).await?;
        }
        Ok(())
    }
}
