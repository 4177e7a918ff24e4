//! What `rampart keys status` reports, and the progress of a re-encryption.

/// The life of a KEK version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekState {
    /// Wraps every new data key.
    Active,
    /// Replaced, but still wraps some data keys until they are re-wrapped.
    Retiring,
    /// Wraps nothing; its file is deleted.
    Retired,
}

impl KekState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "retiring" => Some(Self::Retiring),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekStatus {
    pub version: u32,
    pub state: KekState,
    /// Data keys this version wraps.
    pub data_keys: u64,
    /// Whether this node found the version's file in `key_dir`.
    pub in_key_dir: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub keks: Vec<KekStatus>,
    pub channels_with_keys: u64,
    /// Data keys in all, one per channel epoch.
    pub data_keys: u64,
    /// Messages sealed under a channel epoch older than its newest.
    pub messages_on_old_epochs: u64,
}

impl KeyStatus {
    pub fn active_kek(&self) -> Option<u32> {
        self.keks.iter().find(|k| k.state == KekState::Active).map(|k| k.version)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReencryptProgress {
    pub resealed: u64,
    /// Messages that failed their integrity check and were left as they are.
    pub unreadable: u64,
    pub remaining: u64,
}
