//! The web pages, embedded in the binary so one file serves everything. For now: the enrollment
//! page an invitation link opens. The full client replaces this module's table.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const ENROLL_HTML: &str = include_str!("../../../../web/enroll.html");
const ENROLL_JS: &str = include_str!("../../../../web/enroll.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/enroll", get(|| async { asset(ENROLL_HTML, "text/html; charset=utf-8") }))
        .route("/assets/enroll.js", get(|| async { asset(ENROLL_JS, "text/javascript; charset=utf-8") }))
        .route("/assets/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
}
