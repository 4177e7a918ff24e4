//! The rows the store reads and writes, as plain types built from validated core types.

use rampart_core::validate::{DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};

/// A user row. Its `Debug` leaves the password hash out, so no log line or panic message can
/// carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub mfa_enabled: bool,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("password_hash", &"[redacted]")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("mfa_enabled", &self.mfa_enabled)
            .field("created_at", &self.created_at)
            .field("last_login_at", &self.last_login_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_records_debug_leaves_the_password_hash_out() {
        let user = UserRecord {
            id: UserId::parse("user-1").expect("id"),
            username: Username::parse("alice").expect("name"),
            display_name: DisplayName::parse("Alice").expect("display"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned(),
            role: Role::Member,
            disabled: false,
            mfa_enabled: false,
            created_at: Timestamp(0),
            last_login_at: None,
        };
        let shown = format!("{user:?}");
        assert!(shown.contains("alice") && shown.contains("[redacted]"));
        assert!(!shown.contains("argon2"), "{shown}");
    }
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    pub password_hash: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewInvitation {
    pub token_hash: String,
    pub role: Role,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled(UserRecord),
    /// Unknown, used or expired: deliberately one answer.
    InvalidInvitation,
    /// The invitation stays unused.
    UsernameTaken,
    /// Another user's username has the same skeleton (`Username::skeleton`); the invitation
    /// stays unused.
    UsernameConfusable,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: SessionId,
    pub token_hash: String,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip: String,
    pub user_agent: String,
}

/// The result of an update guarded by the last-owner rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardedUpdate {
    Done,
    NotFound,
    LastOwner,
}
