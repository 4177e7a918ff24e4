//! The real-time gateway: `GET /api/v1/events` upgrades to a WebSocket after the `Origin` check;
//! the connection authenticates by session cookie (or `Authorization` header) at the upgrade, or by
//! a first `auth` frame within a deadline — never by a token in the URL.

mod connection;
pub mod hub;
mod mailbox;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rampart_app::{App, SessionEnded};
use rampart_core::ErrorCode;
use rampart_crypto::Token;
use tokio::sync::broadcast::error::RecvError;

use crate::http::error::ApiError;
use crate::http::extract::cookie_token;
use crate::http::{origin_is_allowed, AppState};
use crate::server::ConnectionSlot;
use hub::Hub;

/// The token a client presented at the upgrade: an `Authorization: Bearer` header, else the
/// session cookie.
fn presented_token(parts: &Parts) -> Option<Token> {
    let bearer = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    bearer.or_else(|| cookie_token(&parts.headers)).as_deref().and_then(Token::parse)
}

pub async fn connect(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    // Cross-site WebSocket hijacking: a browser always sends Origin; a foreign one is refused.
    if !origin_is_allowed(&parts, &state, false) {
        return ApiError::of(ErrorCode::CrossOriginRequest).into_response();
    }
    if state.node.is_draining() {
        return ApiError::new(ErrorCode::Unavailable, "The server is shutting down: connect again.").into_response();
    }
    let upgrade =
        match <WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(upgrade) => upgrade,
            Err(_) => {
                return ApiError::new(ErrorCode::InvalidInput, "This endpoint takes a WebSocket upgrade.")
                    .into_response()
            }
        };
    let presented = presented_token(&parts);
    let pre_auth = match presented {
        Some(token) => match state.app.authenticate_socket(&token).await {
            Ok(auth) => Some((auth, token)),
            Err(error) => return ApiError::from(error).into_response(),
        },
        None => None,
    };
    let limits = state.ws;
    let context = connection::Context { app: state.app.clone(), hub: Arc::clone(&state.hub), limits };
    let start = Box::new(connection::Start {
        ctx: context,
        pre_auth,
        // The upgraded connection keeps its place under the connection caps for as long as it lives.
        slot: parts.extensions.get::<Arc<ConnectionSlot>>().cloned(),
        socket_guard: state.hub.socket_opened(),
    });
    // The connection's log lines keep the request's span (request id, node id).
    let span = tracing::Span::current();
    upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_write_buffer_size(limits.max_write_buffer_bytes)
        .max_message_size(limits.frame_bytes_max)
        .max_frame_size(limits.frame_bytes_max)
        .on_upgrade(move |socket| {
            let (sink, source) = socket.split();
            tracing::Instrument::instrument(connection::run(sink, source, start), span)
        })
}

/// The heartbeat timer walks this many slots per ping interval, beating one slot's connections
/// at each tick (see `Hub::heartbeat`).
const HEARTBEAT_SLOTS: u32 = 10;

/// The node's one heartbeat timer: every connection is told, once per `ping_interval`, to check
/// its idle deadline and ping its client. Ends with the hub.
pub fn spawn_heartbeat(hub: &Arc<Hub>, ping_interval: Duration) {
    let hub = Arc::downgrade(hub);
    let tick = (ping_interval / HEARTBEAT_SLOTS).max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for slot in (0..u64::from(HEARTBEAT_SLOTS)).cycle() {
            ticker.tick().await;
            let Some(hub) = hub.upgrade() else { return };
            hub.heartbeat(slot, u64::from(HEARTBEAT_SLOTS));
        }
    });
}

/// Relays "session ended" notices from the application to the hub, so live connections close
/// when their session is revoked or their user disabled.
pub fn spawn_session_listener(app: &App, hub: Arc<Hub>) {
    let mut events = app.subscribe_session_events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(SessionEnded::Session(id)) => hub.end_session(&id),
                Ok(SessionEnded::AllOfUser(user)) => hub.recheck_user(&user),
                Err(RecvError::Lagged(_)) => hub.recheck_all(),
                Err(RecvError::Closed) => break,
            }
        }
    });
}
