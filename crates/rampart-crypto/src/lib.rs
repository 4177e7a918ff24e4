//! Rampart's cryptography: password hashing (Argon2id), random tokens and their stored hashes, and
//! the secret types they travel in. Only RustCrypto primitives; nothing here is hand-rolled. No
//! I/O, no async: callers run the slow hashing on a bounded blocking pool.
#![forbid(unsafe_code)]

pub mod password;
pub mod token;

pub use password::{PasswordHasher, PasswordParams};
pub use secrecy::{ExposeSecret, SecretString};
pub use token::{Token, TokenHash};
