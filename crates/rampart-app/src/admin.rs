//! Administration: invitations, the user list, role changes, disabling, ending a user's
//! sessions, reading the audit log. Every decision goes through `rampart_core::policy::authorize`.

use rampart_core::limits;
use rampart_core::policy::{authorize, Action, Actor, Denied, TargetUser};
use rampart_core::{Role, Timestamp, UserId};
use rampart_crypto::Token;
use rampart_store::{GuardedUpdate, NewInvitation, UserRecord};
use serde_json::json;

use crate::audit::SYSTEM_ACTOR;
use crate::{now, App, AppError, Authenticated, Outcome, RequestMeta, SessionEnded};

/// An invitation in clear, shown once.
#[derive(Debug)]
pub struct IssuedInvitation {
    pub token: Token,
    pub role: Role,
    pub expires_at: Timestamp,
}

/// A requested change to a user.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

fn denied(error: Denied) -> AppError {
    match error {
        Denied::Forbidden => AppError::Forbidden,
        Denied::LastOwner => AppError::LastOwner,
    }
}

impl App {
    pub(crate) fn check(&self, auth: &Authenticated, action: Action) -> Result<(), AppError> {
        authorize(Actor { role: auth.user.role }, action).map_err(denied)
    }

    /// Creates an invitation for `role`, valid for `hours` (bounded).
    pub async fn create_invitation(
        &self,
        auth: &Authenticated,
        role: Role,
        hours: Option<u32>,
        meta: &RequestMeta,
    ) -> Result<IssuedInvitation, AppError> {
        if let Err(error) = self.check(auth, Action::CreateInvitation { role }) {
            let details = json!({ "role": role.as_str() });
            self.audit(auth.user.id.as_str(), "admin.invitation.create", None, Some(meta), Outcome::Denied, details)
                .await?;
            return Err(error);
        }
        let issued = self.issue_invitation(role, hours, Some(&auth.user.id)).await?;
        let details = json!({ "role": role.as_str(), "expires_at": issued.expires_at.0 });
        self.audit_done(auth, "admin.invitation.create", None, meta, details).await?;
        Ok(issued)
    }

    /// Creates an invitation on the server's own authority (first start, `rampart invite`).
    pub async fn create_system_invitation(
        &self,
        role: Role,
        hours: Option<u32>,
        origin: &str,
    ) -> Result<IssuedInvitation, AppError> {
        let issued = self.issue_invitation(role, hours, None).await?;
        let details = json!({ "role": role.as_str(), "expires_at": issued.expires_at.0, "via": origin });
        self.audit(SYSTEM_ACTOR, "admin.invitation.create", None, None, Outcome::Success, details).await?;
        Ok(issued)
    }

    async fn issue_invitation(
        &self,
        role: Role,
        hours: Option<u32>,
        by: Option<&UserId>,
    ) -> Result<IssuedInvitation, AppError> {
        let hours = hours.unwrap_or(limits::INVITATION_LIFETIME_HOURS_DEFAULT);
        if hours == 0 || hours > limits::INVITATION_LIFETIME_HOURS_MAX {
            return Err(AppError::Invalid(rampart_core::validate::FieldError::new(
                "expires_in_hours",
                format!("An invitation lasts 1 to {} hours.", limits::INVITATION_LIFETIME_HOURS_MAX),
            )));
        }
        let at = now();
        let token = Token::generate();
        let expires_at = at.plus_ms(i64::from(hours) * 3_600_000);
        let invitation = NewInvitation {
            token_hash: token.hash().as_str().to_owned(),
            role,
            created_by: by.cloned(),
            created_at: at,
            expires_at,
        };
        self.inner.store.create_invitation(&invitation).await?;
        Ok(IssuedInvitation { token, role, expires_at })
    }

    /// At first start (no users, no open owner invitation) issues the owner's enrollment
    /// invitation. `None` when one is not needed.
    pub async fn first_owner_invitation(&self) -> Result<Option<IssuedInvitation>, AppError> {
        if self.inner.store.count_users().await? > 0 || self.inner.store.has_open_invitation(Role::Owner, now()).await?
        {
            return Ok(None);
        }
        let issued = self
            .create_system_invitation(Role::Owner, Some(limits::FIRST_OWNER_INVITATION_HOURS), "first start")
            .await?;
        Ok(Some(issued))
    }

    /// Whether the server has no account yet.
    pub async fn has_no_users(&self) -> Result<bool, AppError> {
        Ok(self.inner.store.count_users().await? == 0)
    }

    pub async fn list_users(&self, auth: &Authenticated) -> Result<Vec<UserRecord>, AppError> {
        self.check(auth, Action::ListUsers)?;
        Ok(self.inner.store.list_users(limits::ADMIN_USER_LIST_MAX).await?)
    }

    async fn target_facts(&self, auth: &Authenticated, target: &UserId) -> Result<(UserRecord, TargetUser), AppError> {
        let Some(user) = self.inner.store.user_by_id(target).await? else {
            return Err(AppError::NotFound);
        };
        let is_last_owner =
            user.role == Role::Owner && !user.disabled && self.inner.store.count_enabled_owners().await? <= 1;
        let facts = TargetUser { role: user.role, is_self: user.id == auth.user.id, is_last_owner };
        Ok((user, facts))
    }

    /// Changes a user's role and/or disabled flag. Both parts are checked before either is made.
    pub async fn update_user(
        &self,
        auth: &Authenticated,
        target: &UserId,
        change: UserChange,
        meta: &RequestMeta,
    ) -> Result<UserRecord, AppError> {
        if !auth.user.role.is_administrator() {
            return Err(AppError::Forbidden);
        }
        let (user, facts) = self.target_facts(auth, target).await?;
        let mut checks = Vec::new();
        if let Some(role) = change.role {
            checks.push(Action::ChangeRole { target: facts, new_role: role });
        }
        if let Some(disabled) = change.disabled {
            checks.push(Action::SetDisabled { target: facts, disabled });
        }
        for action in checks {
            if let Err(error) = self.check(auth, action) {
                let details = json!({ "role": change.role.map(Role::as_str), "disabled": change.disabled });
                self.audit(
                    auth.user.id.as_str(),
                    "admin.user.update",
                    Some(target.as_str()),
                    Some(meta),
                    Outcome::Denied,
                    details,
                )
                .await?;
                return Err(error);
            }
        }
        if let Some(role) = change.role.filter(|role| *role != user.role) {
            guarded(self.inner.store.set_user_role(target, role).await?)?;
            // Cached authentications carry the old role: drop them (live sockets stay open).
            self.inner.auth_cache.forget(&SessionEnded::AllOfUser(target.clone()));
            let details = json!({ "from": user.role.as_str(), "to": role.as_str() });
            self.audit_done(auth, "admin.user.role_changed", Some(target.as_str()), meta, details).await?;
            self.detect_role_change(&auth.user.id, target, user.role, role).await?;
        }
        if let Some(disabled) = change.disabled.filter(|d| *d != user.disabled) {
            guarded(self.inner.store.set_user_disabled(target, disabled).await?)?;
            if disabled {
                self.notify(SessionEnded::AllOfUser(target.clone()));
            }
            let action = if disabled { "admin.user.disabled" } else { "admin.user.enabled" };
            self.audit(auth.user.id.as_str(), action, Some(target.as_str()), Some(meta), Outcome::Success, json!({}))
                .await?;
        }
        self.inner.store.user_by_id(target).await?.ok_or(AppError::NotFound)
    }

    /// Ends every session of a user; the account stays enabled.
    pub async fn revoke_user_sessions(
        &self,
        auth: &Authenticated,
        target: &UserId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if !auth.user.role.is_administrator() {
            return Err(AppError::Forbidden);
        }
        let (_, facts) = self.target_facts(auth, target).await?;
        self.check(auth, Action::RevokeUserSessions { target: facts })?;
        let ended = self.inner.store.delete_sessions_except(target, None).await?;
        self.notify(SessionEnded::AllOfUser(target.clone()));
        let details = json!({ "ended": ended });
        self.audit_done(auth, "admin.user.sessions_revoked", Some(target.as_str()), meta, details).await
    }
}

fn guarded(update: GuardedUpdate) -> Result<(), AppError> {
    match update {
        GuardedUpdate::Done => Ok(()),
        GuardedUpdate::NotFound => Err(AppError::NotFound),
        GuardedUpdate::LastOwner => Err(AppError::LastOwner),
    }
}
