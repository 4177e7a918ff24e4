//! Handlers for channels, direct messages and messages (API.md "Channels and messages").
//! Each handler parses its ids (a malformed id is "not found"), calls one use case, shapes JSON.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_app::SendInput;
use rampart_core::channel::ChannelKind;
use rampart_core::validate::FieldError;
use rampart_core::{limits, ChannelId, ErrorCode, MessageId, UserId};
use rampart_store::HistoryQuery;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, ClientMeta, Session};
use super::wire::{ChannelView, MemberView, MessageView};
use super::{bounded_limit, AppState};

fn channel_id(text: &str) -> Result<ChannelId, ApiError> {
    ChannelId::parse(text).ok_or_else(|| ApiError::of(ErrorCode::NotFound))
}

fn message_id(text: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(text).ok_or_else(|| ApiError::of(ErrorCode::NotFound))
}

fn user_id(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text).ok_or_else(|| ApiError::of(ErrorCode::NotFound))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    name: String,
    kind: String,
    #[serde(default)]
    topic: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    ApiJson(request): ApiJson<CreateChannel>,
) -> Result<Response, ApiError> {
    let kind = match request.kind.as_str() {
        "public" => ChannelKind::Public,
        "private" => ChannelKind::Private,
        _ => return Err(FieldError::new("kind", "The kind must be \"public\" or \"private\".").into()),
    };
    let channel = state.app.create_channel(&session.auth, &request.name, kind, request.topic.as_deref(), &meta).await?;
    Ok((StatusCode::CREATED, Json(ChannelView::from(&channel))).into_response())
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let channels = state.app.list_channels(&session.auth).await?;
    Ok(Json(channels.iter().map(ChannelView::from).collect()))
}

pub async fn get_one(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    let id = channel_id(&id)?;
    let access = state.app.channel_access(&session.auth, &id, rampart_core::channel::ChannelAction::View).await?;
    let mut view = ChannelView::from(&access.channel);
    view.member = Some(access.membership.is_some());
    view.role = access.membership.map(|r| r.as_str());
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    archived: Option<bool>,
}

pub async fn update(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateChannel>,
) -> Result<Json<ChannelView>, ApiError> {
    let id = channel_id(&id)?;
    if request.name.is_none() && request.topic.is_none() && request.archived.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidInput, "Give `name`, `topic` or `archived`."));
    }
    let channel = state
        .app
        .update_channel(&session.auth, &id, request.name.as_deref(), request.topic.as_deref(), request.archived, &meta)
        .await?;
    Ok(Json(ChannelView::from(&channel)))
}

pub async fn join(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.join_channel(&session.auth, &channel_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn leave(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.leave_channel(&session.auth, &channel_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn members(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    let members = state.app.channel_members(&session.auth, &channel_id(&id)?).await?;
    Ok(Json(members.iter().map(MemberView::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user_id: String,
}

pub async fn add_member(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AddMember>,
) -> Result<StatusCode, ApiError> {
    let user = user_id(&request.user_id)?;
    state.app.add_channel_member(&session.auth, &channel_id(&id)?, &user, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_member(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.app.remove_channel_member(&session.auth, &channel_id(&id)?, &user_id(&user)?, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenDirect {
    user_id: String,
}

pub async fn open_direct(
    State(state): State<AppState>,
    session: Session,
    ApiJson(request): ApiJson<OpenDirect>,
) -> Result<Response, ApiError> {
    let (channel, created) = state.app.open_direct(&session.auth, &user_id(&request.user_id)?).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ChannelView::from(&channel))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    body: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    file_ids: Vec<String>,
}

pub async fn send(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SendMessage>,
) -> Result<Response, ApiError> {
    let input = SendInput {
        body: request.body,
        client_id: request.client_id,
        thread_id: request.thread_id,
        file_ids: request.file_ids,
    };
    let (message, _first_time) = state.app.send_message(&session.auth, &channel_id(&id)?, input).await?;
    // A retried send gets the first message back, with the same status: to the client the
    // retry is indistinguishable from the original.
    Ok((StatusCode::CREATED, Json(MessageView::from(&message))).into_response())
}

#[derive(Deserialize)]
pub struct HistoryParams {
    #[serde(default)]
    before_seq: Option<i64>,
    #[serde(default)]
    after_seq: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    thread_id: Option<String>,
}

pub async fn history(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = bounded_limit(params.limit, limits::HISTORY_PAGE_DEFAULT, limits::HISTORY_PAGE_MAX)?;
    let thread = params.thread_id.as_deref().map(message_id).transpose()?;
    let query =
        HistoryQuery { before_seq: params.before_seq, after_seq: params.after_seq, thread_id: thread.as_ref(), limit };
    let (messages, has_more) = state.app.history(&session.auth, &channel_id(&id)?, query).await?;
    let messages: Vec<MessageView> = messages.iter().map(MessageView::from).collect();
    Ok(Json(serde_json::json!({ "messages": messages, "has_more": has_more })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    body: String,
}

pub async fn edit(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<EditMessage>,
) -> Result<Json<MessageView>, ApiError> {
    let message = state.app.edit_message(&session.auth, &message_id(&id)?, &request.body).await?;
    Ok(Json(MessageView::from(&message)))
}

pub async fn delete(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.delete_message(&session.auth, &message_id(&id)?, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    seq: i64,
}

pub async fn mark_read(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MarkRead>,
) -> Result<StatusCode, ApiError> {
    state.app.mark_read(&session.auth, &channel_id(&id)?, request.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
