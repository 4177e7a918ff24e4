//! TLS for both sides of the benchmark, with the ring provider only: client configurations that
//! trust exactly one CA, and the baseline server's development CA, certificate and configuration
//! (made the way Rampart makes its own, so both handshakes cost the same).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol a WebSocket upgrade needs.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// HTTP/2 first, for the senders' request pool.
pub const ALPN_HTTP2: &[u8] = b"h2";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts only the CA(s) in `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("the CA file is not PEM")?).context("the CA certificate is not usable")?;
    }
    anyhow::ensure!(!roots.is_empty(), "the CA file holds no certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The baseline server's CA and certificate, as PEM text.
#[derive(Debug)]
pub struct BaselineCertificate {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a server certificate for localhost and the loopback addresses, as Rampart's
/// development certificate is made (ECDSA P-256, a CA that signs one leaf).
pub fn make_baseline_certificate() -> anyhow::Result<BaselineCertificate> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca.distinguished_name.push(DnType::CommonName, "Rampart bench baseline CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;

    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let leaf_key = KeyPair::generate().context("server key")?;
    let mut leaf = CertificateParams::new(names).context("server certificate names")?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).context("server certificate")?;
    Ok(BaselineCertificate { ca_pem: ca_cert.pem(), cert_pem: leaf_cert.pem(), key_pem: leaf_key.serialize_pem() })
}

/// The baseline server's TLS configuration from PEM files (HTTP/1.1 only: WebSocket upgrades).
pub fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let cert_pem = std::fs::read(cert_file).with_context(|| format!("cannot read {}", cert_file.display()))?;
    let key_pem = std::fs::read(key_file).with_context(|| format!("cannot read {}", key_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).context("the key file is not PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_trusts_the_baseline_ca() {
        let made = make_baseline_certificate().expect("certificate");
        let dir = std::env::temp_dir().join(format!("rampart-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), &made.cert_pem).expect("cert");
        std::fs::write(dir.join("key.pem"), &made.key_pem).expect("key");
        let server = server_config(&dir.join("cert.pem"), &dir.join("key.pem"));
        std::fs::remove_dir_all(&dir).expect("clean");
        assert!(server.is_ok(), "{:?}", server.err());
        let client = client_config(made.ca_pem.as_bytes(), &[ALPN_HTTP1]).expect("client");
        assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(b"not a certificate", &[]).is_err());
    }
}
