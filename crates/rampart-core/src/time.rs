//! Time as this crate sees it: a count of milliseconds since the Unix epoch, passed in by the
//! caller. Formatting as RFC 3339 belongs to the edge that speaks JSON.

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn unix_ms(self) -> i64 {
        self.0
    }

    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `self` until `later`, or zero when `later` is not later.
    pub fn ms_until(self, later: Timestamp) -> i64 {
        later.0.saturating_sub(self.0).max(0)
    }
}
