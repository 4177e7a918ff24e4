//! `rampart audit`: verify the hash chain and its signed checkpoints offline, export records as
//! JSON lines or RFC 5424 syslog, and show (or follow) the newest records. Works beside a running
//! server; an export is itself audited.

use std::sync::Arc;
use std::time::Duration;

use rampart_app::ExportFormat;
use rampart_core::limits;

use super::AuditCommand;
use crate::audit_format;
use crate::config::Config;

/// How often `tail --follow` looks for new records.
const FOLLOW_POLL_MS: u64 = 1_000;

pub async fn run(config: Config, command: AuditCommand) -> anyhow::Result<()> {
    super::serve::init_logging(&Config { log_level: "warn".to_owned(), ..config.clone() }, false);
    let app = super::serve::open_app(&config, Arc::new(rampart_app::NoLiveConnections)).await?;
    let failed = |what: &'static str| move |e: rampart_app::AppError| anyhow::anyhow!("{what}: {e}");
    match command {
        AuditCommand::Verify { checkpoints } => {
            let report = app.verify_audit_files(checkpoints).await.map_err(failed("cannot verify the audit log"))?;
            if !report.ok {
                anyhow::bail!("{}", report.summary());
            }
            println!("{}", report.summary());
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
                let rows = app
                    .export_audit(format, since, after, limits::AUDIT_EXPORT_PAGE_MAX, first)
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
            let rows = app
                .audit_tail(None, lines.min(limits::AUDIT_EXPORT_PAGE_MAX))
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
                let rows = app
                    .audit_tail(Some(after), limits::AUDIT_EXPORT_PAGE_MAX)
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

/// `--since`: an RFC 3339 time (`2026-11-28T10:00:00Z`) or a date (`2026-11-28`, midnight UTC).
fn parse_since(text: &str) -> anyhow::Result<rampart_core::Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let at = time::OffsetDateTime::parse(&full, &Rfc3339)
        .map_err(|_| anyhow::anyhow!("--since: not an RFC 3339 time or a date: {text}"))?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    Ok(rampart_core::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)))
}
