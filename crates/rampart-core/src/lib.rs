//! Rampart's pure domain: identifiers, validated inputs, roles, the permission policy, limits and
//! error codes. This crate does no I/O, knows no clock and no randomness (both are passed in), and
//! so every function in it is deterministic and unit-tested exhaustively.
#![forbid(unsafe_code)]

pub mod audit;
pub mod channel;
pub mod detect;
pub mod error;
pub mod escape;
pub mod files;
pub mod ids;
pub mod limits;
pub mod password_policy;
pub mod policy;
pub mod refusals;
pub mod role;
pub mod search;
pub mod throttle;
pub mod time;
pub mod validate;

pub use error::ErrorCode;
pub use ids::{ChannelId, FileId, MessageId, SessionId, UserId};
pub use role::Role;
pub use time::Timestamp;
