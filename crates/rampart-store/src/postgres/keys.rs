//! PostgreSQL side of encryption at rest: KEK versions and their check values, wrapped data keys
//! per channel epoch, finding (or starting) a channel's active epoch, and the rotations behind
//! `rampart keys`. The sealing itself is the vault's, shared with SQLite; only the SQL is here.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use rampart_core::{ChannelId, Timestamp};
use rampart_crypto::Keyring;

use super::{advisory_lock, lock_keys, PgStore};
use crate::shared::{legacy_seal, needed_keys, reseal_legacy_aad, sealed_rows, BoundRow, BODY_AAD_UPGRADE};
use crate::shared::{now, KeyMap};
use crate::vault::{data_key_aad, search_key_aad, ActiveKey, DataKeyRow, Vault, BODY_AAD_CURRENT, BODY_AAD_LEGACY};
use crate::{KekState, KekStatus, KeyStatus, KeyStore, ReencryptProgress, StoreError, StoreResult};

/// A data key a re-key replaced: not wrapped by the active KEK, and not its channel's newest.
const REPLACED_DATA_KEY: &str = "kek_version <> (SELECT version FROM kek_versions WHERE state = 'active')
     AND epoch < (SELECT MAX(d.epoch) FROM data_keys d WHERE d.channel_id = data_keys.channel_id)";
/// A data key that still seals a message body or a file.
const STILL_SEALING: &str =
    "(EXISTS (SELECT 1 FROM messages m WHERE m.channel_id = data_keys.channel_id AND m.key_epoch = data_keys.epoch)
     OR EXISTS (SELECT 1 FROM files f WHERE f.channel_id = data_keys.channel_id AND f.key_epoch = data_keys.epoch))";
/// Tries at finding or making a channel's active key before giving up (each lost race to a
/// concurrent writer costs one).
const ACTIVE_KEY_ATTEMPTS_MAX: usize = 4;
/// Bodies re-sealed per transaction when moving rows to the current AAD version at open.
const REENCRYPT_PASS_BATCH_MAX: i64 = 500;
const DATA_KEY_COLUMNS: &str = "channel_id, epoch, kek_version, wrapped, created_at, sealed_count";
/// Messages still sealed under an epoch older than their channel's newest.
const ON_OLD_EPOCHS: &str = "m.body IS NOT NULL
     AND m.key_epoch < (SELECT MAX(epoch) FROM data_keys d WHERE d.channel_id = m.channel_id)";

fn kek_version(version: i32) -> StoreResult<u32> {
    u32::try_from(version).map_err(|_| StoreError::Corrupt("KEK version"))
}

fn kek_param(version: u32) -> StoreResult<i32> {
    i32::try_from(version).map_err(|_| StoreError::Corrupt("KEK version"))
}

fn data_key_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<DataKeyRow> {
    let channel: String = row.try_get("channel_id")?;
    Ok(DataKeyRow {
        channel_id: ChannelId::parse(&channel).ok_or(StoreError::Corrupt("data key channel"))?,
        epoch: row.try_get("epoch")?,
        kek_version: kek_version(row.try_get("kek_version")?)?,
        wrapped: row.try_get("wrapped")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sealed_count: row.try_get("sealed_count")?,
    })
}

async fn data_key_row(conn: &mut PgConnection, channel: &ChannelId, epoch: i64) -> StoreResult<Option<DataKeyRow>> {
    let sql = format!("SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE channel_id = $1 AND epoch = $2");
    let row = sqlx::query(&sql).bind(channel.as_str()).bind(epoch).fetch_optional(&mut *conn).await?;
    row.as_ref().map(data_key_from_row).transpose()
}

pub(crate) async fn active_kek_version(conn: &mut PgConnection) -> StoreResult<u32> {
    let version: Option<i32> = sqlx::query_scalar("SELECT version FROM kek_versions WHERE state = 'active'")
        .fetch_optional(&mut *conn)
        .await?;
    kek_version(version.ok_or(StoreError::Corrupt("no active KEK version"))?)
}

impl PgStore {
    /// Checks the keyring against the database at open: every KEK version still in use must be
    /// in `key_dir` with the check value recorded for it. A fresh database gets the newest KEK of
    /// `key_dir` (or a new version 1) as its active one; of several nodes starting at once on an
    /// empty database, one records it and the others check against it.
    pub(crate) async fn check_keyring(&self) -> StoreResult<()> {
        let keyring = self.vault.keyring();
        let mut tx = self.pool.begin().await?;
        advisory_lock(&mut tx, lock_keys::KEKS).await?;
        let rows: Vec<(i32, Vec<u8>, String)> =
            sqlx::query_as("SELECT version, check_value, state FROM kek_versions ORDER BY version")
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            let kek = match keyring.versions().max() {
                Some(version) => keyring.get(version).ok_or(StoreError::KeyMissing(version))?,
                None => Arc::new(Keyring::create(self.vault.key_dir(), 1).map_err(StoreError::Keys)?),
            };
            sqlx::query(
                "INSERT INTO kek_versions (version, check_value, state, created_at) VALUES ($1, $2, 'active', $3)",
            )
            .bind(kek_param(kek.version())?)
            .bind(kek.check_value().to_vec())
            .bind(now().0)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.vault.reload_keyring()?;
            return Ok(());
        }
        tx.commit().await?;
        for (version, check_value, state) in rows {
            let version = kek_version(version)?;
            if state == "retired" {
                continue;
            }
            let kek = keyring.get(version).ok_or(StoreError::KeyMissing(version))?;
            if kek.check_value().as_slice() != check_value.as_slice() {
                return Err(StoreError::KeyMismatch(version));
            }
        }
        Ok(())
    }

    /// The channel's active data key, starting a new epoch when there is none or the current one
    /// has sealed its share of messages or grown too old.
    pub(crate) async fn active_key(&self, channel: &ChannelId, at: Timestamp) -> StoreResult<ActiveKey> {
        if let Some(key) = self.vault.take_active(channel, at) {
            return Ok(key);
        }
        let mut conn = self.pool.acquire().await?;
        for _ in 0..ACTIVE_KEY_ATTEMPTS_MAX {
            let sql =
                format!("SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE channel_id = $1 ORDER BY epoch DESC LIMIT 1");
            let latest = sqlx::query(&sql).bind(channel.as_str()).fetch_optional(&mut *conn).await?;
            let latest = latest.as_ref().map(data_key_from_row).transpose()?;
            match latest {
                Some(row) if !self.vault.is_spent(row.created_at, row.sealed_count, at) => {
                    let key = self.vault.unwrap(&row)?;
                    return Ok(self.vault.set_active(&row, key));
                }
                _ => {
                    let epoch = latest.map_or(1, |row| row.epoch + 1);
                    self.insert_epoch(&mut conn, channel, epoch, at).await?;
                }
            }
        }
        Err(StoreError::Corrupt("no data key could be made for the channel"))
    }

    /// Writes a new epoch's data key, wrapped by the KEK the database names active (another
    /// process may have rotated it); writes nothing if that epoch exists or the KEK changed
    /// meanwhile — the caller reads again.
    async fn insert_epoch(
        &self,
        conn: &mut PgConnection,
        channel: &ChannelId,
        epoch: i64,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let version = active_kek_version(conn).await?;
        let kek = self.vault.kek(version)?;
        let (_key, wrapped) = Vault::new_data_key(&kek, channel, epoch);
        let done = sqlx::query(
            "INSERT INTO data_keys (channel_id, epoch, kek_version, wrapped, created_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM kek_versions WHERE version = $3 AND state = 'active')
             ON CONFLICT DO NOTHING",
        )
        .bind(channel.as_str())
        .bind(epoch)
        .bind(kek_param(version)?)
        .bind(wrapped)
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The unwrapped keys for `needed`. A key that is missing or fails to unwrap is left out (and
    /// logged): the messages it sealed read as unreadable, the others still load.
    pub(crate) async fn key_map(
        &self,
        conn: &mut PgConnection,
        needed: impl IntoIterator<Item = (ChannelId, i64)>,
    ) -> StoreResult<KeyMap> {
        let mut keys = KeyMap::new();
        for id in needed {
            if keys.contains_key(&id) {
                continue;
            }
            if let Some(key) = self.vault.cached(&id) {
                keys.insert(id, key);
                continue;
            }
            let Some(row) = data_key_row(conn, &id.0, id.1).await? else {
                tracing::error!(channel_id = %id.0.as_str(), epoch = id.1, "a message names a data key that does not exist");
                continue;
            };
            match self.vault.unwrap(&row) {
                Ok(key) => {
                    keys.insert(id, key);
                }
                Err(error) => {
                    tracing::error!(channel_id = %id.0.as_str(), epoch = id.1, %error, "a data key did not unwrap");
                }
            }
        }
        Ok(keys)
    }

    /// Re-wraps up to `limit` search keys that the active KEK does not wrap, inside `tx`.
    async fn rewrap_search_keys(&self, tx: &mut PgConnection, active: u32, limit: u32) -> StoreResult<u64> {
        let kek = self.vault.kek(active)?;
        let rows: Vec<(String, i64, i32, Vec<u8>)> = sqlx::query_as(
            "SELECT channel_id, version, kek_version, wrapped FROM search_keys WHERE kek_version <> $1 LIMIT $2
             FOR UPDATE",
        )
        .bind(kek_param(active)?)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut done = 0;
        for (channel, version, kek_version_of_row, wrapped) in rows {
            let channel = ChannelId::parse(&channel).ok_or(StoreError::Corrupt("search key channel"))?;
            let key = self.vault.unwrap_search_key(&channel, version, kek_version(kek_version_of_row)?, &wrapped)?;
            let wrapped = kek.wrap(&key, &search_key_aad(&channel, version));
            sqlx::query("UPDATE search_keys SET kek_version = $1, wrapped = $2 WHERE channel_id = $3 AND version = $4")
                .bind(kek_param(active)?)
                .bind(wrapped)
                .bind(channel.as_str())
                .bind(version)
                .execute(&mut *tx)
                .await?;
            done += 1;
        }
        Ok(done)
    }
}

impl PgStore {
    /// Re-seals every body still sealed under AAD version 1 (channel, row and epoch only) under the
    /// current version, which binds its sender, thread, creation time and edit counter too. Runs at
    /// open while the upgrade is pending (migration 0008 marks it so when it finds messages), in
    /// batches: an open cut short resumes at the next, and nodes starting together each skip what
    /// another re-sealed. Once done, a version-1 body is refused.
    pub(crate) async fn upgrade_body_aad(&self) -> StoreResult<u64> {
        let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM upgrades_pending WHERE name = $1)")
            .bind(BODY_AAD_UPGRADE)
            .fetch_one(&self.pool)
            .await?;
        if !pending {
            return Ok(0);
        }
        let (mut resealed, mut unreadable, mut after) = (0u64, 0u64, String::new());
        loop {
            let sql = format!(
                "SELECT {}, m.key_epoch, m.body FROM messages m
                 WHERE m.aad_version = $1 AND m.body IS NOT NULL AND m.id > $2 ORDER BY m.id LIMIT $3",
                BoundRow::COLUMNS
            );
            let rows = sqlx::query_as(&sql)
                .bind(BODY_AAD_LEGACY)
                .bind(&after)
                .bind(REENCRYPT_PASS_BATCH_MAX)
                .fetch_all(&self.pool)
                .await?;
            let rows = sealed_rows(rows)?;
            let Some((last, _, _)) = rows.last() else { break };
            after = last.message.as_str().to_owned();
            let mut tx = self.pool.begin().await?;
            let keys = self.key_map(&mut tx, needed_keys(&rows)).await?;
            let (batch, failed) = reseal_legacy_aad(&keys, &rows);
            unreadable += failed;
            for (message, sealed) in batch {
                let done =
                    sqlx::query("UPDATE messages SET body = $1, aad_version = $2 WHERE id = $3 AND aad_version = $4")
                        .bind(sealed)
                        .bind(BODY_AAD_CURRENT)
                        .bind(message.as_str())
                        .bind(BODY_AAD_LEGACY)
                        .execute(&mut *tx)
                        .await?;
                resealed += done.rows_affected();
            }
            tx.commit().await?;
        }
        sqlx::query("DELETE FROM upgrades_pending WHERE name = $1").bind(BODY_AAD_UPGRADE).execute(&self.pool).await?;
        tracing::info!(
            resealed,
            unreadable,
            "message bodies re-sealed under AAD version 2 (sender, thread, time and edit counter bound)"
        );
        Ok(resealed)
    }

    /// Turns every body back into what the release before AAD version 2 wrote (sealed under
    /// version 1, the upgrade pending). Only for the tests of that upgrade.
    #[doc(hidden)]
    pub async fn seal_as_before_body_binding(&self) -> StoreResult<u64> {
        let sql = format!("SELECT {}, m.key_epoch, m.body FROM messages m WHERE m.body IS NOT NULL", BoundRow::COLUMNS);
        let rows = sealed_rows(sqlx::query_as(&sql).fetch_all(&self.pool).await?)?;
        let mut tx = self.pool.begin().await?;
        let keys = self.key_map(&mut tx, needed_keys(&rows)).await?;
        let mut done = 0;
        for (message, sealed) in legacy_seal(&keys, &rows) {
            sqlx::query("UPDATE messages SET body = $1, aad_version = $2 WHERE id = $3")
                .bind(sealed)
                .bind(BODY_AAD_LEGACY)
                .bind(message.as_str())
                .execute(&mut *tx)
                .await?;
            done += 1;
        }
        sqlx::query("INSERT INTO upgrades_pending (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(BODY_AAD_UPGRADE)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn key_status(&self) -> StoreResult<KeyStatus> {
        let keks: Vec<(i32, String, i64)> = sqlx::query_as(
            "SELECT k.version, k.state, (SELECT COUNT(*) FROM data_keys d WHERE d.kek_version = k.version)
             FROM kek_versions k ORDER BY k.version",
        )
        .fetch_all(&self.pool)
        .await?;
        let (channels, data_keys): (i64, i64) =
            sqlx::query_as("SELECT COUNT(DISTINCT channel_id), COUNT(*) FROM data_keys").fetch_one(&self.pool).await?;
        let stale: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM messages m WHERE {ON_OLD_EPOCHS}"))
            .fetch_one(&self.pool)
            .await?;
        let keyring = self.vault.keyring();
        let keks = keks
            .into_iter()
            .map(|(version, state, data_keys)| {
                let version = kek_version(version)?;
                Ok(KekStatus {
                    version,
                    state: KekState::parse(&state).ok_or(StoreError::Corrupt("KEK state"))?,
                    data_keys: u64::try_from(data_keys).unwrap_or(0),
                    in_key_dir: keyring.get(version).is_some(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(KeyStatus {
            keks,
            channels_with_keys: u64::try_from(channels).unwrap_or(0),
            data_keys: u64::try_from(data_keys).unwrap_or(0),
            messages_on_old_epochs: u64::try_from(stale).unwrap_or(0),
        })
    }

    async fn begin_kek_rotation(&self, at: Timestamp) -> StoreResult<u32> {
        let keyring = self.vault.reload_keyring()?;
        let mut tx = self.pool.begin().await?;
        advisory_lock(&mut tx, lock_keys::KEKS).await?;
        let highest: Option<i32> =
            sqlx::query_scalar("SELECT MAX(version) FROM kek_versions").fetch_one(&mut *tx).await?;
        let highest = kek_version(highest.unwrap_or(0))?;
        // A file left by an interrupted rotation is never overwritten: skip past it.
        let version = highest.max(keyring.versions().max().unwrap_or(0)) + 1;
        let kek = Keyring::create(self.vault.key_dir(), version).map_err(StoreError::Keys)?;
        sqlx::query("UPDATE kek_versions SET state = 'retiring' WHERE state = 'active'").execute(&mut *tx).await?;
        sqlx::query("INSERT INTO kek_versions (version, check_value, state, created_at) VALUES ($1, $2, 'active', $3)")
            .bind(kek_param(version)?)
            .bind(kek.check_value().to_vec())
            .bind(at.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.vault.reload_keyring()?;
        Ok(version)
    }

    async fn rewrap_data_keys(&self, limit: u32) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        // No rotation may begin while this batch moves keys to what it thinks is the active KEK.
        advisory_lock(&mut tx, lock_keys::KEKS).await?;
        let active = active_kek_version(&mut tx).await?;
        let kek = self.vault.kek(active)?;
        let sql = format!("SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE kek_version <> $1 LIMIT $2 FOR UPDATE");
        let rows = sqlx::query(&sql).bind(kek_param(active)?).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        let mut done = 0;
        for row in &rows {
            let row = data_key_from_row(row)?;
            let key = self.vault.unwrap(&row)?;
            let wrapped = kek.wrap(&key, &data_key_aad(&row.channel_id, row.epoch));
            sqlx::query("UPDATE data_keys SET kek_version = $1, wrapped = $2 WHERE channel_id = $3 AND epoch = $4")
                .bind(kek_param(active)?)
                .bind(wrapped)
                .bind(row.channel_id.as_str())
                .bind(row.epoch)
                .execute(&mut *tx)
                .await?;
            done += 1;
        }
        // Search keys are wrapped the same way and move with the data keys.
        done += self.rewrap_search_keys(&mut tx, active, limit).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn retire_unused_keks(&self, at: Timestamp) -> StoreResult<Vec<u32>> {
        let retired: Vec<i32> = sqlx::query_scalar(
            "UPDATE kek_versions SET state = 'retired', retired_at = $1
             WHERE state = 'retiring' AND NOT EXISTS (SELECT 1 FROM data_keys d WHERE d.kek_version = kek_versions.version)
             AND NOT EXISTS (SELECT 1 FROM search_keys s WHERE s.kek_version = kek_versions.version)
             RETURNING version",
        )
        .bind(at.0)
        .fetch_all(&self.pool)
        .await?;
        let mut versions = Vec::with_capacity(retired.len());
        for version in retired {
            let version = kek_version(version)?;
            Keyring::remove(self.vault.key_dir(), version).map_err(StoreError::Keys)?;
            versions.push(version);
        }
        if !versions.is_empty() {
            self.vault.reload_keyring()?;
        }
        Ok(versions)
    }

    async fn start_epoch(&self, channel: Option<&ChannelId>, at: Timestamp) -> StoreResult<u64> {
        let channels = self.channel_ids(channel).await?;
        let mut conn = self.pool.acquire().await?;
        let mut started = 0;
        for id in channels {
            let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(epoch) FROM data_keys WHERE channel_id = $1")
                .bind(id.as_str())
                .fetch_one(&mut *conn)
                .await?;
            if self.insert_epoch(&mut conn, &id, latest.unwrap_or(0) + 1, at).await? {
                started += 1;
            }
        }
        self.vault.forget_active();
        Ok(started)
    }

    async fn destroy_replaced_data_keys(&self) -> StoreResult<(u64, u64)> {
        let destroyed =
            sqlx::query(&format!("DELETE FROM data_keys WHERE {REPLACED_DATA_KEY} AND NOT {STILL_SEALING}"))
                .execute(&self.pool)
                .await?
                .rows_affected();
        let kept: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM data_keys WHERE {REPLACED_DATA_KEY}"))
            .fetch_one(&self.pool)
            .await?;
        self.vault.forget_data_keys();
        Ok((destroyed, u64::try_from(kept).unwrap_or(0)))
    }

    async fn reencrypt_messages(&self, limit: u32, at: Timestamp) -> StoreResult<ReencryptProgress> {
        let sql =
            format!("SELECT {}, m.key_epoch, m.body FROM messages m WHERE {ON_OLD_EPOCHS} LIMIT $1", BoundRow::COLUMNS);
        let rows = sealed_rows(sqlx::query_as(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await?)?;
        let mut conn = self.pool.acquire().await?;
        let keys = self.key_map(&mut conn, needed_keys(&rows)).await?;
        let (mut resealed, mut unreadable) = (0, 0);
        for (row, epoch, sealed) in rows {
            let binding = row.binding();
            let body =
                keys.get(&(row.channel.clone(), epoch)).and_then(|key| Vault::open_body(key, &binding, epoch, &sealed));
            let Some(body) = body else {
                unreadable += 1;
                continue;
            };
            let key = self.active_key(&row.channel, at).await?;
            // Only if untouched meanwhile: an edit re-seals under the active key itself.
            let done = sqlx::query(
                "UPDATE messages SET body = $1, key_epoch = $2
                 WHERE id = $3 AND key_epoch = $4 AND edit_count = $5 AND aad_version = $6",
            )
            .bind(Vault::seal_body(&key, &binding, &body))
            .bind(key.epoch)
            .bind(row.message.as_str())
            .bind(epoch)
            .bind(row.edit_count)
            .bind(BODY_AAD_CURRENT)
            .execute(&mut *conn)
            .await?;
            resealed += done.rows_affected();
        }
        let remaining: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM messages m WHERE {ON_OLD_EPOCHS}"))
            .fetch_one(&mut *conn)
            .await?;
        Ok(ReencryptProgress { resealed, unreadable, remaining: u64::try_from(remaining).unwrap_or(0) })
    }
}
