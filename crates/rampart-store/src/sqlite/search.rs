//! SQLite side of search: the blind index written in the same transaction as the message it
//! indexes, the query (membership checked in the SQL itself, candidates then checked against the
//! opened text), and `rebuild`, which indexes a channel under a fresh search key while the server
//! runs and then swaps it in.

use std::sync::Arc;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use rampart_core::search::{index_terms, SearchQuery, TokenKind};
use rampart_core::{ChannelId, MessageId, Timestamp, UserId};
use rampart_crypto::blind::{token, SearchKey, TOKEN_BYTES};

use super::SqliteStore;
use crate::vault::{search_key_aad, SearchKeys};
use crate::{SearchCursor, SearchPage, StoreError, StoreResult};

/// Index rows inserted per statement (4 values each, well under SQLite's variable limit).
const INDEX_ROWS_PER_STATEMENT: usize = 1_000;
/// Channels one query searches at once; a member of more is searched in this many at a time.
const SEARCH_CHANNELS_PER_QUERY: usize = 500;
/// Candidate batches a query reads (each `limit` rows) before it returns what it has and a cursor.
const SEARCH_BATCHES_MAX: usize = 8;
/// Messages indexed per transaction by `rebuild`.
const REBUILD_BATCH_MAX: i64 = 500;

/// The (key version, token) rows of one message's text.
pub(crate) fn index_rows(keys: &SearchKeys, text: &str) -> Vec<(i64, [u8; TOKEN_BYTES])> {
    let terms = index_terms(text);
    let mut rows = Vec::with_capacity(terms.len() * keys.len());
    for (version, _, key) in keys {
        for (kind, term) in &terms {
            rows.push((*version, token(key, kind.label(), term)));
        }
    }
    rows
}

pub(crate) async fn insert_index(
    conn: &mut SqliteConnection,
    channel: &ChannelId,
    message: &MessageId,
    rows: &[(i64, [u8; TOKEN_BYTES])],
) -> StoreResult<()> {
    for chunk in rows.chunks(INDEX_ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT OR IGNORE INTO search_index (channel_id, key_version, token, message_id) ");
        insert.push_values(chunk, |mut row, (version, token)| {
            row.push_bind(channel.as_str()).push_bind(*version).push_bind(token.to_vec()).push_bind(message.as_str());
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub(crate) async fn delete_index(conn: &mut SqliteConnection, message: &MessageId) -> StoreResult<()> {
    sqlx::query("DELETE FROM search_index WHERE message_id = ?").bind(message.as_str()).execute(&mut *conn).await?;
    Ok(())
}

impl SqliteStore {
    /// The channel's search keys (active, and any being built), making version 1 if it has none.
    pub(crate) async fn search_keys(&self, channel: &ChannelId, at: Timestamp) -> StoreResult<SearchKeys> {
        if let Some(keys) = self.vault.cached_search_keys(channel) {
            return Ok(keys);
        }
        let mut conn = self.pool.acquire().await?;
        let mut keys = self.read_search_keys(&mut conn, channel).await?;
        if keys.is_empty() {
            self.insert_search_key(&mut conn, channel, 1, "active", at).await?;
            keys = self.read_search_keys(&mut conn, channel).await?;
        }
        self.vault.set_search_keys(channel, keys.clone());
        Ok(keys)
    }

    async fn read_search_keys(&self, conn: &mut SqliteConnection, channel: &ChannelId) -> StoreResult<SearchKeys> {
        let rows: Vec<(i64, i64, Vec<u8>, String)> = sqlx::query_as(
            "SELECT version, kek_version, wrapped, state FROM search_keys WHERE channel_id = ? ORDER BY version",
        )
        .bind(channel.as_str())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(version, kek_version, wrapped, state)| {
                let kek_version = u32::try_from(kek_version).map_err(|_| StoreError::Corrupt("KEK version"))?;
                let key = self.vault.unwrap_search_key(channel, version, kek_version, &wrapped)?;
                Ok((version, state == "active", key))
            })
            .collect()
    }

    /// Writes a new search key for the channel, wrapped by the active KEK; nothing if that version
    /// exists (a concurrent writer made it) or the KEK changed meanwhile.
    async fn insert_search_key(
        &self,
        conn: &mut SqliteConnection,
        channel: &ChannelId,
        version: i64,
        state: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let kek_version: i64 =
            sqlx::query_scalar("SELECT version FROM kek_versions WHERE state = 'active'").fetch_one(&mut *conn).await?;
        let kek = self.vault.kek(u32::try_from(kek_version).map_err(|_| StoreError::Corrupt("KEK version"))?)?;
        let wrapped = kek.wrap(&SearchKey::generate(), &search_key_aad(channel, version));
        let done = sqlx::query(
            "INSERT INTO search_keys (channel_id, version, kek_version, wrapped, state, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE EXISTS (SELECT 1 FROM kek_versions WHERE version = ?3 AND state = 'active')
             ON CONFLICT DO NOTHING",
        )
        .bind(channel.as_str())
        .bind(version)
        .bind(kek_version)
        .bind(wrapped)
        .bind(state)
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Indexes channels whose messages predate search (they have messages and no search key),
    /// at open: a database upgraded from a build without search becomes searchable.
    pub(crate) async fn index_channels_without_keys(&self) -> StoreResult<()> {
        let channels: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM channels c WHERE EXISTS (SELECT 1 FROM messages m WHERE m.channel_id = c.id)
             AND NOT EXISTS (SELECT 1 FROM search_keys s WHERE s.channel_id = c.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        for id in channels {
            let id = ChannelId::parse(&id).ok_or(StoreError::Corrupt("channel id"))?;
            let keys = self.search_keys(&id, super::keys::now()).await?;
            let mut conn = self.pool.acquire().await?;
            let mut after_seq = 0i64;
            loop {
                let sql = format!(
                    "SELECT {} FROM messages m WHERE m.channel_id = ? AND m.seq > ? AND m.deleted = 0 ORDER BY m.seq LIMIT ?",
                    super::channels::MESSAGE_COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(after_seq)
                    .bind(REBUILD_BATCH_MAX)
                    .fetch_all(&mut *conn)
                    .await?;
                let Some(last) = rows.last() else {
                    break;
                };
                after_seq = last.try_get("seq")?;
                let messages = self.messages_from_rows(&mut conn, &rows).await?;
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                for message in &messages {
                    if let Some(body) = &message.body {
                        insert_index(&mut tx, &id, &message.id, &index_rows(&keys, body.as_str())).await?;
                    }
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// One page of messages matching `query` in channels `user` belongs to, newest first.
    pub(crate) async fn search_messages(
        &self,
        user: &UserId,
        query: &SearchQuery,
        channel: Option<&ChannelId>,
        before: Option<&SearchCursor>,
        limit: u32,
    ) -> StoreResult<SearchPage> {
        let mut conn = self.pool.acquire().await?;
        let channels: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM channel_members m JOIN channels c ON c.id = m.channel_id
             WHERE m.user_id = ?1 AND (?2 IS NULL OR c.id = ?2) AND (?3 IS NULL OR c.name = ?3) ORDER BY c.id",
        )
        .bind(user.as_str())
        .bind(channel.map(ChannelId::as_str))
        .bind(query.in_channel.as_deref())
        .fetch_all(&mut *conn)
        .await?;
        let tokens: Vec<(TokenKind, String)> = query.required_tokens().into_iter().collect();
        let mut probes = Vec::new();
        for id in &channels {
            let id = ChannelId::parse(id).ok_or(StoreError::Corrupt("channel id"))?;
            let keys = self.read_search_keys(&mut conn, &id).await?;
            if let Some((version, _, key)) = keys.iter().find(|(_, active, _)| *active) {
                for (term, (kind, text)) in tokens.iter().enumerate() {
                    probes.push((id.clone(), *version, token(key, kind.label(), text), term));
                }
            }
        }
        let mut found = Vec::new();
        let mut cursor = before.cloned();
        let mut exhausted = probes.is_empty();
        let per_query = SEARCH_CHANNELS_PER_QUERY * tokens.len().max(1);
        for _ in 0..SEARCH_BATCHES_MAX {
            if exhausted || found.len() >= limit as usize {
                break;
            }
            let mut batch = Vec::new();
            for chunk in probes.chunks(per_query) {
                batch.extend(
                    self.candidates(&mut conn, user, query, chunk, tokens.len(), cursor.as_ref(), limit).await?,
                );
            }
            batch.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            batch.truncate(limit as usize);
            exhausted = batch.len() < limit as usize;
            if let Some(last) = batch.last() {
                cursor = Some(SearchCursor { created_at: last.created_at, id: last.id.clone() });
            }
            found.extend(batch.into_iter().filter(|m| m.body.as_ref().is_some_and(|b| query.matches(b.as_str()))));
        }
        found.truncate(limit as usize);
        let next = if exhausted && found.len() < limit as usize {
            None
        } else {
            found.last().map(|m| SearchCursor { created_at: m.created_at, id: m.id.clone() }).or(cursor)
        };
        Ok(SearchPage { messages: found, next })
    }

    /// Messages having every token, in channels `user` is a member of (checked here, in the
    /// query), older than the cursor, newest first.
    #[allow(clippy::too_many_arguments)]
    async fn candidates(
        &self,
        conn: &mut SqliteConnection,
        user: &UserId,
        query: &SearchQuery,
        probes: &[(ChannelId, i64, [u8; TOKEN_BYTES], usize)],
        terms: usize,
        before: Option<&SearchCursor>,
        limit: u32,
    ) -> StoreResult<Vec<crate::MessageRecord>> {
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new("WITH q (channel_id, key_version, token, term) AS (");
        sql.push_values(probes, |mut row, (channel, version, token, term)| {
            row.push_bind(channel.as_str())
                .push_bind(*version)
                .push_bind(token.to_vec())
                .push_bind(i64::try_from(*term).unwrap_or(i64::MAX));
        });
        sql.push(format!(
            ") SELECT {} FROM messages m
             JOIN (SELECT si.message_id FROM search_index si
                   JOIN q ON q.channel_id = si.channel_id AND q.key_version = si.key_version AND q.token = si.token
                   GROUP BY si.message_id HAVING COUNT(DISTINCT q.term) = ",
            super::channels::MESSAGE_COLUMNS
        ));
        sql.push_bind(i64::try_from(terms).unwrap_or(i64::MAX));
        sql.push(
            ") hit ON hit.message_id = m.id JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = ",
        );
        sql.push_bind(user.as_str());
        sql.push(" WHERE m.deleted = 0");
        if let Some(from) = &query.from {
            sql.push(" AND m.sender_id = (SELECT id FROM users WHERE username = ");
            sql.push_bind(from.as_str());
            sql.push(")");
        }
        if let Some(cursor) = before {
            sql.push(" AND (m.created_at < ");
            sql.push_bind(cursor.created_at.0);
            sql.push(" OR (m.created_at = ");
            sql.push_bind(cursor.created_at.0);
            sql.push(" AND m.id < ");
            sql.push_bind(cursor.id.as_str());
            sql.push("))");
        }
        sql.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ");
        sql.push_bind(i64::from(limit));
        let rows: Vec<SqliteRow> = sql.build().fetch_all(&mut *conn).await?;
        self.messages_from_rows(conn, &rows).await
    }

    /// Indexes every message of `channel` under a fresh search key while the server runs, then
    /// makes it the active one and drops the old key's entries. Resumable: a key left `building`
    /// by an interrupted run is finished, not replaced. Returns the messages indexed.
    pub(crate) async fn rebuild_channel_index(&self, channel: &ChannelId, at: Timestamp) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.read_search_keys(&mut conn, channel).await?;
        let building = match keys.iter().find(|(_, active, _)| !*active) {
            Some((version, _, key)) => (*version, Arc::clone(key)),
            None => {
                let version = keys.iter().map(|(v, _, _)| *v).max().unwrap_or(0) + 1;
                self.insert_search_key(&mut conn, channel, version, "building", at).await?;
                let keys = self.read_search_keys(&mut conn, channel).await?;
                let key = keys.iter().find(|(v, _, _)| *v == version).ok_or(StoreError::Corrupt("search key"))?;
                (version, Arc::clone(&key.2))
            }
        };
        self.vault.forget_active();
        // Writers on every node learn of the new key within the recheck interval; wait it out, so
        // the pass below (which starts after) covers whatever they indexed without it.
        tokio::time::sleep(std::time::Duration::from_millis(crate::ACTIVE_KEY_RECHECK_MS + 500)).await;
        let single: SearchKeys = vec![(building.0, false, Arc::clone(&building.1))];
        let mut after_seq = 0i64;
        let mut indexed = 0u64;
        loop {
            let sql = format!(
                "SELECT {} FROM messages m WHERE m.channel_id = ? AND m.seq > ? AND m.deleted = 0 ORDER BY m.seq LIMIT ?",
                super::channels::MESSAGE_COLUMNS
            );
            let rows = sqlx::query(&sql)
                .bind(channel.as_str())
                .bind(after_seq)
                .bind(REBUILD_BATCH_MAX)
                .fetch_all(&mut *conn)
                .await?;
            if rows.is_empty() {
                break;
            }
            let messages = self.messages_from_rows(&mut conn, &rows).await?;
            after_seq = rows.last().map(|r| r.try_get::<i64, _>("seq")).transpose()?.unwrap_or(after_seq);
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for message in &messages {
                if let Some(body) = &message.body {
                    insert_index(&mut tx, channel, &message.id, &index_rows(&single, body.as_str())).await?;
                    indexed += 1;
                }
            }
            tx.commit().await?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM search_index WHERE channel_id = ? AND key_version != ?")
            .bind(channel.as_str())
            .bind(building.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM search_keys WHERE channel_id = ? AND version != ?")
            .bind(channel.as_str())
            .bind(building.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE search_keys SET state = 'active' WHERE channel_id = ? AND version = ?")
            .bind(channel.as_str())
            .bind(building.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.vault.forget_active();
        Ok(indexed)
    }
}
