//! Trusted proxies: where the client IP comes from when Rampart runs behind a load balancer. Only a
//! TCP peer inside `proxy.trusted` is believed, through one of two protocols: a PROXY protocol v2
//! header before the TLS handshake (parsed by the `ppp` crate), or `X-Forwarded-For` (the right-most
//! address that is not itself a trusted proxy). From anyone else a PROXY header is never parsed
//! (the bytes fail the TLS handshake) and `X-Forwarded-For` is ignored: the client IP is the peer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How a trusted proxy tells us the client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// A PROXY protocol v2 header at the start of each connection (HAProxy `send-proxy-v2`), so
    /// TLS can pass through the proxy to the node.
    ProxyV2,
    /// The `X-Forwarded-For` request header of a proxy that ends TLS itself and re-encrypts.
    ForwardedFor,
}

/// The validated `[proxy]` section. With no trusted net, every client IP is its TCP peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    pub trusted: Vec<IpNet>,
    pub protocol: ProxyProtocol,
    /// The largest PROXY v2 header, and the most bytes of `X-Forwarded-For` values, accepted.
    pub header_bytes_max: usize,
}

impl ProxyConfig {
    /// No trusted proxy: every client IP is the socket's peer (what an empty `[proxy]` gives).
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            trusted: Vec::new(),
            protocol: ProxyProtocol::ProxyV2,
            header_bytes_max: rampart_core::limits::PROXY_HEADER_BYTES_MAX,
        }
    }

    /// Whether `ip` is a configured proxy. An IPv4 peer seen as IPv6 (`::ffff:a.b.c.d`) is
    /// matched as IPv4.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether connections from `peer` must begin with a PROXY v2 header.
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        self.protocol == ProxyProtocol::ProxyV2 && self.trusts(peer)
    }

    /// The client IP of a request that arrived from `peer` on a connection whose client is
    /// `connection_client` (the peer itself, or the source a PROXY v2 header named).
    pub fn request_client(
        &self,
        peer: IpAddr,
        connection_client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<IpAddr, ForwardedForError> {
        if self.protocol == ProxyProtocol::ForwardedFor && self.trusts(peer) {
            return self.forwarded_client(peer, headers);
        }
        Ok(connection_client.to_canonical())
    }

    /// The right-most `X-Forwarded-For` address that is not a trusted proxy: every hop to its right
    /// was added by a proxy we trust, and what lies to its left was written by the client and
    /// proves nothing. With no header the client is the peer; when every hop is trusted, the
    /// left-most one; an entry that is not an address ends the walk at the last trusted hop.
    fn forwarded_client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, ForwardedForError> {
        let values: Vec<&[u8]> = headers.get_all(FORWARDED_FOR).iter().map(|value| value.as_bytes()).collect();
        let bytes: usize = values.iter().map(|value| value.len()).sum();
        if bytes > self.header_bytes_max {
            return Err(ForwardedForError::TooLong { bytes, max: self.header_bytes_max });
        }
        let mut client = peer.to_canonical();
        // Header lines in order, entries in order within each: the last entry is the nearest hop.
        let entries = values.iter().rev().flat_map(|value| value.rsplit(|byte| *byte == b','));
        for entry in entries {
            let Some(address) = parse_hop(entry) else { break };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        Ok(client)
    }
}

/// The request header a re-encrypting proxy adds.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address (brackets allowed), surrounding spaces
/// ignored. Ports and obfuscated identifiers are not addresses.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let text = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(text);
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// An `X-Forwarded-For` a trusted proxy sent that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardedForError {
    #[error("X-Forwarded-For is {bytes} bytes, over the limit of {max} (proxy.header_bytes_max)")]
    TooLong { bytes: usize, max: usize },
}

/// The client address a connection's PROXY v2 header named, kept with each of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionClient(pub IpAddr);

/// Why a trusted proxy's connection was closed before TLS.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no complete PROXY protocol v2 header within {0} ms")]
    Timeout(u64),
    #[error("the connection ended before a complete PROXY protocol v2 header")]
    Closed,
    #[error("the connection does not start with the PROXY protocol v2 signature")]
    NotProxyV2,
    #[error("a PROXY protocol v2 header of {bytes} bytes is over the limit of {max} (proxy.header_bytes_max)")]
    TooLong { bytes: usize, max: usize },
    #[error("malformed PROXY protocol v2 header: {0}")]
    Malformed(String),
}

/// The fixed part of a v2 header: the 12-byte signature, version and command, family and
/// protocol, and the 2-byte length of what follows.
const V2_FIXED_BYTES: usize = 16;

/// Reads exactly one PROXY protocol v2 header from the start of `stream` (nothing after it), within
/// `deadline`. Returns the client's address, or `None` for a `LOCAL` header (the proxy's own
/// health check) or an address family without IP addresses: then the peer is the client.
pub async fn read_proxy_v2<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
    header_bytes_max: usize,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    tokio::time::timeout(deadline, read_header_bytes(stream, header_bytes_max))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(deadline_ms))
        .and_then(|bytes| bytes)
        .and_then(|bytes| parse_proxy_v2(&bytes))
}

async fn read_header_bytes<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> Result<Vec<u8>, ProxyHeaderError> {
    let mut header = vec![0u8; V2_FIXED_BYTES];
    stream.read_exact(&mut header).await.map_err(|_| ProxyHeaderError::Closed)?;
    if header[..ppp::v2::PROTOCOL_PREFIX.len()] != ppp::v2::PROTOCOL_PREFIX[..] {
        return Err(ProxyHeaderError::NotProxyV2);
    }
    let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
    let bytes = V2_FIXED_BYTES + rest;
    if bytes > max {
        return Err(ProxyHeaderError::TooLong { bytes, max });
    }
    header.resize(bytes, 0);
    stream.read_exact(&mut header[V2_FIXED_BYTES..]).await.map_err(|_| ProxyHeaderError::Closed)?;
    Ok(header)
}

/// Parses a whole v2 header (and nothing after it) with `ppp`.
pub fn parse_proxy_v2(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|error| ProxyHeaderError::Malformed(error.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(ip) => Some(SocketAddr::new(IpAddr::V4(ip.source_address), ip.source_port)),
        Addresses::IPv6(ip) => Some(SocketAddr::new(IpAddr::V6(ip.source_address), ip.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(trusted: &[&str], protocol: ProxyProtocol) -> ProxyConfig {
        ProxyConfig {
            trusted: trusted.iter().map(|net| net.parse().expect("net")).collect(),
            protocol,
            header_bytes_max: 256,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    /// A v2 header: command 0x21 (PROXY) or 0x20 (LOCAL), TCP over IPv4, then `tail` bytes.
    fn v2_ipv4(command: u8, source: [u8; 4], port: u16) -> Vec<u8> {
        let mut bytes = ppp::v2::PROTOCOL_PREFIX.to_vec();
        bytes.extend([command, 0x11, 0, 12]);
        bytes.extend(source);
        bytes.extend([127, 0, 0, 1]);
        bytes.extend(port.to_be_bytes());
        bytes.extend(443u16.to_be_bytes());
        bytes
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_peer() {
        let proxies = config(&["10.0.0.0/8"], ProxyProtocol::ForwardedFor);
        let spoofed = headers(&["203.0.113.9"]);
        assert_eq!(proxies.request_client(ip("198.51.100.1"), ip("198.51.100.1"), &spoofed), Ok(ip("198.51.100.1")));
        assert_eq!(proxies.request_client(ip("10.1.2.3"), ip("10.1.2.3"), &spoofed), Ok(ip("203.0.113.9")));
        // Under PROXY v2, X-Forwarded-For is never read, even from a trusted peer.
        let v2 = config(&["10.0.0.0/8"], ProxyProtocol::ProxyV2);
        assert_eq!(v2.request_client(ip("10.1.2.3"), ip("192.0.2.5"), &spoofed), Ok(ip("192.0.2.5")));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = config(&["10.0.0.0/8", "192.0.2.0/24"], ProxyProtocol::ForwardedFor);
        let peer = ip("10.0.0.1");
        let cases = [
            // The client wrote a fake first hop; the proxies appended the real one and themselves.
            (vec!["1.1.1.1, 203.0.113.9, 192.0.2.4"], "203.0.113.9"),
            (vec!["1.1.1.1", "203.0.113.9", "192.0.2.4"], "203.0.113.9"),
            (vec!["  2001:db8::7 ,10.9.9.9"], "2001:db8::7"),
            (vec!["[2001:db8::7]"], "2001:db8::7"),
            (vec!["::ffff:203.0.113.9"], "203.0.113.9"),
            // Every hop trusted: the left-most.
            (vec!["192.0.2.4, 10.0.0.9"], "192.0.2.4"),
            // Garbage to the right of any real address: the walk stops at the last trusted hop.
            (vec!["203.0.113.9, unknown, 10.0.0.9"], "10.0.0.9"),
            (vec!["203.0.113.9:5000"], "10.0.0.1"),
            (vec![], "10.0.0.1"),
        ];
        for (values, expected) in cases {
            assert_eq!(proxies.request_client(peer, peer, &headers(&values)), Ok(ip(expected)), "{values:?}");
        }
    }

    #[test]
    fn an_oversized_forwarded_for_is_refused() {
        let proxies = config(&["10.0.0.0/8"], ProxyProtocol::ForwardedFor);
        let long = vec!["203.0.113.9"; 30].join(", ");
        let error = proxies.request_client(ip("10.0.0.1"), ip("10.0.0.1"), &headers(&[&long])).expect_err("too long");
        assert!(matches!(error, ForwardedForError::TooLong { max: 256, .. }), "{error}");
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_nets() {
        let proxies = config(&["127.0.0.1/32"], ProxyProtocol::ProxyV2);
        assert!(proxies.trusts(ip("::ffff:127.0.0.1")));
        assert!(!proxies.trusts(ip("127.0.0.2")));
        assert!(proxies.expects_proxy_header(ip("127.0.0.1")));
        assert!(!ProxyConfig::none().expects_proxy_header(ip("127.0.0.1")));
    }

    #[test]
    fn a_v2_header_names_the_client() {
        let header = v2_ipv4(0x21, [203, 0, 113, 9], 5555);
        assert_eq!(parse_proxy_v2(&header).expect("valid"), Some("203.0.113.9:5555".parse().expect("addr")));
        let mut v6 = ppp::v2::PROTOCOL_PREFIX.to_vec();
        v6.extend([0x21, 0x21, 0, 36]);
        v6.extend("2001:db8::9".parse::<std::net::Ipv6Addr>().expect("v6").octets());
        v6.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend([0, 80, 1, 187]);
        assert_eq!(parse_proxy_v2(&v6).expect("valid"), Some("[2001:db8::9]:80".parse().expect("addr")));
        // LOCAL: the proxy speaking for itself (a health check).
        assert_eq!(parse_proxy_v2(&v2_ipv4(0x20, [203, 0, 113, 9], 1)).expect("valid"), None);
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        let good = v2_ipv4(0x21, [203, 0, 113, 9], 5555);
        let mut bad_version = good.clone();
        bad_version[12] = 0x31;
        let mut bad_family = good.clone();
        bad_family[13] = 0x71;
        let mut short_addresses = good.clone();
        short_addresses[15] = 4;
        short_addresses.truncate(20);
        for (name, bytes) in [("version", bad_version), ("family", bad_family), ("short", short_addresses)] {
            assert!(matches!(parse_proxy_v2(&bytes), Err(ProxyHeaderError::Malformed(_))), "{name}");
        }
    }

    #[tokio::test]
    async fn reading_takes_exactly_the_header_and_bounds_it() {
        let mut bytes = v2_ipv4(0x21, [192, 0, 2, 1], 7);
        bytes.extend(b"\x16\x03\x01 the TLS client hello");
        let mut stream = &bytes[..];
        let client = read_proxy_v2(&mut stream, Duration::from_secs(1), 256).await.expect("header");
        assert_eq!(client, Some("192.0.2.1:7".parse().expect("addr")));
        assert_eq!(stream, b"\x16\x03\x01 the TLS client hello", "what follows the header is left for TLS");

        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 and more bytes".to_vec();
        let error = read_proxy_v2(&mut &tls_hello[..], Duration::from_secs(1), 256).await.expect_err("no header");
        assert!(matches!(error, ProxyHeaderError::NotProxyV2), "{error}");

        let mut huge = ppp::v2::PROTOCOL_PREFIX.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        let error = read_proxy_v2(&mut &huge[..], Duration::from_secs(1), 256).await.expect_err("too long");
        assert!(matches!(error, ProxyHeaderError::TooLong { bytes: 65551, max: 256 }), "{error}");

        let truncated = v2_ipv4(0x21, [192, 0, 2, 1], 7)[..20].to_vec();
        let error = read_proxy_v2(&mut &truncated[..], Duration::from_secs(1), 256).await.expect_err("cut");
        assert!(matches!(error, ProxyHeaderError::Closed), "{error}");
    }

    #[tokio::test]
    async fn a_silent_proxy_times_out() {
        let (mut client, _server) = tokio::io::duplex(64);
        let error = read_proxy_v2(&mut client, Duration::from_millis(50), 256).await.expect_err("silent");
        assert!(matches!(error, ProxyHeaderError::Timeout(50)), "{error}");
    }
}
