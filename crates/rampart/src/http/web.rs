//! Static files embedded in the binary so one file serves everything: the enrollment page an
//! invitation link opens (the full client replaces it) and the OpenAPI document.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const ENROLL_HTML: &str = include_str!("../../../../web/enroll.html");
const ENROLL_JS: &str = include_str!("../../../../web/enroll.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");
/// The OpenAPI document of API.md; `tests/it/openapi.rs` checks it against the live router.
const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/enroll", get(|| async { asset(ENROLL_HTML, "text/html; charset=utf-8") }))
        .route("/assets/enroll.js", get(|| async { asset(ENROLL_JS, "text/javascript; charset=utf-8") }))
        .route("/assets/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route("/api/v1/openapi.json", get(|| async { asset(OPENAPI_JSON, "application/json") }))
}
