//! SQLite side of shared files: the `files` rows (name and digest sealed with the channel's data
//! key), the per-user quota checked in the transaction that records a file, attaching files to
//! the message that carries them, and removing blobs whose rows are deleted.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use rampart_core::files::FileKind;
use rampart_core::{ChannelId, FileId, MessageId, Timestamp, UserId};

use super::keys::KeyMap;
use super::SqliteStore;
use crate::blobs::{BlobReader, BlobWriter, FinishedBlob};
use crate::shared::{open_file_digest as open_digest, open_file_name as open_name, seal_file_meta};
use crate::{FileRecord, FileRef, FileStore, InsertFileOutcome, NewFile, StoreError, StoreResult};

const FILE_COLUMNS: &str =
    "f.id, f.channel_id, f.uploader_id, f.message_id, f.name, f.sha256, f.content_type, f.size, f.key_epoch, f.created_at";

fn kind_of(row: &SqliteRow) -> StoreResult<FileKind> {
    let text: String = row.try_get("content_type")?;
    FileKind::from_media_type(&text).ok_or(StoreError::Corrupt("file content type"))
}

fn ids_of(row: &SqliteRow) -> StoreResult<(FileId, ChannelId, i64)> {
    let id: String = row.try_get("id")?;
    let channel: String = row.try_get("channel_id")?;
    Ok((
        FileId::parse(&id).ok_or(StoreError::Corrupt("file id"))?,
        ChannelId::parse(&channel).ok_or(StoreError::Corrupt("file channel"))?,
        row.try_get("key_epoch")?,
    ))
}

fn file_from_row(row: &SqliteRow, keys: &KeyMap) -> StoreResult<FileRecord> {
    let (id, channel_id, key_epoch) = ids_of(row)?;
    let key = keys.get(&(channel_id.clone(), key_epoch)).map(|k| k.as_ref());
    let name = open_name(key, &channel_id, &id, key_epoch, &row.try_get::<Vec<u8>, _>("name")?);
    let sha256 = open_digest(key, &channel_id, &id, key_epoch, &row.try_get::<Vec<u8>, _>("sha256")?);
    if name.is_none() || sha256.is_none() {
        tracing::error!(file_id = %id.as_str(), "a stored file's name or digest failed its integrity check");
    }
    let uploader: String = row.try_get("uploader_id")?;
    let message: Option<String> = row.try_get("message_id")?;
    let size: i64 = row.try_get("size")?;
    Ok(FileRecord {
        uploader_id: UserId::parse(&uploader).ok_or(StoreError::Corrupt("file uploader"))?,
        message_id: message.map(|m| MessageId::parse(&m).ok_or(StoreError::Corrupt("file message"))).transpose()?,
        name,
        sha256,
        kind: kind_of(row)?,
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt("file size"))?,
        created_at: Timestamp(row.try_get("created_at")?),
        id,
        channel_id,
        key_epoch,
    })
}

/// Removes the blobs of deleted file rows; a failure is logged (the sweep finds no row for such a
/// blob, so it is reported, not retried).
pub(crate) fn remove_blobs(store: &SqliteStore, ids: &[String]) {
    for id in ids {
        let Some(id) = FileId::parse(id) else { continue };
        if let Err(error) = store.blobs.remove(&id) {
            tracing::error!(file_id = %id.as_str(), %error, "a deleted file's blob could not be removed");
        }
    }
}

impl SqliteStore {
    /// Attaches `files` to `message` inside the caller's transaction; false (and the caller rolls
    /// back) when one is not the sender's unattached upload to the message's channel.
    pub(crate) async fn attach_files(
        conn: &mut SqliteConnection,
        files: &[FileId],
        message: &MessageId,
        channel: &ChannelId,
        sender: &UserId,
    ) -> StoreResult<bool> {
        for file in files {
            let done = sqlx::query(
                "UPDATE files SET message_id = ?1 WHERE id = ?2 AND channel_id = ?3 AND uploader_id = ?4 AND message_id IS NULL",
            )
            .bind(message.as_str())
            .bind(file.as_str())
            .bind(channel.as_str())
            .bind(sender.as_str())
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes the rows of the files a message carries, inside the caller's transaction; returns
    /// their ids, whose blobs the caller removes once the transaction commits.
    pub(crate) async fn detach_files(conn: &mut SqliteConnection, message: &MessageId) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("DELETE FROM files WHERE message_id = ? RETURNING id")
            .bind(message.as_str())
            .fetch_all(&mut *conn)
            .await?)
    }

    /// The files each of `messages` carries, names opened.
    pub(crate) async fn file_refs(
        &self,
        conn: &mut SqliteConnection,
        messages: &[&MessageId],
    ) -> StoreResult<HashMap<MessageId, Vec<FileRef>>> {
        let mut refs: HashMap<MessageId, Vec<FileRef>> = HashMap::new();
        if messages.is_empty() {
            return Ok(refs);
        }
        // Ids are `[A-Za-z0-9-]` only (checked by their parsers), so the JSON array needs no escaping.
        let list = format!("[\"{}\"]", messages.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("\",\""));
        let rows = sqlx::query(
            "SELECT id, channel_id, message_id, name, content_type, size, key_epoch FROM files
             WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY created_at, id",
        )
        .bind(list)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(refs);
        }
        let needed = rows.iter().filter_map(|row| ids_of(row).ok().map(|(_, channel, epoch)| (channel, epoch)));
        let keys = self.key_map(conn, needed.collect::<Vec<_>>()).await?;
        for row in &rows {
            let (id, channel, epoch) = ids_of(row)?;
            let message: String = row.try_get("message_id")?;
            let message = MessageId::parse(&message).ok_or(StoreError::Corrupt("file message"))?;
            let key = keys.get(&(channel.clone(), epoch)).map(|k| k.as_ref());
            let name = open_name(key, &channel, &id, epoch, &row.try_get::<Vec<u8>, _>("name")?);
            let size: i64 = row.try_get("size")?;
            let file = FileRef { id, name, kind: kind_of(row)?, size: u64::try_from(size).unwrap_or(0) };
            refs.entry(message).or_default().push(file);
        }
        Ok(refs)
    }
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn create_blob(&self, channel: &ChannelId, file: &FileId, at: Timestamp) -> StoreResult<BlobWriter> {
        let key = self.active_key(channel, at).await?;
        Ok(self.blobs.create(key.key, channel, file, key.epoch)?)
    }

    async fn insert_file(
        &self,
        file: &NewFile,
        mut blob: FinishedBlob,
        quota_bytes: u64,
    ) -> StoreResult<InsertFileOutcome> {
        if blob.file_id() != &file.id || blob.channel_id() != &file.channel_id {
            return Err(StoreError::Corrupt("a blob recorded for another file"));
        }
        let (epoch, size) = (blob.key_epoch(), blob.size());
        let (name, digest) = seal_file_meta(&blob, file);
        let size_i64 = i64::try_from(size).map_err(|_| StoreError::Corrupt("file size"))?;
        let mut tx = self.begin_write().await?;
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = ?")
            .bind(file.uploader_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let used = u64::try_from(used).unwrap_or(0);
        if used.saturating_add(size) > quota_bytes {
            return Ok(InsertFileOutcome::QuotaExceeded { used });
        }
        sqlx::query(
            "INSERT INTO files (id, channel_id, uploader_id, name, sha256, content_type, size, key_epoch, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(file.id.as_str())
        .bind(file.channel_id.as_str())
        .bind(file.uploader_id.as_str())
        .bind(name)
        .bind(digest)
        .bind(file.kind.media_type())
        .bind(size_i64)
        .bind(epoch)
        .bind(file.created_at.0)
        .execute(&mut *tx)
        .await?;
        self.blobs.place(&mut blob)?;
        if let Err(error) = tx.commit().await {
            let _ = self.blobs.remove(&file.id);
            return Err(error.into());
        }
        Ok(InsertFileOutcome::Stored(FileRecord {
            id: file.id.clone(),
            channel_id: file.channel_id.clone(),
            uploader_id: file.uploader_id.clone(),
            message_id: None,
            name: Some(file.name.clone()),
            sha256: Some(blob.sha256()),
            kind: file.kind,
            size,
            key_epoch: epoch,
            created_at: file.created_at,
        }))
    }

    async fn file(&self, id: &FileId) -> StoreResult<Option<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ?");
        let mut conn = self.pool.acquire().await?;
        let Some(row) = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *conn).await? else {
            return Ok(None);
        };
        let (_, channel, epoch) = ids_of(&row)?;
        let keys = self.key_map(&mut conn, [(channel, epoch)]).await?;
        file_from_row(&row, &keys).map(Some)
    }

    async fn open_blob(&self, file: &FileRecord) -> StoreResult<BlobReader> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.key_map(&mut conn, [(file.channel_id.clone(), file.key_epoch)]).await?;
        drop(conn);
        let key =
            keys.get(&(file.channel_id.clone(), file.key_epoch)).ok_or(StoreError::Integrity("a file's data key"))?;
        Ok(self.blobs.reader(key, &file.channel_id, &file.id, file.key_epoch, file.size)?)
    }

    async fn user_file_bytes(&self, user: &UserId) -> StoreResult<u64> {
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = ?")
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn sweep_files(&self, unattached_before: Timestamp, temp_age_ms: u64) -> StoreResult<u64> {
        let ids: Vec<String> =
            sqlx::query_scalar("DELETE FROM files WHERE message_id IS NULL AND created_at < ? RETURNING id")
                .bind(unattached_before.0)
                .fetch_all(&self.pool)
                .await?;
        remove_blobs(self, &ids);
        self.blobs.sweep_temp(std::time::Duration::from_millis(temp_age_ms))?;
        Ok(ids.len() as u64)
    }
}
