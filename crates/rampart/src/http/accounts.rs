//! Handlers for accounts and sessions (API.md "Accounts and sessions").

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_app::{EnrollInput, LoginInput, NewSessionIssued};
use rampart_core::validate::{DirectoryQuery, FieldError};
use rampart_core::{limits, ErrorCode, SessionId};
use rampart_crypto::{SecretString, Token};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{cookie_token, ApiJson, AuthVia, ClientMeta, Session};
use super::wire::{rfc3339, DirectoryEntry, LoginResponse, SessionView, UserView};
use super::{AppState, SESSION_COOKIE};

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    Cookie,
    Token,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    mode: Option<LoginMode>,
}

/// `Set-Cookie` for a new session, living as long as the session may.
fn session_cookie(issued: &NewSessionIssued) -> Result<HeaderValue, ApiError> {
    let max_age_secs = (issued.expires_at.0 - rampart_app::now().0).max(0) / 1000;
    let cookie = cookie::Cookie::build((SESSION_COOKIE, issued.token.expose().to_owned()))
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&cookie.to_string()).map_err(|_| ApiError::of(ErrorCode::Internal))
}

/// `Set-Cookie` that makes the browser forget the session cookie.
fn expired_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-rampart_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Answers a login or password change: a cookie, or the token in the body.
fn session_response(
    status: StatusCode,
    user: UserView,
    issued: &NewSessionIssued,
    via_cookie: bool,
) -> Result<Response, ApiError> {
    let body = LoginResponse {
        user,
        expires_at: rfc3339(issued.expires_at),
        token: (!via_cookie).then(|| issued.token.expose().to_owned()),
    };
    let mut response = (status, Json(body)).into_response();
    if via_cookie {
        response.headers_mut().insert(header::SET_COOKIE, session_cookie(issued)?);
    }
    Ok(response)
}

pub async fn login(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if request.totp.as_ref().is_some_and(|code| code.chars().count() > limits::TOTP_CHARS_MAX) {
        return Err(FieldError::new("totp", "The code is too long.").into());
    }
    let input = LoginInput {
        username: request.username,
        password: request.password,
        totp: request.totp,
        replaces: cookie_token(&headers).as_deref().and_then(Token::parse),
    };
    let outcome = state.app.login(input, &meta).await?;
    let via_cookie = !matches!(request.mode, Some(LoginMode::Token));
    session_response(StatusCode::OK, UserView::from(&outcome.user), &outcome.session, via_cookie)
}

pub async fn logout(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
) -> Result<Response, ApiError> {
    state.app.logout(&session.auth, &meta).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("clear-site-data", HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""));
    headers.insert(header::SET_COOKIE, expired_cookie());
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    token: String,
    username: String,
    password: SecretString,
    display_name: String,
}

pub async fn enroll(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> Result<Response, ApiError> {
    let input = EnrollInput {
        token: request.token,
        username: request.username,
        password: request.password,
        display_name: request.display_name,
    };
    let user = state.app.enroll(input, &meta).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "user": UserView::from(&user) }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    current_password: SecretString,
    new_password: SecretString,
}

pub async fn change_password(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    ApiJson(request): ApiJson<PasswordRequest>,
) -> Result<Response, ApiError> {
    let issued =
        state.app.change_password(&session.auth, request.current_password, request.new_password, &meta).await.map_err(
            |error| match error {
                // A wrong current password while signed in is a refusal, not a lost session.
                rampart_app::AppError::InvalidCredentials => {
                    ApiError::new(ErrorCode::Forbidden, "The current password is incorrect.")
                }
                other => other.into(),
            },
        )?;
    session_response(StatusCode::OK, UserView::from(&session.auth.user), &issued, session.via == AuthVia::Cookie)
}

pub async fn list_sessions(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = state.app.list_sessions(&session.auth).await?;
    let current = &session.auth.session.id;
    Ok(Json(sessions.iter().map(|s| SessionView::new(s, &s.id == current)).collect()))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = SessionId::parse(&id).ok_or_else(|| ApiError::of(ErrorCode::NotFound))?;
    state.app.revoke_session(&session.auth, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
) -> Result<StatusCode, ApiError> {
    state.app.revoke_other_sessions(&session.auth, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(session: Session) -> Json<UserView> {
    Json(UserView::from(&session.auth.user))
}

#[derive(Deserialize)]
pub struct DirectoryParams {
    #[serde(default)]
    q: Option<String>,
}

pub async fn directory(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<DirectoryParams>,
) -> Result<Json<Vec<DirectoryEntry>>, ApiError> {
    let query = DirectoryQuery::parse(params.q.as_deref().unwrap_or(""))?;
    let users = state.app.search_directory(&session.auth, &query).await?;
    Ok(Json(users.iter().map(DirectoryEntry::from).collect()))
}

/// `GET /api/v1/users/{id}`: one user's names (see `App::user_profile`).
pub async fn user_profile(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<DirectoryEntry>, ApiError> {
    let id = rampart_core::UserId::parse(&id).ok_or_else(|| ApiError::of(ErrorCode::NotFound))?;
    let user = state.app.user_profile(&session.auth, &id).await?;
    Ok(Json(DirectoryEntry::from(&user)))
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::new(error.code, error.message)
    }
}
