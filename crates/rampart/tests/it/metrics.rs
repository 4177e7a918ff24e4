//! `/metrics`: Prometheus text on the admin listener, to peers in `metrics.allow` only; the public
//! listener answers it with 404 like any unknown path. Route labels are templates, never raw paths.

use std::sync::Arc;

use serde_json::json;

use crate::support::{expect_error, free_port, Dirs, Server, PASSWORD};

/// The value of one series (`name` or `name{labels}`) in a Prometheus text page.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn start_with_admin(config: &str) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(Arc::new(Dirs::new()), config, &["--admin-listen", &admin]);
    (server, format!("https://{admin}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_admin_listener_and_not_the_public_one() {
    let (server, admin) = start_with_admin("");
    let client = server.client();
    let user = server.user("member").await;
    let channel = server.channel(&user, "public").await;
    server.say(&user, &channel, "counted").await;
    let failed = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": user.username, "password": format!("not {PASSWORD}"), "mode": "token" }))
        .send()
        .await
        .expect("login");
    expect_error(failed, 401, "invalid_credentials").await;
    let (_ws, _ready) = server.ws(&user).await;

    // The public listener: no such route, the same answer as any unknown path.
    let public = client.get(server.url("/metrics")).send().await.expect("public /metrics");
    let body = expect_error(public, 404, "not_found").await;
    let unknown = client.get(server.url("/no-such-page")).send().await.expect("unknown");
    assert_eq!(expect_error(unknown, 404, "not_found").await, body);

    let response = client.get(format!("{admin}/metrics")).send().await.expect("admin /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("text");

    let sent = r#"rampart_http_requests_total{route="/api/v1/channels/{id}/messages",method="POST",status="201"}"#;
    assert_eq!(sample(&text, sent), Some(1.0), "{text}");
    let unmatched = r#"rampart_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    assert!(sample(&text, unmatched).is_some_and(|n| n >= 2.0), "{text}");
    assert!(!text.contains(&channel) && !text.contains("no-such-page"), "raw paths must not become labels:\n{text}");
    assert!(
        sample(&text, r#"rampart_http_request_duration_seconds_count{route="/api/v1/auth/login"}"#)
            .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "rampart_websocket_connections"), Some(1.0), "{text}");
    assert!(sample(&text, "rampart_tcp_connections").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, "rampart_login_failures_total"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "rampart_messages_sent_total"), Some(1.0), "{text}");
    for zero in
        ["rampart_login_throttled_total", "rampart_send_rate_limited_total", "rampart_websocket_queue_drops_total"]
    {
        assert_eq!(sample(&text, zero), Some(0.0), "{zero}:\n{text}");
    }
    assert_eq!(sample(&text, "rampart_audit_forward_backlog"), Some(0.0), "{text}");
    assert!(text.contains("# TYPE rampart_alerts_total counter"), "{text}");
    let expiry = sample(&text, "rampart_tls_certificate_expiry_seconds").expect("certificate expiry");
    assert!(expiry > 300.0 * 86_400.0, "the development certificate lasts a year: {expiry}");
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("rampart_"), "every metric is named rampart_*: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_metrics_allow_is_refused() {
    let (server, admin) = start_with_admin("[metrics]\nallow = [\"10.0.0.0/8\"]\n");
    let client = server.client();
    let refused = client.get(format!("{admin}/metrics")).send().await.expect("admin /metrics");
    expect_error(refused, 403, "forbidden").await;
    let health = client.get(format!("{admin}/healthz")).send().await.expect("admin /healthz");
    assert_eq!(health.status(), 200, "the rest of the admin listener still answers");
}
