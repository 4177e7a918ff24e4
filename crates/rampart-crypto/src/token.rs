//! Opaque bearer tokens (sessions, invitations): 256 bits from the operating system's CSPRNG,
//! shown to the client once as base64url, stored only as their SHA-256. A stolen database therefore
//! holds no usable token, and a lookup by hash needs no constant-time compare (the attacker does
//! not control the hash's prefix).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;
/// Characters of a token's base64url text.
pub const TOKEN_TEXT_CHARS: usize = 43;

/// A token in clear. Debug prints `[redacted]`; the text is zeroed when dropped.
pub struct Token(SecretString);

impl Token {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        OsRng.fill_bytes(bytes.as_mut());
        Token(SecretString::from(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
    }

    /// Accepts a token presented by a client, if it has the shape of one of ours. The shape check
    /// keeps junk (and oversized input) away from the store.
    pub fn parse(text: &str) -> Option<Self> {
        let shaped =
            text.len() == TOKEN_TEXT_CHARS && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Token(SecretString::from(text.to_owned())))
    }

    /// The text to hand to the client, once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What the store keeps.
    pub fn hash(&self) -> TokenHash {
        let digest = Sha256::digest(self.0.expose_secret().as_bytes());
        TokenHash(hex(&digest))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// The SHA-256 of a token, as 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Even the hash is not logged whole: a prefix is enough to correlate.
        write!(f, "TokenHash({}…)", &self.0[..8])
    }
}

/// Lowercase hex, for digests.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_shaped_and_round_trip() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), TOKEN_TEXT_CHARS);
        let parsed = Token::parse(a.expose()).expect("shape");
        assert_eq!(parsed.hash(), a.hash());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn parse_refuses_junk() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse("short").is_none());
        assert!(Token::parse(&"a".repeat(TOKEN_TEXT_CHARS + 1)).is_none());
        assert!(Token::parse(&format!("{}'", "a".repeat(TOKEN_TEXT_CHARS - 1))).is_none());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = Token::generate();
        let shown = format!("{token:?} {:?}", token.hash());
        assert!(!shown.contains(token.expose()));
        assert!(!shown.contains(token.hash().as_str()));
    }

    #[test]
    fn hash_is_sha256_hex() {
        let token = Token(SecretString::from("abc".to_owned()));
        assert_eq!(token.hash().as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
