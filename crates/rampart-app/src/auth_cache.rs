//! A short-lived cache of authenticated sessions, so the hot paths (sending a message, reading
//! history) do not read the session and user rows on every request. Entries live at most
//! `AUTH_CACHE_TTL_MS`; every revocation, disable and role change on this node removes the
//! affected entries before it returns. In a cluster, the other nodes drop theirs when the notice
//! reaches them over the bus (milliseconds); were it lost, the TTL still bounds the staleness.
//!
//! Removing entries is not enough on its own: a request that read a session from the store just
//! before a revocation would put it back just after. So each fill carries a `Ticket` taken before
//! its store read, and every revocation bumps a generation for its user or session; a fill whose
//! ticket predates its user's or session's latest generation is not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_core::{SessionId, Timestamp, UserId};

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
    generations: Mutex<Generations>,
    ttl: Duration,
    puts: std::sync::atomic::AtomicUsize,
}

/// Taken before a store read whose answer may be cached: the generation the read began under.
#[derive(Debug)]
pub(crate) struct Ticket {
    generation: u64,
    taken: Instant,
}

/// When each user and session was last revoked, on one clock. A mark older than the TTL is
/// dropped: a ticket that old is refused by its age alone.
#[derive(Debug, Default)]
struct Generations {
    clock: u64,
    /// Tickets below this are refused (set by `clear`, and when the marks overflow).
    floor: u64,
    users: HashMap<UserId, (u64, Instant)>,
    sessions: HashMap<SessionId, (u64, Instant)>,
}

impl Generations {
    fn bump(&mut self, event: &SessionEnded) {
        self.clock += 1;
        let mark = (self.clock, Instant::now());
        if self.users.len() + self.sessions.len() >= AUTH_CACHE_ENTRIES_MAX {
            // Too many to remember one by one: refuse every fill begun so far instead.
            self.users.clear();
            self.sessions.clear();
            self.floor = self.clock;
        }
        match event {
            SessionEnded::Session(id) => self.sessions.insert(id.clone(), mark),
            SessionEnded::AllOfUser(user) => self.users.insert(user.clone(), mark),
        };
    }

    /// Whether a fill under `ticket` of `auth` is still current.
    fn admits(&self, ticket: &Ticket, auth: &Authenticated) -> bool {
        let newer = |mark: Option<&(u64, Instant)>| mark.is_some_and(|(generation, _)| *generation > ticket.generation);
        ticket.generation >= self.floor
            && !newer(self.users.get(&auth.user.id))
            && !newer(self.sessions.get(&auth.session.id))
    }

    fn prune(&mut self, ttl: Duration) {
        self.users.retain(|_, (_, at)| at.elapsed() < ttl);
        self.sessions.retain(|_, (_, at)| at.elapsed() < ttl);
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::with_ttl(Duration::from_millis(AUTH_CACHE_TTL_MS))
    }
}

impl AuthCache {
    fn with_ttl(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            generations: Mutex::default(),
            ttl,
            puts: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Taken before reading a session from the store, and handed back to `put` with the answer.
    pub(crate) fn ticket(&self) -> Ticket {
        let generation = self.generations.lock().map(|g| g.clock).unwrap_or(u64::MAX);
        Ticket { generation, taken: Instant::now() }
    }

    /// A fresh entry for this token hash that is still within its session's deadlines.
    pub(crate) fn get(&self, token_hash: &str, at: Timestamp, idle_timeout_ms: i64) -> Option<Authenticated> {
        let entries = self.entries.lock().ok()?;
        let (auth, stored) = entries.get(token_hash)?;
        let fresh = stored.elapsed() < self.ttl;
        let alive = at < auth.session.expires_at && at < auth.session.last_seen_at.plus_ms(idle_timeout_ms);
        (fresh && alive).then(|| auth.clone())
    }

    /// Caches `auth`, read from the store under `ticket`, unless its user or session was revoked
    /// since the ticket was taken (or the read took longer than the TTL). Returns whether it was.
    pub(crate) fn put(&self, token_hash: &str, auth: &Authenticated, ticket: &Ticket) -> bool {
        if ticket.taken.elapsed() >= self.ttl {
            return false;
        }
        let puts = self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // The generations are checked with the entries locked, so a revocation cannot bump
        // between the check and the insertion (`forget` takes the same lock to remove).
        let Ok(mut entries) = self.entries.lock() else { return false };
        let Ok(generations) = self.generations.lock() else { return false };
        if !generations.admits(ticket, auth) {
            return false;
        }
        drop(generations);
        if entries.len() >= AUTH_CACHE_ENTRIES_MAX {
            entries.clear();
        } else if puts.is_multiple_of(AUTH_CACHE_PURGE_EVERY) {
            let ttl = self.ttl;
            entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
        }
        entries.insert(token_hash.to_owned(), (auth.clone(), Instant::now()));
        true
    }

    /// Drops the entries past their TTL and gives back the room they held (the periodic sweep:
    /// a server whose clients went quiet keeps none).
    pub(crate) fn purge_expired(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let ttl = self.ttl;
            entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
            entries.shrink_to_fit();
        }
        if let Ok(mut generations) = self.generations.lock() {
            generations.prune(self.ttl);
            generations.users.shrink_to_fit();
            generations.sessions.shrink_to_fit();
        }
    }

    /// Drops every entry, and refuses every fill begun before.
    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Ok(mut generations) = self.generations.lock() {
                generations.clock += 1;
                generations.floor = generations.clock;
            }
            entries.clear();
        }
    }

    /// Removes the entries an ended session or user change makes stale, and refuses the fills
    /// of that session or user begun before.
    pub(crate) fn forget(&self, event: &SessionEnded) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Ok(mut generations) = self.generations.lock() {
                generations.bump(event);
            }
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
            cache.put(&format!("h{n}"), &auth(n), &cache.ticket());
        }
        assert!(cache.get("h0", Timestamp(1), i64::MAX / 2).is_some(), "fresh");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("h0", Timestamp(1), i64::MAX / 2).is_none(), "past its TTL");
        cache.put("last", &auth(0), &cache.ticket());
        let left = cache.entries.lock().expect("lock").len();
        assert_eq!(left, 1, "the stale entries went at the purge; only the new one is held");
    }

    #[test]
    fn the_sweep_drops_expired_entries_and_their_room() {
        let cache = AuthCache::with_ttl(Duration::from_millis(50));
        for n in 0..500 {
            cache.put(&format!("h{n}"), &auth(n), &cache.ticket());
        }
        cache.purge_expired();
        assert_eq!(cache.entries.lock().expect("lock").len(), 500, "fresh entries stay");
        std::thread::sleep(Duration::from_millis(60));
        cache.put("fresh", &auth(0), &cache.ticket());
        cache.purge_expired();
        let entries = cache.entries.lock().expect("lock");
        assert_eq!(entries.len(), 1);
        assert!(entries.capacity() < 16, "the table shrank: {}", entries.capacity());
    }

    /// The race of issue 16 item 10, interleaved by hand: a request reads the session from the
    /// store, a revocation purges the cache, then the request caches what it read.
    #[test]
    fn a_fill_that_began_before_a_revocation_is_not_cached() {
        let cache = AuthCache::default();
        let victim = auth(1);
        let (user_ended, session_ended) =
            (SessionEnded::AllOfUser(victim.user.id.clone()), SessionEnded::Session(victim.session.id.clone()));
        for ended in [user_ended, session_ended] {
            let ticket = cache.ticket();
            // … the request reads the (still live) session from the store here …
            cache.forget(&ended);
            assert!(!cache.put("h1", &victim, &ticket), "{ended:?}: the stale read is refused");
            assert!(cache.get("h1", Timestamp(1), i64::MAX / 2).is_none(), "{ended:?}");
        }
        // Another user's fill under the same old ticket is unaffected; a fill begun after is cached.
        let ticket = cache.ticket();
        cache.forget(&SessionEnded::AllOfUser(victim.user.id.clone()));
        assert!(cache.put("h2", &auth(2), &ticket));
        assert!(cache.put("h1", &victim, &cache.ticket()));
        assert!(cache.get("h1", Timestamp(1), i64::MAX / 2).is_some());
    }

    #[test]
    fn clearing_refuses_every_earlier_fill_and_a_slow_fill_is_refused() {
        let cache = AuthCache::with_ttl(Duration::from_millis(50));
        let ticket = cache.ticket();
        cache.clear();
        assert!(!cache.put("h1", &auth(1), &ticket));
        let slow = cache.ticket();
        std::thread::sleep(Duration::from_millis(60));
        assert!(!cache.put("h1", &auth(1), &slow), "a read longer than the TTL may have missed a pruned mark");
        // Marks older than the TTL go at the sweep; fresh tickets still fill.
        cache.forget(&SessionEnded::AllOfUser(auth(1).user.id));
        std::thread::sleep(Duration::from_millis(60));
        cache.purge_expired();
        assert!(cache.generations.lock().expect("lock").users.is_empty());
        assert!(cache.put("h1", &auth(1), &cache.ticket()));
    }
}
