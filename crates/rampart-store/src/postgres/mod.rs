//! The scale-out store: PostgreSQL through sqlx, for several stateless nodes sharing one database.
//! Every statement is parameterized. Where SQLite's single writer made a multi-row invariant
//! atomic (`BEGIN IMMEDIATE`), PostgreSQL takes a lock on exactly what the invariant is about: the
//! channel row for its `seq`, the invitation row for its single use, a transaction-scoped advisory
//! lock for the owners (the last-owner rule), a throttle key, or the KEK rotation. Transactions run
//! at READ COMMITTED; each statement after a lock wait sees what the lock holder committed.

mod audit;
mod channels;
mod files;
mod keys;
mod options;
pub mod roles;
mod search;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

use rampart_core::throttle::{ThrottleScope, ThrottleState};
use rampart_core::validate::{DirectoryQuery, DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};

use crate::model::*;
use crate::shared::{fill_skeletons, like_literal, migrator, username_clash, USERS_WITHOUT_SKELETON};
use crate::vault::{KeyConfig, Vault};
use crate::{RateBucket, Store, StoreError, StoreResult, ThrottleStep};

pub use audit::PgAuditStore;
pub use options::{PgOptions, PgTls, SCHEMA_DEFAULT};

/// Connections in one node's pool. PostgreSQL's default `max_connections` is 100, shared by every
/// node, the migrator and the operators' own sessions.
const POOL_CONNECTIONS_MAX: u32 = 10;
/// How long taking a connection (or opening one) may wait before the call fails.
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;

/// The PostgreSQL migrations, one fresh schema equivalent to where SQLite's migrations end, and
/// the audit tables (append-only by trigger) in the same schema. One list, so one `_sqlx_migrations`
/// table tells both apart.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "accounts", include_str!("../../migrations/postgres/0001_accounts.sql")),
    (2, "messaging", include_str!("../../migrations/postgres/0002_messaging.sql")),
    (3, "search", include_str!("../../migrations/postgres/0003_search.sql")),
    (4, "files", include_str!("../../migrations/postgres/0004_files.sql")),
    (5, "audit", include_str!("../../migrations/postgres/0005_audit.sql")),
    (6, "rate limits", include_str!("../../migrations/postgres/0006_rate_limits.sql")),
    (8, "message body binding", include_str!("../../migrations/postgres/0008_body_binding.sql")),
    (10, "audit lookup indexes", include_str!("../../migrations/postgres/0010_audit_indexes.sql")),
    (12, "username skeletons", include_str!("../../migrations/postgres/0012_username_skeletons.sql")),
    (13, "private channel names", include_str!("../../migrations/postgres/0013_private_channel_names.sql")),
];

/// Transaction-scoped advisory lock keys (`pg_advisory_xact_lock`), one per invariant that spans
/// rows no single row lock covers. Arbitrary, fixed, and distinct.
pub(crate) mod lock_keys {
    /// The set of enabled owners (the last-owner rule).
    pub const OWNERS: i64 = 0x7261_6d70_0001;
    /// KEK versions (one rotation at a time).
    pub const KEKS: i64 = 0x7261_6d70_0002;
    /// The audit chain's head (one append at a time, across nodes).
    pub const AUDIT_HEAD: i64 = 0x7261_6d70_0003;
    /// `rampart db provision` (one at a time per database: concurrent GRANTs on the database
    /// row fail with "tuple concurrently updated").
    pub const PROVISION: i64 = 0x7261_6d70_0004;
}

/// Takes a transaction-scoped advisory lock, released at commit or rollback.
pub(crate) async fn advisory_lock(conn: &mut PgConnection, key: i64) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *conn).await?;
    Ok(())
}

/// Brings the schema up to date (creating it first if it is missing and this role may), on a
/// connection of its own. Run with the migrator's options: the app role cannot and must not.
pub async fn migrate(options: &PgOptions) -> StoreResult<()> {
    let mut conn = PgConnection::connect_with(&options.connect_options()).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(options.schema())
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        // An identifier cannot be a parameter; `schema()` is checked to be [a-z_][a-z0-9_]*.
        sqlx::query(&format!("CREATE SCHEMA \"{}\"", options.schema())).execute(&mut conn).await?;
    }
    migrator(MIGRATIONS).run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// A pool of connections with the schema as the only one on the search_path.
pub(crate) async fn open_pool(options: &PgOptions) -> StoreResult<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
        .connect_with(options.connect_options())
        .await?;
    Ok(pool)
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) vault: Arc<Vault>,
    /// File blobs, in `data_dir/blobs` of the node (shared storage when nodes serve files).
    pub(crate) blobs: Arc<crate::blobs::Blobs>,
    /// Whether messages are indexed for search (`[search] enabled`).
    pub(crate) search_index: bool,
}

impl PgStore {
    /// Opens the store on a schema already migrated (by `migrate`, as the migrator), checks the
    /// keyring in `keys.key_dir` against it (refusing a missing or wrong KEK) and indexes
    /// channels that have no search key yet. File blobs live in `blob_dir`.
    pub async fn open(options: &PgOptions, blob_dir: PathBuf, keys: &KeyConfig) -> StoreResult<Self> {
        Self::open_with_search(options, blob_dir, keys, true).await
    }

    /// `open`, with the search index on or off (`[search] enabled`). Off, nothing is indexed and an
    /// index left from before is deleted, without first indexing what has no key yet.
    pub async fn open_with_search(
        options: &PgOptions,
        blob_dir: PathBuf,
        keys: &KeyConfig,
        search_index: bool,
    ) -> StoreResult<Self> {
        let vault = Arc::new(Vault::open(keys)?);
        let blobs = Arc::new(crate::blobs::Blobs::open(blob_dir)?);
        let pool = open_pool(options).await?;
        let store = Self { pool, vault, blobs, search_index };
        store.check_keyring().await?;
        store.fill_username_skeletons().await?;
        store.upgrade_body_aad().await?;
        if search_index {
            store.index_channels_without_keys().await?;
        } else {
            store.drop_search_index().await?;
        }
        Ok(store)
    }

    /// Turns the search index off (`[search] enabled = false`): nothing is indexed, searches are
    /// refused, and an index left from before is deleted.
    pub async fn without_search_index(mut self) -> StoreResult<Self> {
        self.search_index = false;
        self.drop_search_index().await?;
        Ok(self)
    }

    /// Gives each user stored without a username skeleton (rows from before migration 0012) its
    /// skeleton, oldest first; one whose skeleton an earlier user holds keeps none (logged). Nodes
    /// starting together may race: a unique violation means another filled that skeleton first
    /// (`fill_skeletons`).
    async fn fill_username_skeletons(&self) -> StoreResult<()> {
        let rows = sqlx::query_as(USERS_WITHOUT_SKELETON).fetch_all(&self.pool).await?;
        fill_skeletons(rows, |id, skeleton| async move {
            let done = sqlx::query(FILL_SKELETON).bind(skeleton).bind(id).execute(&self.pool).await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// Closes the pool's connections (a test's schema can then be dropped).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a username clashes with a stored one: `true` for that very username, `false` for
/// another with its skeleton, no row when it is free.
const USERNAME_CLASH: &str = "SELECT username = $1 FROM users WHERE username = $1 OR username_skeleton = $2
     ORDER BY username = $1 DESC LIMIT 1";
/// Sets a user's skeleton unless another user holds it.
const FILL_SKELETON: &str = "UPDATE users SET username_skeleton = $1 WHERE id = $2 AND username_skeleton IS NULL
     AND NOT EXISTS (SELECT 1 FROM users WHERE username_skeleton = $1)";

const USER_COLUMNS: &str =
    "id, username, display_name, password_hash, role, disabled, mfa_enabled, created_at, last_login_at";
const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, ip, user_agent";

fn user_from_row(row: &PgRow) -> StoreResult<UserRecord> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: UserId::parse(&id).ok_or(StoreError::Corrupt("user id"))?,
        username: Username::from_stored(row.try_get("username")?),
        display_name: DisplayName::from_stored(row.try_get("display_name")?),
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role).ok_or(StoreError::Corrupt("user role"))?,
        disabled: row.try_get("disabled")?,
        mfa_enabled: row.try_get("mfa_enabled")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_login_at: row.try_get::<Option<i64>, _>("last_login_at")?.map(Timestamp),
    })
}

fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    let id: String = row.try_get("id")?;
    let user_id: String = row.try_get("user_id")?;
    Ok(SessionRecord {
        id: SessionId::parse(&id).ok_or(StoreError::Corrupt("session id"))?,
        user_id: UserId::parse(&user_id).ok_or(StoreError::Corrupt("session user id"))?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

fn throttle_from_row(row: &PgRow) -> StoreResult<ThrottleState> {
    let failures: i32 = row.try_get("failures")?;
    Ok(ThrottleState {
        failures: u32::try_from(failures).map_err(|_| StoreError::Corrupt("throttle failures"))?,
        last_failure_at: Timestamp(row.try_get("last_failure_at")?),
        blocked_until: Timestamp(row.try_get("blocked_until")?),
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A user's role text and disabled flag, read inside the caller's transaction (which holds the
/// owners' lock).
async fn role_and_disabled(conn: &mut PgConnection, id: &UserId) -> StoreResult<Option<(String, bool)>> {
    Ok(sqlx::query_as("SELECT role, disabled FROM users WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

/// Whether an enabled owner other than `id` exists, read inside the caller's transaction.
async fn other_owner_exists(conn: &mut PgConnection, id: &UserId) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'owner' AND NOT disabled AND id <> $1)")
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await?)
}

async fn insert_session(conn: &mut PgConnection, session: &NewSession) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
    )
    .bind(session.id.as_str())
    .bind(&session.token_hash)
    .bind(session.user_id.as_str())
    .bind(session.created_at.0)
    .bind(session.expires_at.0)
    .bind(&session.ip)
    .bind(&session.user_agent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Serializes read-modify-writes of one throttle key across nodes: the row may not exist yet, so
/// no row lock can cover it.
async fn lock_throttle_key(conn: &mut PgConnection, scope: ThrottleScope, key: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(scope.as_str())
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?;
        Ok(count(users))
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql).bind(username).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn search_users(&self, query: &DirectoryQuery, limit: u32) -> StoreResult<Vec<UserRecord>> {
        // The query is lowercased; SQLite's LIKE ignores ASCII case, so both sides are lowered here.
        let pattern = format!("%{}%", like_literal(query.as_str()));
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE NOT disabled AND (lower(username) LIKE $1 ESCAPE '\\' OR lower(display_name) LIKE $1 ESCAPE '\\')
             ORDER BY username LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(pattern).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn list_users(&self, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username LIMIT $1");
        let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_enabled_owners(&self) -> StoreResult<u64> {
        let owners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'owner' AND NOT disabled")
            .fetch_one(&self.pool)
            .await?;
        Ok(count(owners))
    }

    async fn set_user_role(&self, id: &UserId, role: Role) -> StoreResult<GuardedUpdate> {
        let mut tx = self.pool.begin().await?;
        advisory_lock(&mut tx, lock_keys::OWNERS).await?;
        let Some((current_role, disabled)) = role_and_disabled(&mut tx, id).await? else {
            return Ok(GuardedUpdate::NotFound);
        };
        let demotes_an_owner = current_role == "owner" && !disabled && role != Role::Owner;
        if demotes_an_owner && !other_owner_exists(&mut tx, id).await? {
            return Ok(GuardedUpdate::LastOwner);
        }
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(GuardedUpdate::Done)
    }

    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> StoreResult<GuardedUpdate> {
        let mut tx = self.pool.begin().await?;
        advisory_lock(&mut tx, lock_keys::OWNERS).await?;
        let Some((current_role, was_disabled)) = role_and_disabled(&mut tx, id).await? else {
            return Ok(GuardedUpdate::NotFound);
        };
        let disables_an_owner = disabled && !was_disabled && current_role == "owner";
        if disables_an_owner && !other_owner_exists(&mut tx, id).await? {
            return Ok(GuardedUpdate::LastOwner);
        }
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(GuardedUpdate::Done)
    }

    async fn record_login(&self, id: &UserId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
            .bind(at.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn change_password(&self, id: &UserId, password_hash: &str, new_session: &NewSession) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        insert_session(&mut tx, new_session).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invitations (token_hash, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&invitation.token_hash)
        .bind(invitation.role.as_str())
        .bind(invitation.created_by.as_ref().map(UserId::as_str))
        .bind(invitation.created_at.0)
        .bind(invitation.expires_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn has_open_invitation(&self, role: Role, now: Timestamp) -> StoreResult<bool> {
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM invitations WHERE role = $1 AND used_at IS NULL AND expires_at > $2)",
        )
        .bind(role.as_str())
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(open)
    }

    async fn invitation_is_open(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM invitations WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2)",
        )
        .bind(token_hash)
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(open)
    }

    async fn enroll(&self, token_hash: &str, now: Timestamp, user: &NewUser) -> StoreResult<EnrollOutcome> {
        let mut tx = self.pool.begin().await?;
        // The invitation row stays locked until commit: a concurrent enrollment with the same
        // token waits here, then finds it used.
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM invitations WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 FOR UPDATE",
        )
        .bind(token_hash)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = role else {
            return Ok(EnrollOutcome::InvalidInvitation);
        };
        let role = Role::parse(&role).ok_or(StoreError::Corrupt("invitation role"))?;
        // A username (or a look-alike) taken meanwhile by a concurrent enrollment is caught by the
        // unique indexes; the clash query then says which.
        let skeleton = user.username.skeleton();
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, username_skeleton, display_name, password_hash, role, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(user.username.as_str())
        .bind(&skeleton)
        .bind(user.display_name.as_str())
        .bind(&user.password_hash)
        .bind(role.as_str())
        .bind(user.created_at.0)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let same_name: Option<bool> = sqlx::query_scalar(USERNAME_CLASH)
                .bind(user.username.as_str())
                .bind(&skeleton)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(username_clash(same_name).unwrap_or(EnrollOutcome::UsernameTaken));
        }
        sqlx::query("UPDATE invitations SET used_at = $1, used_by = $2 WHERE token_hash = $3")
            .bind(now.0)
            .bind(user.id.as_str())
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(EnrollOutcome::Enrolled(UserRecord {
            id: user.id.clone(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            password_hash: user.password_hash.clone(),
            role,
            disabled: false,
            mfa_enabled: false,
            created_at: user.created_at,
            last_login_at: None,
        }))
    }

    async fn create_session(&self, session: &NewSession, per_user_max: u32) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // One session change per user at a time, so two logins cannot both keep `per_user_max`.
        // NO KEY UPDATE: sessions' foreign key checks (KEY SHARE) on the user go on meanwhile.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(session.user_id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_session(&mut tx, session).await?;
        // Keep the newest `per_user_max`; end the rest (oldest first).
        sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND id NOT IN
               (SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2)",
        )
        .bind(session.user_id.as_str())
        .bind(i64::from(per_user_max))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(at.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_sessions_except(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
            .bind(user.as_str())
            .bind(keep.map(SessionId::as_str).unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_sessions(&self, now: Timestamp, idle_before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2")
            .bind(now.0)
            .bind(idle_before.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn throttle_state(&self, scope: ThrottleScope, key: &str) -> StoreResult<Option<ThrottleState>> {
        let row = sqlx::query(
            "SELECT failures, last_failure_at, blocked_until FROM login_throttle WHERE scope = $1 AND key = $2",
        )
        .bind(scope.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(throttle_from_row).transpose()
    }

    async fn throttle_failure(
        &self,
        scope: ThrottleScope,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleState> {
        let mut tx = self.pool.begin().await?;
        lock_throttle_key(&mut tx, scope, key).await?;
        let row = sqlx::query(
            "SELECT failures, last_failure_at, blocked_until FROM login_throttle WHERE scope = $1 AND key = $2",
        )
        .bind(scope.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let previous = row.as_ref().map(throttle_from_row).transpose()?;
        let next = step(previous);
        let failures = i32::try_from(next.failures).map_err(|_| StoreError::Corrupt("throttle failures"))?;
        sqlx::query(
            "INSERT INTO login_throttle (scope, key, failures, last_failure_at, blocked_until) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, key) DO UPDATE SET failures = excluded.failures,
               last_failure_at = excluded.last_failure_at, blocked_until = excluded.blocked_until",
        )
        .bind(scope.as_str())
        .bind(key)
        .bind(failures)
        .bind(next.last_failure_at.0)
        .bind(next.blocked_until.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn throttle_clear(&self, scope: ThrottleScope, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE scope = $1 AND key = $2")
            .bind(scope.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rate_take(&self, key: &str, bucket: RateBucket) -> StoreResult<Option<i64>> {
        // One statement: the row lock of the upsert orders concurrent takes from every node.
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, $2) + $3
             WHERE GREATEST(r.tat, $2) + $3 - $2 <= $4
             RETURNING tat",
        )
        .bind(key)
        .bind(bucket.now_us)
        .bind(bucket.interval_us)
        .bind(bucket.tolerance_us)
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        // Swept in between: the bucket is full again, so only a moment's wait.
        Ok(Some(tat.map_or(1, |tat| bucket.wait_us(tat))))
    }

    async fn rate_sweep(&self, now_us: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE tat < $1").bind(now_us).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}
