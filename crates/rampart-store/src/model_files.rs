//! The rows of shared files.

use rampart_core::files::{FileKind, FileName};
use rampart_core::{ChannelId, FileId, MessageId, Timestamp, UserId};

/// A file about to be recorded; its size, digest and key come with its finished blob.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub id: FileId,
    pub channel_id: ChannelId,
    pub uploader_id: UserId,
    pub name: FileName,
    pub kind: FileKind,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub channel_id: ChannelId,
    pub uploader_id: UserId,
    /// The message that carries the file, once attached.
    pub message_id: Option<MessageId>,
    /// `None` when the sealed name failed its integrity check.
    pub name: Option<FileName>,
    /// SHA-256 of the stored content; `None` when its seal failed its integrity check.
    pub sha256: Option<[u8; 32]>,
    pub kind: FileKind,
    pub size: u64,
    pub key_epoch: i64,
    pub created_at: Timestamp,
}

/// A file as the message that carries it lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub id: FileId,
    pub name: Option<FileName>,
    pub kind: FileKind,
    pub size: u64,
}

#[derive(Debug)]
pub enum InsertFileOutcome {
    Stored(FileRecord),
    /// The uploader's files would exceed the quota; nothing was stored. `used` is what they keep.
    QuotaExceeded {
        used: u64,
    },
}
