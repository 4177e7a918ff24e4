//! Rampart's cryptography: password hashing (Argon2id), envelope encryption (XChaCha20-Poly1305
//! data keys wrapped by a versioned key-encryption key), random tokens and their stored hashes,
//! and the secret types they travel in. Only RustCrypto primitives; nothing here is hand-rolled.
//! No async, and no I/O beyond the keyring's own key files: callers run the slow hashing on a
//! bounded blocking pool.
#![forbid(unsafe_code)]

pub mod audit_chain;
pub mod blind;
pub mod envelope;
pub mod keyring;
pub mod mac;
pub mod password;
pub mod scram;
pub mod stream;
pub mod token;

pub use audit_chain::{AuditSigner, AuditVerifier, ChainHash};
pub use envelope::{Aad, DataKey, OpenError, SymmetricKey};
pub use keyring::{Kek, Keyring, KeyringError};
pub use password::{PasswordHasher, PasswordParams};
pub use secrecy::{ExposeSecret, SecretString};
pub use stream::{BlobOpener, BlobSealer, SealError, BLOB_CHUNK_BYTES, BLOB_HEADER_BYTES, BLOB_TAG_BYTES};
pub use token::{Token, TokenHash};
