//! The audit store: append and read audit records, kept in their own SQLite file (not in
//! `data_dir`'s database), so the application data and the record of what was done to it can be
//! kept, backed up and protected apart. The hash chain and signed checkpoints build on this.

use std::path::Path;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use rampart_core::Timestamp;

use crate::sqlite::{migrate, open_pool};
use crate::StoreResult;

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "audit log", include_str!("../migrations/sqlite/audit_0001.sql"))];

/// One security-relevant action. `details` is a JSON object; it never holds a secret or a message
/// body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// A user id, or `system`.
    pub actor: String,
    /// Dotted verb, e.g. `auth.login`, `admin.user.role_changed`.
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    pub details: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub entry: AuditEntry,
}

#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends a record and returns its sequence number.
    async fn append(&self, entry: &AuditEntry) -> StoreResult<i64>;
    /// Records with `seq > after`, oldest first, at most `limit`.
    async fn list(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>>;
}

#[derive(Clone, Debug)]
pub struct SqliteAuditStore {
    pool: SqlitePool,
}

impl SqliteAuditStore {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        migrate(path, MIGRATIONS).await?;
        let pool = open_pool(path).await?;
        Ok(Self { pool })
    }
}

fn outcome_from_text(text: &str) -> &'static str {
    match text {
        "success" => "success",
        "denied" => "denied",
        _ => "failure",
    }
}

fn row_to_audit(row: &SqliteRow) -> StoreResult<AuditRow> {
    let outcome: String = row.try_get("outcome")?;
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        entry: AuditEntry {
            at: Timestamp(row.try_get("at")?),
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            outcome: outcome_from_text(&outcome),
            details: row.try_get("details")?,
        },
    })
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(&self, entry: &AuditEntry) -> StoreResult<i64> {
        let done = sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, ip, user_agent, outcome, details)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.at.0)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.ip)
        .bind(&entry.user_agent)
        .bind(entry.outcome)
        .bind(&entry.details)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_rowid())
    }

    async fn list(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, ip, user_agent, outcome, details
             FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_audit).collect()
    }
}
