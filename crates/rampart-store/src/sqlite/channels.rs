//! SQLite implementation of `ChannelStore`. Each change that members must see takes the channel's
//! next `seq` (`UPDATE channels SET last_seq = last_seq + 1 … RETURNING`) and writes its event in
//! the same `BEGIN IMMEDIATE` transaction, so under concurrent writers `seq` stays dense.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use rampart_core::channel::{ChannelKind, ChannelRole, EventKind};
use rampart_core::validate::{ChannelName, ClientId, MessageBody, Topic};
use rampart_core::{limits, ChannelId, MessageId, Timestamp, UserId};

use super::keys::KeyMap;
use super::search::{delete_index, insert_index, message_rowid};
use super::SqliteStore;
use crate::model_channels::*;
use crate::shared::{channel_seqs, edit_binding, index_rows, new_binding, open_sealed_body, parse_id, SealedBody};
use crate::vault::{BodyBinding, Vault, BODY_AAD_CURRENT};
use crate::{ChannelStore, StoreError, StoreResult};

const CHANNEL_COLUMNS: &str = "c.id, c.kind, c.name, c.topic, c.created_by, c.created_at, c.archived, c.last_seq";
/// The message columns, and what checking a body's binding needs: the edit counter and AAD version
/// the row claims, and the edits the event log records for it (which a row put back from before
/// an edit, with its old counter, cannot match; `events_edits` indexes the count).
pub(crate) const MESSAGE_COLUMNS: &str =
    "m.id, m.channel_id, m.seq, m.sender_id, m.body, m.key_epoch, m.legacy_body, m.thread_id, \
     m.client_id, m.created_at, m.edited_at, m.deleted, m.reply_count, m.edit_count, m.aad_version, \
     (SELECT COUNT(*) FROM events ev WHERE ev.message_id = m.id AND ev.kind = 'message.edited') AS edit_events";

fn channel_from_row(row: &SqliteRow) -> StoreResult<ChannelRecord> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    Ok(ChannelRecord {
        id: ChannelId::parse(&id).ok_or(StoreError::Corrupt("channel id"))?,
        kind: ChannelKind::parse(&kind).ok_or(StoreError::Corrupt("channel kind"))?,
        name: row.try_get::<Option<String>, _>("name")?.map(ChannelName::from_stored),
        topic: Topic::from_stored(row.try_get("topic")?),
        created_by: parse_id(row.try_get("created_by")?, UserId::parse, "channel creator")?,
        created_at: Timestamp(row.try_get("created_at")?),
        archived: row.try_get("archived")?,
        last_seq: row.try_get("last_seq")?,
    })
}

/// The data key a message row's body is sealed under, if it has a sealed body.
fn sealing_key(row: &SqliteRow) -> Option<(ChannelId, i64)> {
    let epoch = row.try_get::<Option<i64>, _>("key_epoch").ok()??;
    let channel = row.try_get::<Option<String>, _>("channel_id").ok()??;
    Some((ChannelId::parse(&channel)?, epoch))
}

/// A message's body: opened with its data key (or, before it is sealed, as stored in clear), and
/// whether it failed its integrity check — then the body is withheld and the read goes on.
fn open_row_body(
    row: &SqliteRow,
    binding: &BodyBinding<'_>,
    keys: &KeyMap,
) -> StoreResult<(Option<MessageBody>, bool)> {
    let sealed: Option<Vec<u8>> = row.try_get("body")?;
    let epoch: Option<i64> = row.try_get("key_epoch")?;
    match (sealed, epoch) {
        (Some(sealed), Some(epoch)) => {
            let stored = SealedBody {
                sealed,
                epoch,
                aad_version: row.try_get("aad_version")?,
                edit_events: row.try_get("edit_events")?,
            };
            Ok(open_sealed_body(keys, binding, &stored))
        }
        _ => Ok((row.try_get::<Option<String>, _>("legacy_body")?.map(MessageBody::from_stored), false)),
    }
}

/// A message from a row whose message columns carry their table names; `None` when the row has
/// no message (a LEFT JOIN that found none). `keys` must hold the row's data key.
fn message_from_row(row: &SqliteRow, keys: &KeyMap) -> StoreResult<Option<MessageRecord>> {
    let Some(id) = row.try_get::<Option<String>, _>("id")? else {
        return Ok(None);
    };
    let channel_id: String = row.try_get("channel_id")?;
    let sender_id: String = row.try_get("sender_id")?;
    let id = MessageId::parse(&id).ok_or(StoreError::Corrupt("message id"))?;
    let channel_id = ChannelId::parse(&channel_id).ok_or(StoreError::Corrupt("message channel"))?;
    let sender_id = UserId::parse(&sender_id).ok_or(StoreError::Corrupt("message sender"))?;
    let thread_id = parse_id(row.try_get("thread_id")?, MessageId::parse, "thread id")?;
    let created_at = Timestamp(row.try_get("created_at")?);
    let binding = BodyBinding {
        channel: &channel_id,
        message: &id,
        sender: &sender_id,
        thread: thread_id.as_ref(),
        created_at,
        edit_count: row.try_get("edit_count")?,
    };
    let (body, unreadable) = open_row_body(row, &binding, keys)?;
    Ok(Some(MessageRecord {
        id,
        channel_id,
        seq: row.try_get("seq")?,
        sender_id,
        body,
        unreadable,
        thread_id,
        client_id: row.try_get::<Option<String>, _>("client_id")?.map(ClientId::from_stored),
        created_at,
        edited_at: row.try_get::<Option<i64>, _>("edited_at")?.map(Timestamp),
        deleted: row.try_get("deleted")?,
        reply_count: row.try_get("reply_count")?,
        files: Vec::new(),
    }))
}

async fn next_seq(conn: &mut SqliteConnection, channel: &ChannelId) -> StoreResult<i64> {
    let seq: Option<i64> =
        sqlx::query_scalar("UPDATE channels SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq")
            .bind(channel.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    seq.ok_or(StoreError::Corrupt("event for a missing channel"))
}

/// Takes the next seq and writes one event row.
async fn append_event(
    conn: &mut SqliteConnection,
    channel: &ChannelId,
    kind: EventKind,
    message: Option<&MessageId>,
    user: Option<&UserId>,
    at: Timestamp,
) -> StoreResult<i64> {
    let seq = next_seq(conn, channel).await?;
    sqlx::query("INSERT INTO events (channel_id, seq, kind, message_id, user_id, at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(channel.as_str())
        .bind(seq)
        .bind(kind.as_str())
        .bind(message.map(MessageId::as_str))
        .bind(user.map(UserId::as_str))
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

async fn channel_in(conn: &mut SqliteConnection, id: &ChannelId) -> StoreResult<Option<ChannelRecord>> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels c WHERE c.id = ?");
    let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(channel_from_row).transpose()
}

async fn member_event(
    conn: &mut SqliteConnection,
    channel: &ChannelId,
    user: &UserId,
    kind: EventKind,
    at: Timestamp,
) -> StoreResult<EventRecord> {
    let seq = append_event(conn, channel, kind, None, Some(user), at).await?;
    let record = channel_in(conn, channel).await?;
    Ok(EventRecord {
        channel_id: channel.clone(),
        seq,
        kind,
        at,
        message: None,
        user_id: Some(user.clone()),
        channel: record,
    })
}

async fn insert_member(
    conn: &mut SqliteConnection,
    channel: &ChannelId,
    user: &UserId,
    role: ChannelRole,
    at: Timestamp,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO channel_members (channel_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)")
        .bind(channel.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl SqliteStore {
    /// Messages from rows, each opened with its data key.
    pub(crate) async fn messages_from_rows(
        &self,
        conn: &mut SqliteConnection,
        rows: &[SqliteRow],
    ) -> StoreResult<Vec<MessageRecord>> {
        let keys = self.key_map(conn, rows.iter().filter_map(sealing_key)).await?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            messages.extend(message_from_row(row, &keys)?);
        }
        self.fill_files(conn, messages.iter_mut()).await?;
        Ok(messages)
    }

    /// Lists on each live message the files it carries.
    async fn fill_files<'m>(
        &self,
        conn: &mut SqliteConnection,
        messages: impl Iterator<Item = &'m mut MessageRecord>,
    ) -> StoreResult<()> {
        let mut live: Vec<&mut MessageRecord> = messages.filter(|m| !m.deleted).collect();
        let ids: Vec<MessageId> = live.iter().map(|m| m.id.clone()).collect();
        let mut refs = self.file_refs(conn, &ids.iter().collect::<Vec<_>>()).await?;
        for message in &mut live {
            if let Some(files) = refs.remove(&message.id) {
                message.files = files;
            }
        }
        Ok(())
    }

    async fn message_in(&self, conn: &mut SqliteConnection, id: &MessageId) -> StoreResult<Option<MessageRecord>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?");
        let rows: Vec<SqliteRow> =
            sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *conn).await?.into_iter().collect();
        Ok(self.messages_from_rows(conn, &rows).await?.pop())
    }

    async fn message_event(
        &self,
        conn: &mut SqliteConnection,
        channel: &ChannelId,
        message: &MessageId,
        kind: EventKind,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>> {
        let seq = append_event(conn, channel, kind, Some(message), None, at).await?;
        // Read after the event is written: a body's edit counter is checked against the edit
        // events, this one included.
        let Some(current) = self.message_in(conn, message).await? else {
            return Ok(None);
        };
        Ok(Some(EventRecord {
            channel_id: current.channel_id.clone(),
            seq,
            kind,
            at,
            message: Some(current),
            user_id: None,
            channel: None,
        }))
    }

    /// Replaces a live message's body (`Some`), or destroys it leaving a tombstone (`None`), and
    /// writes the matching event; `None` when the message is missing or already deleted.
    async fn rewrite_message(
        &self,
        id: &MessageId,
        body: Option<&MessageBody>,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>> {
        // Keys are found before the transaction: finding one may write a new epoch or search key,
        // which must not wait behind this transaction's lock.
        let channel: Option<String> = sqlx::query_scalar("SELECT channel_id FROM messages WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(channel) = channel.and_then(|c| ChannelId::parse(&c)) else {
            return Ok(None);
        };
        let search_keys = self.search_keys(&channel, at).await?;
        let key = match body {
            Some(_) => Some(self.active_key(&channel, at).await?),
            None => None,
        };
        let mut tx = self.begin_write().await?;
        // The postings to remove are the current text's, read under the write lock; so are the
        // metadata and edit counter the new body is bound to.
        let Some(previous) = self.message_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let edit_count: i64 = sqlx::query_scalar("SELECT edit_count FROM messages WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if body.is_some() && previous.unreadable {
            // Its metadata may be forged: an edit must not make a forged row valid again.
            return Err(StoreError::Integrity("the message to edit"));
        }
        let sealed = match (body, &key) {
            (Some(body), Some(key)) => {
                let binding = edit_binding(&previous, edit_count + 1);
                Some((Vault::seal_body(key, &binding, body), key.epoch, index_rows(&search_keys, body.as_str())))
            }
            _ => None,
        };
        let old_tokens = previous.body.map(|b| index_rows(&search_keys, b.as_str())).unwrap_or_default();
        let rowid = message_rowid(&mut tx, id).await?;
        let new_tokens = sealed.as_ref().map(|(_, _, tokens)| tokens.clone());
        let (update, kind) = match sealed {
            Some((sealed, epoch, _)) => (
                sqlx::query(
                    "UPDATE messages SET body = ?, key_epoch = ?, legacy_body = NULL, edit_count = edit_count + 1,
                     aad_version = ?, edited_at = ? WHERE id = ? AND deleted = 0",
                )
                .bind(sealed)
                .bind(epoch)
                .bind(BODY_AAD_CURRENT),
                EventKind::MessageEdited,
            ),
            None => (
                sqlx::query(
                    "UPDATE messages SET body = NULL, key_epoch = NULL, legacy_body = NULL, deleted = 1, edited_at = ?
                     WHERE id = ? AND deleted = 0",
                ),
                EventKind::MessageDeleted,
            ),
        };
        let done = update.bind(at.0).bind(id.as_str()).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        // A deleted message takes its files with it: rows now, blobs once this commits.
        let removed_files = if body.is_none() { Self::detach_files(&mut tx, id).await? } else { Vec::new() };
        // The index follows the text in the same transaction: an edit's old terms stop matching
        // and its new ones match at commit; a deleted message matches nothing.
        if let Some(rowid) = rowid {
            delete_index(&mut tx, rowid, &old_tokens).await?;
            if let Some(tokens) = &new_tokens {
                insert_index(&mut tx, rowid, tokens).await?;
            }
        }
        let event = self.message_event(&mut tx, &channel, id, kind, at).await?;
        tx.commit().await?;
        super::files::remove_blobs(self, &removed_files);
        Ok(event)
    }

    /// Why a send wrote nothing: a repeated client id returns the first message; otherwise the
    /// thread (or the channel) was not found.
    async fn explain_refused_post(&self, message: &NewMessage) -> StoreResult<PostOutcome> {
        if let Some(client_id) = &message.client_id {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.channel_id = ? AND m.sender_id = ? AND m.client_id = ?"
            );
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(&sql)
                .bind(message.channel_id.as_str())
                .bind(message.sender_id.as_str())
                .bind(client_id.as_str())
                .fetch_all(&mut *conn)
                .await?;
            if let Some(first) = self.messages_from_rows(&mut conn, &rows).await?.pop() {
                return Ok(PostOutcome::Duplicate(first));
            }
        }
        if message.thread_id.is_some() {
            return Ok(PostOutcome::ThreadNotFound);
        }
        Err(StoreError::Corrupt("message for a missing channel"))
    }
}

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn create_channel(&self, channel: &NewChannel) -> StoreResult<CreateChannelOutcome> {
        let mut tx = self.begin_write().await?;
        // Names are unique among public channels only: a private one collides with nothing, so
        // a refusal never tells that a private channel of that name exists (migration 0016).
        let taken: bool = channel.kind == ChannelKind::Public
            && sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM channels WHERE kind = 'public' AND name = ?)")
                .bind(channel.name.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if taken {
            return Ok(CreateChannelOutcome::NameTaken);
        }
        sqlx::query("INSERT INTO channels (id, kind, name, topic, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(channel.id.as_str())
            .bind(channel.kind.as_str())
            .bind(channel.name.as_str())
            .bind(channel.topic.as_str())
            .bind(channel.created_by.as_str())
            .bind(channel.created_at.0)
            .execute(&mut *tx)
            .await?;
        insert_member(&mut tx, &channel.id, &channel.created_by, ChannelRole::Admin, channel.created_at).await?;
        let event =
            member_event(&mut tx, &channel.id, &channel.created_by, EventKind::MemberJoined, channel.created_at)
                .await?;
        tx.commit().await?;
        let record = event.channel.clone().ok_or(StoreError::Corrupt("new channel"))?;
        Ok(CreateChannelOutcome::Created(Box::new(record), Box::new(event)))
    }

    async fn open_direct(
        &self,
        id: &ChannelId,
        a: &UserId,
        b: &UserId,
        at: Timestamp,
    ) -> StoreResult<(ChannelRecord, Vec<EventRecord>, bool)> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let key = format!("{first}:{second}");
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels c WHERE c.dm_key = ?");
        if let Some(row) = sqlx::query(&sql).bind(&key).fetch_optional(&mut *tx).await? {
            return Ok((channel_from_row(&row)?, Vec::new(), false));
        }
        sqlx::query("INSERT INTO channels (id, kind, name, topic, created_by, created_at, dm_key) VALUES (?, 'dm', NULL, '', ?, ?, ?)")
            .bind(id.as_str())
            .bind(a.as_str())
            .bind(at.0)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        let mut events = Vec::new();
        for user in if a == b { vec![a] } else { vec![a, b] } {
            insert_member(&mut tx, id, user, ChannelRole::Member, at).await?;
            events.push(member_event(&mut tx, id, user, EventKind::MemberJoined, at).await?);
        }
        let record = channel_in(&mut tx, id).await?.ok_or(StoreError::Corrupt("new direct channel"))?;
        tx.commit().await?;
        Ok((record, events, true))
    }

    async fn channel(&self, id: &ChannelId) -> StoreResult<Option<ChannelRecord>> {
        let mut conn = self.pool.acquire().await?;
        channel_in(&mut conn, id).await
    }

    async fn channel_for(
        &self,
        id: &ChannelId,
        user: &UserId,
    ) -> StoreResult<Option<(ChannelRecord, Option<ChannelRole>)>> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS}, mb.role AS member_role FROM channels c
             LEFT JOIN channel_members mb ON mb.channel_id = c.id AND mb.user_id = ? WHERE c.id = ?"
        );
        let row = sqlx::query(&sql).bind(user.as_str()).bind(id.as_str()).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let role: Option<String> = row.try_get("member_role")?;
        let role = role.map(|r| ChannelRole::parse(&r).ok_or(StoreError::Corrupt("member role"))).transpose()?;
        Ok(Some((channel_from_row(&row)?, role)))
    }

    async fn membership(&self, channel: &ChannelId, user: &UserId) -> StoreResult<Option<ChannelRole>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM channel_members WHERE channel_id = ? AND user_id = ?")
                .bind(channel.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        role.map(|r| ChannelRole::parse(&r).ok_or(StoreError::Corrupt("member role"))).transpose()
    }

    async fn list_channels(&self, user: &UserId, include_public: bool, limit: u32) -> StoreResult<Vec<ChannelListing>> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS}, mb.role AS member_role, COALESCE(mb.last_read_seq, 0) AS last_read_seq,
               CASE WHEN mb.user_id IS NULL THEN 0 ELSE
                 (SELECT COUNT(*) FROM (SELECT 1 FROM messages x WHERE x.channel_id = c.id AND x.seq > mb.last_read_seq
                    AND x.sender_id != ?1 AND x.deleted = 0 LIMIT ?4)) END AS unread,
               CASE WHEN c.kind = 'dm' THEN
                 (SELECT o.user_id FROM channel_members o WHERE o.channel_id = c.id ORDER BY (o.user_id = ?1) LIMIT 1) END AS dm_peer
             FROM channels c LEFT JOIN channel_members mb ON mb.channel_id = c.id AND mb.user_id = ?1
             WHERE mb.user_id IS NOT NULL OR (?2 AND c.kind = 'public')
             ORDER BY c.kind = 'dm', c.name, c.id LIMIT ?3"
        );
        let rows = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(include_public)
            .bind(i64::from(limit))
            .bind(i64::from(limits::UNREAD_COUNT_MAX) + 1)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let role: Option<String> = row.try_get("member_role")?;
                let unread: i64 = row.try_get("unread")?;
                Ok(ChannelListing {
                    channel: channel_from_row(row)?,
                    membership: role
                        .map(|r| ChannelRole::parse(&r).ok_or(StoreError::Corrupt("member role")))
                        .transpose()?,
                    last_read_seq: row.try_get("last_read_seq")?,
                    unread: u32::try_from(unread).unwrap_or(0),
                    dm_peer: parse_id(row.try_get("dm_peer")?, UserId::parse, "dm peer")?,
                })
            })
            .collect()
    }

    async fn add_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
        role: ChannelRole,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>> {
        let mut tx = self.begin_write().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?)")
                .bind(channel.as_str())
                .bind(user.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if exists {
            return Ok(None);
        }
        insert_member(&mut tx, channel, user, role, at).await?;
        let event = member_event(&mut tx, channel, user, EventKind::MemberJoined, at).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    async fn remove_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?")
            .bind(channel.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let event = member_event(&mut tx, channel, user, EventKind::MemberLeft, at).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    async fn update_channel(
        &self,
        id: &ChannelId,
        change: &ChannelChange,
        at: Timestamp,
    ) -> StoreResult<UpdateOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(current) = channel_in(&mut tx, id).await? else {
            return Ok(UpdateOutcome::NotFound);
        };
        if let Some(name) = change.name.as_ref().filter(|_| current.kind == ChannelKind::Public) {
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE kind = 'public' AND name = ? AND id != ?)",
            )
            .bind(name.as_str())
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if taken {
                return Ok(UpdateOutcome::NameTaken);
            }
        }
        sqlx::query(
            "UPDATE channels SET name = COALESCE(?, name), topic = COALESCE(?, topic), archived = COALESCE(?, archived) WHERE id = ?",
        )
        .bind(change.name.as_ref().map(ChannelName::as_str))
        .bind(change.topic.as_ref().map(Topic::as_str))
        .bind(change.archived)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let seq = append_event(&mut tx, id, EventKind::ChannelUpdated, None, None, at).await?;
        let record = channel_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(UpdateOutcome::Updated(Box::new(EventRecord {
            channel_id: id.clone(),
            seq,
            kind: EventKind::ChannelUpdated,
            at,
            message: None,
            user_id: None,
            channel: record,
        })))
    }

    async fn list_members(&self, channel: &ChannelId, limit: u32) -> StoreResult<Vec<MemberRecord>> {
        let rows = sqlx::query("SELECT user_id, role, joined_at FROM channel_members WHERE channel_id = ? ORDER BY joined_at, user_id LIMIT ?")
            .bind(channel.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let user: String = row.try_get("user_id")?;
                let role: String = row.try_get("role")?;
                Ok(MemberRecord {
                    user_id: UserId::parse(&user).ok_or(StoreError::Corrupt("member id"))?,
                    role: ChannelRole::parse(&role).ok_or(StoreError::Corrupt("member role"))?,
                    joined_at: Timestamp(row.try_get("joined_at")?),
                })
            })
            .collect()
    }

    async fn post_message(&self, message: &NewMessage) -> StoreResult<PostOutcome> {
        // One statement takes the seq under the write lock and (by triggers) writes the event and
        // the search postings it carries in `index_tokens`. Files, or more tokens than
        // `TOKEN_SLOTS`, need more statements: then all of them run in one transaction. No row
        // back means a repeated client id, a thread that is not a top-level message of this
        // channel, or a missing channel — told apart below (rare).
        let key = self.active_key(&message.channel_id, message.created_at).await?;
        let sealed = Vault::seal_body(&key, &new_binding(message), &message.body);
        let search_keys = self.search_keys(&message.channel_id, message.created_at).await?;
        let index = index_rows(&search_keys, message.body.as_str());
        let one_statement = message.files.is_empty() && index.len() <= super::TOKEN_SLOTS;
        let carried: Option<Vec<u8>> = (one_statement && !index.is_empty()).then(|| index.concat());
        let insert = sqlx::query_as(
            "INSERT INTO messages (id, channel_id, seq, sender_id, body, key_epoch, thread_id, client_id, created_at, index_tokens, aad_version)
             SELECT ?1, c.id, c.last_seq + 1, ?3, ?4, ?8, ?5, ?6, ?7, ?9, ?10 FROM channels c
             WHERE c.id = ?2 AND (?5 IS NULL OR EXISTS
               (SELECT 1 FROM messages p WHERE p.id = ?5 AND p.channel_id = ?2 AND p.thread_id IS NULL))
             ON CONFLICT DO NOTHING
             RETURNING seq, rowid",
        )
        .bind(message.id.as_str())
        .bind(message.channel_id.as_str())
        .bind(message.sender_id.as_str())
        .bind(sealed)
        .bind(message.thread_id.as_ref().map(MessageId::as_str))
        .bind(message.client_id.as_ref().map(ClientId::as_str))
        .bind(message.created_at.0)
        .bind(key.epoch)
        .bind(carried)
        .bind(BODY_AAD_CURRENT);
        let (seq, files) = if one_statement {
            let mut writer = self.write_turn().await;
            let inserted: Option<(i64, i64)> = insert.fetch_optional(&mut *writer).await?;
            drop(writer);
            let Some((seq, _)) = inserted else {
                return self.explain_refused_post(message).await;
            };
            (seq, Vec::new())
        } else {
            // The message, its event (by trigger), its index entries and its files commit together.
            let mut tx = self.begin_write().await?;
            let inserted: Option<(i64, i64)> = insert.fetch_optional(&mut *tx).await?;
            let Some((seq, rowid)) = inserted else {
                drop(tx);
                return self.explain_refused_post(message).await;
            };
            insert_index(&mut tx, rowid, &index).await?;
            if !Self::attach_files(&mut tx, &message.files, &message.id, &message.channel_id, &message.sender_id)
                .await?
            {
                drop(tx);
                return Ok(PostOutcome::FileNotFound);
            }
            let files = match message.files.is_empty() {
                true => Vec::new(),
                false => self.file_refs(&mut tx, &[&message.id]).await?.remove(&message.id).unwrap_or_default(),
            };
            tx.commit().await?;
            (seq, files)
        };
        let record = MessageRecord {
            id: message.id.clone(),
            channel_id: message.channel_id.clone(),
            seq,
            sender_id: message.sender_id.clone(),
            body: Some(message.body.clone()),
            unreadable: false,
            thread_id: message.thread_id.clone(),
            client_id: message.client_id.clone(),
            created_at: message.created_at,
            edited_at: None,
            deleted: false,
            reply_count: 0,
            files,
        };
        Ok(PostOutcome::Created(EventRecord {
            channel_id: message.channel_id.clone(),
            seq,
            kind: EventKind::MessageCreated,
            at: message.created_at,
            message: Some(record),
            user_id: None,
            channel: None,
        }))
    }

    async fn message(&self, id: &MessageId) -> StoreResult<Option<MessageRecord>> {
        let mut conn = self.pool.acquire().await?;
        self.message_in(&mut conn, id).await
    }

    async fn edit_message(
        &self,
        id: &MessageId,
        body: &MessageBody,
        at: Timestamp,
    ) -> StoreResult<Option<EventRecord>> {
        self.rewrite_message(id, Some(body), at).await
    }

    async fn delete_message(&self, id: &MessageId, at: Timestamp) -> StoreResult<Option<EventRecord>> {
        self.rewrite_message(id, None, at).await
    }

    async fn history(&self, channel: &ChannelId, query: HistoryQuery<'_>) -> StoreResult<(Vec<MessageRecord>, bool)> {
        // Newest first when paging back (or with no cursor), oldest first when paging forward.
        let forward = query.after_seq.is_some();
        let order = if forward { "ASC" } else { "DESC" };
        let thread_filter = if query.thread_id.is_some() { "AND m.thread_id = ?4" } else { "" };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.channel_id = ?1 AND m.seq > ?2 AND m.seq < ?3 {thread_filter}
             ORDER BY m.seq {order} LIMIT ?5"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&sql)
            .bind(channel.as_str())
            .bind(query.after_seq.unwrap_or(0))
            .bind(query.before_seq.unwrap_or(i64::MAX))
            .bind(query.thread_id.map(MessageId::as_str))
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let mut messages = self.messages_from_rows(&mut conn, &rows).await?;
        let has_more = messages.len() > query.limit as usize;
        messages.truncate(query.limit as usize);
        if !forward {
            messages.reverse();
        }
        Ok((messages, has_more))
    }

    async fn events_after(&self, channel: &ChannelId, after: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        let sql = format!(
            "SELECT e.seq AS e_seq, e.kind AS e_kind, e.at AS e_at, e.user_id AS e_user_id, {MESSAGE_COLUMNS}
             FROM events e LEFT JOIN messages m ON m.id = e.message_id
             WHERE e.channel_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
        );
        let mut conn = self.pool.acquire().await?;
        let rows =
            sqlx::query(&sql).bind(channel.as_str()).bind(after).bind(i64::from(limit)).fetch_all(&mut *conn).await?;
        let keys = self.key_map(&mut conn, rows.iter().filter_map(sealing_key)).await?;
        let mut channel_record = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("e_kind")?;
            let kind = EventKind::parse(&kind).ok_or(StoreError::Corrupt("event kind"))?;
            let needs_channel = matches!(kind, EventKind::ChannelUpdated | EventKind::MemberJoined);
            if needs_channel && channel_record.is_none() {
                channel_record = self.channel(channel).await?;
            }
            events.push(EventRecord {
                channel_id: channel.clone(),
                seq: row.try_get("e_seq")?,
                kind,
                at: Timestamp(row.try_get("e_at")?),
                message: message_from_row(row, &keys)?,
                user_id: parse_id(row.try_get("e_user_id")?, UserId::parse, "event user")?,
                channel: if needs_channel { channel_record.clone() } else { None },
            });
        }
        self.fill_files(&mut conn, events.iter_mut().filter_map(|e| e.message.as_mut())).await?;
        Ok(events)
    }

    async fn mark_read(&self, channel: &ChannelId, user: &UserId, seq: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE channel_members SET last_read_seq = MAX(last_read_seq, MIN(?1, (SELECT last_seq FROM channels WHERE id = ?2)))
             WHERE channel_id = ?2 AND user_id = ?3",
        )
        .bind(seq)
        .bind(channel.as_str())
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn search(
        &self,
        user: &UserId,
        query: &rampart_core::search::SearchQuery,
        channel: Option<&ChannelId>,
        before: Option<&SearchCursor>,
        limit: u32,
    ) -> StoreResult<SearchPage> {
        self.search_messages(user, query, channel, before, limit).await
    }

    async fn rebuild_search(&self, channel: Option<&ChannelId>, at: Timestamp) -> StoreResult<(u64, u64)> {
        let channels: Vec<String> = match channel {
            Some(id) => {
                sqlx::query_scalar("SELECT id FROM channels WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query_scalar("SELECT id FROM channels ORDER BY id").fetch_all(&self.pool).await?,
        };
        let mut messages = 0;
        for id in &channels {
            let id = ChannelId::parse(id).ok_or(StoreError::Corrupt("channel id"))?;
            messages += self.rebuild_channel_index(&id, at).await?;
        }
        Ok((channels.len() as u64, messages))
    }

    async fn member_channel_seqs(&self, user: &UserId) -> StoreResult<Vec<(ChannelId, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.id, c.last_seq FROM channel_members m JOIN channels c ON c.id = m.channel_id WHERE m.user_id = ? ORDER BY c.id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        channel_seqs(rows)
    }

    async fn channel_heads(&self, channels: &[ChannelId]) -> StoreResult<Vec<(ChannelId, i64)>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        // One placeholder per id (the caller bounds the count); every id is a bound parameter.
        let sql = format!("SELECT id, last_seq FROM channels WHERE id IN ({})", vec!["?"; channels.len()].join(", "));
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for channel in channels {
            query = query.bind(channel.as_str());
        }
        channel_seqs(query.fetch_all(&self.pool).await?)
    }
}
