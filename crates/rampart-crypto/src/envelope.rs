//! Envelope encryption: data keys (one per channel epoch) seal message bodies and files with
//! XChaCha20-Poly1305; the key-encryption key wraps data keys the same way. Every ciphertext is
//! bound by its AAD to where it belongs (channel, row, key), so one moved elsewhere fails to open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The first byte of every sealed value: the format, so a later one can be told apart.
const SEALED_FORMAT_V1: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Bytes a sealed value adds to its plaintext: format byte, nonce, tag.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + TAG_BYTES;
/// Length of every symmetric key here.
pub const KEY_BYTES: usize = 32;

/// Why a sealed value did not open. Deliberately coarse: the caller learns nothing about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed value is malformed")]
    Malformed,
    /// Wrong key, wrong AAD (a ciphertext moved to another row) or changed bytes.
    #[error("the sealed value failed its integrity check")]
    Integrity,
}

/// Associated data: a purpose label and the identifiers a ciphertext is bound to, each
/// length-prefixed so that no two different lists encode the same bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    pub fn new(purpose: &str, parts: &[&[u8]]) -> Self {
        let mut bytes = Vec::with_capacity(purpose.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>() + 4);
        for part in std::iter::once(purpose.as_bytes()).chain(parts.iter().copied()) {
            let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(part);
        }
        Aad(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Aad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aad({} bytes)", self.0.len())
    }
}

/// A 256-bit XChaCha20-Poly1305 key, wiped from memory when dropped.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; KEY_BYTES]>);

impl SymmetricKey {
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        bytes.copy_from_slice(&key);
        SymmetricKey(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        if bytes.len() != KEY_BYTES {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(SymmetricKey(key))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Seals `plaintext` under a fresh random 192-bit nonce (safe to pick at random, unlike
    /// ChaCha20-Poly1305's 96 bits): format byte ‖ nonce ‖ ciphertext and tag.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(SEALED_FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what `seal` made with the same key and AAD.
    pub fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD_BYTES || sealed[0] != SEALED_FORMAT_V1 {
            return Err(OpenError::Malformed);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: aad.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Integrity)
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey([redacted])")
    }
}

/// A data key: seals the bodies and files of one channel epoch.
pub type DataKey = SymmetricKey;

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(row: &str) -> Aad {
        Aad::new("test", &[b"channel-1", row.as_bytes(), b"key-1"])
    }

    #[test]
    fn seal_then_open_round_trips() {
        let key = SymmetricKey::generate();
        let sealed = key.seal(&aad("row-1"), b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD_BYTES);
        assert_eq!(key.open(&aad("row-1"), &sealed).expect("opens").as_slice(), b"hello");
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_fails_to_open() {
        let key = SymmetricKey::generate();
        let sealed = key.seal(&aad("row-1"), b"hello");
        assert_eq!(key.open(&aad("row-2"), &sealed), Err(OpenError::Integrity));
    }

    #[test]
    fn another_key_or_a_flipped_bit_fails_to_open() {
        let key = SymmetricKey::generate();
        let mut sealed = key.seal(&aad("row-1"), b"hello");
        assert_eq!(SymmetricKey::generate().open(&aad("row-1"), &sealed), Err(OpenError::Integrity));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(&aad("row-1"), &sealed), Err(OpenError::Integrity));
        assert_eq!(key.open(&aad("row-1"), &sealed[..10]), Err(OpenError::Malformed));
        assert_eq!(key.open(&aad("row-1"), &[]), Err(OpenError::Malformed));
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let key = SymmetricKey::generate();
        assert_ne!(key.seal(&aad("row-1"), b"same"), key.seal(&aad("row-1"), b"same"));
    }

    #[test]
    fn aad_parts_cannot_be_shifted_between_fields() {
        assert_ne!(Aad::new("p", &[b"ab", b"c"]), Aad::new("p", &[b"a", b"bc"]));
        assert_ne!(Aad::new("p", &[b"a"]), Aad::new("pa", &[]));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = SymmetricKey::from_bytes(&[0x41; KEY_BYTES]).expect("32 bytes");
        assert_eq!(format!("{key:?}"), "SymmetricKey([redacted])");
    }
}
