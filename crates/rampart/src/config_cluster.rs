//! The config of running as one node of several behind a load balancer: the `[proxy]` section
//! (which peers are trusted proxies, and how they pass on the client's address), `node_id`, and
//! the `[cluster]` section (the NATS bus the nodes share, with `nats_url`).

use std::net::SocketAddr;
use std::path::PathBuf;

use rampart_core::limits;
use serde::Deserialize;

use crate::config::{bad, parse_net, ranged, ConfigError};
use crate::config_database::DatabaseConfig;
use crate::node::{self, NodeId};
use crate::proxy::{ProxyConfig, ProxyProtocol};
use crate::secrets::SecretValue;
use secrecy::ExposeSecret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// The nodes of one deployment talk on `<prefix>.bus`; deployments sharing a NATS server use
    /// different prefixes.
    pub subject_prefix: Option<String>,
    /// The CA that signed a NATS server reached over TLS (`tls://`); default: the system's CAs.
    pub nats_ca_file: Option<PathBuf>,
}

/// A node of a cluster: the NATS server its nodes share (PostgreSQL is `database_url`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// May carry credentials (`nats://user:password@host`), so it is a secret.
    pub nats_url: SecretValue,
    pub nats_ca_file: Option<PathBuf>,
    pub subject_prefix: String,
}

/// The subject prefix when none is set.
const SUBJECT_PREFIX_DEFAULT: &str = "rampart";

impl RawCluster {
    pub fn validate(
        self,
        nats_url: Option<SecretValue>,
        database: &DatabaseConfig,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        let subject_prefix = self.subject_prefix.unwrap_or_else(|| SUBJECT_PREFIX_DEFAULT.to_owned());
        let token_ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
        if subject_prefix.len() > limits::CLUSTER_SUBJECT_PREFIX_CHARS_MAX || !subject_prefix.split('.').all(token_ok) {
            let shown: String = subject_prefix.chars().take(limits::CLUSTER_SUBJECT_PREFIX_CHARS_MAX).collect();
            return Err(bad(
                "cluster.subject_prefix",
                format!(
                    "`{shown}` is not a subject prefix: 1 to {} characters of dot-separated words of \
                     a-z, A-Z, 0-9, `_`, `-` (no wildcards)",
                    limits::CLUSTER_SUBJECT_PREFIX_CHARS_MAX
                ),
            ));
        }
        // Without nats_url this is a single node, and the section's (checked) settings are unused.
        let Some(nats_url) = nats_url else { return Ok(None) };
        if matches!(database, DatabaseConfig::Sqlite) {
            return Err(bad(
                "nats_url",
                "a cluster's nodes share one PostgreSQL database: set database_url to postgres://… \
                 (SQLite is one node's own file)",
            ));
        }
        if self.nats_ca_file.is_some() && !nats_url.expose_secret().starts_with("tls://") {
            return Err(bad("cluster.nats_ca_file", "a CA file needs NATS over TLS: nats_url = \"tls://host:port\""));
        }
        Ok(Some(ClusterConfig { nats_url, nats_ca_file: self.nats_ca_file, subject_prefix }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// CIDRs of the load balancers whose word on the client's address is believed.
    pub trusted: Option<Vec<String>>,
    /// `proxy-v2` or `x-forwarded-for`.
    pub protocol: Option<String>,
    pub header_bytes_max: Option<usize>,
}

impl RawProxy {
    pub fn validate(self) -> Result<ProxyConfig, ConfigError> {
        const KEY: &str = "proxy.trusted";
        let list = self.trusted.unwrap_or_default();
        if list.len() > limits::PROXY_TRUSTED_NETS_MAX {
            return Err(bad(KEY, format!("at most {} entries (got {})", limits::PROXY_TRUSTED_NETS_MAX, list.len())));
        }
        let trusted = list.iter().map(|text| parse_net(KEY, text)).collect::<Result<Vec<_>, _>>()?;
        if let Some(everyone) = trusted.iter().find(|net| net.prefix_len() == 0) {
            return Err(bad(KEY, format!("`{everyone}` would trust every address; list the load balancers' own")));
        }
        let protocol = match self.protocol.as_deref().unwrap_or("proxy-v2") {
            "proxy-v2" => ProxyProtocol::ProxyV2,
            "x-forwarded-for" => ProxyProtocol::ForwardedFor,
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(bad("proxy.protocol", format!("`{shown}` is not `proxy-v2` or `x-forwarded-for`")));
            }
        };
        let header_bytes_max =
            ranged("proxy.header_bytes_max", self.header_bytes_max, limits::PROXY_HEADER_BYTES_MAX, 232, 65_551)?;
        Ok(ProxyConfig { trusted, protocol, header_bytes_max })
    }
}

/// `node_id`, or the default made from the host name and the listening port.
pub fn node_id(text: Option<&str>, listen: SocketAddr) -> Result<NodeId, ConfigError> {
    match text {
        Some(text) => NodeId::parse(text).map_err(|reason| bad("node_id", reason)),
        None => Ok(NodeId::default_for(node::hostname().as_deref(), listen.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(text: &str) -> Result<ProxyConfig, ConfigError> {
        toml::from_str::<RawProxy>(text).map_err(|e| bad("toml", e.to_string()))?.validate()
    }

    #[test]
    fn the_default_trusts_no_one() {
        assert_eq!(proxy("").expect("default"), ProxyConfig::none());
    }

    #[test]
    fn trusted_nets_and_protocols_parse() {
        let config =
            proxy("trusted = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"fd00::/8\"]\nprotocol = \"x-forwarded-for\"")
                .expect("valid");
        assert_eq!(config.trusted.len(), 3);
        assert_eq!(config.protocol, ProxyProtocol::ForwardedFor);
        assert_eq!(proxy("trusted = [\"10.0.0.1\"]").expect("bare address").protocol, ProxyProtocol::ProxyV2);
    }

    #[test]
    fn bad_proxy_settings_name_their_key() {
        for (text, key) in [
            ("trusted = [\"10.0.0.0/33\"]", "proxy.trusted"),
            ("trusted = [\"10.1.0.0/8\"]", "proxy.trusted"),
            ("trusted = [\"0.0.0.0/0\"]", "proxy.trusted"),
            ("trusted = [\"::/0\"]", "proxy.trusted"),
            ("protocol = \"proxy-v1\"", "proxy.protocol"),
            ("header_bytes_max = 16", "proxy.header_bytes_max"),
        ] {
            assert_eq!(proxy(text).expect_err(text).key, key, "{text}");
        }
        assert!(toml::from_str::<RawProxy>("trust = []").is_err());
    }

    fn cluster(text: &str, url: Option<&str>, database: &DatabaseConfig) -> Result<Option<ClusterConfig>, ConfigError> {
        let url = url.map(|u| crate::secrets::secret_url("nats_url", u, crate::secrets::UserInfo::Secret, &|_| None));
        let url = url.transpose()?.map(|resolved| resolved.value);
        toml::from_str::<RawCluster>(text).map_err(|e| bad("toml", e.to_string()))?.validate(url, database)
    }

    #[test]
    fn a_cluster_needs_nats_and_postgres_and_a_plain_prefix() {
        let sqlite = DatabaseConfig::Sqlite;
        assert!(cluster("subject_prefix = \"chat.prod\"", None, &sqlite).expect("single node").is_none());
        assert_eq!(cluster("", Some("nats://n:4222"), &sqlite).expect_err("SQLite").key, "nats_url");
        for bad_prefix in ["a.>", "a.*", "a..b", "", "a b", &"a".repeat(65)] {
            let text = format!("subject_prefix = \"{bad_prefix}\"");
            assert_eq!(cluster(&text, None, &sqlite).expect_err(bad_prefix).key, "cluster.subject_prefix");
        }
    }

    #[test]
    fn node_id_is_validated_or_derived() {
        let listen: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        assert_eq!(node_id(Some("node-a"), listen).expect("valid").as_str(), "node-a");
        assert_eq!(node_id(Some("Node A"), listen).expect_err("invalid").key, "node_id");
        assert!(node_id(None, listen).expect("derived").as_str().ends_with("-8443"));
    }
}
