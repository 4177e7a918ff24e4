//! Key management, as `rampart keys` does it while the server runs: status; KEK rotation (a new
//! KEK, every data key re-wrapped in batches, the old KEK retired and its file deleted once
//! nothing uses it); a new data-key epoch now; and re-encryption of old epochs. Each is audited as
//! an action of `system`; a rotation whose record cannot be written reports failure.

use rampart_core::policy::Action;
use rampart_core::{limits, ChannelId};
use rampart_store::{KeyStatus, ReencryptProgress};
use serde_json::json;

use crate::audit::SYSTEM_ACTOR;
use crate::{now, App, AppError, Authenticated, Outcome};

/// What a KEK rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekRotation {
    pub from: Option<u32>,
    pub to: u32,
    pub rewrapped: u64,
    pub retired: Vec<u32>,
}

/// What a re-encryption did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reencryption {
    pub resealed: u64,
    /// Messages left as they were because they failed their integrity check.
    pub unreadable: u64,
    pub remaining: u64,
}

/// The steps of a full re-key, in order, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RekeyStep {
    /// A new data-key epoch for every channel.
    NewEpochs,
    /// Messages of older epochs re-sealed under the new ones: (re-sealed, still to go).
    Reencrypt,
    /// Search indexes rebuilt under new search keys.
    Search,
    /// Old data keys destroyed, what is left re-wrapped, the old KEK retired.
    Destroy,
}

/// What a full re-key (`rampart keys rotate-kek --rekey`) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rekey {
    pub kek: KekRotation,
    pub epochs_started: u64,
    pub reencrypted: Reencryption,
    /// Channels whose search index was rebuilt (0 with search turned off).
    pub search_channels: u64,
    pub data_keys_destroyed: u64,
    /// Old data keys still sealing something (a file, or a message that fails its integrity
    /// check), re-wrapped under the new KEK instead of destroyed.
    pub data_keys_kept: u64,
}

impl App {
    /// Re-keys everything after a compromise: a new KEK, a new epoch (data key) for every channel,
    /// every message of an older epoch re-sealed under it, every search index rebuilt under a new
    /// search key, then the old data keys destroyed and the old KEK retired (its file deleted). A
    /// database copy from before, with the old KEK, then opens nothing current. Safe while servers
    /// run (they seal under the new epochs within `ACTIVE_KEY_RECHECK_MS`). Resumable: each step
    /// works on whatever is still old, so a run cut short is finished by running it again (which
    /// starts from a newer KEK and epochs). Audited, as `keys.rekey`.
    pub async fn rekey(&self, progress: &mut (dyn FnMut(RekeyStep, u64, u64) + Send)) -> Result<Rekey, AppError> {
        let result = self.rekey_steps(progress).await;
        let (outcome, details) = match &result {
            Ok(done) => (
                Outcome::Success,
                json!({
                    "from": done.kek.from, "to": done.kek.to, "retired": done.kek.retired,
                    "epochs": done.epochs_started, "resealed": done.reencrypted.resealed,
                    "unreadable": done.reencrypted.unreadable, "search_channels": done.search_channels,
                    "data_keys_destroyed": done.data_keys_destroyed, "data_keys_kept": done.data_keys_kept,
                }),
            ),
            Err(error) => (Outcome::Failure, json!({ "error": error.code().as_str() })),
        };
        self.audit(SYSTEM_ACTOR, "keys.rekey", None, None, outcome, details).await?;
        result
    }

    async fn rekey_steps(&self, progress: &mut (dyn FnMut(RekeyStep, u64, u64) + Send)) -> Result<Rekey, AppError> {
        let store = &self.inner.store;
        let from = store.key_status().await?.active_kek();
        let to = store.begin_kek_rotation(now()).await?;
        // Every new epoch is wrapped by the new KEK, as is every new search key below.
        progress(RekeyStep::NewEpochs, 0, 1);
        let epochs_started = store.start_epoch(None, now()).await?;
        progress(RekeyStep::NewEpochs, 1, 1);
        // Servers may still seal under an old epoch for `ACTIVE_KEY_RECHECK_MS`; wait it out, so
        // the pass below sees every message they sealed so.
        tokio::time::sleep(std::time::Duration::from_millis(rampart_store::ACTIVE_KEY_RECHECK_MS + 500)).await;
        let reencrypted = self.reencrypt_all(&mut |p| progress(RekeyStep::Reencrypt, p.resealed, p.remaining)).await?;
        progress(RekeyStep::Search, 0, 1);
        let search_channels = match store.rebuild_search(None, now()).await {
            Ok((channels, _)) => channels,
            Err(rampart_store::StoreError::SearchDisabled) => 0,
            Err(error) => return Err(error.into()),
        };
        progress(RekeyStep::Search, 1, 1);
        progress(RekeyStep::Destroy, 0, 1);
        let (data_keys_destroyed, data_keys_kept) = store.destroy_replaced_data_keys().await?;
        let mut rewrapped = 0;
        loop {
            let done = store.rewrap_data_keys(limits::KEY_REWRAP_BATCH_MAX).await?;
            if done == 0 {
                break;
            }
            rewrapped += done;
        }
        let retired = store.retire_unused_keks(now()).await?;
        progress(RekeyStep::Destroy, 1, 1);
        Ok(Rekey {
            kek: KekRotation { from, to, rewrapped, retired },
            epochs_started,
            reencrypted,
            search_channels,
            data_keys_destroyed,
            data_keys_kept,
        })
    }

    pub async fn key_status(&self) -> Result<KeyStatus, AppError> {
        Ok(self.inner.store.key_status().await?)
    }

    /// Key status for the admin console: administrators only, like the audit log it sits beside.
    pub async fn key_status_for(&self, auth: &Authenticated) -> Result<KeyStatus, AppError> {
        self.check(auth, Action::ReadAudit)?;
        self.key_status().await
    }

    /// Rotates the KEK. Safe while servers run: they wrap new data keys under whichever KEK the
    /// database names active and read new KEK files from `key_dir` when they meet one. A rotation
    /// cut short is finished by the next one. `progress` hears the data keys re-wrapped so far.
    pub async fn rotate_kek(&self, progress: &mut (dyn FnMut(u64) + Send)) -> Result<KekRotation, AppError> {
        let result = self.rotate_kek_steps(progress).await;
        let (outcome, details) = match &result {
            Ok(done) => (
                Outcome::Success,
                json!({ "from": done.from, "to": done.to, "rewrapped": done.rewrapped, "retired": done.retired }),
            ),
            Err(error) => (Outcome::Failure, json!({ "error": error.code().as_str() })),
        };
        self.audit(SYSTEM_ACTOR, "keys.kek.rotate", None, None, outcome, details).await?;
        result
    }

    async fn rotate_kek_steps(&self, progress: &mut (dyn FnMut(u64) + Send)) -> Result<KekRotation, AppError> {
        let store = &self.inner.store;
        let from = store.key_status().await?.active_kek();
        let to = store.begin_kek_rotation(now()).await?;
        let mut rewrapped = 0;
        loop {
            let done = store.rewrap_data_keys(limits::KEY_REWRAP_BATCH_MAX).await?;
            if done == 0 {
                break;
            }
            rewrapped += done;
            progress(rewrapped);
        }
        let retired = store.retire_unused_keks(now()).await?;
        Ok(KekRotation { from, to, rewrapped, retired })
    }

    /// Starts a new data-key epoch now, for one channel or all; returns how many channels.
    pub async fn rotate_dek(&self, channel: Option<&ChannelId>) -> Result<u64, AppError> {
        let started = self.inner.store.start_epoch(channel, now()).await?;
        if channel.is_some() && started == 0 {
            return Err(AppError::NotFound);
        }
        let details = json!({ "channels": started });
        self.audit(SYSTEM_ACTOR, "keys.dek.rotate", channel.map(ChannelId::as_str), None, Outcome::Success, details)
            .await?;
        Ok(started)
    }

    /// Re-seals every message on an old epoch under its channel's active key, in batches; safe
    /// to stop and run again. `progress` hears the running totals after each batch.
    pub async fn reencrypt(&self, progress: &mut (dyn FnMut(Reencryption) + Send)) -> Result<Reencryption, AppError> {
        let totals = self.reencrypt_all(progress).await?;
        let details =
            json!({ "resealed": totals.resealed, "unreadable": totals.unreadable, "remaining": totals.remaining });
        self.audit(SYSTEM_ACTOR, "keys.reencrypt", None, None, Outcome::Success, details).await?;
        Ok(totals)
    }

    async fn reencrypt_all(&self, progress: &mut (dyn FnMut(Reencryption) + Send)) -> Result<Reencryption, AppError> {
        let mut totals = Reencryption::default();
        loop {
            let ReencryptProgress { resealed, unreadable, remaining } =
                self.inner.store.reencrypt_messages(limits::REENCRYPT_BATCH_MAX, now()).await?;
            totals.resealed += resealed;
            totals.unreadable = totals.unreadable.max(unreadable);
            totals.remaining = remaining;
            progress(totals);
            // Done, or only messages that fail their integrity check are left.
            if remaining == 0 || resealed == 0 {
                break;
            }
        }
        Ok(totals)
    }
}

impl App {
    /// Rebuilds the search index of one channel or all under fresh search keys (the old keys and
    /// their entries are dropped once the new ones are complete); the server keeps answering
    /// searches from the old index meanwhile. Audited.
    pub async fn rebuild_search(&self, channel: Option<&ChannelId>) -> Result<(u64, u64), AppError> {
        let (channels, messages) = self.inner.store.rebuild_search(channel, now()).await?;
        if channel.is_some() && channels == 0 {
            return Err(AppError::NotFound);
        }
        let details = json!({ "channels": channels, "messages": messages });
        self.audit(SYSTEM_ACTOR, "search.rebuild", channel.map(ChannelId::as_str), None, Outcome::Success, details)
            .await?;
        Ok((channels, messages))
    }
}
