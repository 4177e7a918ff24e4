//! The web client, embedded in the binary so one file serves everything: the app shell at `/`, the
//! enrollment page an invitation link opens (`/enroll`), the ES modules, stylesheet and icon under
//! `/assets/`, and the OpenAPI document. No build step: the files in `web/` are served as they are.
//!
//! Caching: assets have fixed names, so they are served `no-cache` with a strong `ETag` (a hash of
//! the embedded bytes): a browser revalidates each load and gets a 304 until the binary changes.
//! HTML pages also carry a stricter CSP than the API's: Trusted Types are required, so even a
//! mistaken `innerHTML` with a string in the client throws instead of parsing markup.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rampart_core::ErrorCode;

use super::error::ApiError;
use super::{AppState, CONTENT_SECURITY_POLICY};

/// The OpenAPI document of API.md; `tests/it/openapi.rs` checks it against the live router.
const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The HTML pages (`/` and `/enroll`): file name and content.
const PAGES: [(&str, &str); 2] = [
    ("index.html", include_str!("../../../../web/index.html")),
    ("enroll.html", include_str!("../../../../web/enroll.html")),
];

/// Everything under `/assets/`: file name, content type, content.
const ASSET_FILES: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../../../../web/app.css")),
    ("icon.svg", SVG, include_str!("../../../../web/icon.svg")),
    ("app.js", JS, include_str!("../../../../web/app.js")),
    ("api.js", JS, include_str!("../../../../web/api.js")),
    ("dom.js", JS, include_str!("../../../../web/dom.js")),
    ("text.js", JS, include_str!("../../../../web/text.js")),
    ("format.js", JS, include_str!("../../../../web/format.js")),
    ("live.js", JS, include_str!("../../../../web/live.js")),
    ("model.js", JS, include_str!("../../../../web/model.js")),
    ("users.js", JS, include_str!("../../../../web/users.js")),
    ("signin.js", JS, include_str!("../../../../web/signin.js")),
    ("enroll.js", JS, include_str!("../../../../web/enroll.js")),
    ("shell.js", JS, include_str!("../../../../web/shell.js")),
    ("sidebar.js", JS, include_str!("../../../../web/sidebar.js")),
    ("conversation.js", JS, include_str!("../../../../web/conversation.js")),
    ("history.js", JS, include_str!("../../../../web/history.js")),
    ("message.js", JS, include_str!("../../../../web/message.js")),
    ("composer.js", JS, include_str!("../../../../web/composer.js")),
    ("thread.js", JS, include_str!("../../../../web/thread.js")),
    ("dialogs.js", JS, include_str!("../../../../web/dialogs.js")),
    ("search.js", JS, include_str!("../../../../web/search.js")),
    ("highlight.js", JS, include_str!("../../../../web/highlight.js")),
    ("account.js", JS, include_str!("../../../../web/account.js")),
    ("admin.js", JS, include_str!("../../../../web/admin.js")),
    ("admin-audit.js", JS, include_str!("../../../../web/admin-audit.js")),
    ("files.js", JS, include_str!("../../../../web/files.js")),
];

/// The CSP of the HTML pages: the API's, plus Trusted Types with no policy at all, so no string
/// can ever reach an HTML or script sink (`innerHTML`, `document.write`, `eval`-like calls).
static PAGE_CSP: LazyLock<String> =
    LazyLock::new(|| format!("{CONTENT_SECURITY_POLICY}; require-trusted-types-for 'script'; trusted-types 'none'"));

/// An embedded file with its validator.
#[derive(Debug)]
struct Embedded {
    content_type: &'static str,
    body: &'static str,
    etag: HeaderValue,
}

impl Embedded {
    fn new(content_type: &'static str, body: &'static str) -> Self {
        // Not a security boundary: only tells "same bytes" from "changed bytes" between builds.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", hasher.finish(), body.len()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self { content_type, body, etag }
    }

    /// The file, or 304 when the browser's copy is current.
    fn respond(&self, request_headers: &HeaderMap, csp: Option<&str>) -> Response {
        let fresh = request_headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim().as_bytes() == self.etag.as_bytes()));
        let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { self.body.into_response() };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::ETAG, self.etag.clone());
        if let Some(csp) = csp.and_then(|c| HeaderValue::from_str(c).ok()) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }
}

static ASSETS: LazyLock<Vec<(&'static str, Embedded)>> = LazyLock::new(|| {
    ASSET_FILES.iter().map(|(name, content_type, body)| (*name, Embedded::new(content_type, body))).collect()
});

static INDEX: LazyLock<Embedded> = LazyLock::new(|| Embedded::new(HTML, PAGES[0].1));
static ENROLL: LazyLock<Embedded> = LazyLock::new(|| Embedded::new(HTML, PAGES[1].1));

async fn index(headers: HeaderMap) -> Response {
    INDEX.respond(&headers, Some(&PAGE_CSP))
}

async fn enroll(headers: HeaderMap) -> Response {
    ENROLL.respond(&headers, Some(&PAGE_CSP))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(known, _)| *known == name) {
        Some((_, file)) => file.respond(&headers, None),
        None => ApiError::of(ErrorCode::NotFound).into_response(),
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/enroll", get(enroll)).route("/assets/{name}", get(asset)).route(
        "/api/v1/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI_JSON) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_name_is_unique_and_typed_by_extension() {
        for (index, (name, content_type, body)) in ASSET_FILES.iter().enumerate() {
            assert!(!body.is_empty(), "{name} is empty");
            assert!(ASSET_FILES.iter().skip(index + 1).all(|(other, _, _)| other != name), "{name} twice");
            let expected = match name.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => SVG,
                _ => "",
            };
            assert_eq!(*content_type, expected, "{name}");
        }
    }

    #[test]
    fn no_file_builds_markup_from_strings() {
        // The client renders text with textContent only; these sinks would parse markup.
        let sinks = ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"];
        for (name, _, body) in ASSET_FILES.iter() {
            for sink in sinks {
                assert!(!body.contains(sink), "{name} uses {sink}");
            }
        }
        for (name, body) in PAGES {
            assert!(!body.contains("<script>") && !body.contains(" style="), "{name} has inline code");
        }
    }
}
