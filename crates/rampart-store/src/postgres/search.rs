//! PostgreSQL side of search: the blind index written in the same transaction as the message it
//! indexes (postings name the message by its `position`, SQLite's rowid), the query (membership
//! checked in the SQL itself, candidates then checked against the opened text), and `rebuild`,
//! which indexes a channel under a fresh search key while the server runs and then swaps it in.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use rampart_core::search::SearchQuery;
use rampart_core::{ChannelId, MessageId, Timestamp, UserId};
use rampart_crypto::blind::{SearchKey, TOKEN_BYTES};

use super::PgStore;
use crate::search_tokens::SearchTokens;
use crate::shared::index_rows;
use crate::vault::{search_key_aad, SearchKeys};
use crate::{SearchCursor, SearchPage, StoreError, StoreResult};

/// Index rows inserted per statement (2 parameters each; PostgreSQL allows 65,535 per statement).
const INDEX_ROWS_PER_STATEMENT: usize = 1_000;
/// Postings counted when telling a rare term from a common one.
const POSTINGS_ESTIMATE_CAP: i64 = 10_000;
/// Candidate batches a query reads (each `limit` rows) before it returns what it has and a cursor.
const SEARCH_BATCHES_MAX: usize = 8;
/// Messages indexed per transaction by `rebuild`.
const REBUILD_BATCH_MAX: i64 = 500;

/// A count as PostgreSQL's `integer` (array subscripts are; counts here are bounded by
/// `search::SEARCH_TOKENS_MAX`).
fn sql_count(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn token_list(tokens: &[[u8; TOKEN_BYTES]]) -> Vec<Vec<u8>> {
    tokens.iter().map(|t| t.to_vec()).collect()
}

/// Adds a message's postings.
pub(crate) async fn insert_index(
    conn: &mut PgConnection,
    position: i64,
    tokens: &[[u8; TOKEN_BYTES]],
) -> StoreResult<()> {
    for chunk in tokens.chunks(INDEX_ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new("INSERT INTO search_index (token, message_rowid) ");
        insert.push_values(chunk, |mut row, token| {
            row.push_bind(token.to_vec()).push_bind(position);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes a message's postings for these tokens (point deletes: the postings are keyed by token).
pub(crate) async fn delete_index(
    conn: &mut PgConnection,
    position: i64,
    tokens: &[[u8; TOKEN_BYTES]],
) -> StoreResult<()> {
    for chunk in tokens.chunks(INDEX_ROWS_PER_STATEMENT) {
        sqlx::query("DELETE FROM search_index WHERE message_rowid = $1 AND token = ANY($2)")
            .bind(position)
            .bind(token_list(chunk))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A message's position, which its postings name.
pub(crate) async fn message_position(conn: &mut PgConnection, message: &MessageId) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT position FROM messages WHERE id = $1")
        .bind(message.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

impl PgStore {
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

    async fn read_search_keys(&self, conn: &mut PgConnection, channel: &ChannelId) -> StoreResult<SearchKeys> {
        let rows: Vec<(i64, i32, Vec<u8>, String)> = sqlx::query_as(
            "SELECT version, kek_version, wrapped, state FROM search_keys
             WHERE channel_id = $1 AND state IN ('active', 'building') ORDER BY version",
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
        conn: &mut PgConnection,
        channel: &ChannelId,
        version: i64,
        state: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let kek_version = super::keys::active_kek_version(conn).await?;
        let kek = self.vault.kek(kek_version)?;
        let wrapped = kek.wrap(&SearchKey::generate(), &search_key_aad(channel, version));
        let kek_version = i32::try_from(kek_version).map_err(|_| StoreError::Corrupt("KEK version"))?;
        let done = sqlx::query(
            "INSERT INTO search_keys (channel_id, version, kek_version, wrapped, state, created_at)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE EXISTS (SELECT 1 FROM kek_versions WHERE version = $3 AND state = 'active')
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

    /// Indexes channels that have messages and no search key, at open (as SQLite does after an
    /// upgrade; on PostgreSQL, after search was turned back on).
    pub(crate) async fn index_channels_without_keys(&self) -> StoreResult<()> {
        if !self.search_index {
            return Ok(());
        }
        let channels: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM channels c WHERE EXISTS (SELECT 1 FROM messages m WHERE m.channel_id = c.id)
             AND NOT EXISTS (SELECT 1 FROM search_keys s WHERE s.channel_id = c.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        for id in channels {
            let id = ChannelId::parse(&id).ok_or(StoreError::Corrupt("channel id"))?;
            let keys = self.search_keys(&id, crate::shared::now()).await?;
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

    /// Deletes the whole search index and its keys (search turned off). The space is reclaimed
    /// by autovacuum; VACUUM FULL is the owner's (the migrator's) to run, not the app role's.
    pub async fn drop_search_index(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM search_index").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM search_keys").execute(&mut *tx).await?;
        tx.commit().await?;
        self.vault.forget_active();
        Ok(())
    }

    /// Adds (or, with `insert` false, removes) the postings of a batch of message rows (each
    /// with its `message_rowid`) under `keys`, in one transaction.
    async fn index_batch(
        &self,
        conn: &mut PgConnection,
        rows: &[PgRow],
        keys: &SearchKeys,
        insert: bool,
    ) -> StoreResult<()> {
        let messages = self.messages_from_rows(conn, rows).await?;
        let mut tx = self.pool.begin().await?;
        for (row, message) in rows.iter().zip(&messages) {
            let position: i64 = row.try_get("message_rowid")?;
            if let Some(body) = &message.body {
                let tokens = index_rows(keys, body.as_str());
                if insert {
                    insert_index(&mut tx, position, &tokens).await?;
                } else {
                    delete_index(&mut tx, position, &tokens).await?;
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
             WHERE m.user_id = $1 AND ($2::text IS NULL OR c.id = $2) AND ($3::text IS NULL OR c.name = $3) ORDER BY c.id",
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
    /// term from a common one. One statement, the tokens bound once (`$1[channel * terms + term]`,
    /// 1-based).
    async fn postings_estimate(&self, conn: &mut PgConnection, tokens: &SearchTokens) -> StoreResult<Vec<u64>> {
        let counts: Vec<i64> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM (SELECT si.message_rowid FROM generate_series(0, $2 - 1) AS channel (n)
                     JOIN search_index si ON si.token = $1[channel.n * $3 + term.t] LIMIT $4) AS capped)
             FROM generate_series(1, $3) AS term (t) ORDER BY term.t",
        )
        .bind(tokens.list())
        .bind(sql_count(tokens.channels()))
        .bind(sql_count(tokens.terms()))
        .bind(POSTINGS_ESTIMATE_CAP)
        .fetch_all(&mut *conn)
        .await?;
        Ok(counts.into_iter().map(|count| u64::try_from(count).unwrap_or(0)).collect())
    }

    /// Up to `limit` messages before `before_position`, newest first, that have a posting of the
    /// driving term (term 1) and of every other term, in channels `user` is a member of — checked
    /// here, in the query. Each channel's driving token is read as its own backward range scan
    /// (`LATERAL`, once per channel), so the cost follows the page, not the term's frequency; the
    /// other terms are point lookups of the same channel's tokens.
    async fn candidates(
        &self,
        conn: &mut PgConnection,
        user: &UserId,
        query: &SearchQuery,
        tokens: &SearchTokens,
        before_position: i64,
        limit: u32,
    ) -> StoreResult<Vec<PgRow>> {
        let sql = format!(
            "SELECT m.position AS message_rowid, {} FROM generate_series(0, $2 - 1) AS channel (n)
             CROSS JOIN LATERAL (
                 SELECT si.message_rowid FROM search_index si
                 WHERE si.token = $1[channel.n * $3 + 1] AND si.message_rowid < $4
                   AND NOT EXISTS (SELECT 1 FROM generate_series(2, $3) AS term (t)
                     WHERE NOT EXISTS (SELECT 1 FROM search_index f
                       WHERE f.token = $1[channel.n * $3 + term.t] AND f.message_rowid = si.message_rowid))
                 ORDER BY si.message_rowid DESC LIMIT $5) AS hit
             JOIN messages m ON m.position = hit.message_rowid
             JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = $6
             WHERE NOT m.deleted
               AND ($7::text IS NULL OR m.sender_id = (SELECT id FROM users WHERE username = $7))
             ORDER BY m.position DESC LIMIT $5",
            super::channels::MESSAGE_COLUMNS
        );
        Ok(sqlx::query(&sql)
            .bind(tokens.list())
            .bind(sql_count(tokens.channels()))
            .bind(sql_count(tokens.terms()))
            .bind(before_position)
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE search_keys SET state = 'retiring' WHERE channel_id = $1 AND version <> $2")
            .bind(channel.as_str())
            .bind(new_version)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE search_keys SET state = 'active' WHERE channel_id = $1 AND version = $2")
            .bind(channel.as_str())
            .bind(new_version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.vault.forget_active();
        // The old key's postings go, message by message (their tokens are recomputed from the text).
        self.index_channel_pass(&mut conn, channel, &old, false).await?;
        sqlx::query("DELETE FROM search_keys WHERE channel_id = $1 AND version <> $2")
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
        conn: &mut PgConnection,
        channel: &ChannelId,
        keys: &SearchKeys,
        insert: bool,
    ) -> StoreResult<u64> {
        let mut after_seq = 0i64;
        let mut done = 0u64;
        loop {
            let sql = format!(
                "SELECT m.position AS message_rowid, {} FROM messages m
                 WHERE m.channel_id = $1 AND m.seq > $2 AND NOT m.deleted ORDER BY m.seq LIMIT $3",
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
