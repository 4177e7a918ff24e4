//! What the SQLite and PostgreSQL backends share apart from SQL: opening a sealed message body with
//! its data key (a body that fails its integrity check is withheld and logged, never fatal to the
//! read), sealing and opening a file's name and digest, the search tokens of a text, escaping user
//! text for LIKE, the migrator over a backend's embedded migrations, username skeletons and their
//! clashes, and the wall clock. Keeping these in one place means the two
//! backends cannot drift in what they seal or how they bind it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rampart_core::files::FileName;
use rampart_core::search::index_terms;
use rampart_core::validate::{MessageBody, Username};
use rampart_core::{ChannelId, FileId, MessageId, Timestamp, UserId};
use rampart_crypto::blind::{token, TOKEN_BYTES};
use rampart_crypto::{Aad, DataKey};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::blobs::FinishedBlob;
use crate::vault::{BodyBinding, SearchKeys, Vault, BODY_AAD_CURRENT};
use crate::{EnrollOutcome, MessageRecord, NewFile, NewMessage, StoreError, StoreResult};

/// Unwrapped data keys by (channel, epoch), for opening the rows of one read.
pub(crate) type KeyMap = HashMap<(ChannelId, i64), Arc<DataKey>>;

/// The AAD purpose of a file's sealed name.
const NAME_PURPOSE: &str = "rampart file name v1";
/// The AAD purpose of a file's sealed SHA-256.
const DIGEST_PURPOSE: &str = "rampart file sha256 v1";

/// The versioned migrations of one backend, embedded in the binary, run by sqlx's migrator.
pub(crate) fn migrator(list: &[(i64, &'static str, &'static str)]) -> Migrator {
    let migrations: Vec<Migration> = list
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, Cow::Borrowed(*sql), false)
        })
        .collect();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// The outcome of an enrollment whose username clashes with a stored one, from the clash query's
/// answer: `Some(true)` when that very username exists, `Some(false)` when only its skeleton does.
pub(crate) fn username_clash(same_name: Option<bool>) -> Option<EnrollOutcome> {
    same_name.map(|same| if same { EnrollOutcome::UsernameTaken } else { EnrollOutcome::UsernameConfusable })
}

/// The users stored without a username skeleton (rows from before its migration), oldest first:
/// the same SQL on both backends.
pub(crate) const USERS_WITHOUT_SKELETON: &str =
    "SELECT id, username FROM users WHERE username_skeleton IS NULL ORDER BY created_at, id";

/// Gives each `(user id, username)` row its skeleton through `fill` (the backend's UPDATE, which
/// sets it unless another user holds it, answering the rows changed). One that keeps none, because
/// an earlier user holds its skeleton, is logged: both stay, and no new look-alike of either can
/// enroll, but an admin may want to rename or disable one. A unique violation is such a clash too
/// (another node filled that skeleton a moment before), never a failure to start.
pub(crate) async fn fill_skeletons<F, Fut>(rows: Vec<(String, String)>, mut fill: F) -> StoreResult<()>
where
    F: FnMut(String, String) -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut clashes = Vec::new();
    for (id, username) in rows {
        let skeleton = Username::from_stored(username).skeleton();
        let filled = match fill(id.clone(), skeleton).await {
            Ok(rows) => rows > 0,
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => false,
            Err(error) => return Err(error.into()),
        };
        if !filled {
            clashes.push(id);
        }
    }
    if !clashes.is_empty() {
        tracing::warn!(
            users = ?clashes,
            "users whose usernames look like an earlier user's (same skeleton); both stay, no new look-alike can enroll"
        );
    }
    Ok(())
}

pub(crate) fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Parses an optional stored id, naming what is corrupt when it does not parse.
pub(crate) fn parse_id<T>(
    text: Option<String>,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> StoreResult<Option<T>> {
    text.map(|t| parse(&t).ok_or(StoreError::Corrupt(what))).transpose()
}

/// `(channel id, seq)` rows as read, their ids checked.
pub(crate) fn channel_seqs(rows: Vec<(String, i64)>) -> StoreResult<Vec<(ChannelId, i64)>> {
    rows.into_iter()
        .map(|(id, seq)| Ok((ChannelId::parse(&id).ok_or(StoreError::Corrupt("channel id"))?, seq)))
        .collect()
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
pub(crate) fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// What a new message's body is bound to (no edit yet).
pub(crate) fn new_binding(message: &NewMessage) -> BodyBinding<'_> {
    BodyBinding {
        channel: &message.channel_id,
        message: &message.id,
        sender: &message.sender_id,
        thread: message.thread_id.as_ref(),
        created_at: message.created_at,
        edit_count: 0,
    }
}

/// What an edit of `current` binds its new body to: the same row and metadata, the next counter.
pub(crate) fn edit_binding(current: &MessageRecord, edit_count: i64) -> BodyBinding<'_> {
    BodyBinding {
        channel: &current.channel_id,
        message: &current.id,
        sender: &current.sender_id,
        thread: current.thread_id.as_ref(),
        created_at: current.created_at,
        edit_count,
    }
}

/// `BoundRow::COLUMNS` as read: id, channel, sender, thread, creation time, edit counter.
pub(crate) type BoundColumns = (String, String, String, Option<String>, i64, i64);

/// A message row's identity and bound metadata, owned (for the passes that re-seal rows).
#[derive(Debug)]
pub(crate) struct BoundRow {
    pub channel: ChannelId,
    pub message: MessageId,
    pub sender: UserId,
    pub thread: Option<MessageId>,
    pub created_at: Timestamp,
    pub edit_count: i64,
}

impl BoundRow {
    /// The columns `parse` reads, in its order, for a `SELECT` on `messages m`.
    pub const COLUMNS: &'static str = "m.id, m.channel_id, m.sender_id, m.thread_id, m.created_at, m.edit_count";

    pub fn parse((id, channel, sender, thread, created_at, edit_count): BoundColumns) -> StoreResult<Self> {
        Ok(BoundRow {
            channel: ChannelId::parse(&channel).ok_or(StoreError::Corrupt("message channel"))?,
            message: MessageId::parse(&id).ok_or(StoreError::Corrupt("message id"))?,
            sender: UserId::parse(&sender).ok_or(StoreError::Corrupt("message sender"))?,
            thread: parse_id(thread, MessageId::parse, "thread id")?,
            created_at: Timestamp(created_at),
            edit_count,
        })
    }

    pub fn binding(&self) -> BodyBinding<'_> {
        BodyBinding {
            channel: &self.channel,
            message: &self.message,
            sender: &self.sender,
            thread: self.thread.as_ref(),
            created_at: self.created_at,
            edit_count: self.edit_count,
        }
    }
}

/// The name, in `upgrades_pending`, of re-sealing bodies of AAD version 1 under the current one.
pub(crate) const BODY_AAD_UPGRADE: &str = "message_aad_v2";

/// A row as the passes that re-seal bodies read it: its binding, the epoch and the sealed body.
pub(crate) type SealedRow = (BoundRow, i64, Vec<u8>);

/// `BoundRow::COLUMNS, m.key_epoch, m.body` as read.
pub(crate) type SealedColumns = (String, String, String, Option<String>, i64, i64, i64, Vec<u8>);

/// Reads `(id, channel, sender, thread, created_at, edit_count, key_epoch, body)` tuples.
pub(crate) fn sealed_rows(rows: Vec<SealedColumns>) -> StoreResult<Vec<SealedRow>> {
    rows.into_iter()
        .map(|(id, channel, sender, thread, created_at, edit_count, epoch, body)| {
            Ok((BoundRow::parse((id, channel, sender, thread, created_at, edit_count))?, epoch, body))
        })
        .collect()
}

/// The data keys `rows` are sealed under.
pub(crate) fn needed_keys(rows: &[SealedRow]) -> Vec<(ChannelId, i64)> {
    rows.iter().map(|(row, epoch, _)| (row.channel.clone(), *epoch)).collect()
}

/// Re-seals bodies of AAD version 1 under the current version, each under its own epoch's key:
/// the new ciphertexts by message, and how many failed to open (left as they are, and refused on
/// every read).
pub(crate) fn reseal_legacy_aad(keys: &KeyMap, rows: &[SealedRow]) -> (Vec<(MessageId, Vec<u8>)>, u64) {
    let mut resealed = Vec::with_capacity(rows.len());
    let mut unreadable = 0;
    for (row, epoch, sealed) in rows {
        let key = keys.get(&(row.channel.clone(), *epoch));
        let body = key.and_then(|key| Vault::open_legacy_body(key, &row.channel, &row.message, *epoch, sealed));
        match (key, body) {
            (Some(key), Some(body)) => {
                resealed.push((row.message.clone(), Vault::seal_body_with(key, *epoch, &row.binding(), &body)))
            }
            _ => {
                tracing::error!(message_id = %row.message.as_str(), "a message sealed under AAD version 1 failed its integrity check; left as it is");
                unreadable += 1;
            }
        }
    }
    (resealed, unreadable)
}

/// Seals each row's body (as it opens now) under AAD version 1 again, as the release before the
/// binding did: for the tests that show such a database is upgraded at open.
pub(crate) fn legacy_seal(keys: &KeyMap, rows: &[SealedRow]) -> Vec<(MessageId, Vec<u8>)> {
    rows.iter()
        .filter_map(|(row, epoch, sealed)| {
            let key = keys.get(&(row.channel.clone(), *epoch))?;
            let body = Vault::open_body(key, &row.binding(), *epoch, sealed)?;
            let aad = crate::vault::legacy_body_aad(&row.channel, &row.message, *epoch);
            Some((row.message.clone(), key.seal(&aad, body.as_str().as_bytes())))
        })
        .collect()
}

/// A message row's sealed body and what its check needs, as read.
#[derive(Debug)]
pub(crate) struct SealedBody {
    pub sealed: Vec<u8>,
    pub epoch: i64,
    pub aad_version: i64,
    /// Edits of the message as the event log records them.
    pub edit_events: i64,
}

/// Opens a sealed body with its data key from `keys`: the body, and whether it failed its
/// integrity check (then the body is withheld, the failure logged, and the read goes on). A body
/// sealed under an older AAD version, or whose edit counter differs from the edits in the event
/// log, fails it too.
pub(crate) fn open_sealed_body(
    keys: &KeyMap,
    binding: &BodyBinding<'_>,
    stored: &SealedBody,
) -> (Option<MessageBody>, bool) {
    let id = binding.message.as_str();
    let body = if stored.aad_version != BODY_AAD_CURRENT {
        tracing::error!(message_id = %id, aad_version = stored.aad_version, "a stored message is sealed under an AAD version no longer accepted; its body is withheld");
        None
    } else if stored.edit_events != binding.edit_count {
        tracing::error!(message_id = %id, "a stored message's edit counter does not match its edit events (an earlier version put back?); its body is withheld");
        None
    } else {
        let body = keys
            .get(&(binding.channel.clone(), stored.epoch))
            .and_then(|key| Vault::open_body(key, binding, stored.epoch, &stored.sealed));
        if body.is_none() {
            tracing::error!(message_id = %id, "a stored message failed its integrity check; its body is withheld");
        }
        body
    };
    let unreadable = body.is_none();
    (body, unreadable)
}

/// The binding of a file's sealed name (and, with another purpose, of its digest).
fn meta_aad(purpose: &str, channel: &ChannelId, file: &FileId, epoch: i64) -> Aad {
    Aad::new(purpose, &[channel.as_str().as_bytes(), file.as_str().as_bytes(), &epoch.to_be_bytes()])
}

/// A file's name and SHA-256, sealed with its blob's data key and bound to its row: (name, digest).
pub(crate) fn seal_file_meta(blob: &FinishedBlob, file: &NewFile) -> (Vec<u8>, Vec<u8>) {
    let epoch = blob.key_epoch();
    let name =
        blob.key().seal(&meta_aad(NAME_PURPOSE, &file.channel_id, &file.id, epoch), file.name.as_str().as_bytes());
    let digest = blob.key().seal(&meta_aad(DIGEST_PURPOSE, &file.channel_id, &file.id, epoch), &blob.sha256());
    (name, digest)
}

pub(crate) fn open_file_name(
    key: Option<&DataKey>,
    channel: &ChannelId,
    file: &FileId,
    epoch: i64,
    sealed: &[u8],
) -> Option<FileName> {
    let plain = key?.open(&meta_aad(NAME_PURPOSE, channel, file, epoch), sealed).ok()?;
    Some(FileName::from_stored(String::from_utf8(plain.to_vec()).ok()?))
}

pub(crate) fn open_file_digest(
    key: Option<&DataKey>,
    channel: &ChannelId,
    file: &FileId,
    epoch: i64,
    sealed: &[u8],
) -> Option<[u8; 32]> {
    let plain = key?.open(&meta_aad(DIGEST_PURPOSE, channel, file, epoch), sealed).ok()?;
    plain.as_slice().try_into().ok()
}

/// The tokens of one message's text under each of the channel's search keys.
pub(crate) fn index_rows(keys: &SearchKeys, text: &str) -> Vec<[u8; TOKEN_BYTES]> {
    let terms = index_terms(text);
    let mut rows = Vec::with_capacity(terms.len() * keys.len());
    for (_, _, key) in keys {
        for (kind, term) in &terms {
            rows.push(token(key, kind.label(), term));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_literal_escapes_wildcards() {
        assert_eq!(like_literal("a%b_c\\d"), "a\\%b\\_c\\\\d");
    }
}
