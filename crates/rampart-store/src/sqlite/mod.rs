//! The embedded default store: SQLite in WAL mode through sqlx, one file in `data_dir`.
//! Every statement is parameterized; multi-row invariants run inside `BEGIN IMMEDIATE`
//! transactions, so SQLite's single writer makes them atomic without upgrade deadlocks.

mod channels;
mod files;
mod keys;
mod search;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};

use rampart_core::throttle::{ThrottleScope, ThrottleState};
use rampart_core::validate::{DirectoryQuery, DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};

use crate::model::*;
use crate::shared::{fill_skeletons, like_literal, migrator, username_clash, USERS_WITHOUT_SKELETON};
use crate::vault::{KeyConfig, Vault};
use crate::{RateBucket, Store, StoreError, StoreResult, ThrottleStep};

/// Connections in the pool: SQLite has one writer, readers run alongside it in WAL mode.
const POOL_CONNECTIONS_MAX: u32 = 8;
/// WAL pages after which a committing writer checkpoints by itself (≈ 40 MiB), if the background
/// checkpoint has fallen behind.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// How much of the database file SQLite maps into memory (address space, not RSS).
const MMAP_BYTES: u64 = 256 * 1024 * 1024;
/// How often the server runs a background (passive) checkpoint.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;

/// How long a statement waits for the write lock before failing.
pub(crate) const BUSY_TIMEOUT_MS: u64 = 5_000;

pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "accounts", include_str!("../../migrations/sqlite/0001_accounts.sql")),
    (2, "messaging", include_str!("../../migrations/sqlite/0002_messaging.sql")),
    (3, "message trigger", include_str!("../../migrations/sqlite/0003_message_trigger.sql")),
    (4, "encryption", include_str!("../../migrations/sqlite/0004_encryption.sql")),
    (5, "search", include_str!("../../migrations/sqlite/0005_search.sql")),
    (6, "files", include_str!("../../migrations/sqlite/0006_files.sql")),
    (7, "search postings", include_str!("../../migrations/sqlite/0007_search_postings.sql")),
    (8, "send in one statement", include_str!("../../migrations/sqlite/0008_send_one_statement.sql")),
    (9, "rate limits", include_str!("../../migrations/sqlite/0009_rate_limits.sql")),
    (11, "message body binding", include_str!("../../migrations/sqlite/0011_body_binding.sql")),
    (15, "username skeletons", include_str!("../../migrations/sqlite/0015_username_skeletons.sql")),
    (16, "private channel names", include_str!("../../migrations/sqlite/0016_private_channel_names.sql")),
];

/// Tokens a message may carry into its INSERT (`token_slots` in migration 0008 holds 0 … this − 1);
/// a message with more is indexed in a transaction of its own statements.
pub(crate) const TOKEN_SLOTS: usize = 4096;

/// Whether a username clashes with a stored one: `true` for that very username, `false` for
/// another with its skeleton, no row when it is free.
const USERNAME_CLASH: &str = "SELECT username = ?1 FROM users WHERE username = ?1 OR username_skeleton = ?2
     ORDER BY username = ?1 DESC LIMIT 1";
/// Sets a user's skeleton unless another user holds it.
const FILL_SKELETON: &str = "UPDATE users SET username_skeleton = ?1 WHERE id = ?2 AND username_skeleton IS NULL
     AND NOT EXISTS (SELECT 1 FROM users WHERE username_skeleton = ?1)";

/// How every connection to a SQLite file is set up: WAL mode, foreign keys on.
fn connect_options(path: &Path) -> StoreResult<SqliteConnectOptions> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        // Committing writers checkpoint only as a backstop; `checkpoint_passive`, run in the
        // background, does the regular work, so no send waits behind a checkpoint.
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        // Pages read through a shared mapping instead of copied by read(): every write makes
        // the other pooled connections drop their page caches, so reads are frequent.
        .pragma("mmap_size", MMAP_BYTES.to_string())
        // 16 MiB of page cache per connection: the search postings are written at random places.
        .pragma("cache_size", "-16384")
        // Deleted content (a destroyed message, a replaced ciphertext) is overwritten with zeros,
        // not left in free pages.
        .pragma("secure_delete", "ON");
    Ok(options)
}

/// Brings the schema of the file at `path` up to date on a connection of its own with foreign
/// keys off, as SQLite's procedure for rebuilding a table requires (its checks hold again on
/// every other connection).
pub(crate) async fn migrate(path: &Path, list: &[(i64, &'static str, &'static str)]) -> StoreResult<()> {
    let mut conn = SqliteConnection::connect_with(&connect_options(path)?.foreign_keys(false)).await?;
    migrator(list).run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Opens (creating if needed) a SQLite file in WAL mode with foreign keys on.
pub(crate) async fn open_pool(path: &Path) -> StoreResult<SqlitePool> {
    let options = connect_options(path)?;
    let pool = SqlitePoolOptions::new().max_connections(POOL_CONNECTIONS_MAX).connect_with(options).await?;
    Ok(pool)
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) vault: Arc<Vault>,
    /// File blobs: `blobs/` beside the database file (so `data_dir/blobs`).
    pub(crate) blobs: Arc<crate::blobs::Blobs>,
    /// Whether messages are indexed for search (`[search] enabled`).
    pub(crate) search_index: bool,
    /// The one connection every write transaction and every send uses (`begin_write`,
    /// `write_turn`), taken in turn. SQLite has one writer, and a second `BEGIN IMMEDIATE` does not
    /// queue but polls in the busy handler, sleeping 1, 2, 5, 10 … ms between tries: under
    /// concurrent sends those sleeps, not the work, set the pace (sends into one room were capped
    /// near 250/s). Queuing here hands the turn over at once, in arrival order; and as only this
    /// connection writes, its page cache stays valid from one write to the next instead of being
    /// dropped by every other connection's commit (the search postings land on random pages).
    pub(crate) writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
}

/// A write transaction on the writer connection, holding the turn until commit or drop; dropped
/// without commit, it is rolled back before the next writer gets the connection.
pub(crate) struct WriteTx {
    conn: Option<tokio::sync::OwnedMutexGuard<SqliteConnection>>,
}

impl WriteTx {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut conn = self.conn.take().expect("a transaction commits once");
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(error)
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Not committed (an early return or an error): the turn passes on only after the
            // rollback, so no other write joins this transaction.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                        tracing::error!(%error, "rolling back an abandoned write transaction failed");
                    }
                });
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("open transaction")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("open transaction")
    }
}

impl SqliteStore {
    /// Opens the database at `path`, brings its schema up to date, checks the keyring in
    /// `keys.key_dir` against it (refusing a missing or wrong KEK), and seals any body still
    /// stored in clear. File blobs live in `blobs/` beside the database file.
    pub async fn open(path: &Path, keys: &KeyConfig) -> StoreResult<Self> {
        let vault = Arc::new(Vault::open(keys)?);
        let blob_dir = path.parent().unwrap_or(Path::new(".")).join("blobs");
        let blobs = Arc::new(crate::blobs::Blobs::open(blob_dir)?);
        migrate(path, MIGRATIONS).await?;
        let pool = open_pool(path).await?;
        let writer = SqliteConnection::connect_with(&connect_options(path)?).await?;
        let store = Self { pool, vault, blobs, search_index: true, writer: Arc::new(tokio::sync::Mutex::new(writer)) };
        store.check_keyring().await?;
        store.fill_username_skeletons().await?;
        store.seal_legacy_bodies().await?;
        store.upgrade_body_aad().await?;
        store.index_channels_without_keys().await?;
        Ok(store)
    }

    /// Turns the search index off (`[search] enabled = false`): nothing is indexed, searches are
    /// refused, and an index left from before is deleted, so none of what it reveals stays at rest.
    /// Turned on again, `rampart search rebuild` indexes what was sent meanwhile.
    pub async fn without_search_index(mut self) -> StoreResult<Self> {
        self.search_index = false;
        self.drop_search_index().await?;
        Ok(self)
    }

    /// Gives each user stored without a username skeleton (rows from before migration 0015) its
    /// skeleton, oldest first; one whose skeleton an earlier user holds keeps none (logged).
    async fn fill_username_skeletons(&self) -> StoreResult<()> {
        let rows = sqlx::query_as(USERS_WITHOUT_SKELETON).fetch_all(&self.pool).await?;
        fill_skeletons(rows, |id, skeleton| async move {
            let mut conn = self.write_turn().await;
            let done = sqlx::query(FILL_SKELETON).bind(skeleton).bind(id).execute(&mut *conn).await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// The writer connection, for a single statement outside a transaction.
    pub(crate) async fn write_turn(&self) -> tokio::sync::OwnedMutexGuard<SqliteConnection> {
        Arc::clone(&self.writer).lock_owned().await
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`) on the writer connection, in turn.
    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        let mut conn = Arc::clone(&self.writer).lock_owned().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        Ok(WriteTx { conn: Some(conn) })
    }

    /// Writes the WAL back into the main file (used before copying or inspecting the files).
    pub async fn checkpoint(&self) -> StoreResult<()> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(())
    }

    /// Copies committed WAL pages into the database without blocking writers.
    pub async fn checkpoint_passive(&self) -> StoreResult<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs `checkpoint_passive` every `CHECKPOINT_INTERVAL_MS` for as long as the runtime lives.
    pub fn spawn_checkpointer(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
            loop {
                ticker.tick().await;
                if let Err(error) = store.checkpoint_passive().await {
                    tracing::warn!(%error, "background checkpoint failed");
                }
            }
        });
    }
}

const USER_COLUMNS: &str =
    "id, username, display_name, password_hash, role, disabled, mfa_enabled, created_at, last_login_at";
const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, ip, user_agent";

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
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

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
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

fn throttle_from_row(row: &SqliteRow) -> StoreResult<ThrottleState> {
    let failures: i64 = row.try_get("failures")?;
    Ok(ThrottleState {
        failures: u32::try_from(failures).map_err(|_| StoreError::Corrupt("throttle failures"))?,
        last_failure_at: Timestamp(row.try_get("last_failure_at")?),
        blocked_until: Timestamp(row.try_get("blocked_until")?),
    })
}

/// A user's role text and disabled flag, read inside the caller's transaction.
async fn role_and_disabled(conn: &mut sqlx::SqliteConnection, id: &UserId) -> StoreResult<Option<(String, bool)>> {
    Ok(sqlx::query_as("SELECT role, disabled FROM users WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

/// Whether an enabled owner other than `id` exists, read inside the caller's transaction.
async fn other_owner_exists(conn: &mut sqlx::SqliteConnection, id: &UserId) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'owner' AND disabled = 0 AND id != ?)")
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await?)
}

async fn insert_session(conn: &mut sqlx::SqliteConnection, session: &NewSession) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(session.id.as_str())
    .bind(&session.token_hash)
    .bind(session.user_id.as_str())
    .bind(session.created_at.0)
    .bind(session.created_at.0)
    .bind(session.expires_at.0)
    .bind(&session.ip)
    .bind(&session.user_agent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?");
        let row = sqlx::query(&sql).bind(username).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn search_users(&self, query: &DirectoryQuery, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let pattern = format!("%{}%", like_literal(query.as_str()));
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE disabled = 0 AND (username LIKE ?1 ESCAPE '\\' OR lower(display_name) LIKE ?1 ESCAPE '\\')
             ORDER BY username LIMIT ?2"
        );
        let rows = sqlx::query(&sql).bind(pattern).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn list_users(&self, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username LIMIT ?");
        let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_enabled_owners(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'owner' AND disabled = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn set_user_role(&self, id: &UserId, role: Role) -> StoreResult<GuardedUpdate> {
        let mut tx = self.begin_write().await?;
        let Some((current_role, disabled)) = role_and_disabled(&mut tx, id).await? else {
            return Ok(GuardedUpdate::NotFound);
        };
        let demotes_an_owner = current_role == "owner" && !disabled && role != Role::Owner;
        if demotes_an_owner && !other_owner_exists(&mut tx, id).await? {
            return Ok(GuardedUpdate::LastOwner);
        }
        sqlx::query("UPDATE users SET role = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(GuardedUpdate::Done)
    }

    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> StoreResult<GuardedUpdate> {
        let mut tx = self.begin_write().await?;
        let Some((current_role, was_disabled)) = role_and_disabled(&mut tx, id).await? else {
            return Ok(GuardedUpdate::NotFound);
        };
        let disables_an_owner = disabled && !was_disabled && current_role == "owner";
        if disables_an_owner && !other_owner_exists(&mut tx, id).await? {
            return Ok(GuardedUpdate::LastOwner);
        }
        sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(id.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(GuardedUpdate::Done)
    }

    async fn record_login(&self, id: &UserId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_login_at = ? WHERE id = ?")
            .bind(at.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn change_password(&self, id: &UserId, password_hash: &str, new_session: &NewSession) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(id.as_str()).execute(&mut *tx).await?;
        insert_session(&mut tx, new_session).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invitations (token_hash, role, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
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
            "SELECT EXISTS (SELECT 1 FROM invitations WHERE role = ? AND used_at IS NULL AND expires_at > ?)",
        )
        .bind(role.as_str())
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(open)
    }

    async fn invitation_is_open(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM invitations WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?)",
        )
        .bind(token_hash)
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(open)
    }

    async fn enroll(&self, token_hash: &str, now: Timestamp, user: &NewUser) -> StoreResult<EnrollOutcome> {
        let mut tx = self.begin_write().await?;
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM invitations WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = role else {
            return Ok(EnrollOutcome::InvalidInvitation);
        };
        let role = Role::parse(&role).ok_or(StoreError::Corrupt("invitation role"))?;
        let skeleton = user.username.skeleton();
        let same_name: Option<bool> = sqlx::query_scalar(USERNAME_CLASH)
            .bind(user.username.as_str())
            .bind(&skeleton)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(clash) = username_clash(same_name) {
            return Ok(clash);
        }
        sqlx::query(
            "INSERT INTO users (id, username, username_skeleton, display_name, password_hash, role, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("UPDATE invitations SET used_at = ?, used_by = ? WHERE token_hash = ?")
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
        let mut tx = self.begin_write().await?;
        insert_session(&mut tx, session).await?;
        // Keep the newest `per_user_max`; end the rest (oldest first).
        sqlx::query(
            "DELETE FROM sessions WHERE user_id = ?1 AND id NOT IN
               (SELECT id FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC, id LIMIT ?2)",
        )
        .bind(session.user_id.as_str())
        .bind(i64::from(per_user_max))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?");
        let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id = ? AND last_seen_at < ?")
            .bind(at.0)
            .bind(id.as_str())
            .bind(at.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id");
        let rows = sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = ? AND user_id = ?")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_sessions_except(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND id != ?")
            .bind(user.as_str())
            .bind(keep.map(SessionId::as_str).unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_sessions(&self, now: Timestamp, idle_before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?")
            .bind(now.0)
            .bind(idle_before.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn throttle_state(&self, scope: ThrottleScope, key: &str) -> StoreResult<Option<ThrottleState>> {
        let row = sqlx::query(
            "SELECT failures, last_failure_at, blocked_until FROM login_throttle WHERE scope = ? AND key = ?",
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT failures, last_failure_at, blocked_until FROM login_throttle WHERE scope = ? AND key = ?",
        )
        .bind(scope.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let previous = row.as_ref().map(throttle_from_row).transpose()?;
        let next = step(previous);
        sqlx::query(
            "INSERT INTO login_throttle (scope, key, failures, last_failure_at, blocked_until) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (scope, key) DO UPDATE SET failures = excluded.failures,
               last_failure_at = excluded.last_failure_at, blocked_until = excluded.blocked_until",
        )
        .bind(scope.as_str())
        .bind(key)
        .bind(i64::from(next.failures))
        .bind(next.last_failure_at.0)
        .bind(next.blocked_until.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn throttle_clear(&self, scope: ThrottleScope, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE scope = ? AND key = ?")
            .bind(scope.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rate_take(&self, key: &str, bucket: RateBucket) -> StoreResult<Option<i64>> {
        let mut conn = self.write_turn().await;
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, tat) VALUES (?1, ?2 + ?3)
             ON CONFLICT (key) DO UPDATE SET tat = MAX(tat, ?2) + ?3 WHERE MAX(tat, ?2) + ?3 - ?2 <= ?4
             RETURNING tat",
        )
        .bind(key)
        .bind(bucket.now_us)
        .bind(bucket.interval_us)
        .bind(bucket.tolerance_us)
        .fetch_optional(&mut *conn)
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let tat: i64 =
            sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = ?").bind(key).fetch_one(&mut *conn).await?;
        Ok(Some(bucket.wait_us(tat)))
    }

    async fn rate_sweep(&self, now_us: i64) -> StoreResult<u64> {
        let mut conn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM rate_limits WHERE tat < ?").bind(now_us).execute(&mut *conn).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0016 rebuilds `channels` under a live schema: rows, foreign keys and the
    /// triggers on `messages` that update it survive, and only public names stay unique.
    #[tokio::test]
    async fn the_channel_names_migration_keeps_rows_and_triggers() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.db");
        let before = MIGRATIONS.iter().position(|m| m.0 == 16).expect("migration 16");
        migrate(&path, &MIGRATIONS[..before]).await.expect("old schema");
        let pool = open_pool(&path).await.expect("pool");
        for statement in [
            "INSERT INTO users (id, username, display_name, password_hash, role, created_at) VALUES ('u1', 'ann', 'Ann', 'x', 'member', 1)",
            "INSERT INTO channels (id, kind, name, created_by, created_at) VALUES ('c1', 'public', 'general', 'u1', 1)",
            "INSERT INTO channels (id, kind, name, created_by, created_at) VALUES ('c2', 'private', 'secret', 'u1', 1)",
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at) VALUES ('c2', 'u1', 'admin', 1)",
        ] {
            sqlx::query(statement).execute(&pool).await.expect(statement);
        }
        pool.close().await;
        migrate(&path, MIGRATIONS).await.expect("migrate");
        let pool = open_pool(&path).await.expect("pool");
        let names: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM channels ORDER BY id").fetch_all(&pool).await.expect("names");
        assert_eq!(names, vec![("c1".into(), "general".into()), ("c2".into(), "secret".into())]);
        let broken: Vec<SqliteRow> = sqlx::query("PRAGMA foreign_key_check").fetch_all(&pool).await.expect("check");
        assert!(broken.is_empty(), "foreign keys still point at channels");
        sqlx::query("INSERT INTO messages (id, channel_id, seq, sender_id, legacy_body, created_at) VALUES ('m1', 'c2', 1, 'u1', 'hi', 2)")
            .execute(&pool)
            .await
            .expect("message");
        let last: i64 =
            sqlx::query_scalar("SELECT last_seq FROM channels WHERE id = 'c2'").fetch_one(&pool).await.expect("seq");
        assert_eq!(last, 1, "the trigger on messages still updates its channel");
        let insert = |id: &'static str, kind: &'static str, name: &'static str| {
            sqlx::query("INSERT INTO channels (id, kind, name, created_at) VALUES (?, ?, ?, 1)")
                .bind(id)
                .bind(kind)
                .bind(name)
        };
        insert("c3", "private", "general").execute(&pool).await.expect("a private name beside a public one");
        insert("c4", "private", "secret").execute(&pool).await.expect("two private channels of one name");
        insert("c5", "public", "secret").execute(&pool).await.expect("a public name beside private ones");
        assert!(insert("c6", "public", "general").execute(&pool).await.is_err(), "public names stay unique");
        pool.close().await;
    }
}
