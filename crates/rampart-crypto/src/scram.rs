//! SCRAM-SHA-256 verifiers, as PostgreSQL stores a role's password (RFC 5802, RFC 7677): computed
//! here, so `CREATE ROLE … PASSWORD` carries the verifier and the password itself never reaches the
//! server, its statement log or its statistics.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// PBKDF2 iterations, PostgreSQL's default (`scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Bytes of random salt, as PostgreSQL makes them.
pub const SCRAM_SALT_BYTES: usize = 16;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for `password`, with a fresh salt.
/// The password must already be in SASLprep normal form; printable ASCII (as generated passwords
/// are) always is.
pub fn scram_sha256_verifier(password: &str) -> String {
    let mut salt = [0u8; SCRAM_SALT_BYTES];
    OsRng.fill_bytes(&mut salt);
    verifier_with_salt(password, &salt, SCRAM_ITERATIONS)
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn verifier_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, salted.as_mut());
    let client_key = Zeroizing::new(hmac(salted.as_ref(), b"Client Key"));
    let stored_key = Sha256::digest(client_key.as_ref());
    let server_key = hmac(salted.as_ref(), b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_postgresql_stores() {
        // PostgreSQL 15's own verifier for `CREATE ROLE … PASSWORD 'pencil'`.
        let stored = "SCRAM-SHA-256$4096:6P6JQByx2MkHf7JR6ME6xg==$gkVajyO8gm01mSLhO+cjZEoF3l2BlsQz9MZoSAgIVIo=:dGKxddgqlHWxCQ3zVXPDfvSpOHta+CX8iQ2/r8cjh5E=";
        let salt = STANDARD.decode("6P6JQByx2MkHf7JR6ME6xg==").expect("salt");
        assert_eq!(verifier_with_salt("pencil", &salt, 4096), stored);
    }

    #[test]
    fn each_verifier_has_its_own_salt_and_never_the_password() {
        let (one, two) = (scram_sha256_verifier("pencil"), scram_sha256_verifier("pencil"));
        assert_ne!(one, two);
        assert!(one.starts_with("SCRAM-SHA-256$4096:") && !one.contains("pencil"));
    }
}
