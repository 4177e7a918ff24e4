//! The web client as the server delivers it: the app at `/` and every module it imports come from
//! the binary with the right types, revalidation headers (304 for an unchanged file), the API's
//! security headers, and a page CSP that adds Trusted Types; unknown assets are a JSON 404. And
//! the three reads the client added to the API: a user's names by id, key status (administrators
//! only) and the audit log paged back from the newest record.

use serde_json::Value;

use crate::support::{expect_error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_and_its_modules_are_served_from_the_binary() {
    let server = Server::start();
    let client = server.client();
    let page = client.get(server.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(headers["content-type"].to_str().expect("type").starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(csp.contains("require-trusted-types-for 'script'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));

    // Every module the app imports is served, as JavaScript: follow the import graph.
    let mut pending = vec!["app.js".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let response = client.get(server.url(&format!("/assets/{name}"))).send().await.expect("module");
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["content-type"], "text/javascript; charset=utf-8", "{name}");
        let text = response.text().await.expect("text");
        for line in text.lines().filter(|l| l.starts_with("import ")) {
            let target = line.rsplit("from \"./").next().and_then(|rest| rest.split('"').next()).expect("import path");
            pending.push(target.to_owned());
        }
    }
    assert!(seen.len() >= 15, "the app's modules: {seen:?}");

    // Revalidation: the same bytes answer 304 to their ETag.
    let css = client.get(server.url("/assets/app.css")).send().await.expect("css");
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let etag = css.headers()["etag"].clone();
    let again = client.get(server.url("/assets/app.css")).header("if-none-match", etag).send().await.expect("again");
    assert_eq!(again.status(), 304);

    let missing = client.get(server.url("/assets/nope.js")).send().await.expect("missing");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_names_key_status_and_the_newest_audit_records() {
    let server = Server::start();
    let client = server.client();
    let admin = server.user("admin").await;
    let member = server.user("member").await;

    // Names by id: for any signed-in user; unknown ids and strangers get nothing.
    let url = server.url(&format!("/api/v1/users/{}", admin.id));
    let names: Value = client.get(&url).headers(member.bearer()).send().await.expect("get").json().await.expect("json");
    assert_eq!(names["username"], admin.username.as_str());
    assert_eq!(names.as_object().expect("object").len(), 3, "id, username, display_name only: {names}");
    expect_error(client.get(&url).send().await.expect("get"), 401, "unauthenticated").await;
    let unknown = server.url("/api/v1/users/00000000-0000-4000-8000-000000000000");
    expect_error(client.get(&unknown).headers(member.bearer()).send().await.expect("get"), 404, "not_found").await;

    // Key status: administrators only.
    let keys = server.url("/api/v1/admin/keys");
    expect_error(client.get(&keys).headers(member.bearer()).send().await.expect("get"), 403, "forbidden").await;
    let status: Value =
        client.get(&keys).headers(admin.bearer()).send().await.expect("get").json().await.expect("json");
    assert_eq!(status["active_kek"], 1, "{status}");
    assert_eq!(status["keks"][0]["state"], "active", "{status}");

    // The newest page, then the page below it; never both cursors.
    let page = |query: &str| {
        let request = client.get(server.url(&format!("/api/v1/admin/audit?{query}"))).headers(admin.bearer());
        async move { request.send().await.expect("audit") }
    };
    let seqs = |rows: &Value| {
        rows.as_array().expect("rows").iter().map(|r| r["seq"].as_i64().expect("seq")).collect::<Vec<_>>()
    };
    let all: Value = page("after=0&limit=1000").await.json().await.expect("json");
    let head = *seqs(&all).last().expect("records");
    let newest: Value = page(&format!("before={}&limit=3", i64::MAX)).await.json().await.expect("json");
    assert_eq!(seqs(&newest), vec![head - 2, head - 1, head]);
    let below: Value = page(&format!("before={}&limit=3", head - 2)).await.json().await.expect("json");
    assert_eq!(seqs(&below), vec![head - 5, head - 4, head - 3]);
    expect_error(page("after=1&before=5").await, 400, "invalid_input").await;
}
