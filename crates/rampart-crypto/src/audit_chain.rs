//! The audit log's cryptography: the hash chain's link (SHA-256 over the previous record's hash
//! and this record's canonical encoding) and Ed25519 signatures over checkpoints of the chain's
//! head, with the signing key in `key_dir` (`audit-signing.key`, mode 0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keyring::{check_private, io_error, KeyringError};

/// A link of the chain: SHA-256, 32 bytes.
pub type ChainHash = [u8; 32];
/// The "previous hash" of the first record.
pub const GENESIS: ChainHash = [0; 32];
pub const SIGNATURE_BYTES: usize = 64;
const SIGNING_KEY_FILE: &str = "audit-signing.key";
const KEY_FILE_BYTES_MAX: u64 = 256;

/// The hash of a record given the hash before it.
pub fn link(previous: &ChainHash, encoded_record: &[u8]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(b"rampart audit link v1");
    hasher.update(previous);
    hasher.update(encoded_record);
    hasher.finalize().into()
}

/// What a checkpoint signature covers: the head's seq, its hash, and when it was signed.
fn checkpoint_message(seq: i64, hash: &ChainHash, at_ms: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(b"rampart audit checkpoint v1");
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&at_ms.to_be_bytes());
    message.extend_from_slice(hash);
    message
}

/// Signs checkpoints. The key never leaves `key_dir` and this process's memory.
pub struct AuditSigner {
    key: SigningKey,
}

impl AuditSigner {
    pub fn key_file(dir: &Path) -> PathBuf {
        dir.join(SIGNING_KEY_FILE)
    }

    /// Reads the signing key from `dir`, making one (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyringError> {
        let path = Self::key_file(dir);
        if path.exists() {
            return Self::load(dir);
        }
        let key = SigningKey::generate(&mut rand_core_os());
        let line = Zeroizing::new(format!("{}\n", STANDARD.encode(key.to_bytes())));
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io_error(&path))?;
        file.write_all(line.as_bytes()).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
        Ok(AuditSigner { key })
    }

    /// Reads the signing key from `dir`, refusing a file group or others can read.
    pub fn load(dir: &Path) -> Result<Self, KeyringError> {
        let path = Self::key_file(dir);
        check_private(&path, false)?;
        let bad = || KeyringError::BadKeyFile { path: path.clone() };
        let file = fs::File::open(&path).map_err(io_error(&path))?;
        if file.metadata().map_err(io_error(&path))?.len() > KEY_FILE_BYTES_MAX {
            return Err(bad());
        }
        let text = Zeroizing::new(fs::read_to_string(&path).map_err(io_error(&path))?);
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| bad())?);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.as_slice().try_into().map_err(|_| bad())?);
        Ok(AuditSigner { key: SigningKey::from_bytes(&seed) })
    }

    pub fn sign_checkpoint(&self, seq: i64, hash: &ChainHash, at_ms: i64) -> [u8; SIGNATURE_BYTES] {
        self.key.sign(&checkpoint_message(seq, hash, at_ms)).to_bytes()
    }

    pub fn verifier(&self) -> AuditVerifier {
        AuditVerifier { key: self.key.verifying_key() }
    }
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner").field("key", &"[redacted]").finish()
    }
}

/// Checks checkpoint signatures; holds only the public half.
#[derive(Debug, Clone)]
pub struct AuditVerifier {
    key: VerifyingKey,
}

impl AuditVerifier {
    pub fn verify_checkpoint(&self, seq: i64, hash: &ChainHash, at_ms: i64, signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify(&checkpoint_message(seq, hash, at_ms), &signature).is_ok()
    }

    /// The public key, base64, for an admin to keep beside exported checkpoints.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.to_bytes())
    }
}

fn rand_core_os() -> chacha20poly1305::aead::OsRng {
    chacha20poly1305::aead::OsRng
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn each_link_depends_on_the_previous_hash_and_the_record() {
        let first = link(&GENESIS, b"record 1");
        assert_ne!(link(&first, b"record 2"), link(&GENESIS, b"record 2"));
        assert_ne!(link(&first, b"record 2"), link(&first, b"record 3"));
        assert_eq!(link(&first, b"record 2"), link(&first, b"record 2"));
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let signer = AuditSigner::load_or_create(dir.path()).expect("create");
        let again = AuditSigner::load_or_create(dir.path()).expect("load");
        let hash = link(&GENESIS, b"x");
        let signature = signer.sign_checkpoint(7, &hash, 1_000);
        let verifier = again.verifier();
        assert!(verifier.verify_checkpoint(7, &hash, 1_000, &signature));
        assert!(!verifier.verify_checkpoint(8, &hash, 1_000, &signature));
        assert!(!verifier.verify_checkpoint(7, &GENESIS, 1_000, &signature));
        assert!(!verifier.verify_checkpoint(7, &hash, 1_001, &signature));
        assert!(!verifier.verify_checkpoint(7, &hash, 1_000, &signature[..10]));
        assert_eq!(format!("{signer:?}"), "AuditSigner { key: \"[redacted]\" }");
    }

    #[test]
    fn a_signing_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        AuditSigner::load_or_create(dir.path()).expect("create");
        let path = AuditSigner::key_file(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(AuditSigner::load(dir.path()), Err(KeyringError::Permissions { .. })));
    }
}
