//! The rows of channels, membership, messages and events.

use rampart_core::channel::{ChannelKind, ChannelRole, EventKind};
use rampart_core::validate::{ChannelName, ClientId, MessageBody, Topic};
use rampart_core::{ChannelId, MessageId, Timestamp, UserId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub kind: ChannelKind,
    /// `None` for direct messages.
    pub name: Option<ChannelName>,
    pub topic: Topic,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
    pub archived: bool,
    pub last_seq: i64,
}

#[derive(Clone, Debug)]
pub struct NewChannel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: ChannelName,
    pub topic: Topic,
    pub created_by: UserId,
    pub created_at: Timestamp,
}

/// A channel as one user's list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelListing {
    pub channel: ChannelRecord,
    pub membership: Option<ChannelRole>,
    pub last_read_seq: i64,
    /// Messages from others after the read marker, capped at `UNREAD_COUNT_MAX + 1`.
    pub unread: u32,
    /// For a direct message: the other user (or the user themselves).
    pub dm_peer: Option<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub role: ChannelRole,
    pub joined_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub channel_id: ChannelId,
    /// The seq of the event that created it.
    pub seq: i64,
    pub sender_id: UserId,
    /// `None` once deleted, or when the sealed body failed its integrity check.
    pub body: Option<MessageBody>,
    /// The sealed body failed its integrity check (moved from another row, altered, or its key
    /// is gone): the message is listed with no body, and the rest of the read goes on.
    pub unreadable: bool,
    pub thread_id: Option<MessageId>,
    pub client_id: Option<ClientId>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    pub reply_count: i64,
    /// The files the message carries (none once it is deleted).
    pub files: Vec<crate::FileRef>,
}

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub sender_id: UserId,
    pub body: MessageBody,
    pub thread_id: Option<MessageId>,
    pub client_id: Option<ClientId>,
    pub created_at: Timestamp,
    /// Files to attach: each must be the sender's, uploaded to this channel and not yet attached.
    pub files: Vec<rampart_core::FileId>,
}

/// One event of a channel's log, with the current state of what it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub kind: EventKind,
    pub at: Timestamp,
    /// For message events.
    pub message: Option<MessageRecord>,
    /// For member events: who joined or left.
    pub user_id: Option<UserId>,
    /// For `channel.updated`, and for `member.joined` so a new member learns the channel.
    pub channel: Option<ChannelRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateChannelOutcome {
    Created(Box<ChannelRecord>, Box<EventRecord>),
    NameTaken,
}

#[derive(Clone, Debug)]
pub enum PostOutcome {
    Created(EventRecord),
    /// The same client id from the same sender in this channel: the first message.
    Duplicate(MessageRecord),
    /// `thread_id` is not a top-level message of this channel.
    ThreadNotFound,
    /// A file to attach is not the sender's unattached upload to this channel; nothing was sent.
    FileNotFound,
}

#[derive(Clone, Debug, Default)]
pub struct ChannelChange {
    pub name: Option<ChannelName>,
    pub topic: Option<Topic>,
    pub archived: Option<bool>,
}

#[derive(Clone, Debug)]
pub enum UpdateOutcome {
    Updated(Box<EventRecord>),
    NameTaken,
    NotFound,
}

/// Where a search page ends: the last message's position in storage order (results are newest
/// first, in the order messages were stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchCursor {
    pub rowid: i64,
}

/// One page of search results, newest first, and the cursor of the next page if there may be one.
#[derive(Clone, Debug)]
pub struct SearchPage {
    pub messages: Vec<MessageRecord>,
    pub next: Option<SearchCursor>,
}

/// A history page request.
#[derive(Clone, Copy, Debug)]
pub struct HistoryQuery<'a> {
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub thread_id: Option<&'a MessageId>,
    pub limit: u32,
}
