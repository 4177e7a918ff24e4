//! Posts security alerts to the configured webhook: JSON, signed with HMAC-SHA256 over
//! `"<timestamp>.<body>"` (header `X-Rampart-Signature: sha256=<hex>`, timestamp in
//! `X-Rampart-Timestamp`, so a receiver can refuse replays), retried with doubling back-off. An
//! alert that cannot be delivered is logged; its audit record stays either way.

use std::sync::Arc;
use std::time::Duration;

use rampart_app::AlertNotice;
use rampart_core::limits;
use rustls::pki_types::pem::PemObject;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config_alerts::WebhookConfig;
use crate::http::wire::rfc3339;

#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    seq: i64,
    kind: &'static str,
    subject: &'a str,
    at: String,
    details: &'a serde_json::Value,
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    let mac = rampart_crypto::mac::hmac_sha256(secret, &message);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn client(config: &WebhookConfig) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("alerts.webhook_ca_file {}: {e}", path.display()))?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| anyhow::anyhow!("alerts.webhook_ca_file: {e}"))?)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_millis(limits::WEBHOOK_TIMEOUT_MS))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Sends every notice from `notices` to the webhook, one at a time, in order.
pub fn spawn(config: WebhookConfig, mut notices: mpsc::Receiver<AlertNotice>) -> anyhow::Result<()> {
    let client = client(&config)?;
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            deliver(&client, &config, &notice).await;
        }
    });
    Ok(())
}

async fn deliver(client: &reqwest::Client, config: &WebhookConfig, notice: &AlertNotice) {
    let payload = Payload {
        event: "security.alert",
        seq: notice.seq,
        kind: notice.kind.as_str(),
        subject: &notice.subject,
        at: rfc3339(notice.at),
        details: &notice.details,
    };
    let Ok(body) = serde_json::to_vec(&payload) else {
        return;
    };
    let mut backoff_ms = limits::WEBHOOK_BACKOFF_MS_FIRST;
    for attempt in 1..=limits::WEBHOOK_ATTEMPTS_MAX {
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let sent = client
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header("X-Rampart-Event", "security.alert")
            .header("X-Rampart-Timestamp", timestamp.to_string())
            .header("X-Rampart-Signature", signature(config.secret.expose_secret().as_bytes(), timestamp, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::warn!(
                status = response.status().as_u16(),
                attempt,
                alert_seq = notice.seq,
                "the alert webhook refused the alert"
            ),
            Err(error) => {
                tracing::warn!(error = %error.without_url(), attempt, alert_seq = notice.seq, "the alert webhook is unreachable")
            }
        }
        if attempt < limits::WEBHOOK_ATTEMPTS_MAX {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(limits::WEBHOOK_BACKOFF_MS_MAX);
        }
    }
    tracing::error!(
        alert_seq = notice.seq,
        kind = notice.kind.as_str(),
        "the alert could not be delivered to the webhook; it stays in the audit log"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let one = signature(b"key", 1_700_000_000, b"{\"a\":1}");
        assert!(one.starts_with("sha256=") && one.len() == 7 + 64);
        assert_ne!(one, signature(b"key", 1_700_000_001, b"{\"a\":1}"));
        assert_ne!(one, signature(b"key", 1_700_000_000, b"{\"a\":2}"));
        assert_ne!(one, signature(b"other", 1_700_000_000, b"{\"a\":1}"));
    }
}
