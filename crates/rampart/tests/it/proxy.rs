//! Trusted proxies: the client IP comes from a PROXY protocol v2 header or `X-Forwarded-For` only
//! when the TCP peer is in `proxy.trusted` (here 127.0.0.2, a second loopback address the test's
//! "proxy" binds to); from anyone else it is the socket's peer. The IP is checked where it is used:
//! a session's `ip` (what the audit log and alerts record too), login throttling per IP, and the
//! per-IP connection cap.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::support::{rustls_client, Dirs, Server, User, PASSWORD};

/// The address the test's proxy connects from, the only one the servers here trust.
const PROXY_ADDRESS: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// An HTTPS client trusting the server's CA whose connections come from `local`.
fn client_from(server: &Server, local: &str) -> reqwest::Client {
    let mut tls = rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(ip(local))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Logs in (token mode) through `client` to `base`, with an optional `X-Forwarded-For`, and returns
/// the IP the server recorded for the new session.
async fn session_ip(client: &reqwest::Client, base: &str, user: &User, forwarded_for: Option<&str>) -> String {
    let mut login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": user.username, "password": PASSWORD, "mode": "token" }));
    if let Some(value) = forwarded_for {
        login = login.header("x-forwarded-for", value);
    }
    let response = login.send().await.expect("login");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    let token = response.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned();
    let sessions: Value = client
        .get(format!("{base}/api/v1/auth/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    let current = sessions.as_array().expect("list").iter().find(|s| s["current"] == true).expect("current").clone();
    current["ip"].as_str().expect("ip").to_owned()
}

/// A failed login for a name that does not exist; returns the status.
async fn failed_login(client: &reqwest::Client, base: &str, forwarded_for: &str) -> u16 {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "username": crate::support::unique("nobody"), "password": "not the password at all" }))
        .send()
        .await
        .expect("login");
    response.status().as_u16()
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let config = format!(
        "[proxy]\ntrusted = [\"{PROXY_ADDRESS}/32\"]\nprotocol = \"x-forwarded-for\"\n[login]\nip_free_failures = 2\n"
    );
    let server = Server::start_with(Arc::new(Dirs::new()), &config, &[]);
    let user = server.user("member").await;
    let direct = client_from(&server, "127.0.0.1");
    let proxy = client_from(&server, PROXY_ADDRESS);

    // A client that writes its own X-Forwarded-For is not believed: it is not a trusted proxy.
    assert_eq!(session_ip(&direct, &server.base, &user, Some("203.0.113.66")).await, "127.0.0.1");
    // Through the proxy: the right-most hop that is not a trusted proxy (the first one is whatever
    // the client wrote, and proves nothing).
    let hops = format!("198.51.100.1, 203.0.113.7, {PROXY_ADDRESS}");
    assert_eq!(session_ip(&proxy, &server.base, &user, Some(&hops)).await, "203.0.113.7");
    // A trusted proxy that sends no header is the client itself.
    assert_eq!(session_ip(&proxy, &server.base, &user, None).await, PROXY_ADDRESS);

    // Throttling per IP applies to the real client behind the proxy, and to no one else.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let status = failed_login(&proxy, &server.base, "203.0.113.50").await;
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "the client behind the proxy is throttled: {statuses:?}");
    assert_eq!(failed_login(&proxy, &server.base, "203.0.113.51").await, 401, "another client of the proxy is not");
    assert_eq!(
        failed_login(&direct, &server.base, "203.0.113.50").await,
        401,
        "a spoofed header from an untrusted peer does not inherit the throttle"
    );

    // The header is bounded.
    let long = vec!["203.0.113.9"; 200].join(", ");
    let response = proxy
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("x-forwarded-for", long)
        .json(&json!({ "username": user.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    crate::support::expect_error(response, 431, "headers_too_large").await;
}

/// A PROXY protocol v2 header (TCP over IPv4) naming `source` as the client.
fn proxy_v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(source.ip().octets());
    header.extend(destination.ip().octets());
    header.extend(source.port().to_be_bytes());
    header.extend(destination.port().to_be_bytes());
    header
}

/// A TCP connection to the server from the trusted proxy's address.
async fn connect_from_proxy(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(ip(PROXY_ADDRESS), 0)).expect("bind 127.0.0.2");
    socket.connect(SocketAddr::new(ip("127.0.0.1"), port)).await.expect("connect")
}

/// A PROXY v2 forwarder on 127.0.0.1 (like HAProxy's `send-proxy-v2`): each connection is passed to
/// the server from the trusted address, announcing `client` as the source. Returns its port.
async fn spawn_forwarder(server_port: u16, client: SocketAddr) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut downstream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut upstream = connect_from_proxy(server_port).await;
                let destination = SocketAddr::new(ip("127.0.0.1"), server_port);
                upstream.write_all(&proxy_v2_header(client, destination)).await.expect("header");
                let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
            });
        }
    });
    port
}

/// A TLS handshake over `tcp`; `Err` when the server closes instead.
async fn tls_over(server: &Server, tcp: TcpStream) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await.expect("no hang")
}

/// Whether the server closes `tcp` (EOF or reset) within a few seconds.
async fn closed_by_server(mut tcp: TcpStream) -> bool {
    let mut buffer = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn a_proxy_v2_header_is_believed_only_from_a_trusted_proxy() {
    let config = format!("[proxy]\ntrusted = [\"{PROXY_ADDRESS}/32\"]\nprotocol = \"proxy-v2\"\n");
    let server = Server::start_with(Arc::new(Dirs::new()), &config, &[]);
    let user = server.user("member").await;

    // Through the trusted proxy: the header's source is the client.
    let client_address: SocketAddr = "203.0.113.9:40000".parse().expect("addr");
    let forwarder = spawn_forwarder(server.port, client_address).await;
    let via_proxy = client_from(&server, "127.0.0.1");
    let base = format!("https://localhost:{forwarder}");
    assert_eq!(session_ip(&via_proxy, &base, &user, None).await, "203.0.113.9");
    // X-Forwarded-For means nothing under PROXY v2, even through the proxy.
    assert_eq!(session_ip(&via_proxy, &base, &user, Some("198.51.100.4")).await, "203.0.113.9");

    // Anyone else connects directly as before, and is their own address.
    let direct = client_from(&server, "127.0.0.1");
    assert_eq!(session_ip(&direct, &server.base, &user, None).await, "127.0.0.1");

    // An untrusted peer's PROXY header is never read: its bytes are not a TLS hello, so the
    // handshake fails, whatever address it names.
    let mut untrusted = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    let destination = SocketAddr::new(ip("127.0.0.1"), server.port);
    untrusted.write_all(&proxy_v2_header("198.51.100.200:1".parse().expect("addr"), destination)).await.expect("write");
    assert!(tls_over(&server, untrusted).await.is_err(), "a PROXY header from an untrusted peer is not accepted");

    // From the trusted proxy, a malformed header (version 3), a header with no signature (plain
    // TLS) and an oversized one each close the connection, with the reason in the log.
    let mut bad_version = proxy_v2_header(client_address, destination);
    bad_version[12] = 0x31;
    let mut oversized = proxy_v2_header(client_address, destination);
    oversized[14] = 0x10;
    for (name, bytes) in [("bad version", bad_version), ("oversized", oversized)] {
        let mut tcp = connect_from_proxy(server.port).await;
        tcp.write_all(&bytes).await.expect("write");
        assert!(closed_by_server(tcp).await, "{name}: the connection is closed");
    }
    let plain_tls = connect_from_proxy(server.port).await;
    assert!(tls_over(&server, plain_tls).await.is_err(), "a trusted proxy must send the header");
    for reason in [
        "malformed PROXY protocol v2 header",
        "over the limit of 1024 (proxy.header_bytes_max)",
        "does not start with the PROXY protocol v2 signature",
    ] {
        assert!(server.log_shows(reason, Duration::from_secs(5)).await, "{reason}: {}", server.log_text());
    }
}

#[tokio::test]
async fn per_ip_connection_caps_apply_to_the_client_behind_the_proxy() {
    let config = format!(
        "[proxy]\ntrusted = [\"{PROXY_ADDRESS}/32\"]\nprotocol = \"proxy-v2\"\n[limits]\nconnections_per_ip_max = 2\n"
    );
    let server = Server::start_with(Arc::new(Dirs::new()), &config, &[]);
    let destination = SocketAddr::new(ip("127.0.0.1"), server.port);
    let open = |source: &'static str| {
        let server = &server;
        async move {
            let mut tcp = connect_from_proxy(server.port).await;
            tcp.write_all(&proxy_v2_header(source.parse().expect("addr"), destination)).await.expect("header");
            tls_over(server, tcp).await
        }
    };
    // Two connections of one client behind the proxy fill its cap…
    let first = open("203.0.113.1:1001").await.expect("first");
    let second = open("203.0.113.1:1002").await.expect("second");
    assert!(open("203.0.113.1:1003").await.is_err(), "the third of the same client is refused");
    // …while another client of the same proxy, and the proxy's own many connections, are not
    // limited by it.
    let other = open("203.0.113.2:1001").await.expect("another client");
    let another = open("203.0.113.3:1001").await.expect("and another");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _reused = open("203.0.113.1:1004").await.expect("a freed place is the client's again");
    drop((second, other, another));
}
