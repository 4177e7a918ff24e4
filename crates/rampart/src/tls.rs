//! TLS with rustls only: TLS 1.3 and 1.2, AEAD suites only (rustls offers no other kind and never
//! renegotiates), ALPN for HTTP/2 and HTTP/1.1. The certificate is served through a resolver whose
//! key can be swapped at any time; a watcher reloads the PEM files when they change, so a renewed
//! certificate is served without a restart and without dropping a connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The suites we offer, strongest first: all AEAD, all with forward secrecy. The audit
/// forwarder's TLS client offers the same.
pub(crate) fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    provider
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|key| Arc::clone(&key))
    }
}

/// Loads a certificate chain and its private key, and checks they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("cannot read certificate file {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("certificate file {} is not valid PEM", cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("certificate file {} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| anyhow!("key file {} holds no readable private key", key_file.display()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| anyhow!("key file {} holds an unsupported private key", key_file.display()))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| {
        anyhow!("the key in {} does not match the certificate in {}", key_file.display(), cert_file.display())
    })?;
    Ok(certified)
}

impl ReloadingResolver {
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        let certified = load_certified_key(cert_file, key_file)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified)),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        }))
    }

    /// Reloads from the files; on any error the old certificate stays in service.
    pub fn reload(&self) -> anyhow::Result<()> {
        let certified = load_certified_key(&self.cert_file, &self.key_file)?;
        let mut current = self.current.write().map_err(|_| anyhow!("certificate lock poisoned"))?;
        *current = Arc::new(certified);
        Ok(())
    }

    /// When the certificate in service (the first of its chain) expires, in seconds since the Unix
    /// epoch; `None` if it cannot be read.
    pub fn not_after_unix_secs(&self) -> Option<i64> {
        let current = self.current.read().ok().map(|key| Arc::clone(&key))?;
        certificate_not_after_unix_secs(current.cert.first()?)
    }

    fn stamp(&self) -> Option<(SystemTime, u64, SystemTime, u64)> {
        let cert = std::fs::metadata(&self.cert_file).ok()?;
        let key = std::fs::metadata(&self.key_file).ok()?;
        Some((cert.modified().ok()?, cert.len(), key.modified().ok()?, key.len()))
    }

    /// Polls the files every `poll` and reloads when either changes. A half-written pair fails to
    /// load (the key will not match) and is simply tried again at the next poll.
    /// `on_change` hears each change seen on disk: `Ok` when it was loaded, `Err` with the reason
    /// when the old certificate was kept (the caller audits both).
    pub fn spawn_watcher(
        self: &Arc<Self>,
        poll: Duration,
        on_change: impl Fn(Result<(), String>) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let resolver = Arc::clone(self);
        tokio::spawn(async move {
            let mut loaded = resolver.stamp();
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = resolver.stamp();
                if now.is_none() || now == loaded {
                    continue;
                }
                match resolver.reload() {
                    Ok(()) => {
                        loaded = now;
                        tracing::info!(cert_file = %resolver.cert_file.display(), "TLS certificate reloaded");
                        on_change(Ok(()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS certificate change seen but not loaded; keeping the old one");
                        on_change(Err(format!("{error:#}")));
                    }
                }
            }
        })
    }
}

/// The notAfter of a DER certificate, in seconds since the Unix epoch.
pub fn certificate_not_after_unix_secs(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

/// The rustls server configuration around a resolver.
pub fn server_config(resolver: Arc<ReloadingResolver>) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// How long the development CA and certificate are valid.
const DEV_CERT_VALIDITY_DAYS: i64 = 365;

/// Makes a development CA and a server certificate for localhost (and `extra_host`) in `key_dir`,
/// unless they exist. The CA's private key is not kept: it cannot be stolen to sign anything else.
pub fn ensure_dev_certificate(key_dir: &Path, extra_host: Option<&str>) -> anyhow::Result<(PathBuf, PathBuf, bool)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

    let cert_file = key_dir.join("tls-cert.pem");
    let key_file = key_dir.join("tls-key.pem");
    if cert_file.exists() && key_file.exists() {
        return Ok((cert_file, key_file, false));
    }
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca.distinguished_name.push(DnType::CommonName, "Rampart development CA (not for production)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (not_before, not_after) = (now - time::Duration::hours(1), now + time::Duration::days(DEV_CERT_VALIDITY_DAYS));
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = extra_host.filter(|h| !names.iter().any(|n| n == h)) {
        names.push(host.to_owned());
    }
    let leaf_key = KeyPair::generate().context("server key")?;
    let mut leaf = CertificateParams::new(names).context("server certificate names")?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).context("server certificate")?;

    crate::fsutil::write_private(&key_dir.join("dev-ca.pem"), ca_cert.pem().as_bytes())?;
    crate::fsutil::write_private(&key_file, leaf_key.serialize_pem().as_bytes())?;
    crate::fsutil::write_private(&cert_file, leaf_cert.pem().as_bytes())?;
    Ok((cert_file, key_file, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_certificate_expiry_is_read_from_its_der() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert_file, key_file, made) = ensure_dev_certificate(dir.path(), None).expect("dev certificate");
        assert!(made);
        let resolver = ReloadingResolver::load(&cert_file, &key_file).expect("load");
        let not_after = resolver.not_after_unix_secs().expect("notAfter");
        let expected =
            (time::OffsetDateTime::now_utc() + time::Duration::days(DEV_CERT_VALIDITY_DAYS)).unix_timestamp();
        assert!((expected - not_after).abs() < 120, "{not_after} vs {expected}");
        assert_eq!(certificate_not_after_unix_secs(&CertificateDer::from(b"not a certificate".to_vec())), None);
    }
}
