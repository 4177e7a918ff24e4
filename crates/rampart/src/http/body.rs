//! Request bodies at the edge, so that an early answer reaches its client (issue 16 item 12).
//! A body whose `Content-Length` already says too much for its route is refused before anything
//! reads it — hyper sends `100 Continue` only when a body is first read, so a client that waits
//! for it gets the 413 instead. A body an answer left unread (refused by size or type, or by
//! anything before it was read) is drained after the answer, within `REFUSED_BODY_DRAIN_*`: on
//! HTTP/1.1 the connection then reads on to the end of the body instead of closing on unread
//! bytes (which resets the TCP connection and loses the answer), on HTTP/2 the stream ends
//! normally, or with RST_STREAM(NO_ERROR) after the answer when the bounds run out.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use rampart_core::ErrorCode;

use super::error::ApiError;
use super::AppState;

/// Most bytes of a refused or unread request body read and thrown away after the answer.
pub const REFUSED_BODY_DRAIN_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Longest time spent draining a refused or unread request body after the answer.
pub const REFUSED_BODY_DRAIN_MS: u64 = 10_000;

/// The body limit of the request's route: an upload's, or the JSON limit for every other route.
fn body_limit(request: &Request, state: &AppState) -> u64 {
    if super::is_upload(request) {
        super::upload_body_max(state.uploads.bytes_max) as u64
    } else {
        state.limits.body_bytes_max as u64
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("100-continue"))
}

/// Refuses a body over its route's limit by its `Content-Length`, unread (413), and wraps every
/// body so that what the answer leaves unread is drained.
pub async fn bounded_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = body_limit(&request, &state);
    let upload = super::is_upload(&request);
    let (parts, body) = request.into_parts();
    let body =
        Body::new(Draining { inner: Some(body), read: false, expects_continue: expects_continue(&parts.headers) });
    if content_length(&parts.headers).is_some_and(|length| length > limit) {
        let message = if upload {
            format!("Files may be at most {} bytes.", state.uploads.bytes_max)
        } else {
            format!("The request body is larger than {limit} bytes.")
        };
        tracing::info!(limit, "request refused by its Content-Length, before its body was read");
        drop(body);
        return ApiError::new(ErrorCode::PayloadTooLarge, message).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that, dropped before its end, drains the rest in the background.
struct Draining {
    inner: Option<Body>,
    /// Whether anything read it (then `100 Continue`, if asked for, has gone out).
    read: bool,
    expects_continue: bool,
}

impl http_body::Body for Draining {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.read = true;
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        // A client waiting for `100 Continue` that was never sent sends no body: reading it now
        // could send the 100 ahead of the answer.
        if http_body::Body::is_end_stream(&inner) || (self.expects_continue && !self.read) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(inner));
        }
    }
}

/// Reads and drops what is left of a body, within the bounds.
async fn drain(mut body: Body) {
    let mut drained = 0u64;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |data| data.len() as u64);
            if drained > REFUSED_BODY_DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_millis(REFUSED_BODY_DRAIN_MS), reading).await.is_ok();
    tracing::debug!(drained, finished, "drained the unread rest of a request body");
}
