//! Writing and checking audit records. Every security-relevant use case calls `App::audit`; when
//! the record cannot be written the use case fails rather than proceed unrecorded. Every
//! `checkpoint_every_records` records (and on a timer, and at stop) the chain's head is signed
//! with the Ed25519 key from `key_dir`; the checkpoint goes to the audit database, to the log
//! stream, and to the optional checkpoint file, so a copy lives outside the database.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rampart_core::policy::Action;
use rampart_core::Timestamp;
use rampart_crypto::AuditSigner;
use rampart_store::{AuditEntry, AuditHead, AuditRow, Checkpoint, VerifyReport};
use serde_json::json;

use crate::{now, App, AppError, Authenticated, RequestMeta};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// The actor of actions taken by the server itself or from its command line.
pub const SYSTEM_ACTOR: &str = "system";

/// When checkpoints are made and where a copy goes.
#[derive(Clone, Debug)]
pub struct AuditPolicy {
    pub checkpoint_every_records: u64,
    /// A file that each checkpoint is appended to as one JSON line.
    pub checkpoint_file: Option<PathBuf>,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        AuditPolicy { checkpoint_every_records: rampart_core::limits::AUDIT_CHECKPOINT_RECORDS, checkpoint_file: None }
    }
}

/// What this process knows of the chain: the last record it wrote and the last checkpoint.
#[derive(Debug, Default)]
pub(crate) struct ChainState {
    last_written_seq: i64,
    last_checkpoint_seq: i64,
}

/// The signer and this process's view of the chain.
pub(crate) struct AuditKeys {
    pub signer: AuditSigner,
    pub state: Mutex<ChainState>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").finish_non_exhaustive()
    }
}

/// The export formats of `rampart audit export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Syslog,
}

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
        self.audit_seq(actor, action, target, meta, outcome, details).await.map(|_| ())
    }

    /// `audit`, returning the record's seq.
    pub(crate) async fn audit_seq(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        meta: Option<&RequestMeta>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<i64, AppError> {
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
        let head = self.inner.audit.append(&entry).await?;
        tracing::info!(audit_seq = head.seq, actor, action, target, outcome = outcome.as_str(), "audit");
        let due = {
            let mut state = self.inner.audit_keys.state.lock().unwrap_or_else(|p| p.into_inner());
            state.last_written_seq = state.last_written_seq.max(head.seq);
            let every = i64::try_from(self.inner.config.audit.checkpoint_every_records).unwrap_or(i64::MAX);
            head.seq - state.last_checkpoint_seq >= every
        };
        if due {
            self.sign_checkpoint(head).await?;
        }
        Ok(head.seq)
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

    /// Learns the chain's head and last checkpoint from the store (once, at start).
    pub async fn load_audit_state(&self) -> Result<(), AppError> {
        // The seq alone: a head without a valid hash is for `verify` to report, not to stop on.
        let head = self.inner.audit.latest(1).await?.last().map_or(0, |r| r.seq);
        let last_checkpoint = self.inner.audit.checkpoints().await?.last().map_or(0, |c| c.seq);
        let mut state = self.inner.audit_keys.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_written_seq = state.last_written_seq.max(head);
        state.last_checkpoint_seq = state.last_checkpoint_seq.max(last_checkpoint);
        Ok(())
    }

    /// Signs the chain's head if records were added since the last checkpoint (the timer and
    /// the server's stop call this).
    pub async fn audit_checkpoint(&self) -> Result<(), AppError> {
        let Some(head) = self.inner.audit.head().await? else {
            return Ok(());
        };
        let last = self.inner.audit_keys.state.lock().unwrap_or_else(|p| p.into_inner()).last_checkpoint_seq;
        if head.seq > last {
            self.sign_checkpoint(head).await?;
        }
        Ok(())
    }

    async fn sign_checkpoint(&self, head: AuditHead) -> Result<(), AppError> {
        let at = now();
        let signature = self.inner.audit_keys.signer.sign_checkpoint(head.seq, &head.hash, at.0).to_vec();
        let checkpoint = Checkpoint { seq: head.seq, hash: head.hash, at, signature };
        self.inner.audit.add_checkpoint(&checkpoint).await?;
        let line = checkpoint_json(&checkpoint);
        tracing::info!(audit_checkpoint = %line, "audit checkpoint");
        if let Some(path) = self.inner.config.audit.checkpoint_file.clone() {
            let text = format!("{line}\n");
            tokio::task::spawn_blocking(move || append_line(&path, &text))
                .await
                .map_err(|e| AppError::Internal(format!("checkpoint file task: {e}")))?
                .map_err(|e| AppError::Internal(format!("cannot write the audit checkpoint file: {e}")))?;
        }
        let mut state = self.inner.audit_keys.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_checkpoint_seq = state.last_checkpoint_seq.max(head.seq);
        Ok(())
    }

    /// Verifies the chain for an administrator (`GET /api/v1/admin/audit/verify`), also against
    /// the last record this server wrote, so a tail cut while it runs is caught. Audited.
    pub async fn verify_audit(&self, auth: &Authenticated, meta: &RequestMeta) -> Result<VerifyReport, AppError> {
        self.check(auth, Action::ReadAudit)?;
        let report = self.verify_audit_files(None).await?;
        let details = json!({ "ok": report.ok, "checked": report.checked, "first_bad_seq": report.first_bad_seq });
        self.audit_done(auth, "audit.verify", None, meta, details).await?;
        Ok(report)
    }

    /// Verifies the chain, with checkpoints from `extra_file` (a copy kept elsewhere) too.
    pub async fn verify_audit_files(&self, extra_file: Option<PathBuf>) -> Result<VerifyReport, AppError> {
        let expected = self.inner.audit_keys.state.lock().unwrap_or_else(|p| p.into_inner()).last_written_seq;
        let verifier = self.inner.audit_keys.signer.verifier();
        let expected = (expected > 0).then_some(expected);
        verify_log(self.inner.audit.as_ref(), &verifier, &self.inner.config.audit, extra_file, expected).await
    }

    /// The newest `limit` records, for `rampart audit tail`.
    pub async fn audit_tail(&self, after: Option<i64>, limit: u32) -> Result<Vec<AuditRow>, AppError> {
        match after {
            Some(after) => Ok(self.inner.audit.list(after, None, limit).await?),
            None => Ok(self.inner.audit.latest(limit).await?),
        }
    }

    /// Audit records after `after`, oldest first.
    pub async fn read_audit(&self, auth: &Authenticated, after: i64, limit: u32) -> Result<Vec<AuditRow>, AppError> {
        self.check(auth, Action::ReadAudit)?;
        Ok(self.inner.audit.list(after, None, limit).await?)
    }

    /// The `limit` records just below `before` (exclusive), oldest first; a `before` past the
    /// newest record gives the newest page. Seqs are dense (a gap is tampering that `verify`
    /// names), so this is the page after `before - limit - 1`.
    pub async fn read_audit_before(
        &self,
        auth: &Authenticated,
        before: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, AppError> {
        self.check(auth, Action::ReadAudit)?;
        let head = self.inner.audit.latest(1).await?.last().map_or(0, |row| row.seq);
        let end = before.min(head.saturating_add(1));
        let after = end.saturating_sub(i64::from(limit)).saturating_sub(1).max(0);
        let rows = self.inner.audit.list(after, None, limit).await?;
        Ok(rows.into_iter().filter(|row| row.seq < end).collect())
    }
}

/// The details of an `audit.export` record.
pub(crate) fn export_details(format: ExportFormat, since: Option<Timestamp>) -> serde_json::Value {
    json!({ "format": format!("{format:?}").to_lowercase(), "since": since.map(|t| t.0), "via": "command line" })
}

/// Verifies `store`'s chain with checkpoints from `extra_file` (a copy kept elsewhere) and from the
/// configured checkpoint file too, and against `expected_head`, the last seq known written.
pub(crate) async fn verify_log(
    store: &dyn rampart_store::AuditStore,
    verifier: &rampart_crypto::AuditVerifier,
    policy: &AuditPolicy,
    extra_file: Option<PathBuf>,
    expected_head: Option<i64>,
) -> Result<VerifyReport, AppError> {
    let mut extra = Vec::new();
    for path in extra_file.iter().chain(policy.checkpoint_file.iter()) {
        extra.extend(read_checkpoint_file(path)?);
    }
    Ok(store.verify(Some(verifier), extra, expected_head).await?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn checkpoint_json(checkpoint: &Checkpoint) -> String {
    json!({
        "seq": checkpoint.seq,
        "hash": hex(&checkpoint.hash),
        "at": checkpoint.at.0,
        "signature": STANDARD.encode(&checkpoint.signature),
    })
    .to_string()
}

fn append_line(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// Checkpoints from a file of JSON lines as `checkpoint_json` writes them; a missing file holds none.
fn read_checkpoint_file(path: &std::path::Path) -> Result<Vec<Checkpoint>, AppError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(AppError::Internal(format!("cannot read {}: {error}", path.display()))),
    };
    let bad = |n: usize| AppError::Internal(format!("{} line {n}: not a checkpoint", path.display()));
    let mut checkpoints = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|_| bad(index + 1))?;
        let hash_hex = value["hash"].as_str().ok_or_else(|| bad(index + 1))?;
        let hash: Vec<u8> = (0..hash_hex.len())
            .step_by(2)
            .map(|i| hash_hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(index + 1))?;
        checkpoints.push(Checkpoint {
            seq: value["seq"].as_i64().ok_or_else(|| bad(index + 1))?,
            hash: hash.try_into().map_err(|_| bad(index + 1))?,
            at: Timestamp(value["at"].as_i64().ok_or_else(|| bad(index + 1))?),
            signature: STANDARD
                .decode(value["signature"].as_str().ok_or_else(|| bad(index + 1))?)
                .map_err(|_| bad(index + 1))?,
        });
    }
    Ok(checkpoints)
}
