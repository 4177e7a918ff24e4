//! Forwarding the audit log to a SIEM collector, live: each record as an RFC 5424 message
//! (`audit_format::syslog`) over TCP or TLS, framed by octet counting (RFC 6587 §3.4.1:
//! `<length> <message>`).
//!
//! The audit log itself is the durable outbox. The forwarder keeps a cursor per collector in the
//! audit database (named by the canonical URL, so pointing `audit.forward` at another collector
//! starts that one from seq 1). It reads the records after the cursor in pages, writes and flushes
//! each page, then saves the cursor; while the collector is down nothing is lost, the records just
//! wait in the log and go out in `seq` order once it is back.
//!
//! Delivery is at-least-once, never at-most-once. TCP gives no application acknowledgement: bytes
//! the kernel accepted before a connection broke may never have reached the collector. So every
//! new connection (including the first after a start) re-sends up to
//! `AUDIT_FORWARD_REPLAY_ON_RECONNECT_RECORDS` records before the saved cursor, and the socket's
//! send buffer is kept small enough that this window covers all of it. A collector dedupes by the
//! `seq` in each message's structured data; a repeat carries the same `seq` and the same bytes.
//! Records a collector had received but lost itself (a crash with unread data in its own buffers)
//! are beyond what plain syslog over TCP can detect.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rampart_app::App;
use rampart_core::limits;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::audit_format;
use crate::config::{bad, ConfigError};

/// Where audit records are forwarded (`audit.forward` and its TLS keys, validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardTarget {
    /// `tcp://host:port` or `tls://host:port`, spelled canonically: the name of the cursor.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `None` for `tcp://`.
    pub tls: Option<ForwardTls>,
}

/// How a `tls://` collector is trusted: only the CA in `ca_file`, for the name `server_name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardTls {
    pub ca_file: PathBuf,
    pub server_name: ServerName<'static>,
}

/// The transport of a collector URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

/// A parsed `tcp://host:port` or `tls://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardUrl {
    pub transport: Transport,
    /// A lower-case DNS name or IP address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
}

impl ForwardUrl {
    /// The URL as the cursor is named: scheme, lower-case host, port.
    pub fn canonical(&self) -> String {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

const URL_SHAPE: &str = "must be tcp://host:port or tls://host:port";

/// Parses a collector URL. The reason never repeats the text: a URL with user-info may hold a
/// password.
pub fn parse_url(text: &str) -> Result<ForwardUrl, String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| URL_SHAPE.to_owned())?;
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return Err(format!("{URL_SHAPE} (unknown scheme; syslog over UDP is not offered: it loses records)")),
    };
    if rest.contains(['@', '/', '?', '#']) {
        return Err(format!("{URL_SHAPE}, with no user, path or query"));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (address, port) = bracketed.split_once(']').ok_or_else(|| format!("{URL_SHAPE}: unclosed `[`"))?;
            address.parse::<Ipv6Addr>().map_err(|_| format!("{URL_SHAPE}: not an IPv6 address in brackets"))?;
            (address, port.strip_prefix(':'))
        }
        None => {
            let (host, port) = rest.rsplit_once(':').map_or((rest, None), |(host, port)| (host, Some(port)));
            // A DNS name or an IPv4 address; an IPv6 address needs its brackets.
            let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
            if host.is_empty() || !host.bytes().all(plain) {
                return Err(format!("{URL_SHAPE}: bad host (write an IPv6 address in brackets)"));
            }
            (host, port)
        }
    };
    let port = port.filter(|p| !p.is_empty()).ok_or_else(|| format!("{URL_SHAPE}: the port is missing"))?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{URL_SHAPE}: bad port"))?;
    Ok(ForwardUrl { transport, host: host.to_ascii_lowercase(), port })
}

/// Validates `audit.forward`, `audit.forward_ca_file` and `audit.forward_server_name` together.
pub fn target_from_config(
    forward: Option<&str>,
    ca_file: Option<&Path>,
    server_name: Option<&str>,
) -> Result<Option<ForwardTarget>, ConfigError> {
    let tls_keys = [("audit.forward_ca_file", ca_file.is_some()), ("audit.forward_server_name", server_name.is_some())];
    let Some(text) = forward else {
        if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
            return Err(bad(key, "is used only with a tls:// audit.forward"));
        }
        return Ok(None);
    };
    let url = parse_url(text).map_err(|reason| bad("audit.forward", reason))?;
    let tls = match url.transport {
        Transport::Tcp => {
            if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return Err(bad(key, "is used only with a tls:// audit.forward"));
            }
            None
        }
        Transport::Tls => {
            let ca_file = ca_file.ok_or_else(|| {
                bad(
                    "audit.forward_ca_file",
                    "is required with tls://: the PEM file of the CA the collector's certificate chains to",
                )
            })?;
            if !ca_file.is_absolute() {
                return Err(bad("audit.forward_ca_file", "must be an absolute path"));
            }
            let (key, name) = match server_name {
                Some(name) => ("audit.forward_server_name", name.to_owned()),
                None => ("audit.forward", url.host.clone()),
            };
            let server_name = ServerName::try_from(name)
                .map_err(|_| bad(key, "the collector's TLS name must be a DNS name or an IP address"))?;
            Some(ForwardTls { ca_file: ca_file.to_owned(), server_name })
        }
    };
    Ok(Some(ForwardTarget { url: url.canonical(), host: url.host, port: url.port, tls }))
}

/// Appends one message framed by octet counting: its length in bytes, a space, the message.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// The forwarding task of one collector.
pub struct Forwarder {
    app: App,
    target: ForwardTarget,
    connector: Option<(TlsConnector, ServerName<'static>)>,
    hostname: String,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("target", &self.target.url).finish_non_exhaustive()
    }
}

/// A connection to the collector, plain or TLS.
trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

/// How a connection ended.
enum Ended {
    Shutdown,
    Lost { error: anyhow::Error, delivered: bool },
}

impl Forwarder {
    /// Prepares forwarding to `target`; a CA file that cannot be read is an error now, so a
    /// misconfigured forwarder stops the start rather than silently forwarding nothing.
    pub fn new(app: App, target: ForwardTarget) -> anyhow::Result<Self> {
        let connector = match &target.tls {
            Some(tls) => Some((tls_connector(&tls.ca_file)?, tls.server_name.clone())),
            None => None,
        };
        Ok(Self { app, target, connector, hostname: audit_format::hostname() })
    }

    /// Connects, forwards, and reconnects with back-off, until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let url = self.target.url.as_str();
        let mut backoff_ms = limits::AUDIT_FORWARD_BACKOFF_MS_MIN;
        let mut reachable = true;
        loop {
            let attempt = tokio::select! {
                attempt = self.connect() => attempt,
                _ = stopping(&mut shutdown) => return,
            };
            match attempt {
                Ok(link) => {
                    let connected_at = Instant::now();
                    reachable = true;
                    match self.serve(link, &mut shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost { error, delivered } => {
                            tracing::warn!(target = url, error = %format!("{error:#}"), "audit forwarding: connection to the collector lost; reconnecting");
                            let lasted =
                                connected_at.elapsed() >= Duration::from_millis(limits::AUDIT_FORWARD_BACKOFF_MS_MAX);
                            if delivered || lasted {
                                backoff_ms = limits::AUDIT_FORWARD_BACKOFF_MS_MIN;
                            }
                        }
                    }
                }
                Err(error) if reachable => {
                    reachable = false;
                    tracing::warn!(target = url, error = %format!("{error:#}"), "audit forwarding: cannot reach the collector; records wait in the audit log, retrying with back-off");
                }
                Err(error) => {
                    tracing::debug!(target = url, error = %format!("{error:#}"), "audit forwarding: still cannot reach the collector")
                }
            }
            self.update_backlog().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                _ = stopping(&mut shutdown) => return,
            }
            backoff_ms = (backoff_ms * 2).min(limits::AUDIT_FORWARD_BACKOFF_MS_MAX);
        }
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Link>> {
        let deadline = Duration::from_millis(limits::AUDIT_FORWARD_CONNECT_TIMEOUT_MS);
        let connect = async {
            let tcp = tcp_connect(&self.target.host, self.target.port).await?;
            match &self.connector {
                None => Ok(Box::new(tcp) as Box<dyn Link>),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
                    Ok(Box::new(tls) as Box<dyn Link>)
                }
            }
        };
        tokio::time::timeout(deadline, connect).await.map_err(|_| anyhow!("no connection within {deadline:?}"))?
    }

    /// Sends every record after the cursor (less the replay window), then each new one as it is
    /// written, until the connection fails or the server stops.
    async fn serve(&self, mut link: Box<dyn Link>, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let url = self.target.url.as_str();
        let lost = |error: anyhow::Error, delivered: bool| Ended::Lost { error, delivered };
        let (saved, head) = match self.position().await {
            Ok(position) => position,
            Err(error) => return lost(error, false),
        };
        if saved > head {
            tracing::warn!(target = url, cursor = saved, head, "audit forwarding: the audit log ends before the saved cursor (restored from an older copy?); forwarding from its head");
        }
        let mut position = (saved.min(head) - limits::AUDIT_FORWARD_REPLAY_ON_RECONNECT_RECORDS).max(0);
        tracing::info!(
            target = url,
            from_seq = position + 1,
            backlog = (head - saved).max(0),
            "audit forwarding: connected to the collector"
        );
        let mut delivered = false;
        let mut caught_up = false;
        let mut scratch = [0_u8; 512];
        loop {
            let rows = match self.app.forward_page(position, limits::AUDIT_FORWARD_PAGE_MAX).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "audit forwarding: cannot read the audit log; trying again");
                    Vec::new()
                }
            };
            let Some(last) = rows.last().map(|row| row.seq) else {
                // Said once a connection: after that each new record would say it again.
                if delivered && !caught_up {
                    caught_up = true;
                    tracing::info!(target = url, seq = position, "audit forwarding: caught up");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(limits::AUDIT_FORWARD_POLL_MS)) => {}
                    _ = stopping(shutdown) => return close(link).await,
                    read = link.read(&mut scratch) => match read {
                        // A collector has nothing to say under RFC 6587: reading only notices it left.
                        Ok(0) => return lost(anyhow!("the collector closed the connection"), delivered),
                        Ok(_) => {}
                        Err(error) => return lost(error.into(), delivered),
                    },
                }
                continue;
            };
            let mut bytes = Vec::new();
            for row in &rows {
                frame(&audit_format::syslog(row, &self.hostname), &mut bytes);
            }
            let write = async {
                link.write_all(&bytes).await?;
                link.flush().await
            };
            let deadline = Duration::from_millis(limits::AUDIT_FORWARD_WRITE_TIMEOUT_MS);
            tokio::select! {
                written = tokio::time::timeout(deadline, write) => match written {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return lost(error.into(), delivered),
                    Err(_) => return lost(anyhow!("the collector took no data for {deadline:?}"), delivered),
                },
                // The page was not saved as sent: it goes again at the next start.
                _ = stopping(shutdown) => return Ended::Shutdown,
            }
            delivered = true;
            position = last;
            if let Err(error) = self.app.set_forward_cursor(url, position).await {
                // Not fatal: the cursor stays behind and these records are sent again later.
                tracing::error!(%error, "audit forwarding: cannot save the cursor");
            }
            self.update_backlog().await;
        }
    }

    /// The saved cursor and the head's seq.
    async fn position(&self) -> anyhow::Result<(i64, i64)> {
        let saved =
            self.app.forward_cursor(&self.target.url).await.map_err(|e| anyhow!("cannot read the cursor: {e}"))?;
        let head = self.app.audit_head_seq().await.map_err(|e| anyhow!("cannot read the audit log: {e}"))?;
        Ok((saved, head))
    }

    /// Publishes the backlog (head − cursor) in the app's counters.
    async fn update_backlog(&self) {
        if let Err(error) = self.app.forward_backlog(&self.target.url).await {
            tracing::debug!(%error, "audit forwarding: cannot compute the backlog");
        }
    }
}

/// Resolves once the server is stopping (or its stop signal is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Ends a connection politely at stop: everything written was flushed page by page already.
async fn close(mut link: Box<dyn Link>) -> Ended {
    let deadline = Duration::from_millis(limits::AUDIT_FORWARD_CONNECT_TIMEOUT_MS);
    let _ = tokio::time::timeout(deadline, link.shutdown()).await;
    Ended::Shutdown
}

/// A TCP connection to the first address of `host` that answers, with a small send buffer (it
/// bounds what a broken connection can lose; see the replay window).
async fn tcp_connect(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpStream> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await.context("cannot resolve the collector's host")? {
        let socket =
            if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_send_buffer_size(limits::AUDIT_FORWARD_SEND_BUFFER_BYTES)?;
        socket.set_nodelay(true)?;
        match socket.connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.map_or_else(|| anyhow!("the collector's host has no address"), anyhow::Error::from))
}

/// A TLS client trusting only the CAs in `ca_file`, with the server's cipher suites.
fn tls_connector(ca_file: &Path) -> anyhow::Result<TlsConnector> {
    let context = || format!("audit.forward_ca_file: cannot read {} as PEM certificates", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).with_context(context)? {
        roots.add(certificate.with_context(context)?).with_context(context)?;
    }
    if roots.is_empty() {
        return Err(anyhow!("audit.forward_ca_file: {} holds no certificate", ca_file.display()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits octet-counted frames back into messages, as a collector does.
    fn unframe(mut bytes: &[u8]) -> Vec<String> {
        let mut messages = Vec::new();
        while !bytes.is_empty() {
            let space = bytes.iter().position(|b| *b == b' ').expect("a length");
            let length: usize = std::str::from_utf8(&bytes[..space]).expect("digits").parse().expect("a number");
            let end = space + 1 + length;
            messages.push(String::from_utf8(bytes[space + 1..end].to_vec()).expect("utf8"));
            bytes = &bytes[end..];
        }
        messages
    }

    /// Issue 16 item 6: a collector that splits on LF instead of counting octets still sees one
    /// message per record when a login name carried a line feed.
    #[test]
    fn a_line_feed_in_a_record_is_not_forwarded_raw() {
        let entry = rampart_store::AuditEntry {
            at: rampart_core::Timestamp(1_800_000_000_000),
            actor: "system".to_owned(),
            action: "security.alert".to_owned(),
            target: Some("cfo\n<110>1 2027-01-01T00:00:00Z h rampart - x - forged".to_owned()),
            ip: None,
            user_agent: None,
            outcome: "success",
            details: "{\"kind\":\"distributed_guessing\"}".to_owned(),
        };
        let rows =
            [rampart_store::AuditRow { seq: 7, entry: entry.clone() }, rampart_store::AuditRow { seq: 8, entry }];
        let mut out = Vec::new();
        for row in &rows {
            frame(&audit_format::syslog(row, "h"), &mut out);
            out.push(b'\n');
        }
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), rows.len(), "{}", String::from_utf8_lossy(&out));
        assert!(!out.contains(&b'\r'));
    }

    #[test]
    fn frames_count_octets_not_characters() {
        let mut out = Vec::new();
        frame("<110>1 - a", &mut out);
        frame("é ] \n x", &mut out);
        assert!(out.starts_with(b"10 <110>1 - a8 "), "{}", String::from_utf8_lossy(&out));
        assert_eq!(unframe(&out), vec!["<110>1 - a".to_owned(), "é ] \n x".to_owned()]);
    }

    #[test]
    fn collector_urls_parse_to_a_canonical_form() {
        let url = parse_url("tcp://SIEM.example.com:514").expect("tcp");
        assert_eq!((url.transport, url.host.as_str(), url.port), (Transport::Tcp, "siem.example.com", 514));
        assert_eq!(url.canonical(), "tcp://siem.example.com:514");
        let url = parse_url("tls://192.0.2.7:6514").expect("tls");
        assert_eq!((url.transport, url.canonical().as_str()), (Transport::Tls, "tls://192.0.2.7:6514"));
        let url = parse_url("tls://[2001:DB8::1]:6514").expect("ipv6");
        assert_eq!((url.host.as_str(), url.canonical().as_str()), ("2001:db8::1", "tls://[2001:db8::1]:6514"));
    }

    #[test]
    fn bad_collector_urls_are_refused_without_repeating_them() {
        for text in [
            "udp://siem:514",
            "http://siem:514",
            "siem:514",
            "tcp://siem",
            "tcp://siem:",
            "tcp://siem:0",
            "tcp://siem:65536",
            "tcp://:514",
            "tcp://siem:514/path",
            "tcp://user:hunter2@siem:514",
            "tcp://2001:db8::1:514",
            "tcp://[2001:db8::1:514",
            "tcp://[not-v6]:514",
            "tcp://si em:514",
        ] {
            let reason = parse_url(text).expect_err(text);
            assert!(!reason.contains(text) && !reason.contains("hunter2"), "{text}: {reason}");
        }
        assert!(parse_url("tcp://siem").expect_err("no port").contains("port"));
        assert!(parse_url("udp://siem:514").expect_err("scheme").contains("scheme"));
    }

    #[test]
    fn tls_needs_a_ca_file_and_the_tls_keys_need_tls() {
        let ca = Some(Path::new("/etc/rampart/siem-ca.pem"));
        let target = target_from_config(Some("tls://siem.example.com:6514"), ca, None).expect("valid").expect("some");
        let tls = target.tls.expect("tls");
        assert_eq!(tls.server_name, ServerName::try_from("siem.example.com").expect("name"));
        let target = target_from_config(Some("tls://192.0.2.7:6514"), ca, Some("siem.example.com")).expect("valid");
        assert_eq!(target.and_then(|t| t.tls).map(|t| t.server_name), ServerName::try_from("siem.example.com").ok());
        assert_eq!(target_from_config(None, None, None).expect("off"), None);
        assert_eq!(target_from_config(Some("tcp://siem:514"), None, None).expect("tcp").expect("some").tls, None);

        let key = |f, c, s| target_from_config(f, c, s).expect_err("refused").key;
        assert_eq!(key(Some("tls://siem:6514"), None, None), "audit.forward_ca_file");
        assert_eq!(key(Some("tls://siem:6514"), Some(Path::new("ca.pem")), None), "audit.forward_ca_file");
        assert_eq!(key(Some("tcp://siem:514"), ca, None), "audit.forward_ca_file");
        assert_eq!(key(Some("tcp://siem:514"), None, Some("siem")), "audit.forward_server_name");
        assert_eq!(key(None, ca, None), "audit.forward_ca_file");
        assert_eq!(key(Some("tls://siem:6514"), ca, Some("not a name!")), "audit.forward_server_name");
        assert_eq!(key(Some("tcp//siem"), None, None), "audit.forward");
    }

    #[test]
    fn the_forward_keys_are_read_from_the_audit_section() {
        let parse = |text: &str| toml::from_str::<crate::config::RawConfig>(text).expect("toml").validate();
        let config = parse("[audit]\nforward = \"tcp://127.0.0.1:514\"").expect("valid");
        assert_eq!(config.audit_forward.map(|t| t.url).as_deref(), Some("tcp://127.0.0.1:514"));
        assert_eq!(parse("").expect("valid").audit_forward, None);
        assert_eq!(parse("[audit]\nforward = \"udp://127.0.0.1:514\"").expect_err("udp").key, "audit.forward");
        let text = "[audit]\nforward = \"tls://siem:6514\"\nforward_server_name = \"siem\"";
        assert_eq!(parse(text).expect_err("no CA").key, "audit.forward_ca_file");
    }
}
