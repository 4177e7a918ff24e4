//! The rows the store reads and writes, as plain types built from validated core types.

use rampart_core::validate::{DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};

#[derive(Clone, Debug, PartialEq, Eq)]
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
