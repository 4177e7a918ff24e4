//! The only crate that knows SQL. `Store` is the storage seam: the app speaks only to this trait,
//! `SqliteStore` is the embedded default, `PgStore` the scale-out one, and `conformance` holds the
//! one test suite every implementation must pass. Each method is one transaction, so an invariant
//! that spans rows (an invitation used once, the last owner kept) is enforced here atomically, not
//! by the caller's read-then-write.
#![forbid(unsafe_code)]

pub mod audit;
pub mod audit_verify;
pub mod blobs;
pub mod conformance;
pub mod conformance_binding;
mod conformance_channels;
pub mod conformance_files;
pub mod conformance_keys;
pub mod conformance_search;
mod model;
mod model_channels;
mod model_files;
mod model_keys;
pub mod postgres;
mod search_tokens;
mod shared;
pub mod sqlite;
mod vault;

pub use audit::{AuditEntry, AuditHead, AuditRow, AuditStore, Checkpoint, SqliteAuditStore};
pub use audit_verify::{VerifyProblem, VerifyReport};
pub use blobs::{BlobReader, BlobWriter, FinishedBlob};
pub use model::*;
pub use model_channels::*;
pub use model_files::*;
pub use model_keys::*;
pub use postgres::{PgAuditStore, PgOptions, PgStore, PgTls};
pub use sqlite::SqliteStore;
pub use vault::{EpochPolicy, KeyConfig, ACTIVE_KEY_RECHECK_MS};

use async_trait::async_trait;
use rampart_core::channel::ChannelRole;
use rampart_core::throttle::{ThrottleScope, ThrottleState};
use rampart_core::validate::DirectoryQuery;
use rampart_core::validate::MessageBody;
use rampart_core::{ChannelId, FileId, MessageId, Role, SessionId, Timestamp, UserId};

/// Errors from the store. The text never carries SQL or values; the cause is kept for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("a stored row is not valid: {0}")]
    Corrupt(&'static str),
    #[error("{0}")]
    Keys(#[from] rampart_crypto::KeyringError),
    #[error("KEK version {0} is missing from key_dir (file kek-{0}.key); restore it from the key backup")]
    KeyMissing(u32),
    #[error(
        "key_dir's kek-{0}.key does not match this database (its key check value differs): is key_dir the one that belongs to this data_dir?"
    )]
    KeyMismatch(u32),
    #[error("{0} failed its integrity check")]
    Integrity(&'static str),
    #[error("search is turned off on this server")]
    SearchDisabled,
    /// The search covers more channels than `search::SEARCH_TOKENS_MAX`.
    #[error("the search covers too many channels")]
    SearchTooBroad,
    /// A database setting is not usable (the sentence never quotes a URL).
    #[error("{0}")]
    Settings(&'static str),
    /// Reading or writing a file blob failed (the cause is for the log; it may name a path).
    #[error("file storage failed")]
    Blob(#[from] std::io::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Computes a throttle state from the previous one; passed into the store so the read-modify-write
/// happens inside one transaction.
pub type ThrottleStep<'a> = &'a (dyn Fn(Option<ThrottleState>) -> ThrottleState + Send + Sync);

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ----- users -----
    async fn count_users(&self) -> StoreResult<u64>;
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// Enabled users whose username or display name contains the query, by username.
    async fn search_users(&self, query: &DirectoryQuery, limit: u32) -> StoreResult<Vec<UserRecord>>;
    async fn list_users(&self, limit: u32) -> StoreResult<Vec<UserRecord>>;
    /// Enabled owners, for the last-owner rule.
    async fn count_enabled_owners(&self) -> StoreResult<u64>;
    /// Changes a role unless that would leave no enabled owner.
    async fn set_user_role(&self, id: &UserId, role: Role) -> StoreResult<GuardedUpdate>;
    /// Disables (ending every session in the same transaction) or enables a user, unless
    /// disabling would leave no enabled owner.
    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> StoreResult<GuardedUpdate>;
    async fn record_login(&self, id: &UserId, at: Timestamp) -> StoreResult<()>;
    /// Sets a new password hash, ends every session of the user and opens `new_session`, in one
    /// transaction.
    async fn change_password(&self, id: &UserId, password_hash: &str, new_session: &NewSession) -> StoreResult<()>;

    // ----- invitations -----
    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<()>;
    /// Whether an unused, unexpired invitation for `role` exists.
    async fn has_open_invitation(&self, role: Role, now: Timestamp) -> StoreResult<bool>;
    /// Whether the invitation with this hash exists, is unused and unexpired (a cheap check made
    /// before the costly password hashing of an enrollment).
    async fn invitation_is_open(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool>;
    /// Uses the invitation and creates the user with the invitation's role, atomically: of two
    /// concurrent enrollments with one token, one wins.
    async fn enroll(&self, token_hash: &str, now: Timestamp, user: &NewUser) -> StoreResult<EnrollOutcome>;

    // ----- sessions -----
    /// Opens a session; when the user then has more than `per_user_max`, the oldest end.
    async fn create_session(&self, session: &NewSession, per_user_max: u32) -> StoreResult<()>;
    async fn session_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()>;
    async fn list_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>>;
    /// Ends one session of `user`; false when it does not exist or is someone else's.
    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<bool>;
    /// Ends every session of `user` except `keep`; returns how many ended.
    async fn delete_sessions_except(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64>;
    /// Deletes sessions past their absolute expiry or idle since `idle_before`.
    async fn delete_stale_sessions(&self, now: Timestamp, idle_before: Timestamp) -> StoreResult<u64>;

    // ----- login throttling -----
    async fn throttle_state(&self, scope: ThrottleScope, key: &str) -> StoreResult<Option<ThrottleState>>;
    async fn throttle_failure(
        &self,
        scope: ThrottleScope,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleState>;
    async fn throttle_clear(&self, scope: ThrottleScope, key: &str) -> StoreResult<()>;

    // ----- rate limits in the database (shared by a cluster's nodes) -----
    /// Takes one unit from the bucket `key`. `None`: taken; `Some(wait_us)`: refused, with how
    /// long until a unit is free. Atomic across connections and nodes.
    async fn rate_take(&self, key: &str, bucket: RateBucket) -> StoreResult<Option<i64>>;
    /// Forgets buckets that are full again (their arrival time has passed); returns how many.
    async fn rate_sweep(&self, now_us: i64) -> StoreResult<u64>;
}

/// A GCRA take: each unit pushes the bucket's "theoretical arrival time" (TAT) `interval_us` on
/// from `max(TAT, now)`; it is allowed while that stays within `tolerance_us` of now (the burst:
/// `tolerance_us = interval_us × burst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateBucket {
    pub now_us: i64,
    pub interval_us: i64,
    pub tolerance_us: i64,
}

impl RateBucket {
    /// How long until a take is allowed again, for a bucket at `tat` (at least 1 µs).
    pub fn wait_us(&self, tat: i64) -> i64 {
        (tat + self.interval_us - self.tolerance_us - self.now_us).max(1)
    }
}

/// Channels, membership, messages and the per-channel event log. Every method that changes what a
/// member sees writes its event (with the next `seq`) in the same transaction and returns it, for
/// the caller to publish after commit.
#[async_trait]
pub trait ChannelStore: Send + Sync + std::fmt::Debug {
    /// Creates a public or private channel with its creator as channel admin (event 1:
    /// `member.joined`).
    async fn create_channel(&self, channel: &NewChannel) -> StoreResult<CreateChannelOutcome>;
    /// The one direct-message channel of two users (or of one user with themselves): created with
    /// both as members if missing. Returns the channel, the events written, and whether it is new.
    async fn open_direct(
        &self,
        id: &ChannelId,
        a: &UserId,
        b: &UserId,
        at: Timestamp,
    ) -> StoreResult<(ChannelRecord, Vec<EventRecord>, bool)>;
    async fn channel(&self, id: &ChannelId) -> StoreResult<Option<ChannelRecord>>;
    /// The channel and `user`'s role in it (if a member), in one read.
    async fn channel_for(
        &self,
        id: &ChannelId,
        user: &UserId,
    ) -> StoreResult<Option<(ChannelRecord, Option<ChannelRole>)>>;
    async fn membership(&self, channel: &ChannelId, user: &UserId) -> StoreResult<Option<ChannelRole>>;
    /// The user's channels, and (with `include_public`) every public channel, by name.
    async fn list_channels(&self, user: &UserId, include_public: bool, limit: u32) -> StoreResult<Vec<ChannelListing>>;
    /// Adds a member; `None` when already one.
    async fn add_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
        role: ChannelRole,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>>;
    /// Removes a member; `None` when not one.
    async fn remove_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>>;
    async fn update_channel(&self, id: &ChannelId, change: &ChannelChange, at: Timestamp)
        -> StoreResult<UpdateOutcome>;
    async fn list_members(&self, channel: &ChannelId, limit: u32) -> StoreResult<Vec<MemberRecord>>;
    async fn post_message(&self, message: &NewMessage) -> StoreResult<PostOutcome>;
    async fn message(&self, id: &MessageId) -> StoreResult<Option<MessageRecord>>;
    /// Replaces a live message's body; `None` when it is missing or deleted.
    async fn edit_message(&self, id: &MessageId, body: &MessageBody, at: Timestamp)
        -> StoreResult<Option<EventRecord>>;
    /// Destroys the body and leaves a tombstone; `None` when missing or already deleted.
    async fn delete_message(&self, id: &MessageId, at: Timestamp) -> StoreResult<Option<EventRecord>>;
    /// One page of messages in `seq` order, and whether more lie beyond it in the paging direction.
    async fn history(&self, channel: &ChannelId, query: HistoryQuery<'_>) -> StoreResult<(Vec<MessageRecord>, bool)>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn events_after(&self, channel: &ChannelId, after: i64, limit: u32) -> StoreResult<Vec<EventRecord>>;
    /// Moves the user's read marker forward (never back) to `seq`, bounded by the channel's last.
    async fn mark_read(&self, channel: &ChannelId, user: &UserId, seq: i64) -> StoreResult<()>;
    /// `(channel, last_seq)` for every channel the user belongs to.
    async fn member_channel_seqs(&self, user: &UserId) -> StoreResult<Vec<(ChannelId, i64)>>;
    /// `(channel, last_seq)` for each of these channels that exists (at most
    /// `limits::CLUSTER_SWEEP_CHANNELS_PER_READ` per call), in no particular order.
    async fn channel_heads(&self, channels: &[ChannelId]) -> StoreResult<Vec<(ChannelId, i64)>>;
    /// Messages matching `query` in channels `user` is a member of (membership checked in the
    /// query), newest first, older than `before`.
    async fn search(
        &self,
        user: &UserId,
        query: &rampart_core::search::SearchQuery,
        channel: Option<&ChannelId>,
        before: Option<&SearchCursor>,
        limit: u32,
    ) -> StoreResult<SearchPage>;
    /// Rebuilds the search index of one channel or every channel under fresh search keys, while
    /// the server runs; returns (channels, messages indexed).
    async fn rebuild_search(&self, channel: Option<&ChannelId>, at: Timestamp) -> StoreResult<(u64, u64)>;
}

/// Encryption at rest, as `rampart keys` sees it. Sealing and opening bodies happens inside the
/// backend on every write and read; these are the admin's operations on the keys themselves.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    async fn key_status(&self) -> StoreResult<KeyStatus>;
    /// Makes a new KEK version (its file in `key_dir`) the active one; the previous turns
    /// `retiring` until no data key is wrapped by it. Returns the new version.
    async fn begin_kek_rotation(&self, at: Timestamp) -> StoreResult<u32>;
    /// Re-wraps up to `limit` data keys that the active KEK does not wrap; returns how many.
    async fn rewrap_data_keys(&self, limit: u32) -> StoreResult<u64>;
    /// Retires every retiring KEK that wraps no data key and deletes its file.
    async fn retire_unused_keks(&self, at: Timestamp) -> StoreResult<Vec<u32>>;
    /// Starts a new epoch (a new data key) now for one channel or every channel; returns how many.
    async fn start_epoch(&self, channel: Option<&ChannelId>, at: Timestamp) -> StoreResult<u64>;
    /// Re-seals up to `limit` messages sealed under an older epoch with their channel's active
    /// key. Resumable: it picks up whatever is still on an old epoch.
    async fn reencrypt_messages(&self, limit: u32, at: Timestamp) -> StoreResult<ReencryptProgress>;
    /// Deletes every data key that the active KEK does not wrap, that is not its channel's
    /// newest, and that seals nothing any more (after `start_epoch` and `reencrypt_messages`):
    /// the key material a re-key replaces. Returns (destroyed, kept: such keys still sealing a
    /// file or a message that fails its integrity check).
    async fn destroy_replaced_data_keys(&self) -> StoreResult<(u64, u64)>;
}

/// Shared files: their rows, and their sealed blobs in `data_dir/blobs`. The data key never leaves
/// the store: a writer or reader holds it, bound to its one file.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug {
    /// Starts the blob of a new file (in the blob directory's temporary area), sealed under the
    /// channel's active data key. Dropping the writer before it is recorded removes it.
    async fn create_blob(&self, channel: &ChannelId, file: &FileId, at: Timestamp) -> StoreResult<BlobWriter>;
    /// Records the file and moves its finished blob into place, in one transaction, unless the
    /// uploader's stored files would then exceed `quota_bytes` (then nothing stays).
    async fn insert_file(&self, file: &NewFile, blob: FinishedBlob, quota_bytes: u64)
        -> StoreResult<InsertFileOutcome>;
    async fn file(&self, id: &FileId) -> StoreResult<Option<FileRecord>>;
    /// A reader of the file's content.
    async fn open_blob(&self, file: &FileRecord) -> StoreResult<BlobReader>;
    /// Bytes of files the user keeps stored.
    async fn user_file_bytes(&self, user: &UserId) -> StoreResult<u64>;
    /// Deletes files never attached to a message that were uploaded before `unattached_before`,
    /// with their blobs, and temporary blobs older than `temp_age_ms`; returns how many files.
    async fn sweep_files(&self, unattached_before: Timestamp, temp_age_ms: u64) -> StoreResult<u64>;
}

/// Everything the application needs from storage.
pub trait Backend: Store + ChannelStore + KeyStore + FileStore {}

impl<T: Store + ChannelStore + KeyStore + FileStore> Backend for T {}
