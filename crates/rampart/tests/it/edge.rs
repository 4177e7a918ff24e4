//! The hardened HTTP edge: the error format for malformed, oversized and unknown-field bodies;
//! security headers on every route; TRACE refused; the plain-HTTP redirect; idle keep-alive and
//! per-IP connection limits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{client_trusting, curl, expect_error, free_port, python_post, rustls_client, Dirs, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_unknown_field_bodies_get_clear_json_errors() {
    let server = Server::start();
    let client = server.client();
    let url = server.url("/api/v1/auth/login");
    let raw = |body: String, content_type: Option<&'static str>| {
        let mut request = client.post(url.clone()).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    let json_ct = Some("application/json");
    expect_error(raw("{not json".into(), json_ct).await.expect("send"), 400, "invalid_json").await;
    expect_error(raw("".into(), json_ct).await.expect("send"), 400, "invalid_json").await;
    let unknown =
        raw(json!({ "username": "a", "password": "b", "admin": true }).to_string(), json_ct).await.expect("send");
    let body = expect_error(unknown, 400, "unknown_field").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("admin"));
    expect_error(raw(json!({ "username": "a" }).to_string(), json_ct).await.expect("send"), 400, "invalid_input").await;
    // A wrongly typed password is refused without echoing it back.
    let typed = raw(json!({ "username": "a", "password": 123456789 }).to_string(), json_ct).await.expect("send");
    let body = expect_error(typed, 400, "invalid_input").await;
    assert!(!body.to_string().contains("123456789"));
    expect_error(
        raw(json!({ "username": "a", "password": "b" }).to_string(), Some("text/plain")).await.expect("send"),
        415,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        raw(json!({ "username": "a", "password": "b" }).to_string(), None).await.expect("send"),
        415,
        "unsupported_media_type",
    )
    .await;
    let huge = json!({ "username": "a", "password": "x".repeat(200 * 1024) }).to_string();
    expect_error(raw(huge, json_ct).await.expect("send"), 413, "payload_too_large").await;
    // A password over 256 characters never reaches the hasher.
    let long = raw(json!({ "username": "a", "password": "x".repeat(300) }).to_string(), json_ct).await.expect("send");
    expect_error(long, 400, "invalid_input").await;
    // A malformed query string gets the same error shape.
    let owner = server.user("owner").await;
    let query =
        client.get(server.url("/api/v1/admin/audit?limit=abc")).headers(owner.bearer()).send().await.expect("send");
    expect_error(query, 400, "invalid_input").await;
    let limit =
        client.get(server.url("/api/v1/admin/audit?limit=5000")).headers(owner.bearer()).send().await.expect("send");
    expect_error(limit, 400, "invalid_input").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let server = Server::start();
    let owner = server.user("owner").await;
    let client = server.client();
    let requests = vec![
        client.get(server.url("/healthz")),
        client.get(server.url("/readyz")),
        client.get(server.url("/no/such/page")),
        client.get(server.url("/api/v1/users/me")),
        client.get(server.url("/api/v1/users/me")).headers(owner.bearer()),
        client.post(server.url("/api/v1/auth/login")).body("junk"),
        client.delete(server.url("/api/v1/users/me")).headers(owner.bearer()),
        client.request(reqwest::Method::TRACE, server.url("/healthz")),
        client.request(reqwest::Method::TRACE, server.url("/api/v1/users/me")),
        client.get(server.url("/api/v1/admin/users")).headers(owner.bearer()),
    ];
    for request in requests {
        let response = request.send().await.expect("send");
        let path = response.url().path().to_owned();
        let status = response.status();
        let headers = response.headers().clone();
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let hsts = get("strict-transport-security");
        let max_age: u64 =
            hsts.split(';').find_map(|p| p.trim().strip_prefix("max-age=")).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(max_age >= 31_536_000 && hsts.contains("includeSubDomains"), "{path} {status}: {hsts}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
        let csp = get("content-security-policy");
        for needle in ["frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"] {
            assert!(csp.contains(needle), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(headers.get("server").is_none(), "{path}: no server banner");
        assert!(headers.get("x-request-id").is_some(), "{path}: request id");
        if path.starts_with("/api/") {
            assert_eq!(get("cache-control"), "no-store", "{path}");
        }
        assert!(headers.get("access-control-allow-origin").is_none(), "{path}: no CORS");
        if status.is_client_error() || status.is_server_error() {
            assert!(get("content-type").starts_with("application/json"), "{path} {status}");
        }
        if path == "/healthz" && status == 405 {
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["error"]["code"], "method_not_allowed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_redirects_pages_to_the_public_origin_and_refuses_the_api() {
    let http_port = free_port();
    let flags = [
        "--http-listen".to_owned(),
        format!("127.0.0.1:{http_port}"),
        "--public-origin".to_owned(),
        "https://chat.example.test".to_owned(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(Arc::new(Dirs::new()), "", &flags);
    let plain = client_trusting(&[server.ca_pem()], false);
    let page = plain
        .get(format!("http://127.0.0.1:{http_port}/channels?x=1"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 308);
    assert_eq!(page.headers().get("location").expect("location"), "https://chat.example.test/channels?x=1");
    let api = plain
        .post(format!("http://127.0.0.1:{http_port}/api/v1/auth/login"))
        .json(&json!({ "username": "a", "password": "b" }))
        .send()
        .await
        .expect("api");
    assert!(api.headers().get("location").is_none());
    expect_error(api, 400, "https_required").await;
    drop(server);
}

async fn tls_connect(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = crate::support::rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("tls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_per_ip_connections_are_capped() {
    let config = "[limits]\nidle_timeout_ms = 400\nconnections_per_ip_max = 3\n";
    let server = Server::start_with(Arc::new(Dirs::new()), config, &[]);
    // An idle keep-alive connection (here one that never sends a request) is closed.
    let mut idle = tls_connect(&server).await;
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "the server closed the idle connection");
    // Three connections are allowed; the fourth is closed at once.
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = tls_connect(&server).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await.expect("write");
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(n > 0);
        open.push(stream);
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.expect("tcp");
    let config = crate::support::rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
    assert!(refused.is_err(), "a fourth connection from one IP is refused");
    drop(open);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = client_trusting(&[server.ca_pem()], false);
    assert_eq!(client.get(server.url("/healthz")).send().await.expect("after").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_get_a_json_431() {
    let server = Server::start();
    let client = server.client();
    let mut many = client.get(server.url("/healthz"));
    for i in 0..80 {
        many = many.header(format!("x-extra-{i}"), "v");
    }
    let response = many.send().await.expect("send");
    assert!(response.headers().get("strict-transport-security").is_some());
    expect_error(response, 431, "headers_too_large").await;
    let large = client.get(server.url("/healthz")).header("x-large", "a".repeat(20_000)).send().await.expect("send");
    expect_error(large, 431, "headers_too_large").await;
    assert_eq!(
        client.get(server.url("/healthz")).header("x-fine", "a".repeat(4_000)).send().await.expect("send").status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_count_against_the_per_ip_cap() {
    let server = Server::start_with(Arc::new(Dirs::new()), "[limits]\nconnections_per_ip_max = 3\n", &[]);
    let user = server.user("member").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(server.ws(&user).await.0);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = client_trusting(&[server.ca_pem()], false);
    assert!(client.get(server.url("/healthz")).send().await.is_err(), "three live sockets fill the cap");
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.get(server.url("/healthz")).send().await.expect("after").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_of_each_request() {
    let server = Server::start_with(Arc::new(Dirs::new()), "[log]\nformat = \"json\"\n", &[]);
    let response = server.client().get(server.url("/healthz")).send().await.expect("health");
    let request_id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log_text();
    let lines: Vec<serde_json::Value> =
        log.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().any(|l| l.to_string().contains(&request_id) && l["fields"]["message"] == "request finished"),
        "the request's log line names its request id"
    );
}

/// An HTTPS client that speaks HTTP/1.1 only.
fn http1_client(server: &Server) -> reqwest::Client {
    let mut tls = rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `data` as a body of unknown length, in 64 KiB pieces (chunked on HTTP/1.1).
fn streamed(data: &[u8]) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

/// Issue 16 item 12: a JSON body refused by size (or type) gets its JSON error delivered to real
/// clients, over HTTP/1.1 and HTTP/2: before `100 Continue` when `Content-Length` already says too
/// much, and when the limit is crossed while the body streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_refused_json_bodies_reach_curl_python_and_reqwest_over_both_protocols() {
    let server = Server::start();
    let url = server.url("/api/v1/auth/login");
    let data = json!({ "username": "a", "password": "x".repeat(3 * 1024 * 1024) }).to_string().into_bytes();
    let big = server.dirs.root.path().join("big.json");
    std::fs::write(&big, &data).expect("write");
    let at_big = format!("@{}", big.display());
    let json_type = "content-type: application/json";

    let waited = curl(
        &server,
        &["--http1.1", "-H", "Expect: 100-continue", "-H", json_type, "--data-binary", &at_big, &url],
        None,
    );
    waited.expect_error(413, "payload_too_large", "curl HTTP/1.1, Expect, Content-Length");
    assert!(!waited.trace.contains("100 Continue"), "refused before 100 Continue:\n{}", waited.trace);
    let h2 = curl(&server, &["--http2", "-H", json_type, "--data-binary", &at_big, &url], None);
    h2.expect_error(413, "payload_too_large", "curl HTTP/2, Content-Length");
    assert!(h2.trace.contains("HTTP/2 413"), "{}", h2.trace);
    let chunked = curl(
        &server,
        &["--http1.1", "-H", json_type, "-H", "Transfer-Encoding: chunked", "--data-binary", &at_big, &url],
        None,
    );
    chunked.expect_error(413, "payload_too_large", "curl HTTP/1.1, chunked");
    let h2_streamed = curl(&server, &["--http2", "-H", json_type, "-X", "POST", "-T", "-", &url], Some(&big));
    h2_streamed.expect_error(413, "payload_too_large", "curl HTTP/2, no length");
    // Refused by type, the body never read: 415 arrives all the same.
    let typed =
        curl(&server, &["--http2", "-H", "content-type: text/plain", "-X", "POST", "-T", "-", &url], Some(&big));
    typed.expect_error(415, "unsupported_media_type", "curl HTTP/2, wrong type");
    let typed = curl(
        &server,
        &[
            "--http1.1",
            "-H",
            "content-type: text/plain",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &at_big,
            &url,
        ],
        None,
    );
    typed.expect_error(415, "unsupported_media_type", "curl HTTP/1.1, wrong type");

    for chunked in [false, true] {
        if let Some(seen) = python_post(&server, "/api/v1/auth/login", "application/json", &big, chunked, "") {
            seen.expect_error(413, "payload_too_large", &format!("Python http.client, chunked {chunked}"));
        }
    }

    for (name, client) in [("HTTP/1.1", http1_client(&server)), ("HTTP/2", server.client())] {
        let sized = client.post(&url).header("content-type", "application/json").body(data.clone()).send().await;
        let sized = sized.unwrap_or_else(|e| panic!("reqwest {name}, Content-Length: {e}"));
        assert_eq!(
            sized.version(),
            if name == "HTTP/2" { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 }
        );
        expect_error(sized, 413, "payload_too_large").await;
        let streaming = client.post(&url).header("content-type", "application/json").body(streamed(&data)).send().await;
        let streaming = streaming.unwrap_or_else(|e| panic!("reqwest {name}, streamed: {e}"));
        expect_error(streaming, 413, "payload_too_large").await;
    }
}
