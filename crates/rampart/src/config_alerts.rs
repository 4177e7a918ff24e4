//! The `[alerts]` section of the config: the detectors' thresholds and the webhook that alerts
//! are posted to. The webhook's secret is accepted only as a reference (`file:`, `credential:`,
//! `env:`), never written in the file.

use std::path::PathBuf;

use rampart_core::detect::DetectorPolicy;
use rampart_core::limits;
use serde::Deserialize;

use crate::config::{bad, ranged, ConfigError};
use crate::secrets::{EnvLookup, SecretRef, SecretValue};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub window_secs: Option<u64>,
    pub ip_failures_max: Option<u32>,
    pub ip_accounts_max: Option<u32>,
    pub account_ips_max: Option<u32>,
    pub exports_max: Option<u32>,
    pub export_window_secs: Option<u64>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_ca_file: Option<PathBuf>,
}

/// Where alerts are posted, and the key that signs them.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: SecretValue,
    /// PEM CAs to trust for an https URL; the system's roots when absent.
    pub ca_file: Option<PathBuf>,
}

/// Whether `url` may carry alerts: https anywhere, plain http only to this host.
fn webhook_url_ok(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty();
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl RawAlerts {
    /// The detectors' policy, the webhook (if any), and warnings to log.
    pub fn validate(self, env: EnvLookup) -> Result<(DetectorPolicy, Option<WebhookConfig>, Vec<String>), ConfigError> {
        let window_secs = ranged("alerts.window_secs", self.window_secs, limits::DETECTOR_WINDOW_SECS, 10, 86_400)?;
        let export_window_secs = ranged(
            "alerts.export_window_secs",
            self.export_window_secs,
            limits::DETECTOR_EXPORT_WINDOW_SECS,
            10,
            604_800,
        )?;
        let policy = DetectorPolicy {
            window_ms: i64::try_from(window_secs * 1000).unwrap_or(i64::MAX),
            ip_failures_max: ranged(
                "alerts.ip_failures_max",
                self.ip_failures_max,
                limits::DETECTOR_IP_FAILURES_MAX,
                2,
                1_000_000,
            )?,
            ip_accounts_max: ranged(
                "alerts.ip_accounts_max",
                self.ip_accounts_max,
                limits::DETECTOR_IP_ACCOUNTS_MAX,
                2,
                1_000_000,
            )?,
            account_ips_max: ranged(
                "alerts.account_ips_max",
                self.account_ips_max,
                limits::DETECTOR_ACCOUNT_IPS_MAX,
                2,
                1_000_000,
            )?,
            exports_max: ranged("alerts.exports_max", self.exports_max, limits::DETECTOR_EXPORTS_MAX, 1, 1_000_000)?,
            export_window_ms: i64::try_from(export_window_secs * 1000).unwrap_or(i64::MAX),
        };
        let mut warnings = Vec::new();
        let webhook = match (self.webhook_url, self.webhook_secret) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("alerts.webhook_secret", "is set but alerts.webhook_url is not")),
            (Some(_), None) => {
                return Err(bad(
                    "alerts.webhook_secret",
                    "is required with alerts.webhook_url: alerts are signed (HMAC-SHA256)",
                ))
            }
            (Some(url), Some(secret)) => {
                if !webhook_url_ok(&url) {
                    return Err(bad("alerts.webhook_url", "must be an https:// URL (http:// only to this host)"));
                }
                let reference = SecretRef::parse("alerts.webhook_secret", &secret)?.ok_or_else(|| {
                    bad(
                        "alerts.webhook_secret",
                        "a secret must not be written in rampart.toml; put it in a file (mode 0600) and write \
                         webhook_secret = \"file:/etc/rampart/webhook-secret\", or use systemd's LoadCredential= and \
                         webhook_secret = \"credential:webhook-secret\"",
                    )
                })?;
                let resolved = reference.resolve("alerts.webhook_secret", env)?;
                warnings.extend(resolved.warning);
                Some(WebhookConfig { url, secret: resolved.value, ca_file: self.webhook_ca_file })
            }
        };
        Ok((policy, webhook, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<std::ffi::OsString> {
        None
    }

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        for ok in
            ["https://hooks.example.com/x", "http://127.0.0.1:9000/hook", "http://localhost/h", "http://[::1]:80/"]
        {
            assert!(webhook_url_ok(ok), "{ok}");
        }
        for refused in ["http://hooks.example.com/x", "ftp://x", "https://", "http://10.0.0.1/"] {
            assert!(!webhook_url_ok(refused), "{refused}");
        }
    }

    #[test]
    fn a_literal_webhook_secret_is_refused_with_the_fix() {
        let raw = RawAlerts {
            webhook_url: Some("https://hooks.example.com/x".to_owned()),
            webhook_secret: Some("s3cret-literal".to_owned()),
            ..RawAlerts::default()
        };
        let error = raw.validate(&no_env).expect_err("literal secret");
        assert_eq!(error.key, "alerts.webhook_secret");
        assert!(error.reason.contains("file:") && !error.reason.contains("s3cret-literal"), "{error}");
    }

    #[test]
    fn thresholds_default_and_are_bounded() {
        let (policy, webhook, _) = RawAlerts::default().validate(&no_env).expect("defaults");
        assert_eq!(policy, DetectorPolicy::default());
        assert!(webhook.is_none());
        let error =
            RawAlerts { ip_failures_max: Some(1), ..RawAlerts::default() }.validate(&no_env).expect_err("too low");
        assert_eq!(error.key, "alerts.ip_failures_max");
    }
}
