//! Handlers for administration (API.md "Administration"). Permission is decided by the use case
//! through the core policy; these handlers only translate.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_app::UserChange;
use rampart_core::validate::FieldError;
use rampart_core::{ErrorCode, Role, UserId};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, ClientMeta, Session};
use super::wire::{
    rfc3339, AdminUserView, AuditVerifyView, AuditView, InvitationView, KeyStatusView, SecurityEventView,
};
use super::{bounded_limit, AppState};

/// Audit records per page: default and most.
const AUDIT_PAGE_DEFAULT: u32 = 100;
const AUDIT_PAGE_MAX: u32 = 1_000;

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text)
        .ok_or_else(|| FieldError::new("role", "The role must be one of owner, admin, member, guest.").into())
}

fn parse_user_id(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text).ok_or_else(|| ApiError::of(ErrorCode::NotFound))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    role: String,
    #[serde(default)]
    expires_in_hours: Option<u32>,
}

pub async fn create_invitation(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    ApiJson(request): ApiJson<InvitationRequest>,
) -> Result<Response, ApiError> {
    let role = parse_role(&request.role)?;
    let issued = state.app.create_invitation(&session.auth, role, request.expires_in_hours, &meta).await?;
    let view = InvitationView {
        token: issued.token.expose().to_owned(),
        role: issued.role.as_str(),
        expires_at: rfc3339(issued.expires_at),
        url: enrollment_url(&state.public_origin, issued.token.expose()),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The enrollment page for an invitation. The token rides in the fragment, which browsers never
/// send to a server, so it stays out of access logs and `Referer` headers.
pub fn enrollment_url(origin: &str, token: &str) -> String {
    format!("{origin}/enroll#token={token}")
}

pub async fn list_users(State(state): State<AppState>, session: Session) -> Result<Json<Vec<AdminUserView>>, ApiError> {
    let users = state.app.list_users(&session.auth).await?;
    Ok(Json(users.iter().map(AdminUserView::from).collect()))
}

/// A patch: each field may be left out, never `null` (the OpenAPI document says neither is
/// nullable; `"role": null` was once taken as "no change").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "present")]
    role: Option<String>,
    #[serde(default, deserialize_with = "present")]
    disabled: Option<bool>,
}

/// An optional field that, when given, must hold a value: `null` is a deserialization error (a
/// JSON 400), and only a missing field is `None` (through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

pub async fn update_user(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<AdminUserView>, ApiError> {
    let id = parse_user_id(&id)?;
    if patch.role.is_none() && patch.disabled.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidInput, "Give `role`, `disabled`, or both."));
    }
    let change = UserChange { role: patch.role.as_deref().map(parse_role).transpose()?, disabled: patch.disabled };
    let user = state.app.update_user(&session.auth, &id, change, &meta).await?;
    Ok(Json(AdminUserView::from(&user)))
}

pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_user_id(&id)?;
    state.app.revoke_user_sessions(&session.auth, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditParams {
    #[serde(default)]
    after: Option<i64>,
    /// Audit only: the page just below this seq (a value past the newest gives the newest page).
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/security/events?after=&limit=`: the detectors' alerts, oldest first.
pub async fn security_events(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<AuditParams>,
) -> Result<Json<Vec<SecurityEventView>>, ApiError> {
    let limit = bounded_limit(params.limit, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX)?;
    let rows = state.app.security_events(&session.auth, params.after.unwrap_or(0).max(0), limit).await?;
    Ok(Json(rows.iter().map(SecurityEventView::from).collect()))
}

pub async fn verify_audit(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
) -> Result<Json<AuditVerifyView>, ApiError> {
    let report = state.app.verify_audit(&session.auth, &meta).await?;
    Ok(Json(AuditVerifyView::from(&report)))
}

pub async fn read_audit(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<AuditParams>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    let limit = bounded_limit(params.limit, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX)?;
    let rows = match (params.after, params.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidInput, "Give `after` or `before`, not both."))
        }
        (_, Some(before)) => state.app.read_audit_before(&session.auth, before.max(0), limit).await?,
        (after, None) => state.app.read_audit(&session.auth, after.unwrap_or(0).max(0), limit).await?,
    };
    Ok(Json(rows.iter().map(AuditView::from).collect()))
}

/// `GET /api/v1/admin/keys`: the KEK versions and data keys, as `rampart keys status` shows them.
pub async fn key_status(State(state): State<AppState>, session: Session) -> Result<Json<KeyStatusView>, ApiError> {
    let status = state.app.key_status_for(&session.auth).await?;
    Ok(Json(KeyStatusView::from(&status)))
}
