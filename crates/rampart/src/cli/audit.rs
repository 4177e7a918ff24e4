//! `rampart audit`: verify the hash chain and its signed checkpoints offline, export records as
//! JSON lines or RFC 5424 syslog, and show (or follow) the newest records. Works beside a running
//! server; an export is itself audited. None of them creates anything: the audit log must exist
//! (on SQLite, `audit_dir/audit.db`, opened read-only but for an export's own record; on
//! PostgreSQL, its tables, with no migration run), and verification needs the signing key that
//! exists in `key_dir` and refuses an empty log beside it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rampart_app::{AuditLog, ExportFormat};
use rampart_core::limits;
use rampart_crypto::AuditSigner;

use super::AuditCommand;
use crate::audit_format;
use crate::config::Config;

/// How often `tail --follow` looks for new records.
const FOLLOW_POLL_MS: u64 = 1_000;

pub async fn run(config: Config, command: AuditCommand) -> anyhow::Result<()> {
    super::serve::init_logging(&Config { log_level: "warn".to_owned(), ..config.clone() }, false);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let writable = matches!(command, AuditCommand::Export { .. });
    let (store, place) = crate::storage::open_existing_audit(&config, writable).await?;
    let log = AuditLog::new(store, config.app.audit.clone(), config.app.detectors);
    let failed = |what: &'static str| move |e: rampart_app::AppError| anyhow::anyhow!("{what}: {e}");
    match command {
        AuditCommand::Verify { checkpoints } => {
            let summary = verify(&config, &log, &place, checkpoints).await?;
            println!("{summary}");
        }
        AuditCommand::Export { format, since } => {
            let format = match format.as_str() {
                "syslog" => ExportFormat::Syslog,
                _ => ExportFormat::Jsonl,
            };
            let since = since.as_deref().map(parse_since).transpose()?;
            let host = audit_format::hostname();
            let mut after = 0;
            let mut first = true;
            loop {
                let rows = log
                    .export(format, since, after, limits::AUDIT_EXPORT_PAGE_MAX, first)
                    .await
                    .map_err(failed("cannot export the audit log"))?;
                first = false;
                let Some(last) = rows.last() else {
                    break;
                };
                after = last.seq;
                for row in &rows {
                    match format {
                        ExportFormat::Jsonl => println!("{}", audit_format::jsonl(row)),
                        ExportFormat::Syslog => println!("{}", audit_format::syslog(row, &host)),
                    }
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            let rows = log
                .tail(None, lines.min(limits::AUDIT_EXPORT_PAGE_MAX))
                .await
                .map_err(failed("cannot read the audit log"))?;
            let mut after = rows.last().map_or(0, |r| r.seq);
            for row in &rows {
                println!("{}", audit_format::jsonl(row));
            }
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
                let rows = log
                    .tail(Some(after), limits::AUDIT_EXPORT_PAGE_MAX)
                    .await
                    .map_err(failed("cannot read the audit log"))?;
                for row in &rows {
                    println!("{}", audit_format::jsonl(row));
                    after = row.seq;
                }
            }
        }
    }
    Ok(())
}

/// Verifies the log at `place` with the signing key in `key_dir`, and the checkpoints in
/// `checkpoints` when given; the summary of an intact log, else an error saying what is wrong.
async fn verify(config: &Config, log: &AuditLog, place: &str, checkpoints: Option<PathBuf>) -> anyhow::Result<String> {
    if let Some(file) = checkpoints.as_deref().filter(|file| !file.is_file()) {
        anyhow::bail!("no checkpoint file at {}", crate::fsutil::absolute(file).display());
    }
    let key = crate::fsutil::absolute(&AuditSigner::key_file(&config.key_dir));
    if !key.is_file() {
        anyhow::bail!(
            "no audit signing key at {}: the signed checkpoints cannot be checked without it (name the server's key \
             directory with --key-dir)",
            key.display()
        );
    }
    let signer = AuditSigner::load(&config.key_dir)
        .with_context(|| format!("cannot load the audit signing key at {}", key.display()))?;
    let report = log
        .verify(&signer.verifier(), checkpoints)
        .await
        .map_err(|e| anyhow::anyhow!("cannot verify the audit log at {place}: {e}"))?;
    if !report.ok {
        anyhow::bail!("{}", report.summary());
    }
    if report.checked == 0 {
        // A server writes records from its first start and signs them with this key: a key and no
        // record means the records were removed, or this is not the key's log.
        anyhow::bail!(
            "audit log NOT verified: the log at {place} is empty, but {} holds an audit signing key (were its \
             records removed, or is this not that server's --audit-dir?)",
            key.display()
        );
    }
    Ok(report.summary())
}

/// `--since`: an RFC 3339 time (`2026-11-28T10:00:00Z`) or a date (`2026-11-28`, midnight UTC).
fn parse_since(text: &str) -> anyhow::Result<rampart_core::Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let at = time::OffsetDateTime::parse(&full, &Rfc3339)
        .map_err(|_| anyhow::anyhow!("--since: not an RFC 3339 time or a date: {text}"))?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    Ok(rampart_core::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)))
}
