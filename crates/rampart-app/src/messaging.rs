//! Channels and messages: every use case loads the channel and the caller's membership, asks
//! `rampart_core::channel::authorize_channel`, runs one store transaction, then publishes the
//! events it wrote (after commit) to live connections.

use std::sync::Arc;

use rampart_core::channel::{
    authorize_channel, ChannelAction, ChannelActor, ChannelDenied, ChannelFacts, ChannelKind, ChannelRole,
};
use rampart_core::validate::{ChannelName, ClientId, FieldError, MessageBody, Topic};
use rampart_core::{limits, ChannelId, MessageId, Role, UserId};
use rampart_store::{
    ChannelChange, ChannelListing, ChannelRecord, CreateChannelOutcome, EventRecord, HistoryQuery, MemberRecord,
    MessageRecord, NewChannel, NewMessage, PostOutcome, UpdateOutcome,
};
use serde_json::json;

use crate::{new_id, now, App, AppCounters, AppError, Authenticated, RequestMeta};

/// Receives every committed event, to deliver to live connections (and, in a cluster, to other
/// nodes). Called after the transaction that wrote the event has committed.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    fn publish(&self, event: Arc<EventRecord>);
}

/// A sink for processes that serve no live connection (the command line).
#[derive(Debug)]
pub struct NoLiveConnections;

impl EventSink for NoLiveConnections {
    fn publish(&self, _event: Arc<EventRecord>) {}
}

/// A message to send.
#[derive(Debug)]
pub struct SendInput {
    pub body: String,
    pub client_id: Option<String>,
    pub thread_id: Option<String>,
    /// Files to attach: the sender's uploads to this channel, not yet attached to a message.
    pub file_ids: Vec<String>,
}

/// The file ids of a send, parsed and without repeats.
fn parse_file_ids(texts: &[String]) -> Result<Vec<rampart_core::FileId>, AppError> {
    if texts.len() > limits::MESSAGE_FILES_MAX {
        let message = format!("A message may carry at most {} files.", limits::MESSAGE_FILES_MAX);
        return Err(FieldError::new("file_ids", message).into());
    }
    let mut ids: Vec<rampart_core::FileId> = Vec::with_capacity(texts.len());
    for text in texts {
        let id = rampart_core::FileId::parse(text)
            .ok_or_else(|| FieldError::new("file_ids", "file_ids must hold file ids."))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn denied(error: ChannelDenied) -> AppError {
    match error {
        ChannelDenied::NotFound => AppError::NotFound,
        ChannelDenied::Forbidden => AppError::Forbidden,
    }
}

/// A channel with the caller's standing in it.
#[derive(Debug)]
pub struct ChannelAccess {
    pub channel: ChannelRecord,
    pub membership: Option<ChannelRole>,
}

impl ChannelAccess {
    fn check(&self, role: Role, action: ChannelAction) -> Result<(), AppError> {
        let actor = ChannelActor { server_role: role, membership: self.membership };
        let facts = ChannelFacts { kind: self.channel.kind, archived: self.channel.archived };
        authorize_channel(actor, facts, action).map_err(denied)
    }
}

impl App {
    fn publish(&self, event: EventRecord) {
        self.inner.sink.publish(Arc::new(event));
    }

    /// The channel and the caller's membership, checked for `action`.
    pub async fn channel_access(
        &self,
        auth: &Authenticated,
        id: &ChannelId,
        action: ChannelAction,
    ) -> Result<ChannelAccess, AppError> {
        let (channel, membership) = self.inner.store.channel_for(id, &auth.user.id).await?.ok_or(AppError::NotFound)?;
        let access = ChannelAccess { channel, membership };
        access.check(auth.user.role, action)?;
        Ok(access)
    }

    pub async fn create_channel(
        &self,
        auth: &Authenticated,
        name: &str,
        kind: ChannelKind,
        topic: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<ChannelRecord, AppError> {
        if auth.user.role < Role::Member {
            return Err(AppError::Forbidden);
        }
        if kind == ChannelKind::Direct {
            return Err(FieldError::new(
                "kind",
                "The kind must be \"public\" or \"private\"; use /api/v1/dms for direct messages.",
            )
            .into());
        }
        let channel = NewChannel {
            id: ChannelId::from_generated(new_id()),
            kind,
            name: ChannelName::parse(name)?,
            topic: Topic::parse(topic.unwrap_or(""))?,
            created_by: auth.user.id.clone(),
            created_at: now(),
        };
        match self.inner.store.create_channel(&channel).await? {
            CreateChannelOutcome::Created(record, event) => {
                self.publish(*event);
                let details = json!({ "name": name, "kind": kind.as_str() });
                self.audit_done(auth, "channel.created", Some(record.id.as_str()), meta, details).await?;
                Ok(*record)
            }
            CreateChannelOutcome::NameTaken => Err(AppError::Conflict("A public channel with that name exists.")),
        }
    }

    pub async fn list_channels(&self, auth: &Authenticated) -> Result<Vec<ChannelListing>, AppError> {
        let include_public = auth.user.role >= Role::Member;
        Ok(self.inner.store.list_channels(&auth.user.id, include_public, limits::CHANNEL_LIST_MAX).await?)
    }

    pub async fn join_channel(&self, auth: &Authenticated, id: &ChannelId) -> Result<(), AppError> {
        let access = self.channel_access(auth, id, ChannelAction::Join).await?;
        if access.membership.is_none() {
            if let Some(event) = self.inner.store.add_member(id, &auth.user.id, ChannelRole::Member, now()).await? {
                self.publish(event);
            }
        }
        Ok(())
    }

    pub async fn leave_channel(&self, auth: &Authenticated, id: &ChannelId) -> Result<(), AppError> {
        self.channel_access(auth, id, ChannelAction::Leave).await?;
        if let Some(event) = self.inner.store.remove_member(id, &auth.user.id, now()).await? {
            self.publish(event);
        }
        Ok(())
    }

    pub async fn channel_members(&self, auth: &Authenticated, id: &ChannelId) -> Result<Vec<MemberRecord>, AppError> {
        self.channel_access(auth, id, ChannelAction::View).await?;
        Ok(self.inner.store.list_members(id, limits::MEMBER_LIST_MAX).await?)
    }

    pub async fn add_channel_member(
        &self,
        auth: &Authenticated,
        id: &ChannelId,
        user: &UserId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let access = self.channel_access(auth, id, ChannelAction::AddMember).await?;
        let target = self.inner.store.user_by_id(user).await?.filter(|u| !u.disabled).ok_or(AppError::NotFound)?;
        if let Some(event) = self.inner.store.add_member(id, &target.id, ChannelRole::Member, now()).await? {
            self.publish(event);
            let details = json!({ "user_id": target.id.as_str(), "as_channel_admin": access.membership == Some(ChannelRole::Admin) });
            self.audit_done(auth, "channel.member.added", Some(id.as_str()), meta, details).await?;
        }
        Ok(())
    }

    pub async fn remove_channel_member(
        &self,
        auth: &Authenticated,
        id: &ChannelId,
        user: &UserId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if user == &auth.user.id {
            return self.leave_channel(auth, id).await;
        }
        let access = self.channel_access(auth, id, ChannelAction::RemoveMember).await?;
        match self.inner.store.remove_member(id, user, now()).await? {
            Some(event) => {
                self.publish(event);
                let details = json!({ "user_id": user.as_str(), "as_channel_admin": access.membership == Some(ChannelRole::Admin) });
                self.audit_done(auth, "channel.member.removed", Some(id.as_str()), meta, details).await
            }
            None => Err(AppError::NotFound),
        }
    }

    pub async fn update_channel(
        &self,
        auth: &Authenticated,
        id: &ChannelId,
        name: Option<&str>,
        topic: Option<&str>,
        archived: Option<bool>,
        meta: &RequestMeta,
    ) -> Result<ChannelRecord, AppError> {
        let access = self.channel_access(auth, id, ChannelAction::Update).await?;
        let change = ChannelChange {
            name: name.map(ChannelName::parse).transpose()?,
            topic: topic.map(Topic::parse).transpose()?,
            archived,
        };
        match self.inner.store.update_channel(id, &change, now()).await? {
            UpdateOutcome::Updated(event) => {
                let record = event.channel.clone().unwrap_or(access.channel);
                self.publish(*event);
                let details =
                    json!({ "renamed": name.is_some(), "topic_changed": topic.is_some(), "archived": archived });
                self.audit_done(auth, "channel.updated", Some(id.as_str()), meta, details).await?;
                Ok(record)
            }
            UpdateOutcome::NameTaken => Err(AppError::Conflict("A public channel with that name exists.")),
            UpdateOutcome::NotFound => Err(AppError::NotFound),
        }
    }

    /// The one direct-message channel with `other`; `true` when it was created now.
    pub async fn open_direct(&self, auth: &Authenticated, other: &UserId) -> Result<(ChannelRecord, bool), AppError> {
        let peer = self.inner.store.user_by_id(other).await?.filter(|u| !u.disabled).ok_or(AppError::NotFound)?;
        let id = ChannelId::from_generated(new_id());
        let (record, events, created) = self.inner.store.open_direct(&id, &auth.user.id, &peer.id, now()).await?;
        for event in events {
            self.publish(event);
        }
        Ok((record, created))
    }

    /// Sends a message; `false` with the first message when `client_id` repeats a send.
    pub async fn send_message(
        &self,
        auth: &Authenticated,
        channel: &ChannelId,
        input: SendInput,
    ) -> Result<(MessageRecord, bool), AppError> {
        let body = MessageBody::parse(&input.body)?;
        let client_id = input.client_id.as_deref().map(ClientId::parse).transpose()?;
        let thread_id = match input.thread_id.as_deref() {
            Some(text) => Some(
                MessageId::parse(text).ok_or_else(|| FieldError::new("thread_id", "thread_id is not a message id."))?,
            ),
            None => None,
        };
        let files = parse_file_ids(&input.file_ids)?;
        self.check_send_rate(&auth.user.id).await?;
        self.channel_access(auth, channel, ChannelAction::Post).await?;
        let message = NewMessage {
            id: MessageId::from_generated(new_id()),
            channel_id: channel.clone(),
            sender_id: auth.user.id.clone(),
            body,
            thread_id,
            client_id,
            created_at: now(),
            files,
        };
        match self.inner.store.post_message(&message).await? {
            PostOutcome::Created(event) => {
                let record =
                    event.message.clone().ok_or_else(|| AppError::Internal("message event without message".into()))?;
                self.publish(event);
                AppCounters::bump(&self.inner.counters.messages_sent);
                Ok((record, true))
            }
            PostOutcome::Duplicate(first) => Ok((first, false)),
            PostOutcome::ThreadNotFound => {
                Err(FieldError::new("thread_id", "thread_id must name a top-level message of this channel.").into())
            }
            PostOutcome::FileNotFound => Err(FieldError::new(
                "file_ids",
                "Each file must be one you uploaded to this channel and not yet attached to a message.",
            )
            .into()),
        }
    }

    async fn check_send_rate(&self, user: &UserId) -> Result<(), AppError> {
        use governor::clock::{Clock, DefaultClock};
        let config = &self.inner.config;
        let wait_us = if config.send_limit_shared {
            let interval_us = 1_000_000 / i64::from(config.send_rate_per_sec.max(1));
            let bucket = rampart_store::RateBucket {
                now_us: now().0.saturating_mul(1_000),
                interval_us,
                tolerance_us: interval_us.saturating_mul(i64::from(config.send_burst)),
            };
            self.inner.store.rate_take(&format!("send:{user}"), bucket).await?
        } else {
            self.inner.send_limiter.check_key(user).err().map(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)
            })
        };
        match wait_us {
            None => Ok(()),
            Some(wait_us) => {
                AppCounters::bump(&self.inner.counters.send_rate_limited);
                let secs = u64::try_from((wait_us + 999_999) / 1_000_000).unwrap_or(1).max(1);
                Err(AppError::RateLimited { retry_after_secs: secs })
            }
        }
    }

    pub async fn history(
        &self,
        auth: &Authenticated,
        channel: &ChannelId,
        query: HistoryQuery<'_>,
    ) -> Result<(Vec<MessageRecord>, bool), AppError> {
        self.channel_access(auth, channel, ChannelAction::Read).await?;
        Ok(self.inner.store.history(channel, query).await?)
    }

    /// A message the caller may read, with the caller's access to its channel.
    async fn message_access(
        &self,
        auth: &Authenticated,
        id: &MessageId,
    ) -> Result<(MessageRecord, ChannelAccess), AppError> {
        let message = self.inner.store.message(id).await?.ok_or(AppError::NotFound)?;
        let access = self.channel_access(auth, &message.channel_id, ChannelAction::View).await?;
        if access.membership.is_none() {
            return Err(AppError::NotFound);
        }
        Ok((message, access))
    }

    pub async fn edit_message(
        &self,
        auth: &Authenticated,
        id: &MessageId,
        body: &str,
    ) -> Result<MessageRecord, AppError> {
        let body = MessageBody::parse(body)?;
        let (message, access) = self.message_access(auth, id).await?;
        access.check(auth.user.role, ChannelAction::EditMessage { is_sender: message.sender_id == auth.user.id })?;
        let event = self.inner.store.edit_message(id, &body, now()).await?.ok_or(AppError::NotFound)?;
        let record = event.message.clone().ok_or_else(|| AppError::Internal("edit event without message".into()))?;
        self.publish(event);
        Ok(record)
    }

    pub async fn delete_message(
        &self,
        auth: &Authenticated,
        id: &MessageId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let (message, access) = self.message_access(auth, id).await?;
        let is_sender = message.sender_id == auth.user.id;
        access.check(auth.user.role, ChannelAction::DeleteMessage { is_sender })?;
        let event = self.inner.store.delete_message(id, now()).await?.ok_or(AppError::NotFound)?;
        self.publish(event);
        if !is_sender {
            let details = json!({ "channel_id": message.channel_id.as_str(), "sender_id": message.sender_id.as_str() });
            self.audit_done(auth, "message.deleted_by_moderator", Some(id.as_str()), meta, details).await?;
        }
        Ok(())
    }

    pub async fn mark_read(&self, auth: &Authenticated, channel: &ChannelId, seq: i64) -> Result<(), AppError> {
        self.channel_access(auth, channel, ChannelAction::Read).await?;
        Ok(self.inner.store.mark_read(channel, &auth.user.id, seq.max(0)).await?)
    }

    /// `(channel, last_seq)` of every channel the user belongs to (the `ready` frame).
    pub async fn live_channels(&self, user: &UserId) -> Result<Vec<(ChannelId, i64)>, AppError> {
        Ok(self.inner.store.member_channel_seqs(user).await?)
    }

    /// Events after `after` in a channel the user belongs to (catching up a live connection).
    pub async fn events_for_member(
        &self,
        user: &UserId,
        channel: &ChannelId,
        after: i64,
        limit: u32,
    ) -> Result<Option<Vec<EventRecord>>, AppError> {
        if self.inner.store.membership(channel, user).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.inner.store.events_after(channel, after, limit).await?))
    }

    /// Events of `channel` after `after`, for a node of a cluster delivering another node's events
    /// to its own connections. No member check here: the hub sends a channel's events only to
    /// connections subscribed as its members.
    pub async fn events_for_fanout(
        &self,
        channel: &ChannelId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, AppError> {
        Ok(self.inner.store.events_after(channel, after, limit).await?)
    }

    /// Whether `user` belongs to `channel` (for a cluster node checking a typing notice from
    /// another node before showing it: a notice is a claim, not a proof).
    pub async fn is_member(&self, channel: &ChannelId, user: &UserId) -> Result<bool, AppError> {
        Ok(self.inner.store.membership(channel, user).await?.is_some())
    }

    /// Each channel's last `seq` (for a cluster node's sweep: which listened channels it is
    /// behind in).
    pub async fn channel_heads(&self, channels: &[ChannelId]) -> Result<Vec<(ChannelId, i64)>, AppError> {
        Ok(self.inner.store.channel_heads(channels).await?)
    }
}

/// A search request as the edge parsed it.
#[derive(Clone, Debug, Default)]
pub struct SearchInput {
    pub q: String,
    pub channel_id: Option<String>,
    /// A username: only messages from them.
    pub from: Option<String>,
    /// The cursor of the previous page.
    pub before: Option<String>,
    pub limit: u32,
}

/// Cursors are `s<position>`: opaque to clients, checked when read back.
fn parse_cursor(text: &str) -> Option<rampart_store::SearchCursor> {
    let rowid: i64 = text.strip_prefix('s')?.parse().ok()?;
    (rowid > 0).then_some(rampart_store::SearchCursor { rowid })
}

pub fn format_cursor(cursor: &rampart_store::SearchCursor) -> String {
    format!("s{}", cursor.rowid)
}

impl App {
    /// Messages matching the query in channels the caller belongs to, newest first.
    pub async fn search(
        &self,
        auth: &Authenticated,
        input: SearchInput,
    ) -> Result<(Vec<MessageRecord>, Option<String>), AppError> {
        let mut query =
            rampart_core::search::SearchQuery::parse(&input.q).map_err(|e| FieldError::new("q", e.to_string()))?;
        if let Some(from) = input.from.filter(|f| !f.is_empty()) {
            query.from = Some(from.trim_start_matches('@').to_lowercase());
        }
        let channel = match input.channel_id.as_deref().filter(|c| !c.is_empty()) {
            Some(text) => Some(
                ChannelId::parse(text)
                    .ok_or_else(|| FieldError::new("channel_id", "channel_id is not a channel id."))?,
            ),
            None => None,
        };
        let before = match input.before.as_deref().filter(|b| !b.is_empty()) {
            Some(text) => {
                Some(parse_cursor(text).ok_or_else(|| FieldError::new("before", "before is not a search cursor."))?)
            }
            None => None,
        };
        let page = self
            .inner
            .store
            .search(&auth.user.id, &query, channel.as_ref(), before.as_ref(), input.limit)
            .await
            .map_err(|error| match error {
                rampart_store::StoreError::SearchDisabled => {
                    AppError::from(FieldError::new("q", "Search is turned off on this server."))
                }
                rampart_store::StoreError::SearchTooBroad => {
                    AppError::from(FieldError::new("q", rampart_core::search::QueryError::TooManyChannels.to_string()))
                }
                other => other.into(),
            })?;
        Ok((page.messages, page.next.as_ref().map(format_cursor)))
    }
}
