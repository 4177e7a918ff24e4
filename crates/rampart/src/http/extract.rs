//! Extractors: how a handler states what it needs from a request. `ApiJson` parses a bounded,
//! typed JSON body (unknown fields refused) with our error format; `Session` proves who is asking
//! and, for cookie authentication, that the request is same-origin; `ClientMeta` says from where.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rampart_app::{Authenticated, RequestMeta};
use rampart_core::ErrorCode;
use rampart_crypto::Token;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{origin_is_allowed, AppState, SESSION_COOKIE};
use crate::proxy::ConnectionClient;

/// A JSON body of type `T`, within the body limit.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Longest field name echoed back in an "unknown field" message.
const FIELD_NAME_ECHO_CHARS_MAX: usize = 64;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Turns a serde_json error into our error without echoing values (a mistyped password must not
/// come back in an error message).
fn json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(ErrorCode::InvalidJson, "The request body is not valid JSON.")
        }
        Category::Data => {
            let text = error.to_string();
            let name: String = text.split('`').nth(1).unwrap_or("").chars().take(FIELD_NAME_ECHO_CHARS_MAX).collect();
            if text.starts_with("unknown field") {
                ApiError::new(ErrorCode::UnknownField, format!("Unknown field `{name}`."))
            } else if text.starts_with("missing field") {
                ApiError::new(ErrorCode::InvalidInput, format!("Missing field `{name}`."))
            } else if text.starts_with("unknown variant") {
                ApiError::new(ErrorCode::InvalidInput, format!("A field has an unknown value `{name}`."))
            } else {
                ApiError::new(ErrorCode::InvalidInput, "A field has a value of the wrong type or shape.")
            }
        }
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::of(ErrorCode::UnsupportedMediaType));
        }
        let limit = state.limits.body_bytes_max;
        let bytes = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("The request body is larger than {limit} bytes."),
                ));
            }
            Err(_) => return Err(ApiError::new(ErrorCode::InvalidInput, "The request body could not be read.")),
        };
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| json_error(&e))
    }
}

/// How the session token arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVia {
    Cookie,
    Bearer,
}

/// An authenticated request.
#[derive(Debug)]
pub struct Session {
    pub auth: Authenticated,
    pub via: AuthVia,
}

/// The bearer token of an `Authorization` header, if any.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// The session cookie's value, if one was sent.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (text, via) = match bearer_token(&parts.headers) {
            Some(token) => (token, AuthVia::Bearer),
            None => match cookie_token(&parts.headers) {
                Some(token) => (token, AuthVia::Cookie),
                None => return Err(ApiError::of(ErrorCode::Unauthenticated)),
            },
        };
        let token = Token::parse(&text).ok_or_else(|| ApiError::of(ErrorCode::Unauthenticated))?;
        // A cookie rides along on cross-site requests; a same-origin Origin proves the page that
        // sent it is ours (CSRF defence). Bearer tokens are never sent by a browser on its own.
        if via == AuthVia::Cookie && !is_safe_method(&parts.method) && !origin_is_allowed(parts, state, true) {
            return Err(ApiError::of(ErrorCode::CrossOriginRequest));
        }
        let auth = state.app.authenticate(&token).await?;
        Ok(Session { auth, via })
    }
}

/// Where a request came from: the client IP (the socket's peer, or what a trusted proxy says:
/// `proxy.rs`) and the User-Agent.
#[derive(Clone, Debug)]
pub struct ClientMeta(pub RequestMeta);

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let ip = match peer {
            Some(peer) => {
                let connection_client = parts.extensions.get::<ConnectionClient>().map_or(peer, |client| client.0);
                let client = state.proxy.request_client(peer, connection_client, &parts.headers).map_err(|error| {
                    tracing::info!(%error, "request refused: unusable X-Forwarded-For from a trusted proxy");
                    ApiError::new(ErrorCode::HeadersTooLarge, "The X-Forwarded-For header is too long.")
                })?;
                client.to_string()
            }
            None => "unknown".to_owned(),
        };
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(ClientMeta(RequestMeta::new(ip, user_agent)))
    }
}
