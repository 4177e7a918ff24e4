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
/// Every this many insertions, entries past their TTL are dropped, so the cache holds about the
/// sessions used in the last TTL rather than every session seen since the last overflow.
const AUTH_CACHE_PURGE_EVERY: usize = 1_024;

#[derive(Debug)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<String, (Authenticated, Instant)>>,
    ttl: Duration,
    puts: std::sync::atomic::AtomicUsize,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::with_ttl(Duration::from_millis(AUTH_CACHE_TTL_MS))
    }
}

impl AuthCache {
    fn with_ttl(ttl: Duration) -> Self {
        Self { entries: Mutex::default(), ttl, puts: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// A fresh entry for this token hash that is still within its session's deadlines.
    pub(crate) fn get(&self, token_hash: &str, at: Timestamp, idle_timeout_ms: i64) -> Option<Authenticated> {
        let entries = self.entries.lock().ok()?;
        let (auth, stored) = entries.get(token_hash)?;
        let fresh = stored.elapsed() < self.ttl;
        let alive = at < auth.session.expires_at && at < auth.session.last_seen_at.plus_ms(idle_timeout_ms);
        (fresh && alive).then(|| auth.clone())
    }

    pub(crate) fn put(&self, token_hash: &str, auth: &Authenticated) {
        let puts = self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= AUTH_CACHE_ENTRIES_MAX {
                entries.clear();
            } else if puts.is_multiple_of(AUTH_CACHE_PURGE_EVERY) {
                let ttl = self.ttl;
                entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
            }
            entries.insert(token_hash.to_owned(), (auth.clone(), Instant::now()));
        }
    }

    /// Drops the entries past their TTL and gives back the room they held (the periodic sweep:
    /// a server whose clients went quiet keeps none).
    pub(crate) fn purge_expired(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let ttl = self.ttl;
            entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
            entries.shrink_to_fit();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionUser;
    use rampart_core::validate::{DisplayName, Username};
    use rampart_core::{Role, SessionId, UserId};
    use rampart_store::SessionRecord;

    fn auth(n: usize) -> Authenticated {
        let user = UserId::parse(&format!("user-{n}")).expect("id");
        Authenticated {
            user: SessionUser {
                id: user.clone(),
                username: Username::parse(&format!("user{n}")).expect("name"),
                display_name: DisplayName::parse("User").expect("display"),
                role: Role::Member,
                disabled: false,
                mfa_enabled: false,
                created_at: Timestamp(0),
                last_login_at: None,
            },
            session: SessionRecord {
                id: SessionId::parse(&format!("session-{n}")).expect("id"),
                user_id: user,
                created_at: Timestamp(0),
                last_seen_at: Timestamp(0),
                expires_at: Timestamp(i64::MAX),
                ip: String::new(),
                user_agent: String::new(),
            },
        }
    }

    #[test]
    fn expired_entries_are_purged_as_new_ones_come() {
        let cache = AuthCache::with_ttl(Duration::from_millis(50));
        for n in 0..AUTH_CACHE_PURGE_EVERY - 1 {
            cache.put(&format!("h{n}"), &auth(n));
        }
        assert!(cache.get("h0", Timestamp(1), i64::MAX / 2).is_some(), "fresh");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("h0", Timestamp(1), i64::MAX / 2).is_none(), "past its TTL");
        cache.put("last", &auth(0));
        let left = cache.entries.lock().expect("lock").len();
        assert_eq!(left, 1, "the stale entries went at the purge; only the new one is held");
    }

    #[test]
    fn the_sweep_drops_expired_entries_and_their_room() {
        let cache = AuthCache::with_ttl(Duration::from_millis(50));
        for n in 0..500 {
            cache.put(&format!("h{n}"), &auth(n));
        }
        cache.purge_expired();
        assert_eq!(cache.entries.lock().expect("lock").len(), 500, "fresh entries stay");
        std::thread::sleep(Duration::from_millis(60));
        cache.put("fresh", &auth(0));
        cache.purge_expired();
        let entries = cache.entries.lock().expect("lock");
        assert_eq!(entries.len(), 1);
        assert!(entries.capacity() < 16, "the table shrank: {}", entries.capacity());
    }
}
