//! The optional plain-HTTP listener: it serves nothing. Pages are redirected to the configured
//! public origin (never to the request's own `Host`, which an attacker could set), and every
//! `/api/` request gets 400 with no redirect, so a client that sent a token in clear learns it at
//! once instead of being silently forwarded.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rampart_core::ErrorCode;

use super::error::ApiError;

/// Longest path and query carried over into a redirect.
const REDIRECT_PATH_CHARS_MAX: usize = 2048;

pub fn router(public_origin: String) -> Router {
    Router::new()
        .fallback(move |request: Request| redirect(public_origin.clone(), request))
        .layer(middleware::from_fn(super::refuse_methods))
        .layer(middleware::from_fn(super::normalize_errors))
        .layer(middleware::from_fn(super::security_headers))
        .layer(middleware::from_fn(super::request_context))
}

async fn redirect(public_origin: String, request: Request) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::of(ErrorCode::HttpsRequired).into_response();
    }
    let target: String = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .chars()
        .take(REDIRECT_PATH_CHARS_MAX)
        .collect();
    match HeaderValue::from_str(&format!("{public_origin}{target}")) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => ApiError::of(ErrorCode::InvalidInput).into_response(),
    }
}
