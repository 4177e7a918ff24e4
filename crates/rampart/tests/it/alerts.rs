//! Security detectors against scripted attacks: a burst of failed logins from one IP (brute
//! force), failures across 50 accounts from one IP (credential stuffing), one account from many
//! IPs (distributed guessing, using several loopback addresses), a role raised to admin — each
//! fires its alert, listed by `GET /api/v1/admin/security/events` and posted to a webhook whose
//! receiver checks the HMAC; ordinary traffic fires none.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::support::{free_port, Dirs, Server, User, PASSWORD};

const WEBHOOK_SECRET: &str = "test-webhook-secret-5a1b";

/// A webhook receiver on loopback: answers 200 and hands over each (headers, body).
async fn receiver() -> (u16, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() >= end + 4 + length {
                        let body = buffer[end + 4..end + 4 + length].to_vec();
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        let _ = tx.send((head, body));
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

fn config(webhook_port: u16, dirs: &Dirs, extra: &str) -> String {
    let secret_file = dirs.root.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{WEBHOOK_SECRET}\n")).expect("secret");
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    format!(
        "[alerts]\nwebhook_url = \"http://127.0.0.1:{webhook_port}/hook\"\nwebhook_secret = \"file:{}\"\n{extra}",
        secret_file.display()
    )
}

pub fn client_from(server: &Server, ip: &str) -> reqwest::Client {
    let mut tls = crate::support::rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn fail_login(client: &reqwest::Client, server: &Server, username: &str) {
    let response = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": "definitely the wrong one", "mode": "token" }))
        .send()
        .await
        .expect("login");
    assert!(matches!(response.status().as_u16(), 401 | 429), "{}", response.status());
}

async fn events(server: &Server, admin: &User) -> Vec<Value> {
    let response = server.get_json(admin, "/api/v1/admin/security/events").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Waits for the webhook to post an alert of `kind`, checking every signature on the way.
async fn webhook_alert(rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>, kind: &str) -> Value {
    loop {
        let (head, body) =
            tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("webhook post").expect("open");
        let header = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned())).expect(name)
        };
        let timestamp = header("x-rampart-timestamp");
        let mut message = format!("{timestamp}.").into_bytes();
        message.extend_from_slice(&body);
        let expected: String = rampart_crypto::mac::hmac_sha256(WEBHOOK_SECRET.as_bytes(), &message)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(header("x-rampart-signature"), format!("sha256={expected}"), "the HMAC verifies");
        let payload: Value = serde_json::from_slice(&body).expect("json");
        if payload["kind"] == kind {
            return payload;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_and_privilege_escalation_fire_and_reach_the_signed_webhook() {
    let (port, mut posts) = receiver().await;
    let dirs = Arc::new(Dirs::new());
    let text = config(port, &dirs, "ip_failures_max = 8\n");
    let server = Server::start_with(dirs, &text, &[]);
    let owner = server.user("owner").await;
    let member = server.user("member").await;

    // Ordinary traffic: a sign-in, two typos, a sign-in.
    let ordinary = client_from(&server, "127.0.0.1");
    fail_login(&ordinary, &server, &member.username).await;
    fail_login(&ordinary, &server, &member.username).await;
    server.login_token(&member.username, PASSWORD).await;
    assert_eq!(kinds(&events(&server, &owner).await), Vec::<String>::new(), "ordinary traffic fires nothing");

    let attacker = client_from(&server, "127.0.0.9");
    for _ in 0..10 {
        fail_login(&attacker, &server, "admin").await;
    }
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["brute_force"], "{fired:?}");
    assert_eq!(fired[0]["subject"], "127.0.0.9");
    let posted = webhook_alert(&mut posts, "brute_force").await;
    assert_eq!(posted["subject"], "127.0.0.9");
    assert_eq!(posted["seq"], fired[0]["seq"]);

    let raise = server
        .client()
        .patch(server.url(&format!("/api/v1/admin/users/{}", member.id)))
        .headers(owner.bearer())
        .json(&json!({ "role": "admin" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(raise.status(), 200);
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["brute_force", "privilege_escalation"]);
    assert_eq!(fired[1]["subject"], member.id);
    webhook_alert(&mut posts, "privilege_escalation").await;

    // The owner signs in again from where they always do (nothing), then from a new address.
    server.login_token(&owner.username, PASSWORD).await;
    assert_eq!(events(&server, &owner).await.len(), 2);
    let elsewhere = client_from(&server, "127.0.0.44")
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": owner.username, "password": PASSWORD, "mode": "token" }))
        .send()
        .await
        .expect("login");
    assert_eq!(elsewhere.status(), 200);
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["brute_force", "privilege_escalation", "admin_new_ip"]);
    assert_eq!(fired[2]["details"]["ip"], "127.0.0.44");
    webhook_alert(&mut posts, "admin_new_ip").await;

    // A member may not read alerts.
    let outsider = server.user("member").await;
    assert_eq!(server.get_json(&outsider, "/api/v1/admin/security/events").await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuffing_across_50_accounts_and_guessing_from_many_ips_fire_their_detectors() {
    let (port, mut posts) = receiver().await;
    let dirs = Arc::new(Dirs::new());
    let text = config(port, &dirs, "ip_failures_max = 1000\nip_accounts_max = 20\naccount_ips_max = 8\n");
    let server = Server::start_with(dirs, &text, &[]);
    let owner = server.user("owner").await;

    let stuffer = client_from(&server, "127.0.0.20");
    for i in 0..50 {
        fail_login(&stuffer, &server, &format!("employee{i}")).await;
    }
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["credential_stuffing"], "{fired:?}");
    assert_eq!(fired[0]["subject"], "127.0.0.20");
    webhook_alert(&mut posts, "credential_stuffing").await;

    for i in 0..10 {
        let client = client_from(&server, &format!("127.0.1.{}", i + 1));
        fail_login(&client, &server, "cfo").await;
    }
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["credential_stuffing", "distributed_guessing"], "{fired:?}");
    assert_eq!(fired[1]["subject"], "cfo");
    webhook_alert(&mut posts, "distributed_guessing").await;
}

/// Issue 16 item 6: a login name with a line feed, tried from 10 addresses, becomes a
/// distributed-guessing alert whose subject is escaped, and forges no line in the syslog export
/// (one line per record) or the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_feed_in_a_login_name_forges_no_line_in_the_alert_export_or_log() {
    let (port, mut posts) = receiver().await;
    let dirs = Arc::new(Dirs::new());
    let text = config(port, &dirs, "account_ips_max = 10\n");
    let server = Server::start_with(dirs, &text, &[]);
    let owner = server.user("owner").await;
    let forged = "cfo\n<110>1 2027-01-01T00:00:00Z host rampart - auth.login - forged";
    for i in 0..10 {
        let client = client_from(&server, &format!("127.0.2.{}", i + 1));
        fail_login(&client, &server, forged).await;
    }
    let fired = events(&server, &owner).await;
    assert_eq!(kinds(&fired), ["distributed_guessing"], "{fired:?}");
    let subject = fired[0]["subject"].as_str().expect("subject");
    assert!(subject.starts_with("cfo\\u{000a}<110>1"), "{subject:?}");
    let notice = webhook_alert(&mut posts, "distributed_guessing").await;
    assert!(!notice["subject"].as_str().unwrap_or_default().contains('\n'), "{notice}");

    let output = server.rampart(&["audit", "export", "--format", "syslog"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let export = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = export.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with('<')), "a forged line: {export}");
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l.split("seq=\"").nth(1).and_then(|r| r.split('"').next()).expect("seq").parse().expect("n"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one line per record: {seqs:?}");
    assert!(!export.contains("\n<110>1 2027-01-01T00:00:00Z host"), "{export}");
    assert!(!server.log_text().contains("\n<110>1 2027-01-01T00:00:00Z host"), "the log has a forged line");
}
