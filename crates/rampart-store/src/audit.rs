//! The audit store: append and read audit records, kept in their own SQLite file (not in
//! `data_dir`'s database), so the application data and the record of what was done to it can be
//! kept, backed up and protected apart. Each record is a link of a SHA-256 hash chain, computed
//! here as it is appended; signed checkpoints of the head are stored beside it.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use rampart_core::audit::{encode, RecordFields};
use rampart_core::Timestamp;
use rampart_crypto::audit_chain::{link, ChainHash, GENESIS};
use rampart_crypto::AuditVerifier;

use crate::audit_verify::{ChainWalk, VerifyReport};
use crate::sqlite::{migrate, open_pool, BUSY_TIMEOUT_MS};
use crate::{StoreError, StoreResult};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "audit log", include_str!("../migrations/sqlite/audit_0001.sql")),
    (2, "audit chain", include_str!("../migrations/sqlite/audit_0002.sql")),
    (3, "audit forwarding cursor", include_str!("../migrations/sqlite/audit_0003.sql")),
    (4, "audit lookup indexes", include_str!("../migrations/sqlite/audit_0004.sql")),
];
/// Records read per query when verifying or chaining old records.
const VERIFY_BATCH_MAX: i64 = 1_000;

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

impl AuditEntry {
    pub(crate) fn fields(&self, seq: i64) -> RecordFields<'_> {
        RecordFields {
            seq,
            at_ms: self.at.0,
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            outcome: self.outcome,
            details: &self.details,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// The chain's last link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: ChainHash,
}

/// A signed statement that the chain reached `hash` at `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: ChainHash,
    pub at: Timestamp,
    pub signature: Vec<u8>,
}

#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends a record as the chain's next link and returns the new head.
    async fn append(&self, entry: &AuditEntry) -> StoreResult<AuditHead>;
    /// Records with `seq > after` (and at or after `since`, when given), oldest first, at most
    /// `limit`.
    async fn list(&self, after: i64, since: Option<Timestamp>, limit: u32) -> StoreResult<Vec<AuditRow>>;
    /// The newest `limit` records, oldest first.
    async fn latest(&self, limit: u32) -> StoreResult<Vec<AuditRow>>;
    async fn head(&self) -> StoreResult<Option<AuditHead>>;
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()>;
    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
    /// Records of one `action` with `seq > after`, oldest first, at most `limit`.
    async fn list_action(&self, action: &str, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>>;
    /// Whether a record of `action` by `actor` with `outcome` (and from `ip`, when given) exists.
    async fn has_record(&self, action: &str, actor: &str, outcome: &str, ip: Option<&str>) -> StoreResult<bool>;
    /// Recomputes the whole chain against the stored hashes, the stored checkpoints and `extra`
    /// ones kept elsewhere, and (when known) the last seq the running server wrote.
    async fn verify(
        &self,
        verifier: Option<&AuditVerifier>,
        extra: Vec<Checkpoint>,
        expected_head: Option<i64>,
    ) -> StoreResult<VerifyReport>;
    /// The last seq handed to the collector `target` (0 when none has been).
    async fn forward_cursor(&self, target: &str) -> StoreResult<i64>;
    /// Moves `target`'s cursor to `seq`; never backwards (a lower `seq` leaves it where it is), so
    /// a forwarder re-sending older records after a reconnect cannot lose ground.
    async fn set_forward_cursor(&self, target: &str, seq: i64) -> StoreResult<()>;
}

#[derive(Clone, Debug)]
pub struct SqliteAuditStore {
    pool: SqlitePool,
}

impl SqliteAuditStore {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        migrate(path, MIGRATIONS).await?;
        let pool = open_pool(path).await?;
        let store = Self { pool };
        store.chain_unchained().await?;
        Ok(store)
    }

    /// Opens an audit file that already exists, for `rampart audit` (verify, export, tail): it is
    /// never created (a missing file is an error) and never migrated (a schema older than this
    /// build is refused: the server migrates it at its next start), and it is opened read-only
    /// unless `writable` (an export appends its own record).
    pub async fn open_existing(path: &Path, writable: bool) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(!writable)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .map_err(|_| StoreError::Settings("the file is not a Rampart audit log"))?;
        if applied < MIGRATIONS.last().map(|m| m.0) {
            return Err(StoreError::Settings(
                "the audit log's schema is older than this build: start the server once to migrate it",
            ));
        }
        Ok(Self { pool })
    }

    /// Chains records written before the chain existed, once: only while no record has a hash
    /// yet. Afterwards a record without one is tampering, for `verify` to report, never to bless.
    async fn chain_unchained(&self) -> StoreResult<()> {
        let (chained, first): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(hash), MIN(seq) FROM audit_log").fetch_one(&self.pool).await?;
        let Some(first) = first.filter(|_| chained == 0) else {
            return Ok(());
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let previous: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT 1")
                .bind(first)
                .fetch_optional(&mut *tx)
                .await?;
        let mut previous = previous.map_or(Ok(GENESIS), |h| to_hash(&h))?;
        let mut after = first - 1;
        loop {
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"))
                .bind(after)
                .bind(VERIFY_BATCH_MAX)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let record = row_to_audit(row)?;
                let hash = link(&previous, &encode(&record.entry.fields(record.seq)));
                sqlx::query("UPDATE audit_log SET hash = ? WHERE seq = ?")
                    .bind(hash.to_vec())
                    .bind(record.seq)
                    .execute(&mut *tx)
                    .await?;
                previous = hash;
                after = record.seq;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

const COLUMNS: &str = "seq, at, actor, action, target, ip, user_agent, outcome, details, hash";

pub(crate) fn to_hash(bytes: &[u8]) -> StoreResult<ChainHash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("audit hash"))
}

pub(crate) fn outcome_from_text(text: &str) -> &'static str {
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

fn checkpoint_from_row(row: &SqliteRow) -> StoreResult<Checkpoint> {
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        hash: to_hash(&hash)?,
        at: Timestamp(row.try_get("at")?),
        signature: row.try_get("signature")?,
    })
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(&self, entry: &AuditEntry) -> StoreResult<AuditHead> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (seq, previous) = match head {
            Some((seq, Some(hash))) => (seq + 1, to_hash(&hash)?),
            Some((_, None)) => return Err(StoreError::Corrupt("the audit head has no hash")),
            None => (1, GENESIS),
        };
        let hash = link(&previous, &encode(&entry.fields(seq)));
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, ip, user_agent, outcome, details, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ? AND at >= ? ORDER BY seq LIMIT ?"))
                .bind(after)
                .bind(since.map_or(i64::MIN, |t| t.0))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(row_to_audit).collect()
    }

    async fn latest(&self, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut records = rows.iter().map(row_to_audit).collect::<StoreResult<Vec<_>>>()?;
        records.reverse();
        Ok(records)
    }

    async fn head(&self) -> StoreResult<Option<AuditHead>> {
        let head: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        match head {
            Some((seq, Some(hash))) => Ok(Some(AuditHead { seq, hash: to_hash(&hash)? })),
            Some((_, None)) => Err(StoreError::Corrupt("the audit head has no hash")),
            None => Ok(None),
        }
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at, signature) VALUES (?, ?, ?, ?)")
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
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE action = ? AND seq > ? ORDER BY seq LIMIT ?"))
                .bind(action)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(row_to_audit).collect()
    }

    async fn has_record(&self, action: &str, actor: &str, outcome: &str, ip: Option<&str>) -> StoreResult<bool> {
        let found: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_log WHERE action = ?1 AND actor = ?2 AND outcome = ?3
             AND (?4 IS NULL OR ip = ?4))",
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
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"))
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
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_forward_cursor WHERE target = ?")
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
            "INSERT INTO audit_forward_cursor (target, seq) VALUES (?, ?)
             ON CONFLICT (target) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        )
        .bind(target)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: Timestamp(1_000),
            actor: "system".to_owned(),
            action: action.to_owned(),
            target: None,
            ip: None,
            user_agent: None,
            outcome: "success",
            details: "{}".to_owned(),
        }
    }

    /// Issue 16 item 5: the security events list and the new-IP check read through an index.
    #[tokio::test]
    async fn the_audit_lookups_use_an_index() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAuditStore::open(&dir.path().join("audit.db")).await.expect("open");
        let plan = |sql: &'static str| {
            let pool = store.pool.clone();
            async move {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&pool).await.expect("plan");
                rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
            }
        };
        let events = plan("SELECT seq FROM audit_log WHERE action = 'a' AND seq > 0 ORDER BY seq LIMIT 10").await;
        assert!(events.contains("INDEX audit_log_by_action"), "{events}");
        let new_ip = plan(
            "SELECT EXISTS (SELECT 1 FROM audit_log WHERE action = 'a' AND actor = 'b' AND outcome = 'success' AND ip = 'c')",
        )
        .await;
        assert!(new_ip.contains("INDEX audit_log_by_actor"), "{new_ip}");
    }

    #[tokio::test]
    async fn a_forwarding_cursor_starts_at_zero_moves_only_forward_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.db");
        let store = SqliteAuditStore::open(&path).await.expect("open");
        for action in ["a", "b", "c"] {
            store.append(&entry(action)).await.expect("append");
        }
        let (one, two) = ("tcp://siem.example:6514", "tls://other.example:6514");
        assert_eq!(store.forward_cursor(one).await.expect("cursor"), 0);
        store.set_forward_cursor(one, 2).await.expect("set");
        store.set_forward_cursor(one, 1).await.expect("set lower");
        assert_eq!(store.forward_cursor(one).await.expect("cursor"), 2, "a lower seq must not move it back");
        assert_eq!(store.forward_cursor(two).await.expect("cursor"), 0, "each target has its own cursor");
        assert!(store.set_forward_cursor(one, -1).await.is_err());
        store.set_forward_cursor(one, 3).await.expect("set");
        drop(store);

        let store = SqliteAuditStore::open(&path).await.expect("reopen");
        assert_eq!(store.forward_cursor(one).await.expect("cursor"), 3);
        let after: Vec<i64> = store.list(2, None, 10).await.expect("list").iter().map(|r| r.seq).collect();
        assert_eq!(after, vec![3]);
    }
}
