//! The HTTP edge: the router of API.md and the middleware every response passes through
//! (request id and log line, security headers, error normalisation, method and cross-origin
//! guards, request timeout). Handlers are thin: extract, call one `App` use case, shape the reply.

mod accounts;
mod admin;
mod body;
mod channels;
pub mod error;
pub mod extract;
mod files;
pub mod redirect;
mod search;
mod web;
pub mod wire;

pub use admin::enrollment_url as admin_enrollment_url;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use rampart_app::App;
use rampart_core::ErrorCode;
use tracing::Instrument;

use crate::config::EdgeLimits;
use error::ApiError;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain — the browser enforces all three).
pub const SESSION_COOKIE: &str = "__Host-rampart_session";

/// Shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub app: App,
    pub limits: EdgeLimits,
    /// `https://host[:port]`, lower case, no trailing slash.
    pub public_origin: String,
    pub hub: std::sync::Arc<crate::gateway::hub::Hub>,
    pub ws: crate::config::WsLimits,
    /// The registry behind `/metrics` (admin listener) and who may read it.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Uploads: the largest file, and the longest an upload request may take.
    pub uploads: UploadLimits,
    /// Trusted proxies: whose word on the client IP is believed.
    pub proxy: std::sync::Arc<crate::proxy::ProxyConfig>,
    /// This node's id, and whether it is draining (then `/readyz` is 503).
    pub node: std::sync::Arc<crate::node::NodeState>,
}

/// The edge's limits of a file upload.
#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    pub bytes_max: u64,
    pub timeout_ms: u64,
}

/// The Content-Security-Policy of every response: same-origin only, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'";

/// The public API router (without the listener-specific pieces).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(accounts::login))
        .route("/auth/logout", post(accounts::logout))
        .route("/auth/enroll", post(accounts::enroll))
        .route("/auth/password", post(accounts::change_password))
        .route("/auth/sessions", get(accounts::list_sessions).delete(accounts::revoke_other_sessions))
        .route("/auth/sessions/{id}", delete(accounts::revoke_session))
        .route("/users/me", get(accounts::me))
        .route("/users", get(accounts::directory))
        .route("/users/{id}", get(accounts::user_profile))
        .route("/admin/invitations", post(admin::create_invitation))
        .route("/admin/users", get(admin::list_users))
        .route("/admin/users/{id}", patch(admin::update_user))
        .route("/admin/users/{id}/sessions", delete(admin::revoke_user_sessions))
        .route("/admin/audit", get(admin::read_audit))
        .route("/admin/audit/verify", get(admin::verify_audit))
        .route("/admin/security/events", get(admin::security_events))
        .route("/admin/keys", get(admin::key_status))
        .route("/channels", post(channels::create).get(channels::list))
        .route("/channels/{id}", get(channels::get_one).patch(channels::update))
        .route("/channels/{id}/join", post(channels::join))
        .route("/channels/{id}/leave", post(channels::leave))
        .route("/channels/{id}/members", get(channels::members).post(channels::add_member))
        .route("/channels/{id}/members/{user_id}", delete(channels::remove_member))
        .route("/channels/{id}/messages", post(channels::send).get(channels::history))
        .route("/search", get(search::search))
        .route("/channels/{id}/read", post(channels::mark_read))
        .route("/dms", post(channels::open_direct))
        .route("/messages/{id}", patch(channels::edit).delete(channels::delete))
        // The upload's body is bounded by the file size limit (plus its multipart framing), not by
        // the JSON limit: the use case ends it with 413 the moment the file crosses the limit.
        .route(
            "/channels/{id}/files",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::max(upload_body_max(state.uploads.bytes_max))),
        )
        .route("/files/{id}", get(files::download))
        .route("/events", get(crate::gateway::connect));
    // Outermost, so a request is counted with the status and time its client saw.
    let metrics = std::sync::Arc::clone(&state.metrics);
    Router::new()
        .nest("/api/v1", api)
        .merge(health_routes())
        .merge(web::routes())
        .fallback(not_found)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), cross_origin_guard))
        .layer(middleware::from_fn(refuse_methods))
        .layer(middleware::from_fn_with_state(state.clone(), body::bounded_bodies))
        .layer(middleware::from_fn_with_state(state, header_limits))
        .layer(middleware::from_fn(normalize_errors))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_context))
        .layer(middleware::from_fn_with_state(metrics, crate::metrics::track_http))
}

/// Refuses requests with more headers, or a larger head, than the limits (JSON 431).
async fn header_limits(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let head_bytes = request.method().as_str().len()
        + request.uri().to_string().len()
        + headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>();
    if headers.len() > rampart_core::limits::HTTP_HEADERS_COUNT_MAX || head_bytes > state.limits.header_bytes_max {
        return ApiError::of(ErrorCode::HeadersTooLarge).into_response();
    }
    next.run(request).await
}

/// `/healthz` and `/readyz`, for the public and the admin listener.
pub fn health_routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The admin listener's router: health, and `/metrics` for peers in `metrics.allow`. `/metrics` is
/// on no other router, so the public listener answers it with 404 like any unknown path.
pub fn admin_router(state: AppState) -> Router {
    health_routes()
        .route("/metrics", get(crate::metrics::scrape))
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(refuse_methods))
        .layer(middleware::from_fn(normalize_errors))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_context))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.node.is_draining() {
        return ApiError::new(ErrorCode::Unavailable, "The server is shutting down: use another node.").into_response();
    }
    if !state.app.ready().await {
        return ApiError::new(ErrorCode::Unavailable, "The server is not ready: its store does not answer.")
            .into_response();
    }
    if state.node.bus().is_some_and(|bus| !bus.is_connected()) {
        return ApiError::new(ErrorCode::Unavailable, "The server is not ready: it has lost the cluster bus (NATS).")
            .into_response();
    }
    Json(serde_json::json!({ "status": "ready" })).into_response()
}

async fn not_found() -> ApiError {
    ApiError::of(ErrorCode::NotFound)
}

/// The origin a request names for itself: `https://` and its Host (or HTTP/2 `:authority`).
fn own_origin(parts: &Parts) -> Option<String> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))?;
    Some(format!("https://{}", host.to_ascii_lowercase()))
}

/// Whether the request's `Origin` is ours: the configured public origin, or the origin the request
/// itself was addressed to. With `required`, a missing `Origin` is refused.
pub fn origin_is_allowed(parts: &Parts, state: &AppState, required: bool) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return !required;
    };
    let origin = origin.to_ascii_lowercase();
    origin == state.public_origin || own_origin(parts).is_some_and(|own| own == origin)
}

/// Any state-changing request that names a foreign `Origin` is refused, authenticated or not
/// (login CSRF included).
async fn cross_origin_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let (parts, body) = request.into_parts();
        if !origin_is_allowed(&parts, &state, false) {
            return ApiError::of(ErrorCode::CrossOriginRequest).into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(request).await
}

/// TRACE, TRACK and CONNECT are refused everywhere.
pub(crate) async fn refuse_methods(request: Request, next: Next) -> Response {
    let method = request.method().as_str();
    if matches!(method, "TRACE" | "TRACK" | "CONNECT") {
        return ApiError::of(ErrorCode::MethodNotAllowed).into_response();
    }
    next.run(request).await
}

/// The body limit of an upload request: the file limit and room for the multipart framing.
fn upload_body_max(file_bytes_max: u64) -> usize {
    usize::try_from(file_bytes_max.saturating_add(files::MULTIPART_OVERHEAD_BYTES)).unwrap_or(usize::MAX)
}

/// Whether a request is a file upload (`POST /api/v1/channels/{id}/files`), which may take
/// `files.upload_timeout_ms` instead of the request timeout (its idle time is bounded apart).
fn is_upload(request: &Request) -> bool {
    let path = request.uri().path();
    request.method() == Method::POST
        && path
            .strip_prefix("/api/v1/channels/")
            .and_then(|rest| rest.strip_suffix("/files"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

async fn request_timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit_ms = if is_upload(&request) { state.uploads.timeout_ms } else { state.limits.request_timeout_ms };
    let limit = Duration::from_millis(limit_ms);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::of(ErrorCode::RequestTimeout).into_response(),
    }
}

/// Replaces any error response that is not already our JSON (from the router, an extractor or
/// hyper) with our error format, so a client never sees a plain-text or framework default.
pub(crate) async fn normalize_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let code = error::code_for_status(status);
    let mut replaced = ApiError::of(code).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = response.headers().get(header::ALLOW) {
            replaced.headers_mut().insert(header::ALLOW, allow.clone());
        }
    }
    replaced
}

const SECURITY_HEADERS: [(&str, &str); 9] = [
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ("cache-control", "no-store"),
];

/// Adds the security headers of API.md to every response, errors and 404s included. A handler
/// that set its own value (a stricter CSP for a download) keeps it.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    headers.remove(header::SERVER);
    response
}

/// Longest request path written to the log.
const ROUTE_LOG_CHARS_MAX: usize = 128;

/// A request id for each request, in a span around everything it logs, in the `x-request-id`
/// response header, and one log line when it ends. Only the route template is logged, never the
/// query string, headers or body.
pub(crate) async fn request_context(request: Request<Body>, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    // The path only: a query string may hold search text, and is never logged.
    let route: String = request.uri().path().chars().take(ROUTE_LOG_CHARS_MAX).collect();
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), elapsed_ms, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// Helper for handlers: the bounded `limit` query parameter.
pub fn bounded_limit(requested: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidInput, format!("limit must be between 1 and {max}."))),
    }
}
