//! Writing audit records. Every security-relevant use case calls `App::audit`; when the record
//! cannot be written the use case fails rather than proceed unrecorded.

use rampart_store::AuditEntry;

use crate::{now, App, AppError, Authenticated, RequestMeta};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// The actor of actions taken by the server itself or from its command line.
pub const SYSTEM_ACTOR: &str = "system";

impl App {
    /// Appends one audit record. `details` is a JSON object with no secret in it.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        meta: Option<&RequestMeta>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), AppError> {
        let entry = AuditEntry {
            at: now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            ip: meta.map(|m| m.ip.clone()),
            user_agent: meta.map(|m| m.user_agent.clone()),
            outcome: outcome.as_str(),
            details: details.to_string(),
        };
        let seq = self.inner.audit.append(&entry).await?;
        tracing::info!(audit_seq = seq, actor, action, target, outcome = outcome.as_str(), "audit");
        Ok(())
    }

    /// The common case: the signed-in caller did `action` on `target`, and it succeeded.
    pub(crate) async fn audit_done(
        &self,
        auth: &Authenticated,
        action: &str,
        target: Option<&str>,
        meta: &RequestMeta,
        details: serde_json::Value,
    ) -> Result<(), AppError> {
        self.audit(auth.user.id.as_str(), action, target, Some(meta), Outcome::Success, details).await
    }
}
