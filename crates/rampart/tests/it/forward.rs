//! Forwarding the audit log to a SIEM, against a real collector socket in the test: a collector
//! that is down while records are written, then up, receives every record in `seq` order (a repeat
//! only of a `seq` already seen, never a gap); records written after it is up arrive too; a
//! collector that drops the connection gets the rest after the reconnect; over TLS, a collector
//! whose certificate is not from the configured CA is refused.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;

use crate::support::{free_port, unique, Dirs, Server};

/// The forwarder reconnects with back-off of at most 30 s; this leaves room for that and the
/// server's own work.
const COLLECTOR_WAIT: Duration = Duration::from_secs(60);

/// Writes a failed login (an audit record) for a name that does not exist.
async fn failed_login(server: &Server) {
    let response = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": unique("ghost"), "password": "not the password at all", "mode": "token" }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 401);
}

/// The seq of the newest audit record, read from the audit database beside the running server.
async fn head_seq(dirs: &Dirs) -> i64 {
    let url = format!("sqlite://{}?mode=ro", dirs.audit().join("audit.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open the audit db");
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(&pool).await.expect("max");
    pool.close().await;
    head
}

/// One octet-counted frame (RFC 6587) from the front of `buffer`, once it is all there.
fn take_frame(buffer: &mut Vec<u8>) -> Option<String> {
    let space = buffer.iter().position(|b| *b == b' ')?;
    let length: usize = std::str::from_utf8(&buffer[..space]).expect("octet count").parse().expect("octet count");
    let end = space + 1 + length;
    if buffer.len() < end {
        return None;
    }
    let message = String::from_utf8(buffer[space + 1..end].to_vec()).expect("UTF-8 message");
    buffer.drain(..end);
    Some(message)
}

/// The `seq` in an RFC 5424 message's structured data.
fn seq_of(message: &str) -> i64 {
    assert!(message.starts_with('<') && message.contains(">1 "), "not RFC 5424: {message}");
    let marker = "[rampart@32473 seq=\"";
    let start = message.find(marker).unwrap_or_else(|| panic!("no seq in {message}")) + marker.len();
    message[start..].split('"').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad seq: {message}"))
}

/// What a test collector heard, over all its connections.
#[derive(Default)]
struct Heard {
    seqs: Vec<i64>,
    messages: Vec<String>,
}

impl Heard {
    fn max(&self) -> i64 {
        self.seqs.iter().copied().max().unwrap_or(0)
    }

    /// Reads frames from `stream` until a record with seq `until` or later has arrived.
    async fn read_until<S: AsyncRead + Unpin>(&mut self, stream: &mut S, until: i64) {
        let deadline = tokio::time::Instant::now() + COLLECTOR_WAIT;
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 8192];
        while self.max() < until {
            let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
            let count = read.unwrap_or_else(|_| panic!("no record {until} yet; heard {:?}", self.seqs)).expect("read");
            assert!(count > 0, "the forwarder closed the connection; heard {:?}", self.seqs);
            buffer.extend_from_slice(&chunk[..count]);
            while let Some(message) = take_frame(&mut buffer) {
                self.seqs.push(seq_of(&message));
                self.messages.push(message);
            }
        }
    }

    /// Every seq from 1 to `head` arrived, in order: each one is either a repeat of one already
    /// seen (at-least-once after a reconnect) or the next one, never a jump past a gap.
    fn assert_complete_and_in_order(&self, head: i64) {
        let mut highest = 0;
        for &seq in &self.seqs {
            assert!(seq >= 1 && seq <= highest + 1, "seq {seq} after {highest}: {:?}", self.seqs);
            highest = highest.max(seq);
        }
        assert!(highest >= head, "heard up to {highest}, the log has {head}: {:?}", self.seqs);
    }
}

async fn accept(listener: &TcpListener) -> tokio::net::TcpStream {
    let (stream, _) = tokio::time::timeout(COLLECTOR_WAIT, listener.accept())
        .await
        .expect("the forwarder connects within the back-off")
        .expect("accept");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_then_up_receives_every_record_in_order() {
    let port = free_port();
    let config = format!("[audit]\nforward = \"tcp://127.0.0.1:{port}\"\n");
    let server = Server::start_with(Arc::new(Dirs::new()), &config, &[]);
    // Nothing listens yet: these records wait in the audit log.
    server.user("member").await;
    for _ in 0..3 {
        failed_login(&server).await;
    }
    let written_while_down = head_seq(&server.dirs).await;
    assert!(written_while_down >= 5, "records were written: {written_while_down}");
    assert!(server.log_shows("cannot reach the collector", Duration::from_secs(5)).await, "{}", server.log_text());

    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the collector");
    let mut heard = Heard::default();
    let mut connection = accept(&listener).await;
    heard.read_until(&mut connection, written_while_down).await;
    heard.assert_complete_and_in_order(written_while_down);
    assert!(
        heard.messages.iter().any(|m| m.contains("action=\"auth.login\" outcome=\"failure\"")),
        "{:?}",
        heard.messages
    );

    // Live: a record written now arrives on the open connection.
    failed_login(&server).await;
    let live = head_seq(&server.dirs).await;
    heard.read_until(&mut connection, live).await;
    heard.assert_complete_and_in_order(live);

    // The collector drops the connection; what is written meanwhile comes after the reconnect,
    // after a replay of records it already had.
    drop(connection);
    for _ in 0..2 {
        failed_login(&server).await;
    }
    let after_drop = head_seq(&server.dirs).await;
    let mut connection = accept(&listener).await;
    let before_reconnect = heard.seqs.len();
    heard.read_until(&mut connection, after_drop).await;
    heard.assert_complete_and_in_order(after_drop);
    assert!(heard.seqs[before_reconnect] <= live, "the reconnect replays from before the cursor: {:?}", heard.seqs);
    for line in ["connected to the collector", "connection to the collector lost"] {
        assert!(server.log_shows(line, Duration::from_secs(5)).await, "{line}: {}", server.log_text());
    }

    // The forwarder stops with the server, connected or not.
    let log = Arc::clone(&server.log);
    server.stop();
    assert!(log.lock().expect("log").contains("stopped"), "{}", log.lock().expect("log"));
}

/// A CA and a certificate for `localhost` signed by it: (CA PEM, certificate PEM, key PEM).
fn ca_and_certificate(label: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(DnType::CommonName, format!("test SIEM CA {label}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("certificate")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_only_a_collector_from_the_configured_ca_receives_the_records() {
    let (ca_pem, cert_pem, key_pem) = ca_and_certificate("genuine");
    let (_, impostor_cert, impostor_key) = ca_and_certificate("impostor");
    let dirs = Arc::new(Dirs::new());
    let ca_file = dirs.root.path().join("siem-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write the CA");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the collector");
    let port = listener.local_addr().expect("addr").port();
    let config = format!(
        "[audit]\nforward = \"tls://127.0.0.1:{port}\"\nforward_ca_file = \"{}\"\nforward_server_name = \"localhost\"\n",
        ca_file.display()
    );
    let server = Server::start_with(dirs, &config, &[]);

    // An impostor with a certificate from another CA: the forwarder refuses the handshake.
    let refused = acceptor(&impostor_cert, &impostor_key).accept(accept(&listener).await).await;
    assert!(refused.is_err(), "the forwarder must not accept a certificate from another CA");

    server.user("member").await;
    failed_login(&server).await;
    let head = head_seq(&server.dirs).await;
    let mut heard = Heard::default();
    let mut connection = acceptor(&cert_pem, &key_pem).accept(accept(&listener).await).await.expect("TLS handshake");
    heard.read_until(&mut connection, head).await;
    heard.assert_complete_and_in_order(head);
    assert!(heard.messages.iter().any(|m| m.contains("action=\"server.start\"")), "{:?}", heard.messages);
    assert!(server.log_shows("cannot reach the collector", Duration::from_secs(5)).await, "{}", server.log_text());
}
