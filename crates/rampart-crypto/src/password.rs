//! Password hashing with Argon2id (RustCrypto `argon2`), stored as PHC strings so the parameters
//! travel with each hash and can be raised later without invalidating old hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid Argon2 parameters")]
    Params,
    #[error("password hashing failed")]
    Hash,
}

/// Hashes and verifies passwords. Cheap to clone; each call is CPU- and memory-heavy (run it on a
/// bounded blocking pool).
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified against when the user does not exist, so an unknown
    /// username costs the same time as a wrong password.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|_| PasswordError::Params)?;
        let mut hasher = Self { params, dummy_hash: String::new() };
        let filler = crate::token::Token::generate();
        hasher.dummy_hash = hasher.hash(&SecretString::from(filler.expose().to_owned()))?;
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|_| PasswordError::Hash)
    }

    /// True when `password` matches `stored`. A malformed stored hash is a mismatch, never a panic.
    /// The parameters are read from `stored`, so hashes made with older costs still verify.
    pub fn verify(&self, password: &SecretString, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => self.argon2().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        }
    }

    /// Spends the time of one verification against a hash no password matches.
    pub fn verify_dummy(&self, password: &SecretString) {
        let _ = self.verify(password, &self.dummy_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(PasswordParams { memory_kib: 1024, iterations: 1, parallelism: 1 }).expect("params")
    }

    #[test]
    fn hash_then_verify() {
        let hasher = cheap();
        let password = SecretString::from("correct horse battery staple".to_owned());
        let stored = hasher.hash(&password).expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(hasher.verify(&password, &stored));
        assert!(!hasher.verify(&SecretString::from("correct horse battery staplE".to_owned()), &stored));
    }

    #[test]
    fn passwords_are_used_exactly_as_typed() {
        let hasher = cheap();
        let stored = hasher.hash(&SecretString::from(" spaced password ".to_owned())).expect("hash");
        assert!(!hasher.verify(&SecretString::from("spaced password".to_owned()), &stored));
    }

    #[test]
    fn salts_differ_and_malformed_hashes_do_not_verify() {
        let hasher = cheap();
        let password = SecretString::from("same password twice".to_owned());
        assert_ne!(hasher.hash(&password).expect("a"), hasher.hash(&password).expect("b"));
        assert!(!hasher.verify(&password, "not a phc string"));
        assert!(!hasher.verify(&password, ""));
    }

    #[test]
    fn production_parameters_meet_the_design_floor() {
        let params = PasswordParams { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 };
        let hasher = PasswordHasher::new(params).expect("params");
        let stored = hasher.hash(&SecretString::from("a long enough password".to_owned())).expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
