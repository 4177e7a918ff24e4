//! SQLite side of search: the blind index written in the same transaction as the message it
//! indexes, the query (membership checked in the SQL itself, candidates then checked against the
//! opened text), and `rebuild`, which indexes a channel under a fresh search key while the server
//! runs and then swaps it in.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use rampart_core::search::SearchQuery;
use rampart_core::{ChannelId, MessageId, Timestamp, UserId};
use rampart_crypto::blind::{SearchKey, TOKEN_BYTES};

use super::SqliteStore;
use crate::search_tokens::SearchTokens;
use crate::shared::index_rows;
use crate::vault::{search_key_aad, SearchKeys};
use crate::{SearchCursor, SearchPage, StoreError, StoreResult};

/// Index rows inserted per statement (4 values each, well under SQLite's variable limit).
const INDEX_ROWS_PER_STATEMENT: usize = 1_000;
/// Postings counted when telling a rare term from a common one.
const POSTINGS_ESTIMATE_CAP: i64 = 10_000;
/// Candidate batches a query reads (each `limit` rows) before it returns what it has and a cursor.
const SEARCH_BATCHES_MAX: usize = 8;
/// Messages indexed per transaction by `rebuild`.
const REBUILD_BATCH_MAX: i64 = 500;

// A search's terms are numbered by `token_slots` (0 … 4095, migration 0008).
const _: () = assert!(rampart_core::search::INDEX_TERMS_MAX <= 4_096);

/// A count as SQLite's integer (counts here are bounded by `search::SEARCH_TOKENS_MAX`).
fn sql_count(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Adds a message's postings.
pub(crate) async fn insert_index(
    conn: &mut SqliteConnection,
    rowid: i64,
    tokens: &[[u8; TOKEN_BYTES]],
) -> StoreResult<()> {
    for chunk in tokens.chunks(INDEX_ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT OR IGNORE INTO search_index (token, message_rowid) ");
        insert.push_values(chunk, |mut row, token| {
            row.push_bind(token.to_vec()).push_bind(rowid);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes a message's postings for these tokens (point deletes: the postings are keyed by token).
pub(crate) async fn delete_index(
    conn: &mut SqliteConnection,
    rowid: i64,
    tokens: &[[u8; TOKEN_BYTES]],
) -> StoreResult<()> {
    for chunk in tokens.chunks(INDEX_ROWS_PER_STATEMENT) {
        let mut delete: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM search_index WHERE message_rowid = ");
        delete.push_bind(rowid);
        delete.push(" AND token IN (");
        let mut list = delete.separated(", ");
        for token in chunk {
            list.push_bind(token.to_vec());
        }
        delete.push(")");
        delete.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A message's rowid, which its postings name.
pub(crate) async fn message_rowid(conn: &mut SqliteConnection, message: &MessageId) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT rowid FROM messages WHERE id = ?")
        .bind(message.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

impl SqliteStore {
    /// The channel's search keys (active, and any being built), making version 1 if it has none.
    pub(crate) async fn search_keys(&self, channel: &ChannelId, at: Timestamp) -> StoreResult<SearchKeys> {
        if !self.search_index {
            return Ok(SearchKeys::new());
        }
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
            "SELECT version, kek_version, wrapped, state FROM search_keys
             WHERE channel_id = ? AND state IN ('active', 'building') ORDER BY version",
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
            self.index_channel_pass(&mut conn, &id, &keys, true).await?;
        }
        Ok(())
    }

    /// Rows in the search index (for benchmarks and status).
    pub async fn search_index_rows(&self) -> StoreResult<u64> {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_index").fetch_one(&self.pool).await?;
        Ok(u64::try_from(rows).unwrap_or(0))
    }

    /// Deletes the whole search index and its keys and compacts the file (search turned off; a
    /// benchmark weighing the database without it). `rampart search rebuild` makes it again.
    pub async fn drop_search_index(&self) -> StoreResult<()> {
        sqlx::query("DELETE FROM search_index").execute(&self.pool).await?;
        sqlx::query("DELETE FROM search_keys").execute(&self.pool).await?;
        self.vault.forget_active();
        sqlx::query("VACUUM").execute(&self.pool).await?;
        self.checkpoint().await
    }

    /// Adds (or, with `insert` false, removes) the postings of a batch of message rows (each
    /// with its `message_rowid`) under `keys`, in one transaction.
    async fn index_batch(
        &self,
        conn: &mut SqliteConnection,
        rows: &[SqliteRow],
        keys: &SearchKeys,
        insert: bool,
    ) -> StoreResult<()> {
        let messages = self.messages_from_rows(conn, rows).await?;
        let mut tx = self.begin_write().await?;
        for (row, message) in rows.iter().zip(&messages) {
            let rowid: i64 = row.try_get("message_rowid")?;
            if let Some(body) = &message.body {
                let tokens = index_rows(keys, body.as_str());
                if insert {
                    insert_index(&mut tx, rowid, &tokens).await?;
                } else {
                    delete_index(&mut tx, rowid, &tokens).await?;
                }
            }
        }
        tx.commit().await?;
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
        if !self.search_index {
            return Err(StoreError::SearchDisabled);
        }
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
        let terms = query.index_lookup_tokens(channels.len()).map_err(|_| StoreError::SearchTooBroad)?;
        let mut keys = Vec::with_capacity(channels.len());
        for id in &channels {
            let id = ChannelId::parse(id).ok_or(StoreError::Corrupt("channel id"))?;
            let channel_keys = match self.vault.cached_search_keys(&id) {
                Some(keys) => keys,
                None => self.read_search_keys(&mut conn, &id).await?,
            };
            keys.extend(channel_keys.into_iter().find(|(_, active, _)| *active).map(|(_, _, key)| key));
        }
        let mut tokens = SearchTokens::new(&terms, &keys);
        if tokens.is_empty() {
            return Ok(SearchPage { messages: Vec::new(), next: None });
        }
        // The rarest term drives the scan; the others are checked per posting.
        let postings = self.postings_estimate(&mut conn, &tokens).await?;
        tokens.rarest_first(&postings);

        let mut found = Vec::new();
        let mut cursor = before.map(|c| c.rowid).unwrap_or(i64::MAX);
        let mut exhausted = false;
        for _ in 0..SEARCH_BATCHES_MAX {
            if exhausted || found.len() >= limit as usize {
                break;
            }
            let rows = self.candidates(&mut conn, user, query, &tokens, cursor, limit).await?;
            exhausted = rows.len() < limit as usize;
            if let Some(last) = rows.last() {
                cursor = last.try_get("message_rowid")?;
            }
            let messages = self.messages_from_rows(&mut conn, &rows).await?;
            for (row, message) in rows.iter().zip(messages) {
                if message.body.as_ref().is_some_and(|b| query.matches(b.as_str())) && found.len() < limit as usize {
                    found.push((row.try_get::<i64, _>("message_rowid")?, message));
                }
            }
        }
        let next = if exhausted && found.len() < limit as usize {
            None
        } else {
            let rowid = if found.len() >= limit as usize { found.last().map_or(cursor, |(r, _)| *r) } else { cursor };
            Some(SearchCursor { rowid })
        };
        Ok(SearchPage { messages: found.into_iter().map(|(_, m)| m).collect(), next })
    }

    /// Each term's postings in the searched channels, counted up to a cap: enough to tell a rare
    /// term from a common one. One statement, the tokens bound once.
    async fn postings_estimate(&self, conn: &mut SqliteConnection, tokens: &SearchTokens) -> StoreResult<Vec<u64>> {
        let counts: Vec<i64> = sqlx::query_scalar(
            "WITH RECURSIVE channel (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM channel WHERE n + 1 < ?2)
             SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM channel JOIN search_index si
                     ON si.token = substr(?1, (channel.n * ?3 + term.n) * ?4 + 1, ?4) LIMIT ?5))
             FROM token_slots term WHERE term.n < ?3 ORDER BY term.n",
        )
        .bind(tokens.blob())
        .bind(sql_count(tokens.channels()))
        .bind(sql_count(tokens.terms()))
        .bind(sql_count(TOKEN_BYTES))
        .bind(POSTINGS_ESTIMATE_CAP)
        .fetch_all(&mut *conn)
        .await?;
        Ok(counts.into_iter().map(|count| u64::try_from(count).unwrap_or(0)).collect())
    }

    /// Up to `limit` messages older than `before_rowid`, newest first, that have a posting of the
    /// driving term (term 0) and of every other term, in channels `user` is a member of — checked
    /// here, in the query. Each channel's driving token is read as its own backward range scan
    /// (the `IN` subquery runs once per channel), so the cost follows the page, not the term's
    /// frequency; the other terms are point lookups of the same channel's tokens. `CROSS JOIN`
    /// fixes the order (channels, then messages by the rowids the postings name, then the
    /// membership check): left to itself SQLite read every message of the caller's channels.
    /// `+m.deleted` and `+m.sender_id` keep it off the other indexes of `messages`.
    async fn candidates(
        &self,
        conn: &mut SqliteConnection,
        user: &UserId,
        query: &SearchQuery,
        tokens: &SearchTokens,
        before_rowid: i64,
        limit: u32,
    ) -> StoreResult<Vec<SqliteRow>> {
        let sql = format!(
            "WITH RECURSIVE channel (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM channel WHERE n + 1 < ?2)
             SELECT m.rowid AS message_rowid, {} FROM channel CROSS JOIN messages m
             CROSS JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = ?7
             WHERE +m.deleted = 0
               AND (?8 IS NULL OR +m.sender_id = (SELECT id FROM users WHERE username = ?8))
               AND m.rowid IN (
                 SELECT si.message_rowid FROM search_index si
                 WHERE si.token = substr(?1, channel.n * ?3 * ?4 + 1, ?4) AND si.message_rowid < ?5
                   AND NOT EXISTS (SELECT 1 FROM token_slots term WHERE term.n BETWEEN 1 AND ?3 - 1
                     AND NOT EXISTS (SELECT 1 FROM search_index f
                       WHERE f.token = substr(?1, (channel.n * ?3 + term.n) * ?4 + 1, ?4)
                         AND f.message_rowid = si.message_rowid))
                 ORDER BY si.message_rowid DESC LIMIT ?6)
             ORDER BY m.rowid DESC LIMIT ?6",
            super::channels::MESSAGE_COLUMNS
        );
        Ok(sqlx::query(&sql)
            .bind(tokens.blob())
            .bind(sql_count(tokens.channels()))
            .bind(sql_count(tokens.terms()))
            .bind(sql_count(TOKEN_BYTES))
            .bind(before_rowid)
            .bind(i64::from(limit))
            .bind(user.as_str())
            .bind(query.from.as_deref())
            .fetch_all(&mut *conn)
            .await?)
    }

    /// Indexes every message of `channel` under a fresh search key while the server runs, then
    /// makes it the active one and removes the old key's postings. Resumable: a key left
    /// `building` by an interrupted run is finished, not replaced. Returns the messages indexed.
    pub(crate) async fn rebuild_channel_index(&self, channel: &ChannelId, at: Timestamp) -> StoreResult<u64> {
        if !self.search_index {
            return Err(StoreError::SearchDisabled);
        }
        let mut conn = self.pool.acquire().await?;
        let keys = self.read_search_keys(&mut conn, channel).await?;
        if keys.iter().all(|(_, active, _)| *active) {
            let version = keys.iter().map(|(v, _, _)| *v).max().unwrap_or(0) + 1;
            self.insert_search_key(&mut conn, channel, version, "building", at).await?;
        }
        let keys = self.read_search_keys(&mut conn, channel).await?;
        let building: SearchKeys = keys.iter().filter(|(_, active, _)| !*active).cloned().collect();
        let old: SearchKeys = keys.iter().filter(|(_, active, _)| *active).cloned().collect();
        let new_version = building.first().map(|(v, _, _)| *v).ok_or(StoreError::Corrupt("search key"))?;
        self.vault.forget_active();
        // Writers on every node learn of the new key within the recheck interval; wait it out, so
        // the pass below (which starts after) covers whatever they indexed without it.
        tokio::time::sleep(std::time::Duration::from_millis(crate::ACTIVE_KEY_RECHECK_MS + 500)).await;
        let indexed = self.index_channel_pass(&mut conn, channel, &building, true).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE search_keys SET state = 'retiring' WHERE channel_id = ? AND version != ?")
            .bind(channel.as_str())
            .bind(new_version)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE search_keys SET state = 'active' WHERE channel_id = ? AND version = ?")
            .bind(channel.as_str())
            .bind(new_version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.vault.forget_active();
        // The old key's postings go, message by message (their tokens are recomputed from the text).
        self.index_channel_pass(&mut conn, channel, &old, false).await?;
        sqlx::query("DELETE FROM search_keys WHERE channel_id = ? AND version != ?")
            .bind(channel.as_str())
            .bind(new_version)
            .execute(&mut *conn)
            .await?;
        self.vault.forget_active();
        Ok(indexed)
    }

    /// Adds (or removes) the postings of every live message of `channel` under `keys`.
    async fn index_channel_pass(
        &self,
        conn: &mut SqliteConnection,
        channel: &ChannelId,
        keys: &SearchKeys,
        insert: bool,
    ) -> StoreResult<u64> {
        let mut after_seq = 0i64;
        let mut done = 0u64;
        loop {
            let sql = format!(
                "SELECT m.rowid AS message_rowid, {} FROM messages m
                 WHERE m.channel_id = ? AND m.seq > ? AND m.deleted = 0 ORDER BY m.seq LIMIT ?",
                super::channels::MESSAGE_COLUMNS
            );
            let rows = sqlx::query(&sql)
                .bind(channel.as_str())
                .bind(after_seq)
                .bind(REBUILD_BATCH_MAX)
                .fetch_all(&mut *conn)
                .await?;
            let Some(last) = rows.last() else {
                return Ok(done);
            };
            after_seq = last.try_get("seq")?;
            self.index_batch(conn, &rows, keys, insert).await?;
            done += rows.len() as u64;
        }
    }
}
