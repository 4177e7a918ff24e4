//! The JSON shapes of API.md. Domain types are not wire types: each response is built here from
//! store records, so a new column never leaks into a response by accident (the password hash,
//! for one, has no field to land in).

use rampart_app::SessionUser;
use rampart_core::channel::{ChannelRole, EventKind};
use rampart_core::validate::{DisplayName, Username};
use rampart_core::{Role, Timestamp, UserId};
use rampart_store::{
    AuditRow, ChannelListing, ChannelRecord, EventRecord, MemberRecord, MessageRecord, SessionRecord, UserRecord,
};
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

impl UserView {
    fn new(id: &UserId, username: &Username, display_name: &DisplayName, role: Role, mfa_enabled: bool) -> Self {
        Self {
            id: id.to_string(),
            username: username.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            role: role.as_str(),
            mfa_enabled,
        }
    }
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        Self::new(&user.id, &user.username, &user.display_name, user.role, user.mfa_enabled)
    }
}

impl From<&SessionUser> for UserView {
    fn from(user: &SessionUser) -> Self {
        Self::new(&user.id, &user.username, &user.display_name, user.role, user.mfa_enabled)
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

/// A security alert as `GET /api/v1/admin/security/events` lists it.
#[derive(Serialize)]
pub struct SecurityEventView {
    /// The seq of the alert's audit record (the paging cursor).
    pub seq: i64,
    pub at: String,
    pub kind: String,
    /// The IP, account name or user id the alert is about.
    pub subject: Option<String>,
    pub details: serde_json::Value,
}

impl From<&AuditRow> for SecurityEventView {
    fn from(row: &AuditRow) -> Self {
        let details: serde_json::Value = serde_json::from_str(&row.entry.details).unwrap_or(serde_json::Value::Null);
        Self {
            seq: row.seq,
            at: rfc3339(row.entry.at),
            kind: details["kind"].as_str().unwrap_or("unknown").to_owned(),
            subject: row.entry.target.clone(),
            details,
        }
    }
}

/// The verdict of `GET /api/v1/admin/audit/verify`: API.md's `{ok, checked, first_bad_seq?}`
/// and what was found there.
#[derive(Serialize)]
pub struct AuditVerifyView {
    pub ok: bool,
    pub checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'static str>,
    pub message: String,
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<i64>,
}

impl From<&rampart_store::VerifyReport> for AuditVerifyView {
    fn from(report: &rampart_store::VerifyReport) -> Self {
        Self {
            ok: report.ok,
            checked: report.checked,
            first_bad_seq: report.first_bad_seq,
            problem: report.problem.map(|p| p.as_str()),
            message: report.summary(),
            checkpoints: report.checkpoints,
            last_checkpoint_seq: report.last_checkpoint_seq,
        }
    }
}

/// `GET /api/v1/admin/keys`: the key-encryption keys and the data keys they wrap.
#[derive(Serialize)]
pub struct KeyStatusView {
    pub active_kek: Option<u32>,
    pub keks: Vec<KekView>,
    pub channels_with_keys: u64,
    pub data_keys: u64,
    pub messages_on_old_epochs: u64,
}

#[derive(Serialize)]
pub struct KekView {
    pub version: u32,
    pub state: &'static str,
    pub data_keys: u64,
    /// Whether this node found the version's file in `key_dir`.
    pub in_key_dir: bool,
}

impl From<&rampart_store::KeyStatus> for KeyStatusView {
    fn from(status: &rampart_store::KeyStatus) -> Self {
        Self {
            active_kek: status.active_kek(),
            keks: status
                .keks
                .iter()
                .map(|k| KekView {
                    version: k.version,
                    state: k.state.as_str(),
                    data_keys: k.data_keys,
                    in_key_dir: k.in_key_dir,
                })
                .collect(),
            channels_with_keys: status.channels_with_keys,
            data_keys: status.data_keys,
            messages_on_old_epochs: status.messages_on_old_epochs,
        }
    }
}

/// A channel as API.md shows it; the `member`, `role`, `unread` and `last_read_seq` fields are
/// filled for the caller's own listing.
#[derive(Serialize)]
pub struct ChannelView {
    pub id: String,
    pub name: Option<String>,
    pub kind: &'static str,
    pub topic: String,
    pub created_at: String,
    pub last_seq: i64,
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_seq: Option<i64>,
    /// For a direct message: the other user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_user_id: Option<String>,
}

impl From<&ChannelRecord> for ChannelView {
    fn from(channel: &ChannelRecord) -> Self {
        Self {
            id: channel.id.to_string(),
            name: channel.name.as_ref().map(|n| n.as_str().to_owned()),
            kind: channel.kind.as_str(),
            topic: channel.topic.as_str().to_owned(),
            created_at: rfc3339(channel.created_at),
            last_seq: channel.last_seq,
            archived: channel.archived,
            member: None,
            role: None,
            unread: None,
            last_read_seq: None,
            dm_user_id: None,
        }
    }
}

impl From<&ChannelListing> for ChannelView {
    fn from(listing: &ChannelListing) -> Self {
        Self {
            member: Some(listing.membership.is_some()),
            role: listing.membership.map(ChannelRole::as_str),
            unread: listing.membership.map(|_| listing.unread),
            last_read_seq: listing.membership.map(|_| listing.last_read_seq),
            dm_user_id: listing.dm_peer.as_ref().map(ToString::to_string),
            ..ChannelView::from(&listing.channel)
        }
    }
}

#[derive(Serialize)]
pub struct MemberView {
    pub user_id: String,
    pub role: &'static str,
    pub joined_at: String,
}

impl From<&MemberRecord> for MemberView {
    fn from(member: &MemberRecord) -> Self {
        Self { user_id: member.user_id.to_string(), role: member.role.as_str(), joined_at: rfc3339(member.joined_at) }
    }
}

#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub channel_id: String,
    pub seq: i64,
    pub sender_id: String,
    /// `null` once deleted.
    pub body: Option<String>,
    pub thread_id: Option<String>,
    pub client_id: Option<String>,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub deleted: bool,
    pub reply_count: i64,
    /// The files the message carries (download each at `/api/v1/files/{id}`).
    pub files: Vec<FileRefView>,
    /// Present only when the stored body failed its integrity check (`body` is then `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageProblem>,
}

/// A file as a message lists it.
#[derive(Serialize)]
pub struct FileRefView {
    pub id: String,
    /// `null` when the stored name failed its integrity check.
    pub name: Option<String>,
    pub size: u64,
    pub content_type: &'static str,
}

impl From<&rampart_store::FileRef> for FileRefView {
    fn from(file: &rampart_store::FileRef) -> Self {
        Self {
            id: file.id.to_string(),
            name: file.name.as_ref().map(|n| n.as_str().to_owned()),
            size: file.size,
            content_type: file.kind.content_type(),
        }
    }
}

/// An uploaded file, as its uploader is told of it (API.md "Files").
#[derive(Serialize)]
pub struct FileView {
    pub id: String,
    pub name: Option<String>,
    pub size: u64,
    pub content_type: &'static str,
    /// SHA-256 of the stored content, in hex (for an image: of the re-encoded picture).
    pub sha256: Option<String>,
}

impl From<&rampart_store::FileRecord> for FileView {
    fn from(file: &rampart_store::FileRecord) -> Self {
        Self {
            id: file.id.to_string(),
            name: file.name.as_ref().map(|n| n.as_str().to_owned()),
            size: file.size,
            content_type: file.kind.content_type(),
            sha256: file.sha256.map(|d| d.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

/// Why a message is listed without its body although it is not deleted.
#[derive(Serialize)]
pub struct MessageProblem {
    pub code: &'static str,
    pub message: &'static str,
}

const INTEGRITY_PROBLEM: MessageProblem = MessageProblem {
    code: "integrity_error",
    message: "This message's stored text failed its integrity check and cannot be shown.",
};

impl From<&MessageRecord> for MessageView {
    fn from(message: &MessageRecord) -> Self {
        Self {
            id: message.id.to_string(),
            channel_id: message.channel_id.to_string(),
            seq: message.seq,
            sender_id: message.sender_id.to_string(),
            body: message.body.as_ref().map(|b| b.as_str().to_owned()),
            thread_id: message.thread_id.as_ref().map(ToString::to_string),
            client_id: message.client_id.as_ref().map(|c| c.as_str().to_owned()),
            created_at: rfc3339(message.created_at),
            edited_at: message.edited_at.map(rfc3339),
            deleted: message.deleted,
            reply_count: message.reply_count,
            files: message.files.iter().map(FileRefView::from).collect(),
            error: message.unreadable.then_some(INTEGRITY_PROBLEM),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventData {
    Message(MessageView),
    Member { user_id: Option<String>, channel: Option<ChannelView> },
    Channel(ChannelView),
}

#[derive(Serialize)]
struct EventFrame<'a> {
    r#type: &'static str,
    channel_id: &'a str,
    seq: i64,
    kind: &'static str,
    data: EventData,
}

/// The WebSocket frame of one event, serialized once and shared by every connection.
pub fn event_frame(event: &EventRecord) -> String {
    let data = match (&event.message, event.kind) {
        (Some(message), _) => EventData::Message(MessageView::from(message)),
        (None, EventKind::ChannelUpdated) => match &event.channel {
            Some(channel) => EventData::Channel(ChannelView::from(channel)),
            None => EventData::Member { user_id: None, channel: None },
        },
        (None, _) => EventData::Member {
            user_id: event.user_id.as_ref().map(ToString::to_string),
            channel: event.channel.as_ref().map(ChannelView::from),
        },
    };
    let frame = EventFrame {
        r#type: "event",
        channel_id: event.channel_id.as_str(),
        seq: event.seq,
        kind: event.kind.as_str(),
        data,
    };
    serde_json::to_string(&frame).unwrap_or_default()
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
