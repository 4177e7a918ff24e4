//! A short-lived cache of authenticated sessions, so the hot paths (sending a message, reading
//! history) do not read the session and user rows on every request. Entries live at most
//! `AUTH_CACHE_TTL_MS`; every revocation, disable and role change on this node removes the
//! affected entries before it returns. In a cluster, the other nodes drop theirs when the notice
//! reaches them over the bus (milliseconds); were it lost, the TTL still bounds the staleness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_core::Timestamp;

use crate::{Authenticated, SessionEnded};

/// How long a cached authentication is trusted.
const AUTH_CACHE_TTL_MS: u64 = 2_000;
/// Most cached entries; past this the cache is emptied (it refills from the store).
const AUTH_CACHE_ENTRIES_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<String, (Authenticated, Instant)>>,
}

impl AuthCache {
    /// A fresh entry for this token hash that is still within its session's deadlines.
    pub(crate) fn get(&self, token_hash: &str, at: Timestamp, idle_timeout_ms: i64) -> Option<Authenticated> {
        let entries = self.entries.lock().ok()?;
        let (auth, stored) = entries.get(token_hash)?;
        let fresh = stored.elapsed() < Duration::from_millis(AUTH_CACHE_TTL_MS);
        let alive = at < auth.session.expires_at && at < auth.session.last_seen_at.plus_ms(idle_timeout_ms);
        (fresh && alive).then(|| auth.clone())
    }

    pub(crate) fn put(&self, token_hash: &str, auth: &Authenticated) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= AUTH_CACHE_ENTRIES_MAX {
                entries.clear();
            }
            entries.insert(token_hash.to_owned(), (auth.clone(), Instant::now()));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Removes the entries an ended session or user change makes stale.
    pub(crate) fn forget(&self, event: &SessionEnded) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (auth, _)| match event {
                SessionEnded::Session(id) => &auth.session.id != id,
                SessionEnded::AllOfUser(user) => &auth.user.id != user,
            });
        }
    }
}
