//! Accounts: login (with throttling and no user enumeration), enrollment by invitation, password
//! change, the caller's own profile and the directory.

use rampart_core::escape::escape_controls;
use rampart_core::limits;
use rampart_core::password_policy;
use rampart_core::policy::{authorize, Action, Actor};
use rampart_core::throttle::{self, LoginGate, ThrottlePolicy, ThrottleScope};
use rampart_core::validate::{check_password_length_for_login, DirectoryQuery, DisplayName, Username};
use rampart_core::{Timestamp, UserId};
use rampart_crypto::{ExposeSecret, SecretString, Token};
use rampart_store::{EnrollOutcome, NewUser, UserRecord};
use serde_json::json;

use crate::edge::Refusal;
use crate::sessions::NewSessionIssued;
use crate::{new_id, now, App, AppCounters, AppError, Authenticated, Outcome, RequestMeta, SessionEnded};

/// What a client sends to sign in.
#[derive(Debug)]
pub struct LoginInput {
    pub username: String,
    pub password: SecretString,
    pub totp: Option<String>,
    /// A session token the client already carried; a login replaces it (no session fixation).
    pub replaces: Option<Token>,
}

/// A signed-in user with their new session.
#[derive(Debug)]
pub struct LoginOutcome {
    pub user: UserRecord,
    pub session: NewSessionIssued,
}

#[derive(Debug)]
pub struct EnrollInput {
    pub token: String,
    pub username: String,
    pub password: SecretString,
    pub display_name: String,
}

/// The throttle key of an account name as typed: folded and bounded, whether or not it exists.
/// Control characters are written out (`\u{000a}`): the key becomes an alert's subject and an audit
/// field, which reach log lines and syslog collectors that split on line feeds.
fn account_key(username: &str) -> String {
    let bounded: String = username.to_lowercase().chars().take(limits::USERNAME_CHARS_MAX * 2).collect();
    escape_controls(&bounded).into_owned()
}

impl App {
    /// Signs in. Unknown user, wrong password and disabled account all give `InvalidCredentials`
    /// after the same work (one Argon2id verification), so the answer tells nothing about which.
    pub async fn login(&self, input: LoginInput, meta: &RequestMeta) -> Result<LoginOutcome, AppError> {
        self.spend_address_budget(meta, "auth.login").await?;
        if let Some(previous) = &input.replaces {
            self.end_presented_session(previous).await?;
        }
        check_password_length_for_login(input.password.expose_secret())?;
        let key = account_key(&input.username);
        let client = self.client_key(meta);
        let here = throttle::account_from_client_key(&client, &key);
        self.check_login_gate(&key, &client, &here, meta).await?;

        let user = match Username::parse(&input.username) {
            Ok(name) => self.inner.store.user_by_username(name.as_str()).await?,
            Err(_) => None,
        };
        let stored = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
        let matches = self.inner.hashes.verify(input.password, stored).await?;
        let user = match user {
            Some(user) if matches && !user.disabled => user,
            _ => {
                AppCounters::bump(&self.inner.counters.login_failures);
                self.record_failure(&key, Some(&here), meta).await?;
                let target = user.as_ref().map(|u| u.id.as_str().to_owned());
                let details = json!({ "username": key, "reason": "invalid_credentials" });
                let refusal = Refusal {
                    action: "auth.login",
                    target: target.as_deref(),
                    outcome: Outcome::Failure,
                    reason: "invalid_credentials",
                    name: &key,
                    details,
                };
                self.audit_refusal(refusal, meta).await?;
                self.detect_login_failure(&client, &key).await?;
                return Err(AppError::InvalidCredentials);
            }
        };
        let _ = input.totp; // MFA enrollment is not offered yet, so no account requires a code.

        self.inner.store.throttle_clear(ThrottleScope::Account, &key).await?;
        self.inner.store.throttle_clear(ThrottleScope::Ip, &here).await?;
        let at = now();
        let session = self.open_session(&user.id, meta, at).await?;
        self.inner.store.record_login(&user.id, at).await?;
        self.detect_admin_login(&user.id, user.role, &meta.ip).await?;
        let details = json!({ "session_id": session.session_id.as_str() });
        self.audit(user.id.as_str(), "auth.login", Some(user.id.as_str()), Some(meta), Outcome::Success, details)
            .await?;
        Ok(LoginOutcome { user, session })
    }

    async fn open_session(
        &self,
        user: &UserId,
        meta: &RequestMeta,
        at: Timestamp,
    ) -> Result<NewSessionIssued, AppError> {
        let (row, token) = self.new_session_row(user, meta, at);
        self.inner.store.create_session(&row, self.inner.config.sessions.per_user_max).await?;
        // Opening a session may have ended the user's oldest (the per-user cap): drop cached ones.
        self.inner.auth_cache.forget(&SessionEnded::AllOfUser(user.clone()));
        Ok(NewSessionIssued { token, session_id: row.id, expires_at: row.expires_at })
    }

    /// Ends the session a client presented at login, if it is one.
    async fn end_presented_session(&self, token: &Token) -> Result<(), AppError> {
        if let Some(session) = self.inner.store.session_by_token_hash(token.hash().as_str()).await? {
            self.inner.store.delete_session(&session.user_id, &session.id).await?;
            self.notify(SessionEnded::Session(session.id));
        }
        Ok(())
    }

    /// Refuses a login with `Throttled` before its password is looked at, as
    /// `throttle::login_gate` decides: by the client's network, its failures on this account,
    /// and the account's backoff only where this network has failed on it.
    async fn check_login_gate(
        &self,
        account: &str,
        client: &str,
        here: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let at = now();
        let store = &self.inner.store;
        let by_client = store.throttle_state(ThrottleScope::Ip, client).await?;
        let by_account = store.throttle_state(ThrottleScope::Account, account).await?;
        let by_here = store.throttle_state(ThrottleScope::Ip, here).await?;
        let gate = throttle::login_gate(
            by_client.as_ref(),
            by_account.as_ref(),
            by_here.as_ref(),
            at,
            &self.inner.config.account_throttle,
        );
        match gate {
            LoginGate::Open => Ok(()),
            LoginGate::Wait(wait_ms) => self.refuse_throttled(account, wait_ms, meta, "auth.login").await,
        }
    }

    /// Refuses with `Throttled` while the account name or the client's network must wait.
    async fn check_throttle(&self, account: &str, meta: &RequestMeta, action: &str) -> Result<(), AppError> {
        let at = now();
        let by_account = self.inner.store.throttle_state(ThrottleScope::Account, account).await?;
        let by_ip = self.inner.store.throttle_state(ThrottleScope::Ip, &self.client_key(meta)).await?;
        let wait = [throttle::wait_ms(by_account.as_ref(), at), throttle::wait_ms(by_ip.as_ref(), at)]
            .into_iter()
            .flatten()
            .max();
        match wait {
            Some(wait_ms) => self.refuse_throttled(account, wait_ms, meta, action).await,
            None => Ok(()),
        }
    }

    async fn refuse_throttled(
        &self,
        account: &str,
        wait_ms: i64,
        meta: &RequestMeta,
        action: &str,
    ) -> Result<(), AppError> {
        AppCounters::bump(&self.inner.counters.login_throttled);
        let details = json!({ "username": account, "reason": "throttled", "wait_ms": wait_ms });
        let refusal =
            Refusal { action, target: None, outcome: Outcome::Denied, reason: "throttled", name: account, details };
        self.audit_refusal(refusal, meta).await?;
        if action == "auth.login" {
            self.detect_login_failure(&self.client_key(meta), account).await?;
        }
        Err(AppError::Throttled { retry_after_secs: throttle::retry_after_secs(wait_ms) })
    }

    /// Counts a failure against the account name, the client's network and (for a login) this
    /// network's failures on the account (`here`).
    async fn record_failure(&self, account: &str, here: Option<&str>, meta: &RequestMeta) -> Result<(), AppError> {
        let at = now();
        let account_policy: ThrottlePolicy = self.inner.config.account_throttle;
        let ip_policy: ThrottlePolicy = self.inner.config.ip_throttle;
        let account_step = move |previous| throttle::after_failure(previous, at, &account_policy);
        let ip_step = move |previous| throttle::after_failure(previous, at, &ip_policy);
        let store = &self.inner.store;
        let by_account = store.throttle_failure(ThrottleScope::Account, account, &account_step).await?;
        store.throttle_failure(ThrottleScope::Ip, &self.client_key(meta), &ip_step).await?;
        if let Some(here) = here {
            store.throttle_failure(ThrottleScope::Ip, here, &account_step).await?;
        }
        if by_account.failures == account_policy.lock_failures {
            let details = json!({ "username": account, "failures": by_account.failures });
            self.audit("system", "auth.account.locked", None, Some(meta), Outcome::Success, details).await?;
        }
        Ok(())
    }

    /// Creates an account from a one-time invitation.
    pub async fn enroll(&self, input: EnrollInput, meta: &RequestMeta) -> Result<UserRecord, AppError> {
        self.spend_address_budget(meta, "auth.enroll").await?;
        let ip_key = format!("enroll:{}", self.client_key(meta));
        self.check_throttle(&ip_key, meta, "auth.enroll").await?;
        let username = Username::parse(&input.username)?;
        let display_name = DisplayName::parse(&input.display_name)?;
        password_policy::check(input.password.expose_secret(), username.as_str()).map_err(AppError::WeakPassword)?;
        let at = now();
        // A cheap look first, so bogus tokens cannot make the server hash passwords.
        let token_hash = Token::parse(&input.token).map(|t| t.hash().as_str().to_owned());
        let open = match &token_hash {
            Some(hash) => self.inner.store.invitation_is_open(hash, at).await?,
            None => false,
        };
        let Some(token_hash) = token_hash.filter(|_| open) else {
            self.record_failure(&ip_key, None, meta).await?;
            let refusal = Refusal {
                action: "auth.enroll",
                target: None,
                outcome: Outcome::Failure,
                reason: "invalid_invitation",
                name: "",
                details: json!({ "reason": "invalid_invitation" }),
            };
            self.audit_refusal(refusal, meta).await?;
            return Err(AppError::InvalidInvitation);
        };
        let password_hash = self.inner.hashes.hash(input.password).await?;
        let new_user =
            NewUser { id: UserId::from_generated(new_id()), username, display_name, password_hash, created_at: at };
        match self.inner.store.enroll(&token_hash, at, &new_user).await? {
            EnrollOutcome::Enrolled(user) => {
                let details = json!({ "username": user.username.as_str(), "role": user.role.as_str() });
                self.audit(
                    user.id.as_str(),
                    "auth.enroll",
                    Some(user.id.as_str()),
                    Some(meta),
                    Outcome::Success,
                    details,
                )
                .await?;
                Ok(user)
            }
            EnrollOutcome::InvalidInvitation => Err(AppError::InvalidInvitation),
            EnrollOutcome::UsernameTaken => Err(AppError::UsernameTaken),
            EnrollOutcome::UsernameConfusable => Err(AppError::UsernameConfusable),
        }
    }

    /// Changes the caller's password: every other session ends and the current one is replaced
    /// by a new token.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: SecretString,
        new: SecretString,
        meta: &RequestMeta,
    ) -> Result<NewSessionIssued, AppError> {
        check_password_length_for_login(current.expose_secret())?;
        let key = account_key(auth.user.username.as_str());
        self.check_throttle(&key, meta, "auth.password.change").await?;
        password_policy::check(new.expose_secret(), auth.user.username.as_str()).map_err(AppError::WeakPassword)?;
        // The hash is read now, not taken from the request's authentication (which may come from
        // the cache, from before a change made elsewhere a moment ago).
        let stored = self.inner.store.user_by_id(&auth.user.id).await?.map(|user| user.password_hash);
        let matches = self.inner.hashes.verify(current, stored).await?;
        if !matches {
            self.record_failure(&key, None, meta).await?;
            let details = json!({ "reason": "invalid_current_password" });
            self.audit(auth.user.id.as_str(), "auth.password.change", None, Some(meta), Outcome::Failure, details)
                .await?;
            return Err(AppError::InvalidCredentials);
        }
        let password_hash = self.inner.hashes.hash(new).await?;
        let at = now();
        let (row, token) = self.new_session_row(&auth.user.id, meta, at);
        self.inner.store.change_password(&auth.user.id, &password_hash, &row).await?;
        self.notify(SessionEnded::AllOfUser(auth.user.id.clone()));
        let details = json!({ "session_id": row.id.as_str() });
        self.audit_done(auth, "auth.password.change", None, meta, details).await?;
        Ok(NewSessionIssued { token, session_id: row.id, expires_at: row.expires_at })
    }

    /// Searches enabled users by username or display name.
    pub async fn search_directory(
        &self,
        auth: &Authenticated,
        query: &DirectoryQuery,
    ) -> Result<Vec<UserRecord>, AppError> {
        authorize(Actor { role: auth.user.role }, Action::SearchDirectory).map_err(|_| AppError::Forbidden)?;
        Ok(self.inner.store.search_users(query, limits::DIRECTORY_RESULTS_MAX).await?)
    }

    /// One user's names, by id, for any signed-in user: clients name message senders and
    /// direct-message peers with it. Ids are random (UUID v4) and learned only from what the caller
    /// can already see (channels, members, messages), so this reveals nothing the caller could
    /// not read in a message header; disabled users are included, as their old messages remain.
    pub async fn user_profile(&self, _auth: &Authenticated, id: &UserId) -> Result<UserRecord, AppError> {
        self.inner.store.user_by_id(id).await?.ok_or(AppError::NotFound)
    }
}
