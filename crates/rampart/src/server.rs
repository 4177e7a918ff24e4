//! The listeners: accept TCP, read a trusted proxy's PROXY v2 header (`proxy.rs`), cap
//! connections per client IP and in all, finish the TLS handshake within a deadline, then serve
//! HTTP/1.1 or HTTP/2 (by ALPN) with bounded heads and idle timeouts. On shutdown the listener
//! stops accepting and open connections are drained, then cut.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rampart_core::limits;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::EdgeLimits;
use crate::prefixed::Prefixed;
use crate::proxy::{ConnectionClient, ProxyConfig};

/// Counts open connections per client network (an IPv4 address, an IPv6 prefix:
/// `throttle::client_network`) and in all.
#[derive(Debug)]
pub struct ConnectionLimiter {
    open: Mutex<OpenConnections>,
    per_ip_max: u32,
    total_max: u32,
    ipv6_prefix_len: u8,
}

#[derive(Debug, Default)]
struct OpenConnections {
    per_ip: HashMap<IpAddr, u32>,
    total: u32,
}

/// Holds one connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    /// `None`: a trusted proxy's connection, counted in the total only.
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new(per_ip_max: u32, total_max: u32, ipv6_prefix_len: u8) -> Arc<Self> {
        Arc::new(Self { open: Mutex::new(OpenConnections::default()), per_ip_max, total_max, ipv6_prefix_len })
    }

    /// A place for a connection from `ip`, or `None` when its network's cap or the total cap is
    /// reached.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = rampart_core::throttle::client_network(ip, self.ipv6_prefix_len);
        let mut open = self.open.lock().ok()?;
        let mine = open.per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_ip_max || open.total >= self.total_max {
            return None;
        }
        open.per_ip.insert(ip, mine + 1);
        open.total += 1;
        Some(ConnectionSlot { limiter: Arc::clone(self), ip: Some(ip) })
    }

    /// A place for a connection from a trusted proxy, which carries many clients: it counts in the
    /// total only. `None` when the total cap is reached.
    pub fn try_acquire_for_proxy(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().ok()?;
        if open.total >= self.total_max {
            return None;
        }
        open.total += 1;
        Some(ConnectionSlot { limiter: Arc::clone(self), ip: None })
    }

    pub fn open_connections(&self) -> u32 {
        self.open.lock().map(|open| open.total).unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limiter.open.lock() {
            open.total = open.total.saturating_sub(1);
            let Some(ip) = self.ip else { return };
            if let Some(count) = open.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Pause after an accept error (such as running out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;
/// HTTP/2 keep-alive pings find dead peers.
const HTTP2_PING_INTERVAL_MS: u64 = 20_000;

/// Runs the tasks hyper spawns (HTTP/2 streams) on tokio inside the span of the connection that
/// spawns them, so their log lines keep its fields (the node id).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanExecutor;

impl<F> hyper::rt::Executor<F> for SpanExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(tracing::Instrument::in_current_span(future));
    }
}

fn http_builder(limits: &EdgeLimits) -> auto::Builder<SpanExecutor> {
    let mut builder = auto::Builder::new(SpanExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also the idle keep-alive timeout: hyper starts it whenever it waits for a request head.
        .header_read_timeout(Duration::from_millis(limits.idle_timeout_ms))
        .max_buf_size(limits::HTTP_PARSER_HEAD_BYTES_MAX.max(limits.header_bytes_max))
        .max_headers(limits::HTTP_PARSER_HEADERS_COUNT_MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::HTTP2_STREAMS_PER_CONNECTION_MAX)
        .max_header_list_size(
            u32::try_from(limits::HTTP_PARSER_HEAD_BYTES_MAX.max(limits.header_bytes_max)).unwrap_or(u32::MAX),
        )
        .keep_alive_interval(Duration::from_millis(HTTP2_PING_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(HTTP2_PING_INTERVAL_MS));
    builder
}

/// What a listener serves and how.
#[derive(Clone)]
pub struct Listener {
    pub router: Router,
    /// `None`: plain HTTP (the redirect listener only).
    pub tls: Option<TlsAcceptor>,
    pub limits: EdgeLimits,
    pub connections: Arc<ConnectionLimiter>,
    /// Trusted proxies (the public listener only): whose PROXY v2 header is read, and whose
    /// connections count in the total cap only.
    pub proxy: Option<Arc<ProxyConfig>>,
}

impl Listener {
    /// Accepts until `shutdown` turns true, then drains open connections for at most
    /// `limits.shutdown_drain_ms`.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(http_builder(&self.limits));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.changed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            };
            let proxy = self.proxy.as_ref().filter(|proxy| proxy.trusts(peer.ip())).map(Arc::clone);
            let slot = match proxy {
                Some(_) => self.connections.try_acquire_for_proxy(),
                None => self.connections.try_acquire(peer.ip()),
            };
            let Some(slot) = slot else {
                let open = self.connections.open_connections();
                tracing::debug!(ip = %peer.ip(), open, "connection refused: connection cap reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let watcher = graceful.watcher();
            let this = self.clone();
            let builder = Arc::clone(&builder);
            let task = async move {
                let mut tcp = tcp;
                let (client, slot) = match proxy.filter(|proxy| proxy.expects_proxy_header(peer.ip())) {
                    Some(proxy) => match this.read_proxy_header(&mut tcp, peer, &proxy, slot).await {
                        Some(pair) => pair,
                        None => return,
                    },
                    None => (peer.ip(), slot),
                };
                // Every request carries the connection's place, so a connection that upgrades to a
                // WebSocket keeps counting against the caps after hyper lets go of it.
                let slot = Arc::new(slot);
                let service =
                    this.router.clone().map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request.extensions_mut().insert(ConnectionClient(client));
                        request.extensions_mut().insert(Arc::clone(&slot));
                        request
                    });
                let service = TowerToHyperService::new(service);
                let first_bytes = Duration::from_millis(this.limits.idle_timeout_ms);
                let result = match &this.tls {
                    Some(acceptor) => {
                        let deadline = Duration::from_millis(this.limits.tls_handshake_timeout_ms);
                        let stream = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, ip = %client, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(ip = %client, "TLS handshake timed out");
                                return;
                            }
                        };
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let Some(io) = first_read(stream, first_bytes).await else {
                            return;
                        };
                        let builder = if h2 {
                            builder.as_ref().clone().http2_only()
                        } else {
                            builder.as_ref().clone().http1_only()
                        };
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    None => {
                        let Some(io) = first_read(tcp, first_bytes).await else {
                            return;
                        };
                        let builder = builder.as_ref().clone().http1_only();
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
            };
            // Log lines of the connection keep the listener's span (the node id).
            tokio::spawn(tracing::Instrument::in_current_span(task));
        }
        drop(listener);
        let drain = Duration::from_millis(self.limits.shutdown_drain_ms);
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after the drain time; closing them");
        }
    }
}

impl Listener {
    /// Reads the PROXY v2 header a trusted proxy must send first, and moves the connection's place
    /// under the caps from the proxy to the client it names. `None`: the connection is closed (a
    /// missing or malformed header, logged with the reason; or the client's cap is reached).
    async fn read_proxy_header(
        &self,
        tcp: &mut tokio::net::TcpStream,
        peer: SocketAddr,
        proxy: &ProxyConfig,
        proxy_slot: ConnectionSlot,
    ) -> Option<(IpAddr, ConnectionSlot)> {
        let deadline = Duration::from_millis(self.limits.tls_handshake_timeout_ms);
        match crate::proxy::read_proxy_v2(tcp, deadline, proxy.header_bytes_max).await {
            Ok(Some(source)) => {
                let client = source.ip().to_canonical();
                let Some(slot) = self.connections.try_acquire(client) else {
                    let open = self.connections.open_connections();
                    tracing::debug!(ip = %client, open, "connection refused: connection cap reached");
                    return None;
                };
                drop(proxy_slot);
                Some((client, slot))
            }
            // LOCAL (the proxy's own health check) or no IP addresses: the proxy is the client.
            Ok(None) => Some((peer.ip(), proxy_slot)),
            Err(error) => {
                tracing::warn!(proxy = %peer.ip(), %error, "closing a trusted proxy's connection: no valid PROXY protocol v2 header");
                None
            }
        }
    }
}

/// Bytes read ahead to see that a client speaks at all.
const FIRST_READ_BYTES: usize = 1024;

/// Waits up to `deadline` for the client's first bytes; `None` when it sends none (or closes).
/// Hyper's own timers take over from there, so no connection idles unbounded before its first
/// request, whatever the protocol.
async fn first_read<S: AsyncRead + Unpin>(mut stream: S, deadline: Duration) -> Option<Prefixed<S>> {
    let mut buffer = vec![0u8; FIRST_READ_BYTES];
    match tokio::time::timeout(deadline, stream.read(&mut buffer)).await {
        Ok(Ok(n)) if n > 0 => {
            buffer.truncate(n);
            Some(Prefixed::new(buffer, stream))
        }
        _ => None,
    }
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({what}): {}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_per_ip_and_in_all_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(2, 3, 64);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = limiter.try_acquire(a).expect("first");
        let _second = limiter.try_acquire(a).expect("second");
        assert!(limiter.try_acquire(a).is_none(), "per-IP cap");
        let _third = limiter.try_acquire(b).expect("other ip");
        assert!(limiter.try_acquire(b).is_none(), "total cap");
        drop(first);
        let _reused = limiter.try_acquire(b).expect("a freed place is reused");
        assert_eq!(limiter.open_connections(), 3);
    }

    /// Issue 16 item 9: rotating through one /64 does not multiply the per-address cap; an
    /// IPv4-mapped address counts as its IPv4 address.
    #[test]
    fn the_per_address_cap_counts_an_ipv6_prefix_and_mapped_ipv4_as_one() {
        let limiter = ConnectionLimiter::new(2, 100, 64);
        let slots: Vec<_> =
            (1..=10).filter_map(|i| limiter.try_acquire(format!("2001:db8:5:6::{i:x}").parse().expect("ip"))).collect();
        assert_eq!(slots.len(), 2, "one /64 is one client");
        assert!(limiter.try_acquire("2001:db8:5:7::1".parse().expect("ip")).is_some(), "another /64");
        let _v4 = limiter.try_acquire("192.0.2.9".parse().expect("ip")).expect("v4");
        let _mapped = limiter.try_acquire("::ffff:192.0.2.9".parse().expect("ip")).expect("mapped");
        assert!(limiter.try_acquire("192.0.2.9".parse().expect("ip")).is_none(), "mapped counts as IPv4");
        drop(slots);
        assert!(limiter.try_acquire("2001:db8:5:6::ffff".parse().expect("ip")).is_some(), "freed on drop");
    }
}
