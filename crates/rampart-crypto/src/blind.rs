//! Blind-index tokens: a search term's keyed hash, HMAC-SHA256 under a channel's search key,
//! truncated to `TOKEN_BYTES`. Equal terms in one channel give equal tokens; without the key a
//! token tells nothing of its term, and the same term in two channels gives unrelated tokens.

use crate::envelope::SymmetricKey;
use crate::mac::hmac_sha256;

/// 96 bits: a false match between two terms of one channel is never expected (and the server
/// checks every candidate against the opened text anyway), while the index stays small.
pub const TOKEN_BYTES: usize = 12;

/// A search key: the HMAC key of one channel's index (one per key version).
pub type SearchKey = SymmetricKey;

/// The token of `term` of the kind labelled `kind` (word or prefix).
pub fn token(key: &SearchKey, kind: &[u8], term: &str) -> [u8; TOKEN_BYTES] {
    let mut message = Vec::with_capacity(kind.len() + 1 + term.len());
    message.extend_from_slice(kind);
    message.push(0);
    message.extend_from_slice(term.as_bytes());
    let mac = hmac_sha256(key.expose(), &message);
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(&mac[..TOKEN_BYTES]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_key_kind_and_term() {
        let key = SearchKey::generate();
        assert_eq!(token(&key, b"w", "plan"), token(&key, b"w", "plan"));
        assert_ne!(token(&key, b"w", "plan"), token(&key, b"p", "plan"));
        assert_ne!(token(&key, b"w", "plan"), token(&key, b"w", "plans"));
        assert_ne!(token(&key, b"w", "plan"), token(&SearchKey::generate(), b"w", "plan"));
    }
}
