//! The JSON shapes of API.md. Domain types are not wire types: each response is built here from
//! store records, so a new column never leaks into a response by accident (the password hash,
//! for one, has no field to land in).

use rampart_core::Timestamp;
use rampart_store::{AuditRow, SessionRecord, UserRecord};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 UTC text for a timestamp.
pub fn rfc3339(at: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: &'static str,
    pub mfa_enabled: bool,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role.as_str(),
            mfa_enabled: user.mfa_enabled,
        }
    }
}

#[derive(Serialize)]
pub struct DirectoryEntry {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

impl From<&UserRecord> for DirectoryEntry {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
        }
    }
}

#[derive(Serialize)]
pub struct AdminUserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: &'static str,
    pub disabled: bool,
    pub mfa_enabled: bool,
    pub last_login_at: Option<String>,
    pub created_at: String,
}

impl From<&UserRecord> for AdminUserView {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role.as_str(),
            disabled: user.disabled,
            mfa_enabled: user.mfa_enabled,
            last_login_at: user.last_login_at.map(rfc3339),
            created_at: rfc3339(user.created_at),
        }
    }
}

#[derive(Serialize)]
pub struct LoginResponse {
    pub user: UserView,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    pub current: bool,
}

impl SessionView {
    pub fn new(session: &SessionRecord, current: bool) -> Self {
        Self {
            id: session.id.to_string(),
            created_at: rfc3339(session.created_at),
            last_seen_at: rfc3339(session.last_seen_at),
            expires_at: rfc3339(session.expires_at),
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            current,
        }
    }
}

#[derive(Serialize)]
pub struct InvitationView {
    pub token: String,
    pub role: &'static str,
    pub expires_at: String,
    /// The enrollment page with the token in its fragment (never sent to a server in a request).
    pub url: String,
}

#[derive(Serialize)]
pub struct AuditView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: &'static str,
    pub details: serde_json::Value,
}

impl From<&AuditRow> for AuditView {
    fn from(row: &AuditRow) -> Self {
        Self {
            seq: row.seq,
            at: rfc3339(row.entry.at),
            actor: row.entry.actor.clone(),
            action: row.entry.action.clone(),
            target: row.entry.target.clone(),
            ip: row.entry.ip.clone(),
            user_agent: row.entry.user_agent.clone(),
            outcome: row.entry.outcome,
            details: serde_json::from_str(&row.entry.details).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Timestamp(1_500)), "1970-01-01T00:00:01.5Z");
    }
}
