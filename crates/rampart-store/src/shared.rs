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
use rampart_core::{ChannelId, FileId, MessageId, Timestamp};
use rampart_crypto::blind::{token, TOKEN_BYTES};
use rampart_crypto::{Aad, DataKey};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::blobs::FinishedBlob;
use crate::vault::{SearchKeys, Vault};
use crate::{EnrollOutcome, NewFile, StoreError, StoreResult};

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

/// Opens a sealed body with its data key from `keys`: the body, and whether it failed its
/// integrity check (then the body is withheld, the failure logged, and the read goes on).
pub(crate) fn open_sealed_body(
    keys: &KeyMap,
    channel: &ChannelId,
    id: &MessageId,
    epoch: i64,
    sealed: &[u8],
) -> (Option<MessageBody>, bool) {
    let body = keys.get(&(channel.clone(), epoch)).and_then(|key| Vault::open_body(key, channel, id, epoch, sealed));
    if body.is_none() {
        tracing::error!(message_id = %id.as_str(), "a stored message failed its integrity check; its body is withheld");
    }
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
