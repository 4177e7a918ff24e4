//! Sessions: opening one at login, authenticating a presented token, listing and ending them.
//! Tokens are 256-bit random values; only their SHA-256 is stored.

use rampart_core::validate::{DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};
use rampart_crypto::Token;
use rampart_store::{NewSession, SessionRecord, UserRecord};
use serde_json::json;

use crate::{new_id, now, App, AppError, RequestMeta};

/// A request's proven identity: the session and its (enabled) user, read from the store (or the
/// short-lived authentication cache).
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub user: SessionUser,
    pub session: SessionRecord,
}

/// The signed-in user as requests see it: the account without its password hash, which only
/// login and password change need, and read from the store themselves. So the hash is not
/// copied into every request, nor kept in the authentication cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: Role,
    pub disabled: bool,
    pub mfa_enabled: bool,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

impl From<UserRecord> for SessionUser {
    fn from(user: UserRecord) -> Self {
        let UserRecord {
            id,
            username,
            display_name,
            password_hash: _,
            role,
            disabled,
            mfa_enabled,
            created_at,
            last_login_at,
        } = user;
        SessionUser { id, username, display_name, role, disabled, mfa_enabled, created_at, last_login_at }
    }
}

/// Told to live connections so they close when their session or user is ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnded {
    Session(SessionId),
    AllOfUser(UserId),
}

/// Whether an authentication counts as use of the session (moves its idle deadline on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Counts,
    DoesNotCount,
}

/// A freshly opened session: the token is shown to the client once.
#[derive(Debug)]
pub struct NewSessionIssued {
    pub token: Token,
    pub session_id: SessionId,
    pub expires_at: Timestamp,
}

impl App {
    pub(crate) fn new_session_row(&self, user: &UserId, meta: &RequestMeta, at: Timestamp) -> (NewSession, Token) {
        let token = Token::generate();
        let row = NewSession {
            id: SessionId::from_generated(new_id()),
            token_hash: token.hash().as_str().to_owned(),
            user_id: user.clone(),
            created_at: at,
            expires_at: at.plus_ms(self.inner.config.sessions.lifetime_ms),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        };
        (row, token)
    }

    /// Resolves a presented token to a live session of an enabled user. A recent answer is
    /// served from a short-lived cache; every local revocation, disable and role change empties
    /// the affected entries before it returns, so a revoked token is refused at once.
    pub async fn authenticate(&self, token: &Token) -> Result<Authenticated, AppError> {
        self.authenticate_cached(token, Activity::Counts).await
    }

    /// As `authenticate`, for opening a WebSocket: the session must stand, but opening it does
    /// not count as activity. The idle timer counts HTTP API requests only — what a person does;
    /// a socket's traffic (reconnects, resumes, pings, pushed events) goes on in an unattended
    /// tab, which must still idle out.
    pub async fn authenticate_socket(&self, token: &Token) -> Result<Authenticated, AppError> {
        self.authenticate_cached(token, Activity::DoesNotCount).await
    }

    async fn authenticate_cached(&self, token: &Token, activity: Activity) -> Result<Authenticated, AppError> {
        let hash = token.hash();
        if let Some(auth) = self.inner.auth_cache.get(hash.as_str(), now(), self.inner.config.sessions.idle_timeout_ms)
        {
            return Ok(auth);
        }
        // Taken before the store read: if the session or its user is revoked meanwhile, what was
        // read is not cached (the revocation's purge may already have run).
        let ticket = self.inner.auth_cache.ticket();
        let auth = self.authenticate_from_store(token, activity).await?;
        self.inner.auth_cache.put(hash.as_str(), &auth, &ticket);
        Ok(auth)
    }

    async fn authenticate_from_store(&self, token: &Token, activity: Activity) -> Result<Authenticated, AppError> {
        let at = now();
        let policy = self.inner.config.sessions;
        let Some(session) = self.inner.store.session_by_token_hash(token.hash().as_str()).await? else {
            return Err(AppError::Unauthenticated);
        };
        let idle_deadline = session.last_seen_at.plus_ms(policy.idle_timeout_ms);
        if at >= session.expires_at || at >= idle_deadline {
            self.inner.store.delete_session(&session.user_id, &session.id).await?;
            return Err(AppError::Unauthenticated);
        }
        let Some(user) = self.inner.store.user_by_id(&session.user_id).await? else {
            return Err(AppError::Unauthenticated);
        };
        if user.disabled {
            return Err(AppError::Unauthenticated);
        }
        let due = session.last_seen_at.ms_until(at) >= rampart_core::limits::SESSION_TOUCH_INTERVAL_MS;
        if activity == Activity::Counts && due {
            self.inner.store.touch_session(&session.id, at).await?;
        }
        Ok(Authenticated { user: user.into(), session })
    }

    /// When a session ends unless it is used again: its absolute end or its idle deadline,
    /// whichever comes first.
    pub fn session_ends_at(&self, session: &SessionRecord) -> Timestamp {
        let idle_deadline = session.last_seen_at.plus_ms(self.inner.config.sessions.idle_timeout_ms);
        if idle_deadline < session.expires_at {
            idle_deadline
        } else {
            session.expires_at
        }
    }

    /// Whether a session still stands, and until when (`session_ends_at`): read from the store,
    /// never the cache, and not counted as activity. Long-lived connections ask when told their
    /// session or user changed (a cached answer could be the one the change was meant to end)
    /// and when the end they knew of has come (requests may have moved it on).
    pub async fn session_standing(&self, token: &Token) -> Option<Timestamp> {
        let auth = self.authenticate_from_store(token, Activity::DoesNotCount).await.ok()?;
        Some(self.session_ends_at(&auth.session))
    }

    pub async fn list_sessions(&self, auth: &Authenticated) -> Result<Vec<SessionRecord>, AppError> {
        Ok(self.inner.store.list_sessions(&auth.user.id).await?)
    }

    /// Ends one of the caller's own sessions. Someone else's session id is "not found".
    pub async fn revoke_session(
        &self,
        auth: &Authenticated,
        id: &SessionId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if !self.inner.store.delete_session(&auth.user.id, id).await? {
            return Err(AppError::NotFound);
        }
        self.notify(SessionEnded::Session(id.clone()));
        let details = json!({ "session_id": id.as_str() });
        self.audit_done(auth, "auth.session.revoked", Some(id.as_str()), meta, details).await
    }

    /// Ends every session of the caller but the current one.
    pub async fn revoke_other_sessions(&self, auth: &Authenticated, meta: &RequestMeta) -> Result<u64, AppError> {
        let ended = self.inner.store.delete_sessions_except(&auth.user.id, Some(&auth.session.id)).await?;
        self.notify(SessionEnded::AllOfUser(auth.user.id.clone()));
        let details = json!({ "ended": ended });
        self.audit_done(auth, "auth.session.revoked_others", None, meta, details).await?;
        Ok(ended)
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, auth: &Authenticated, meta: &RequestMeta) -> Result<(), AppError> {
        self.inner.store.delete_session(&auth.user.id, &auth.session.id).await?;
        self.notify(SessionEnded::Session(auth.session.id.clone()));
        self.audit_done(auth, "auth.logout", None, meta, json!({})).await
    }

    /// Deletes expired and idle sessions; run periodically. Live connections are not told: each
    /// closes at its own session's end, at the next heartbeat (well before this sweep comes).
    /// Revocations, disables and logouts tell them at once (`notify`).
    pub async fn sweep_sessions(&self) -> Result<u64, AppError> {
        let at = now();
        let idle_before = Timestamp(at.0 - self.inner.config.sessions.idle_timeout_ms);
        Ok(self.inner.store.delete_stale_sessions(at, idle_before).await?)
    }

    /// A session ended, or a user changed, on another node of a cluster: the cached
    /// authentications it makes stale are dropped, so the next check here reads the store.
    pub fn session_ended_elsewhere(&self, event: &SessionEnded) {
        self.inner.auth_cache.forget(event);
    }

    /// Another node missed telling what ended: every cached authentication is dropped.
    pub fn forget_cached_sessions(&self) {
        self.inner.auth_cache.clear();
    }

    pub(crate) fn notify(&self, event: SessionEnded) {
        self.inner.auth_cache.forget(&event);
        // No live connection listening is fine: nothing to close.
        let _ = self.inner.session_events.send(event);
    }
}
