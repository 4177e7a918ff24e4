//! The store's side of encryption at rest, apart from SQL: the KEK keyring read from `key_dir`,
//! the unwrapped data keys cached in memory (wiped on drop), each channel's active epoch, and the
//! AAD that binds every sealed body to its channel, row, key and metadata. A backend calls in here to seal
//! before it writes and to open after it reads; the database only ever sees ciphertext.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rampart_core::validate::MessageBody;
use rampart_core::{ChannelId, MessageId, Timestamp, UserId};
use rampart_crypto::{Aad, DataKey, Kek, Keyring, KeyringError};

use crate::{StoreError, StoreResult};

/// Unwrapped data keys kept in memory; past this the cache starts over (keys are re-read and
/// unwrapped on demand).
const DATA_KEY_CACHE_MAX: usize = 10_000;
/// How long a node trusts its idea of a channel's active epoch before reading it again, so a
/// `rampart keys rotate-dek` (or another node's new epoch) takes effect within this time.
pub const ACTIVE_KEY_RECHECK_MS: u64 = 5_000;
const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// When a channel's data key is replaced by a new epoch.
#[derive(Debug, Clone, Copy)]
pub struct EpochPolicy {
    pub messages_max: u64,
    pub days_max: u32,
}

impl Default for EpochPolicy {
    fn default() -> Self {
        EpochPolicy {
            messages_max: rampart_core::limits::DEK_EPOCH_MESSAGES_MAX,
            days_max: rampart_core::limits::DEK_EPOCH_DAYS_MAX,
        }
    }
}

/// Where the keys live and how long a data key serves.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub key_dir: PathBuf,
    pub epoch: EpochPolicy,
}

/// A data key as stored: wrapped by the KEK of `kek_version`.
#[derive(Debug, Clone)]
pub(crate) struct DataKeyRow {
    pub channel_id: ChannelId,
    pub epoch: i64,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
    pub sealed_count: i64,
}

/// A channel's current data key.
#[derive(Debug, Clone)]
pub(crate) struct ActiveKey {
    pub epoch: i64,
    pub key: Arc<DataKey>,
    created_at: Timestamp,
    sealed_count: i64,
    read_at: Instant,
}

/// The binding of a wrapped data key: which channel and epoch it belongs to.
pub(crate) fn data_key_aad(channel: &ChannelId, epoch: i64) -> Aad {
    Aad::new("rampart data key v1", &[channel.as_str().as_bytes(), &epoch.to_be_bytes()])
}

/// The binding of a wrapped search key: which channel and version it belongs to.
pub(crate) fn search_key_aad(channel: &ChannelId, version: i64) -> Aad {
    Aad::new("rampart search key v1", &[channel.as_str().as_bytes(), &version.to_be_bytes()])
}

/// A channel's search keys as this node last read them: (version, active?, key).
pub(crate) type SearchKeys = Vec<(i64, bool, Arc<DataKey>)>;

/// The AAD version of bodies sealed before it bound the sender, thread, creation time and edit
/// counter (channel, row and epoch only). Such rows are re-sealed at the first start after the
/// upgrade and refused from then on.
pub(crate) const BODY_AAD_LEGACY: i64 = 1;
/// The AAD version every body is sealed under now (`messages.aad_version`).
pub(crate) const BODY_AAD_CURRENT: i64 = 2;

/// What a sealed message body is bound to besides its key: its row, and every column someone with
/// write access to the database could otherwise change unseen (who sent it, in which thread, when,
/// and how many edits it has had, so an earlier edit's ciphertext cannot be put back).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyBinding<'a> {
    pub channel: &'a ChannelId,
    pub message: &'a MessageId,
    pub sender: &'a UserId,
    pub thread: Option<&'a MessageId>,
    pub created_at: Timestamp,
    pub edit_count: i64,
}

/// The binding of a sealed message body (AAD version 2): the row, its metadata and the key.
pub(crate) fn body_aad(binding: &BodyBinding<'_>, epoch: i64) -> Aad {
    // A thread id is never empty, so the empty part stands for "not in a thread".
    let thread = binding.thread.map_or("", MessageId::as_str);
    Aad::new(
        "rampart message body v2",
        &[
            binding.channel.as_str().as_bytes(),
            binding.message.as_str().as_bytes(),
            &epoch.to_be_bytes(),
            binding.sender.as_str().as_bytes(),
            thread.as_bytes(),
            &binding.created_at.0.to_be_bytes(),
            &binding.edit_count.to_be_bytes(),
        ],
    )
}

/// The binding of a body sealed under AAD version 1: its channel, its row and its key only.
pub(crate) fn legacy_body_aad(channel: &ChannelId, message: &MessageId, epoch: i64) -> Aad {
    Aad::new(
        "rampart message body v1",
        &[channel.as_str().as_bytes(), message.as_str().as_bytes(), &epoch.to_be_bytes()],
    )
}

#[derive(Debug)]
pub(crate) struct Vault {
    key_dir: PathBuf,
    policy: EpochPolicy,
    keyring: RwLock<Arc<Keyring>>,
    data_keys: Mutex<HashMap<(ChannelId, i64), Arc<DataKey>>>,
    active: Mutex<HashMap<ChannelId, ActiveKey>>,
    search: Mutex<HashMap<ChannelId, (Instant, SearchKeys)>>,
}

impl Vault {
    pub fn open(config: &KeyConfig) -> Result<Self, KeyringError> {
        let keyring = Keyring::load(&config.key_dir)?;
        Ok(Vault {
            key_dir: config.key_dir.clone(),
            policy: config.epoch,
            keyring: RwLock::new(Arc::new(keyring)),
            data_keys: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            search: Mutex::new(HashMap::new()),
        })
    }

    pub fn key_dir(&self) -> &Path {
        &self.key_dir
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(&self.keyring.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads `key_dir` again (after another process added a KEK version).
    pub fn reload_keyring(&self) -> StoreResult<Arc<Keyring>> {
        let fresh = Arc::new(Keyring::load(&self.key_dir).map_err(StoreError::Keys)?);
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&fresh);
        Ok(fresh)
    }

    /// The KEK of `version`, reading `key_dir` again if this node has not seen it yet.
    pub fn kek(&self, version: u32) -> StoreResult<Arc<Kek>> {
        if let Some(kek) = self.keyring().get(version) {
            return Ok(kek);
        }
        self.reload_keyring()?.get(version).ok_or(StoreError::KeyMissing(version))
    }

    /// Makes a data key for a channel epoch, wrapped by `kek`.
    pub fn new_data_key(kek: &Kek, channel: &ChannelId, epoch: i64) -> (DataKey, Vec<u8>) {
        let key = DataKey::generate();
        let wrapped = kek.wrap(&key, &data_key_aad(channel, epoch));
        (key, wrapped)
    }

    /// The unwrapped key of a stored row, from the cache or by unwrapping it.
    pub fn unwrap(&self, row: &DataKeyRow) -> StoreResult<Arc<DataKey>> {
        let id = (row.channel_id.clone(), row.epoch);
        if let Some(key) = self.cached(&id) {
            return Ok(key);
        }
        let kek = self.kek(row.kek_version)?;
        let key = kek
            .unwrap(&row.wrapped, &data_key_aad(&row.channel_id, row.epoch))
            .map_err(|_| StoreError::Integrity("a wrapped data key"))?;
        let key = Arc::new(key);
        let mut cache = self.data_keys.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= DATA_KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, Arc::clone(&key));
        Ok(key)
    }

    pub fn cached(&self, id: &(ChannelId, i64)) -> Option<Arc<DataKey>> {
        self.data_keys.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// The channel's active key if this node read it recently and it still has room; counts the
    /// message about to be sealed under it.
    pub fn take_active(&self, channel: &ChannelId, now: Timestamp) -> Option<ActiveKey> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let entry = active.get_mut(channel)?;
        let fresh = entry.read_at.elapsed() < Duration::from_millis(ACTIVE_KEY_RECHECK_MS);
        if !fresh || self.is_spent(entry.created_at, entry.sealed_count, now) {
            return None;
        }
        entry.sealed_count += 1;
        Some(entry.clone())
    }

    /// Whether a key of this age and use must give way to a new epoch.
    pub fn is_spent(&self, created_at: Timestamp, sealed_count: i64, now: Timestamp) -> bool {
        let messages_max = i64::try_from(self.policy.messages_max).unwrap_or(i64::MAX);
        sealed_count >= messages_max || now.0 - created_at.0 >= i64::from(self.policy.days_max) * MS_PER_DAY
    }

    /// Remembers a channel's active key as just read from the store.
    pub fn set_active(&self, row: &DataKeyRow, key: Arc<DataKey>) -> ActiveKey {
        let entry = ActiveKey {
            epoch: row.epoch,
            key,
            created_at: row.created_at,
            sealed_count: row.sealed_count + 1,
            read_at: Instant::now(),
        };
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.len() >= DATA_KEY_CACHE_MAX {
            active.clear();
        }
        active.insert(row.channel_id.clone(), entry.clone());
        entry
    }

    /// Forgets every channel's active key and search keys (after a rotation in this process).
    pub fn forget_active(&self) {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.search.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Forgets every unwrapped data key (after some were destroyed in this process).
    pub fn forget_data_keys(&self) {
        self.data_keys.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.forget_active();
    }

    /// A channel's search keys if this node read them within `ACTIVE_KEY_RECHECK_MS`.
    pub fn cached_search_keys(&self, channel: &ChannelId) -> Option<SearchKeys> {
        let cache = self.search.lock().unwrap_or_else(|p| p.into_inner());
        let (read_at, keys) = cache.get(channel)?;
        (read_at.elapsed() < Duration::from_millis(ACTIVE_KEY_RECHECK_MS)).then(|| keys.clone())
    }

    pub fn set_search_keys(&self, channel: &ChannelId, keys: SearchKeys) {
        let mut cache = self.search.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= DATA_KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(channel.clone(), (Instant::now(), keys));
    }

    /// Unwraps a stored search key.
    pub fn unwrap_search_key(
        &self,
        channel: &ChannelId,
        version: i64,
        kek_version: u32,
        wrapped: &[u8],
    ) -> StoreResult<Arc<DataKey>> {
        let kek = self.kek(kek_version)?;
        let key = kek
            .unwrap(wrapped, &search_key_aad(channel, version))
            .map_err(|_| StoreError::Integrity("a wrapped search key"))?;
        Ok(Arc::new(key))
    }

    pub fn seal_body(key: &ActiveKey, binding: &BodyBinding<'_>, body: &MessageBody) -> Vec<u8> {
        Self::seal_body_with(&key.key, key.epoch, binding, body)
    }

    /// Seals a body under the data key of `epoch` (re-sealing in place keeps the row's epoch).
    pub fn seal_body_with(key: &DataKey, epoch: i64, binding: &BodyBinding<'_>, body: &MessageBody) -> Vec<u8> {
        key.seal(&body_aad(binding, epoch), body.as_str().as_bytes())
    }

    /// Opens a sealed body; `None` when it fails its integrity check (moved, altered, its
    /// metadata changed, or not a valid body), which the caller reports without failing the rest
    /// of the read.
    pub fn open_body(key: &DataKey, binding: &BodyBinding<'_>, epoch: i64, sealed: &[u8]) -> Option<MessageBody> {
        Self::open_with(key, &body_aad(binding, epoch), sealed)
    }

    /// Opens a body sealed under AAD version 1, only to re-seal it under the current version.
    pub fn open_legacy_body(
        key: &DataKey,
        channel: &ChannelId,
        message: &MessageId,
        epoch: i64,
        sealed: &[u8],
    ) -> Option<MessageBody> {
        Self::open_with(key, &legacy_body_aad(channel, message, epoch), sealed)
    }

    fn open_with(key: &DataKey, aad: &Aad, sealed: &[u8]) -> Option<MessageBody> {
        let plain = key.open(aad, sealed).ok()?;
        let text = std::str::from_utf8(&plain).ok()?;
        Some(MessageBody::from_stored(text.to_owned()))
    }
}
