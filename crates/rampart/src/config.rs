//! Configuration, parsed in two stages: `RawConfig` is what `rampart.toml` and the flags say (every
//! key optional, unknown keys refused), `Config` is the validated result every other module takes.
//! A bad value names its key and says why; nothing downstream re-checks. Keys that can carry a secret
//! are read through `secrets` and checked before anything else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rampart_core::limits;
use rampart_core::throttle::ThrottlePolicy;
use rampart_crypto::PasswordParams;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::secrets::{self, EnvLookup, SecretValue, UserInfo};

/// A configuration problem: the key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

pub(crate) fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_owned(), reason: reason.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    /// This node's name in logs and metrics; default: host name and listening port.
    pub node_id: Option<String>,
    pub public_origin: Option<String>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub password_hash: RawPasswordHash,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub messages: RawMessages,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub alerts: crate::config_alerts::RawAlerts,
    #[serde(default)]
    pub websocket: RawWebsocket,
    #[serde(default)]
    pub encryption: RawEncryption,
    #[serde(default)]
    pub search: RawSearch,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub files: crate::config_files::RawFiles,
    #[serde(default)]
    pub database: crate::config_database::RawDatabase,
    #[serde(default)]
    pub proxy: crate::config_cluster::RawProxy,
    #[serde(default)]
    pub cluster: crate::config_cluster::RawCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub allow: Option<Vec<String>>,
}

/// Who may scrape `/metrics` on the admin listener: peers whose address is in one of these nets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub allow: Vec<ipnet::IpNet>,
}

/// The default scrapers: this host only.
const METRICS_ALLOW_DEFAULT: [&str; 2] = ["127.0.0.1/32", "::1/128"];
/// Most entries in `metrics.allow`.
const METRICS_ALLOW_NETS_MAX: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    pub epoch_messages_max: Option<u64>,
    pub epoch_days_max: Option<u32>,
}

/// Encryption at rest: when a channel's data key is replaced by a new epoch, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct EncryptionConfig {
    pub epoch_messages_max: u64,
    pub epoch_days_max: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub checkpoint_every_records: Option<u64>,
    pub checkpoint_interval_secs: Option<u64>,
    pub checkpoint_file: Option<PathBuf>,
    /// A SIEM collector: `tcp://host:port` or `tls://host:port`.
    pub forward: Option<String>,
    pub forward_ca_file: Option<PathBuf>,
    pub forward_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessages {
    pub send_rate_per_sec: Option<u32>,
    pub send_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebsocket {
    pub queue_len_max: Option<usize>,
    pub frame_bytes_max: Option<usize>,
    pub ping_interval_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub read_buffer_bytes: Option<usize>,
    pub write_buffer_bytes: Option<usize>,
}

/// Limits of live WebSocket connections.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    pub queue_len_max: usize,
    pub frame_bytes_max: usize,
    pub auth_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    /// Bytes a connection may have waiting in its write buffer before the write fails.
    pub max_write_buffer_bytes: usize,
}

/// WebSocket read and write buffer defaults: small, because most connections are idle most of
/// the time (the library's own defaults cost ~128 KiB each). The read buffer is held by every
/// connection for its whole life, and client frames are small (typing, resume); a larger frame
/// grows it for that frame only.
const WS_READ_BUFFER_BYTES: usize = 512;
const WS_WRITE_BUFFER_BYTES: usize = 4 * 1024;
const WS_MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub reload_poll_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub body_bytes_max: Option<usize>,
    pub header_bytes_max: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub tls_handshake_timeout_ms: Option<u64>,
    pub connections_per_ip_max: Option<u32>,
    pub connections_max: Option<u32>,
    pub shutdown_drain_ms: Option<u64>,
    pub ipv6_prefix_len: Option<u8>,
    pub unauthenticated_burst: Option<u32>,
    pub unauthenticated_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub idle_timeout_minutes: Option<i64>,
    pub lifetime_hours: Option<i64>,
    pub per_user_max: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub account_free_failures: Option<u32>,
    pub account_lock_failures: Option<u32>,
    pub ip_free_failures: Option<u32>,
    pub ip_lock_failures: Option<u32>,
    pub backoff_ms_base: Option<i64>,
    pub backoff_ms_max: Option<i64>,
    pub lock_minutes: Option<i64>,
    pub window_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswordHash {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub workers: Option<usize>,
    pub queue_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Limits of the HTTP edge.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    pub body_bytes_max: usize,
    pub header_bytes_max: usize,
    pub request_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub tls_handshake_timeout_ms: u64,
    pub connections_per_ip_max: u32,
    pub connections_max: u32,
    /// How long a stopping node drains open requests and WebSocket goodbyes before it exits.
    pub shutdown_drain_ms: u64,
    /// Per-address caps key an IPv6 client on this many leading bits (`connections_per_ip_max`,
    /// login throttles, the unauthenticated budget).
    pub ipv6_prefix_len: u8,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub key_dir: PathBuf,
    pub audit_dir: PathBuf,
    /// `None`: the public origin is `https://localhost:<bound port>`.
    pub public_origin: Option<String>,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub tls_reload_poll_ms: u64,
    pub limits: EdgeLimits,
    pub app: rampart_app::AppConfig,
    pub log_format: LogFormat,
    pub log_level: String,
    pub ws: WsLimits,
    pub encryption: EncryptionConfig,
    /// Whether messages are indexed for search (the blind index); off deletes the index.
    pub search_enabled: bool,
    pub metrics: MetricsConfig,
    /// Uploads: where clamd is, and how long one may take (the rest is in `app.files`).
    pub files: crate::config_files::FilesConfig,
    /// How often the audit chain's head is signed when records were added.
    pub audit_checkpoint_interval_secs: u64,
    /// The SIEM collector audit records are forwarded to, if any.
    pub audit_forward: Option<crate::forward::ForwardTarget>,
    /// Where security alerts are posted, if anywhere.
    pub webhook: Option<crate::config_alerts::WebhookConfig>,
    /// `None`: the embedded SQLite store in `data_dir`. Resolved from its reference at load; Debug
    /// prints `[redacted]`.
    // The store is opened from `database`, parsed from this URL; kept as resolved for tests.
    #[allow(dead_code)]
    pub database_url: Option<SecretValue>,
    /// Warnings found while loading (such as a secret read from the environment), for `serve` to log
    /// once logging has started. They never hold a secret.
    pub warnings: Vec<String>,
    /// The store `database_url` names (SQLite when none), with the `[database]` settings.
    pub database: crate::config_database::DatabaseConfig,
    /// Trusted load balancers, and how they pass on the client's address.
    pub proxy: crate::proxy::ProxyConfig,
    pub node_id: crate::node::NodeId,
    /// Set when `nats_url` is: this node is one of a cluster sharing PostgreSQL and NATS.
    pub cluster: Option<crate::config_cluster::ClusterConfig>,
}

/// Reads `path` as TOML into a `RawConfig`.
pub fn read_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("--config", format!("cannot read {}: {}", path.display(), e.kind())))?;
    // toml's message names the key and line; it never holds more of the file than that line.
    toml::from_str(&text).map_err(|e| bad("rampart.toml", e.message().to_owned()))
}

fn addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| bad(key, format!("`{text}` is not an address:port such as 127.0.0.1:8443")))
}

/// A numeric key: its value or the default, refused outside `min..=max` (naming the key).
pub(crate) fn ranged<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return Err(bad(key, format!("must be between {min} and {max} (got {value})")));
    }
    Ok(value)
}

fn origin(text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").ok_or_else(|| bad("public_origin", "must start with https://"))?;
    let plain = !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return Err(bad("public_origin", "must be https://host or https://host:port, with no path"));
    }
    Ok(trimmed.to_ascii_lowercase())
}

impl RawConfig {
    /// Validates every key; the first bad one is reported. Secret references are resolved now.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.validate_with_env(&|name: &str| std::env::var_os(name))
    }

    /// `validate`, with environment variables (`env:` references, `$CREDENTIALS_DIRECTORY`) looked
    /// up through `env`.
    fn validate_with_env(self, env: EnvLookup) -> Result<Config, ConfigError> {
        let (database_url, nats_url, warnings) = stores(self.database_url.as_deref(), self.nats_url.as_deref(), env)?;
        let (database, database_warnings) = self.database.validate(database_url.as_ref(), env)?;
        let cluster = self.cluster.validate(nats_url, &database)?;
        let listen = addr("listen", self.listen.as_deref().unwrap_or("127.0.0.1:8443"))?;
        let http_listen = self.http_listen.as_deref().map(|a| addr("http_listen", a)).transpose()?;
        let admin_listen = self.admin_listen.as_deref().map(|a| addr("admin_listen", a)).transpose()?;
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./rampart-data"));
        let key_dir = self.key_dir.unwrap_or_else(|| PathBuf::from("./rampart-keys"));
        let audit_dir = self.audit_dir.unwrap_or_else(|| PathBuf::from("./rampart-audit"));
        if data_dir == key_dir {
            return Err(bad("key_dir", "must not be the same directory as data_dir: keys are kept apart from data"));
        }
        if data_dir == audit_dir {
            return Err(bad("audit_dir", "must not be the same directory as data_dir"));
        }
        let public_origin = self.public_origin.as_deref().map(origin).transpose()?;
        let tls_files = match (self.tls.cert_file, self.tls.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(bad("tls", "set both cert_file and key_file, or neither (for a development certificate)")),
        };
        let tls_reload_poll_ms =
            ranged("tls.reload_poll_ms", self.tls.reload_poll_ms, limits::TLS_RELOAD_POLL_MS, 100, 3_600_000)?;
        let l = self.limits;
        let limits = EdgeLimits {
            body_bytes_max: ranged(
                "limits.body_bytes_max",
                l.body_bytes_max,
                limits::HTTP_BODY_BYTES_MAX,
                1024,
                16 << 20,
            )?,
            header_bytes_max: ranged(
                "limits.header_bytes_max",
                l.header_bytes_max,
                limits::HTTP_HEADER_BYTES_MAX,
                8192,
                1 << 20,
            )?,
            request_timeout_ms: ranged(
                "limits.request_timeout_ms",
                l.request_timeout_ms,
                limits::HTTP_REQUEST_TIMEOUT_MS,
                100,
                600_000,
            )?,
            idle_timeout_ms: ranged(
                "limits.idle_timeout_ms",
                l.idle_timeout_ms,
                limits::HTTP_IDLE_TIMEOUT_MS,
                100,
                3_600_000,
            )?,
            tls_handshake_timeout_ms: ranged(
                "limits.tls_handshake_timeout_ms",
                l.tls_handshake_timeout_ms,
                limits::TLS_HANDSHAKE_TIMEOUT_MS,
                100,
                120_000,
            )?,
            connections_per_ip_max: ranged(
                "limits.connections_per_ip_max",
                l.connections_per_ip_max,
                limits::CONNECTIONS_PER_IP_MAX,
                1,
                1_000_000,
            )?,
            connections_max: ranged(
                "limits.connections_max",
                l.connections_max,
                limits::CONNECTIONS_MAX,
                1,
                10_000_000,
            )?,
            shutdown_drain_ms: ranged(
                "limits.shutdown_drain_ms",
                l.shutdown_drain_ms,
                limits::SHUTDOWN_DRAIN_MS,
                100,
                600_000,
            )?,
            ipv6_prefix_len: ranged("limits.ipv6_prefix_len", l.ipv6_prefix_len, limits::IPV6_PREFIX_LEN, 32, 128)?,
        };
        let mut app = app_config(self.sessions, self.login, self.password_hash)?;
        app.ipv6_prefix_len = limits.ipv6_prefix_len;
        app.unauthenticated_burst = ranged(
            "limits.unauthenticated_burst",
            l.unauthenticated_burst,
            limits::UNAUTHENTICATED_BURST,
            1,
            1_000_000,
        )?;
        app.unauthenticated_per_minute = ranged(
            "limits.unauthenticated_per_minute",
            l.unauthenticated_per_minute,
            limits::UNAUTHENTICATED_PER_MINUTE,
            1,
            1_000_000,
        )?;
        app.send_rate_per_sec = ranged(
            "messages.send_rate_per_sec",
            self.messages.send_rate_per_sec,
            limits::SEND_RATE_PER_SEC,
            1,
            1_000_000,
        )?;
        app.send_burst = ranged("messages.send_burst", self.messages.send_burst, limits::SEND_BURST, 1, 1_000_000)?;
        let w = self.websocket;
        let ws = WsLimits {
            queue_len_max: ranged("websocket.queue_len_max", w.queue_len_max, limits::WS_QUEUE_LEN_MAX, 1, 1_000_000)?,
            frame_bytes_max: ranged(
                "websocket.frame_bytes_max",
                w.frame_bytes_max,
                limits::WS_FRAME_BYTES_MAX,
                1024,
                16 << 20,
            )?,
            auth_timeout_ms: limits::WS_AUTH_TIMEOUT_MS,
            ping_interval_ms: ranged(
                "websocket.ping_interval_ms",
                w.ping_interval_ms,
                limits::WS_PING_INTERVAL_MS,
                100,
                3_600_000,
            )?,
            idle_timeout_ms: ranged(
                "websocket.idle_timeout_ms",
                w.idle_timeout_ms,
                limits::WS_IDLE_TIMEOUT_MS,
                200,
                7_200_000,
            )?,
            read_buffer_bytes: ranged(
                "websocket.read_buffer_bytes",
                w.read_buffer_bytes,
                WS_READ_BUFFER_BYTES,
                512,
                1 << 20,
            )?,
            write_buffer_bytes: ranged(
                "websocket.write_buffer_bytes",
                w.write_buffer_bytes,
                WS_WRITE_BUFFER_BYTES,
                0,
                1 << 20,
            )?,
            max_write_buffer_bytes: WS_MAX_WRITE_BUFFER_BYTES,
        };
        if ws.idle_timeout_ms <= ws.ping_interval_ms {
            return Err(bad("websocket.idle_timeout_ms", "must be longer than websocket.ping_interval_ms"));
        }
        let log_format = match self.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("log.format", format!("must be \"text\" or \"json\" (got \"{other}\")"))),
        };
        let log_level = self.log.level.unwrap_or_else(|| "info".to_owned());
        if !matches!(log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(bad("log.level", "must be one of error, warn, info, debug, trace"));
        }
        app.audit.checkpoint_every_records = ranged(
            "audit.checkpoint_every_records",
            self.audit.checkpoint_every_records,
            limits::AUDIT_CHECKPOINT_RECORDS,
            1,
            1_000_000,
        )?;
        let audit_checkpoint_interval_secs = ranged(
            "audit.checkpoint_interval_secs",
            self.audit.checkpoint_interval_secs,
            limits::AUDIT_CHECKPOINT_INTERVAL_SECS,
            1,
            86_400,
        )?;
        if let Some(path) = &self.audit.checkpoint_file {
            if !path.is_absolute() {
                return Err(bad("audit.checkpoint_file", "must be an absolute path"));
            }
            if path.starts_with(&data_dir) {
                return Err(bad("audit.checkpoint_file", "must not be inside data_dir: it is a copy kept apart"));
            }
        }
        app.audit.checkpoint_file.clone_from(&self.audit.checkpoint_file);
        let audit_forward = crate::forward::target_from_config(
            self.audit.forward.as_deref(),
            self.audit.forward_ca_file.as_deref(),
            self.audit.forward_server_name.as_deref(),
        )?;
        let (detectors, webhook, alert_warnings) = self.alerts.validate(env)?;
        app.detectors = detectors;
        let mut warnings = warnings;
        warnings.extend(alert_warnings);
        let encryption = EncryptionConfig {
            epoch_messages_max: ranged(
                "encryption.epoch_messages_max",
                self.encryption.epoch_messages_max,
                limits::DEK_EPOCH_MESSAGES_MAX,
                1,
                100_000_000,
            )?,
            epoch_days_max: ranged(
                "encryption.epoch_days_max",
                self.encryption.epoch_days_max,
                limits::DEK_EPOCH_DAYS_MAX,
                1,
                3_650,
            )?,
        };
        let metrics = MetricsConfig { allow: metrics_allow(self.metrics.allow)? };
        let proxy = self.proxy.validate()?;
        let node_id = crate::config_cluster::node_id(self.node_id.as_deref(), listen)?;
        let (files, file_warnings) = self.files.validate()?;
        app.files = files.policy.clone();
        // A user's sends are limited across the cluster, not per node they happen to reach.
        app.send_limit_shared = cluster.is_some();
        warnings.extend(file_warnings);
        warnings.extend(database_warnings);
        Ok(Config {
            listen,
            http_listen,
            admin_listen,
            data_dir,
            key_dir,
            audit_dir,
            public_origin,
            tls_files,
            tls_reload_poll_ms,
            limits,
            app,
            log_format,
            log_level,
            ws,
            encryption,
            search_enabled: self.search.enabled.unwrap_or(true),
            metrics,
            files,
            audit_checkpoint_interval_secs,
            audit_forward,
            webhook,
            database_url,
            warnings,
            database,
            proxy,
            node_id,
            cluster,
        })
    }
}

/// The nets of `metrics.allow`: each `address/prefix` (a bare address is that one host), with no
/// host bits set past the prefix, which would hint at a typo.
fn metrics_allow(list: Option<Vec<String>>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    const KEY: &str = "metrics.allow";
    let list = list.unwrap_or_else(|| METRICS_ALLOW_DEFAULT.iter().map(|s| (*s).to_owned()).collect());
    if list.len() > METRICS_ALLOW_NETS_MAX {
        return Err(bad(KEY, format!("at most {METRICS_ALLOW_NETS_MAX} entries (got {})", list.len())));
    }
    list.iter().map(|text| parse_net(KEY, text)).collect()
}

pub(crate) fn parse_net(key: &str, text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(address) => ipnet::IpNet::from(address),
            Err(_) => {
                return Err(bad(key, format!("`{text}` is not a CIDR such as 127.0.0.1/32, 10.0.0.0/8 or ::1/128")))
            }
        },
    };
    if net.trunc() != net {
        return Err(bad(key, format!("`{text}` has bits set past its prefix; did you mean {}?", net.trunc())));
    }
    Ok(net)
}

/// The keys that can carry a secret (a password in a database or NATS URL), checked before any other
/// so that a password written in the file is the error an admin sees first; then the refusals of what
/// this build lacks. Returns the database and NATS URLs and the warnings to log.
type StoreUrls = (Option<SecretValue>, Option<SecretValue>, Vec<String>);

fn stores(database_url: Option<&str>, nats_url: Option<&str>, env: EnvLookup) -> Result<StoreUrls, ConfigError> {
    let database_url =
        database_url.map(|text| secrets::secret_url("database_url", text, UserInfo::NameOnly, env)).transpose()?;
    let nats_url = nats_url.map(|text| secrets::secret_url("nats_url", text, UserInfo::Secret, env)).transpose()?;
    let warnings = [&database_url, &nats_url].into_iter().flatten().filter_map(|r| r.warning.clone()).collect();
    let database_url = database_url.map(|resolved| resolved.value);
    if let Some(url) = &database_url {
        let url = url.expose_secret();
        let known = ["sqlite:", "postgres://", "postgresql://"].iter().any(|scheme| url.starts_with(scheme));
        if !known {
            return Err(bad("database_url", "must name SQLite (sqlite:) or PostgreSQL (postgres://, postgresql://)"));
        }
    }
    let nats_url = nats_url.map(|resolved| resolved.value);
    if let Some(url) = &nats_url {
        let url = url.expose_secret();
        if !["nats://", "tls://"].iter().any(|scheme| url.starts_with(scheme)) {
            return Err(bad("nats_url", "must be nats://host:port, or tls://host:port for NATS over TLS"));
        }
    }
    Ok((database_url, nats_url, warnings))
}

fn app_config(s: RawSessions, l: RawLogin, p: RawPasswordHash) -> Result<rampart_app::AppConfig, ConfigError> {
    let mut app = rampart_app::AppConfig::default();
    let minute_ms = 60_000_i64;
    app.sessions.idle_timeout_ms = ranged(
        "sessions.idle_timeout_minutes",
        s.idle_timeout_minutes,
        limits::SESSION_IDLE_TIMEOUT_MS / minute_ms,
        1,
        525_600,
    )? * minute_ms;
    app.sessions.lifetime_ms =
        ranged("sessions.lifetime_hours", s.lifetime_hours, limits::SESSION_LIFETIME_MS / 3_600_000, 1, 8_760)?
            * 3_600_000;
    app.sessions.per_user_max =
        ranged("sessions.per_user_max", s.per_user_max, limits::SESSIONS_PER_USER_MAX, 1, 10_000)?;
    let account = ThrottlePolicy {
        free_failures: ranged(
            "login.account_free_failures",
            l.account_free_failures,
            limits::LOGIN_ACCOUNT_FREE_FAILURES,
            0,
            1_000,
        )?,
        lock_failures: ranged(
            "login.account_lock_failures",
            l.account_lock_failures,
            limits::LOGIN_ACCOUNT_LOCK_FAILURES,
            1,
            100_000,
        )?,
        backoff_ms_base: ranged(
            "login.backoff_ms_base",
            l.backoff_ms_base,
            limits::LOGIN_BACKOFF_MS_BASE,
            1,
            3_600_000,
        )?,
        backoff_ms_max: ranged("login.backoff_ms_max", l.backoff_ms_max, limits::LOGIN_BACKOFF_MS_MAX, 1, 86_400_000)?,
        lock_ms: ranged("login.lock_minutes", l.lock_minutes, limits::LOGIN_LOCK_MS / minute_ms, 1, 10_080)?
            * minute_ms,
        window_ms: ranged(
            "login.window_minutes",
            l.window_minutes,
            limits::LOGIN_FAILURE_WINDOW_MS / minute_ms,
            1,
            10_080,
        )? * minute_ms,
    };
    let ip = ThrottlePolicy {
        free_failures: ranged(
            "login.ip_free_failures",
            l.ip_free_failures,
            limits::LOGIN_IP_FREE_FAILURES,
            0,
            100_000,
        )?,
        lock_failures: ranged(
            "login.ip_lock_failures",
            l.ip_lock_failures,
            limits::LOGIN_IP_LOCK_FAILURES,
            1,
            1_000_000,
        )?,
        ..account
    };
    if account.lock_failures <= account.free_failures || ip.lock_failures <= ip.free_failures {
        return Err(bad("login", "lock_failures must be greater than free_failures"));
    }
    app.account_throttle = account;
    app.ip_throttle = ip;
    app.password_params = PasswordParams {
        memory_kib: ranged(
            "password_hash.memory_kib",
            p.memory_kib,
            limits::ARGON2_MEMORY_KIB,
            limits::ARGON2_MEMORY_KIB,
            4 << 20,
        )?,
        iterations: ranged(
            "password_hash.iterations",
            p.iterations,
            limits::ARGON2_ITERATIONS,
            limits::ARGON2_ITERATIONS,
            100,
        )?,
        parallelism: limits::ARGON2_PARALLELISM,
    };
    app.hash_workers = ranged("password_hash.workers", p.workers, app.hash_workers, 1, 256)?;
    app.hash_queue_max = ranged("password_hash.queue_max", p.queue_max, limits::PASSWORD_HASH_QUEUE_MAX, 0, 100_000)?;
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str::<RawConfig>(text).map_err(|e| bad("toml", e.to_string()))?.validate()
    }

    #[test]
    fn defaults_validate() {
        let config = parse("").expect("defaults");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.limits.body_bytes_max, limits::HTTP_BODY_BYTES_MAX);
    }

    #[test]
    fn the_example_config_validates() {
        let text = include_str!("../../../rampart.example.toml");
        parse(text).expect("the example config must be valid");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error = parse("[limits]\nbody_bytes_max = 1").expect_err("too small");
        assert_eq!(error.key, "limits.body_bytes_max");
        let error = parse("public_origin = \"http://chat.example.com\"").expect_err("not https");
        assert_eq!(error.key, "public_origin");
        let error = parse("[password_hash]\nmemory_kib = 1024").expect_err("below the floor");
        assert_eq!(error.key, "password_hash.memory_kib");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<RawConfig>("lisen = \"127.0.0.1:1\"").is_err());
        assert!(toml::from_str::<RawConfig>("[limits]\nbody_max = 1").is_err());
    }

    #[test]
    fn keys_and_data_must_live_apart() {
        let error = parse("data_dir = \"/x\"\nkey_dir = \"/x\"").expect_err("same dir");
        assert_eq!(error.key, "key_dir");
    }
    const PASSWORD: &str = "hunter2-correct-horse";

    fn private_file(dir: &Path, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("database-url");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    #[test]
    fn a_literal_password_in_database_url_is_refused_with_the_fix() {
        // The [limits] value is bad too: the written password is the error reported.
        let text = format!("database_url = \"postgres://rampart:{PASSWORD}@db/rampart\"\n[limits]\nbody_bytes_max = 1");
        let error = parse(&text).expect_err("a literal password");
        assert_eq!(error.key, "database_url");
        assert!(error.reason.contains("database_url = \"file:/etc/rampart/database-url\""), "{error}");
        assert!(error.reason.contains("database_url = \"credential:database-url\""), "{error}");
        assert!(!error.to_string().contains(PASSWORD));
    }

    #[test]
    fn the_database_url_flag_is_checked_like_the_file() {
        // `--database-url` is laid over the raw config before validation, as here.
        let raw = RawConfig {
            database_url: Some(format!("postgres://db/rampart?password={PASSWORD}")),
            ..RawConfig::default()
        };
        let error = raw.validate().expect_err("a literal password");
        assert_eq!(error.key, "database_url");
        assert!(error.reason.contains("file:"), "{error}");
    }

    #[test]
    fn a_database_url_file_reference_passes_the_secret_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = private_file(dir.path(), &format!("postgres://rampart:{PASSWORD}@db/rampart\n"));
        let config = parse(&format!("database_url = \"file:{}\"", path.display())).expect("PostgreSQL");
        assert!(matches!(config.database, crate::config_database::DatabaseConfig::Postgres(_)));
        assert!(!format!("{config:?}").contains(PASSWORD));

        let url = format!("sqlite:/var/lib/rampart/{PASSWORD}.db");
        let path = private_file(dir.path(), &format!("{url}\n"));
        let config = parse(&format!("database_url = \"file:{}\"", path.display())).expect("a SQLite URL");
        assert_eq!(config.database_url.as_ref().map(|u| u.expose_secret()), Some(url.as_str()));
        assert!(config.warnings.is_empty());
        assert!(!format!("{config:?}").contains(PASSWORD));
    }

    #[test]
    fn an_env_database_url_works_with_a_warning() {
        let raw: RawConfig = toml::from_str("database_url = \"env:RAMPART_DATABASE_URL\"").expect("toml");
        let url = format!("sqlite:/var/lib/rampart/{PASSWORD}.db");
        let env = |name: &str| (name == "RAMPART_DATABASE_URL").then(|| std::ffi::OsString::from(&url));
        let config = raw.validate_with_env(&env).expect("valid");
        assert_eq!(config.database_url.as_ref().map(|u| u.expose_secret()), Some(url.as_str()));
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("environment variable RAMPART_DATABASE_URL"), "{:?}", config.warnings);
        assert!(!config.warnings[0].contains(PASSWORD));
    }

    #[test]
    fn a_nats_token_is_refused_before_the_missing_feature() {
        let error = parse(&format!("nats_url = \"nats://{PASSWORD}@nats:4222\"")).expect_err("a literal token");
        assert_eq!(error.key, "nats_url");
        assert!(error.reason.contains("nats_url = \"credential:nats-url\""), "{error}");
        assert!(!error.to_string().contains(PASSWORD));
        let error = parse("nats_url = \"nats://nats:4222\"").expect_err("a cluster on SQLite");
        assert!(error.reason.contains("PostgreSQL"), "{error}");
        let config = parse("database_url = \"postgres://rampart@db/rampart\"\nnats_url = \"tls://nats:4222\"\n[cluster]\nnats_ca_file = \"/etc/ca.pem\"")
            .expect("a cluster node");
        let cluster = config.cluster.expect("clustered");
        assert_eq!(cluster.subject_prefix, "rampart");
        assert!(config.app.send_limit_shared, "a cluster shares the send limit");
        let error = parse("database_url = \"postgres://rampart@db/rampart\"\nnats_url = \"nats://nats:4222\"\n[cluster]\nnats_ca_file = \"/etc/ca.pem\"")
            .expect_err("a CA without TLS");
        assert_eq!(error.key, "cluster.nats_ca_file");
        assert_eq!(parse("nats_url = \"http://nats:4222\"").expect_err("scheme").key, "nats_url");
    }

    #[test]
    fn the_encryption_section_has_defaults_and_bounds() {
        let config = parse("").expect("defaults");
        assert_eq!(config.encryption.epoch_messages_max, limits::DEK_EPOCH_MESSAGES_MAX);
        assert_eq!(config.encryption.epoch_days_max, limits::DEK_EPOCH_DAYS_MAX);
        let config = parse("[encryption]\nepoch_messages_max = 500\nepoch_days_max = 7").expect("in range");
        assert_eq!((config.encryption.epoch_messages_max, config.encryption.epoch_days_max), (500, 7));
        for (text, key) in [
            ("epoch_messages_max = 0", "encryption.epoch_messages_max"),
            ("epoch_messages_max = 100000001", "encryption.epoch_messages_max"),
            ("epoch_days_max = 0", "encryption.epoch_days_max"),
            ("epoch_days_max = 3651", "encryption.epoch_days_max"),
        ] {
            assert_eq!(parse(&format!("[encryption]\n{text}")).expect_err(text).key, key);
        }
        assert!(toml::from_str::<RawConfig>("[encryption]\nepoch_max = 1").is_err());
    }

    #[test]
    fn metrics_allow_defaults_to_loopback_and_parses_cidrs() {
        let config = parse("").expect("defaults");
        let shown: Vec<String> = config.metrics.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "::1/128"]);
        let config =
            parse("[metrics]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\", \"fe80::1\"]").expect("valid");
        let shown: Vec<String> = config.metrics.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "fe80::1/128"]);
        assert!(parse("[metrics]\nallow = []").expect("nobody").metrics.allow.is_empty());
    }

    #[test]
    fn a_bad_metrics_cidr_names_its_key() {
        for bad_net in ["10.0.0.0/33", "::1/129", "localhost", "10.0.0/8", "10.0.0.1/8", "", "10.0.0.0/"] {
            let error = parse(&format!("[metrics]\nallow = [\"{bad_net}\"]")).expect_err(bad_net);
            assert_eq!(error.key, "metrics.allow", "{bad_net}");
        }
        let error = parse("[metrics]\nallow = [\"10.1.2.3/8\"]").expect_err("host bits");
        assert!(error.reason.contains("10.0.0.0/8"), "{error}");
        let many: Vec<String> =
            (0..=METRICS_ALLOW_NETS_MAX).map(|n| format!("\"10.0.{}.{}/32\"", n / 256, n % 256)).collect();
        let error = parse(&format!("[metrics]\nallow = [{}]", many.join(", "))).expect_err("too many");
        assert_eq!(error.key, "metrics.allow");
        assert!(toml::from_str::<RawConfig>("[metrics]\nallowed = []").is_err());
    }
}
