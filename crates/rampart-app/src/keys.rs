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

impl App {
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
        let details =
            json!({ "resealed": totals.resealed, "unreadable": totals.unreadable, "remaining": totals.remaining });
        self.audit(SYSTEM_ACTOR, "keys.reencrypt", None, None, Outcome::Success, details).await?;
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
