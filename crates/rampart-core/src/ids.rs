//! Identifier newtypes. Ids are opaque random strings (UUID v4 text made by the caller), never
//! sequential integers, so they reveal neither counts nor creation order.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::limits::ID_CHARS_MAX;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts an id from outside (a URL path, a database row). Returns `None` when it
            /// cannot be one of ours: empty, too long, or with characters an id never has.
            pub fn parse(text: &str) -> Option<Self> {
                let plausible = !text.is_empty()
                    && text.len() <= ID_CHARS_MAX
                    && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                plausible.then(|| Self(text.to_owned()))
            }

            /// Wraps a freshly generated id (the caller supplies the randomness).
            pub fn from_generated(text: String) -> Self {
                debug_assert!(Self::parse(&text).is_some());
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// A login session (not its token: the id may be shown and logged, the token never).
    SessionId
);
id_type!(
    /// A channel (public, private or direct).
    ChannelId
);
id_type!(
    /// A message.
    MessageId
);
id_type!(
    /// A shared file (also the name of its blob on disk, which is never derived from the file's
    /// own name).
    FileId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_uuid_text_and_refuses_the_rest() {
        assert!(UserId::parse("0b5f3c1e-8d2a-4c47-9f0e-2a1b3c4d5e6f").is_some());
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("../etc/passwd").is_none());
        assert!(UserId::parse("1 OR 1=1").is_none());
        assert!(UserId::parse(&"a".repeat(ID_CHARS_MAX + 1)).is_none());
    }
}
