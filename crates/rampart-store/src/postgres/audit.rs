//! The audit log in PostgreSQL, with the same hash chain as the SQLite audit file: each record is
//! linked to the previous one as it is appended, under a transaction-scoped advisory lock so the
//! nodes of a cluster extend one chain in turn. The tables are append-only in the database itself
//! (migration 5's trigger, and the app role's grants); verification is `audit_verify`'s walker.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use rampart_core::audit::encode;
use rampart_core::Timestamp;
use rampart_crypto::audit_chain::{link, GENESIS};
use rampart_crypto::AuditVerifier;

use super::{advisory_lock, lock_keys, open_pool, PgOptions};
use crate::audit::{outcome_from_text, to_hash, AuditEntry, AuditHead, AuditRow, AuditStore, Checkpoint};
use crate::audit_verify::{ChainWalk, VerifyReport};
use crate::{StoreError, StoreResult};

/// Records read per query when verifying.
const VERIFY_BATCH_MAX: i64 = 1_000;
const COLUMNS: &str = "seq, at, actor, action, target, ip, user_agent, outcome, details, hash";

#[derive(Clone, Debug)]
pub struct PgAuditStore {
    pool: PgPool,
}

impl PgAuditStore {
    /// Opens the audit tables of a schema already migrated (`postgres::migrate`).
    pub async fn open(options: &PgOptions) -> StoreResult<Self> {
        Ok(Self { pool: open_pool(options).await? })
    }

    /// Opens the audit tables of a schema that has them, for `rampart audit`: no migration is
    /// run, and a schema without them is `None` rather than something to create. Needs no more
    /// than the auditor role's SELECT.
    pub async fn open_existing(options: &PgOptions) -> StoreResult<Option<Self>> {
        let store = Self::open(options).await?;
        let present: bool = sqlx::query_scalar(
            "SELECT to_regclass('audit_log') IS NOT NULL AND to_regclass('audit_checkpoints') IS NOT NULL",
        )
        .fetch_one(&store.pool)
        .await?;
        if !present {
            store.close().await;
            return Ok(None);
        }
        Ok(Some(store))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn row_to_audit(row: &PgRow) -> StoreResult<AuditRow> {
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

fn checkpoint_from_row(row: &PgRow) -> StoreResult<Checkpoint> {
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        hash: to_hash(&hash)?,
        at: Timestamp(row.try_get("at")?),
        signature: row.try_get("signature")?,
    })
}

#[async_trait]
impl AuditStore for PgAuditStore {
    async fn append(&self, entry: &AuditEntry) -> StoreResult<AuditHead> {
        let mut tx = self.pool.begin().await?;
        advisory_lock(&mut tx, lock_keys::AUDIT_HEAD).await?;
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, previous) = match head {
            Some((seq, hash)) => (seq + 1, to_hash(&hash)?),
            None => (1, GENESIS),
        };
        let hash = link(&previous, &encode(&entry.fields(seq)));
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, ip, user_agent, outcome, details, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(seq)
        .bind(entry.at.0)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.ip)
        .bind(&entry.user_agent)
        .bind(entry.outcome)
        .bind(&entry.details)
        .bind(hash.to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditHead { seq, hash })
    }

    async fn list(&self, after: i64, since: Option<Timestamp>, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND at >= $2 ORDER BY seq LIMIT $3"))
                .bind(after)
                .bind(since.map_or(i64::MIN, |t| t.0))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(row_to_audit).collect()
    }

    async fn latest(&self, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut records = rows.iter().map(row_to_audit).collect::<StoreResult<Vec<_>>>()?;
        records.reverse();
        Ok(records)
    }

    async fn head(&self) -> StoreResult<Option<AuditHead>> {
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        head.map(|(seq, hash)| Ok(AuditHead { seq, hash: to_hash(&hash)? })).transpose()
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(checkpoint.hash.to_vec())
        .bind(checkpoint.at.0)
        .bind(&checkpoint.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn list_action(&self, action: &str, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE action = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(action)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_audit).collect()
    }

    async fn has_record(&self, action: &str, actor: &str, outcome: &str, ip: Option<&str>) -> StoreResult<bool> {
        let found: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_log WHERE action = $1 AND actor = $2 AND outcome = $3
             AND ($4::text IS NULL OR ip = $4))",
        )
        .bind(action)
        .bind(actor)
        .bind(outcome)
        .bind(ip)
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    async fn verify(
        &self,
        verifier: Option<&AuditVerifier>,
        extra: Vec<Checkpoint>,
        expected_head: Option<i64>,
    ) -> StoreResult<VerifyReport> {
        let mut checkpoints = self.checkpoints().await?;
        checkpoints.extend(extra);
        let mut walk = ChainWalk::new(checkpoints, verifier);
        let mut conn = self.pool.acquire().await?;
        let mut after = 0;
        'pages: while !walk.failed() {
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
                .bind(after)
                .bind(VERIFY_BATCH_MAX)
                .fetch_all(&mut *conn)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let record = row_to_audit(row)?;
                let stored: Option<Vec<u8>> = row.try_get("hash")?;
                if !walk.push(&record.entry.fields(record.seq), stored.as_deref()) {
                    break 'pages;
                }
                after = record.seq;
            }
        }
        Ok(walk.finish(expected_head))
    }

    async fn forward_cursor(&self, target: &str) -> StoreResult<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_forward_cursor WHERE target = $1")
            .bind(target)
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn set_forward_cursor(&self, target: &str, seq: i64) -> StoreResult<()> {
        if seq < 0 {
            return Err(StoreError::Corrupt("a forwarding cursor below 0"));
        }
        sqlx::query(
            "INSERT INTO audit_forward_cursor (target, seq) VALUES ($1, $2)
             ON CONFLICT (target) DO UPDATE SET seq = GREATEST(audit_forward_cursor.seq, excluded.seq)",
        )
        .bind(target)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
