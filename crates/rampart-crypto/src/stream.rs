//! Chunked encryption of file blobs: the STREAM construction (Hoang, Reyhanitabar, Rogaway,
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance") as RustCrypto's
//! `aead::stream::StreamBE32` builds it over XChaCha20-Poly1305 — a random 19-byte nonce prefix,
//! then a 32-bit big-endian chunk counter and a last-chunk flag in the nonce. Each chunk is sealed
//! alone, so a blob is written and read one chunk at a time and any chunk can be opened by its
//! position (HTTP Range); reordering, dropping or truncating chunks fails to open. No I/O here.
//!
//! Blob layout: `"RPB" ‖ 0x01 ‖ nonce prefix (19 bytes)`, then chunks of `BLOB_CHUNK_BYTES`
//! plaintext plus a 16-byte tag each; the last chunk holds the rest (0 to `BLOB_CHUNK_BYTES`).

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::envelope::{Aad, OpenError, SymmetricKey};

/// Plaintext bytes per chunk.
pub const BLOB_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes each chunk adds: the Poly1305 tag.
pub const BLOB_TAG_BYTES: usize = 16;
const MAGIC: &[u8; 4] = b"RPB\x01";
const NONCE_PREFIX_BYTES: usize = 19;
/// The header before the first chunk: magic and version, nonce prefix.
pub const BLOB_HEADER_BYTES: usize = MAGIC.len() + NONCE_PREFIX_BYTES;

/// Why a chunk could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a chunk that is not the last must be exactly one chunk long")]
    ChunkLength,
    #[error("the blob has reached the most chunks a stream may hold")]
    TooManyChunks,
    #[error("the last chunk was already sealed")]
    Finished,
}

type Stream = StreamBE32<XChaCha20Poly1305>;

fn stream(key: &SymmetricKey, prefix: &[u8]) -> Stream {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    Stream::from_aead(cipher, prefix.into())
}

/// Seals a blob chunk by chunk, in order.
pub struct BlobSealer {
    stream: Stream,
    aad: Aad,
    position: u32,
    finished: bool,
}

impl std::fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSealer").field("position", &self.position).finish_non_exhaustive()
    }
}

impl BlobSealer {
    /// A sealer under `key`, bound to `aad`, with a fresh random nonce prefix; and the header to
    /// write before the first chunk.
    pub fn new(key: &SymmetricKey, aad: Aad) -> (Self, [u8; BLOB_HEADER_BYTES]) {
        let mut header = [0u8; BLOB_HEADER_BYTES];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        OsRng.fill_bytes(&mut header[MAGIC.len()..]);
        let stream = stream(key, &header[MAGIC.len()..]);
        (BlobSealer { stream, aad, position: 0, finished: false }, header)
    }

    /// Seals the next chunk: exactly `BLOB_CHUNK_BYTES` unless it is the last.
    pub fn seal_chunk(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        if self.finished {
            return Err(SealError::Finished);
        }
        if plaintext.len() > BLOB_CHUNK_BYTES || (!last && plaintext.len() != BLOB_CHUNK_BYTES) {
            return Err(SealError::ChunkLength);
        }
        if self.position == u32::MAX {
            return Err(SealError::TooManyChunks);
        }
        let mut buffer = Vec::with_capacity(plaintext.len() + BLOB_TAG_BYTES);
        buffer.extend_from_slice(plaintext);
        self.stream
            .encrypt_in_place(self.position, last, self.aad.as_bytes(), &mut buffer)
            .map_err(|_| SealError::ChunkLength)?;
        self.position += 1;
        self.finished = last;
        Ok(buffer)
    }
}

/// Opens the chunks of a blob, in any order.
pub struct BlobOpener {
    stream: Stream,
    aad: Aad,
}

impl std::fmt::Debug for BlobOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobOpener")
    }
}

impl BlobOpener {
    /// An opener for the blob whose header is `header`.
    pub fn new(key: &SymmetricKey, aad: Aad, header: &[u8]) -> Result<Self, OpenError> {
        if header.len() != BLOB_HEADER_BYTES || !header.starts_with(MAGIC) {
            return Err(OpenError::Malformed);
        }
        Ok(BlobOpener { stream: stream(key, &header[MAGIC.len()..]), aad })
    }

    /// Opens chunk `index` (counting from 0); `last` says whether it is the blob's last chunk.
    pub fn open_chunk(&self, index: u32, last: bool, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < BLOB_TAG_BYTES || sealed.len() > BLOB_CHUNK_BYTES + BLOB_TAG_BYTES {
            return Err(OpenError::Malformed);
        }
        let mut buffer = Zeroizing::new(sealed.to_vec());
        self.stream
            .decrypt_in_place(index, last, self.aad.as_bytes(), &mut *buffer)
            .map_err(|_| OpenError::Integrity)?;
        Ok(buffer)
    }
}

/// How many chunks a blob of `plain_bytes` has (an empty blob has one, empty, last chunk).
pub fn chunk_count(plain_bytes: u64) -> u64 {
    plain_bytes.div_ceil(BLOB_CHUNK_BYTES as u64).max(1)
}

/// The size on disk of a blob of `plain_bytes`.
pub fn sealed_len(plain_bytes: u64) -> u64 {
    BLOB_HEADER_BYTES as u64 + plain_bytes + chunk_count(plain_bytes) * BLOB_TAG_BYTES as u64
}

/// The plaintext size of a blob that is `sealed_bytes` long on disk; `None` when no blob has that
/// size.
pub fn plain_len(sealed_bytes: u64) -> Option<u64> {
    let body = sealed_bytes.checked_sub(BLOB_HEADER_BYTES as u64)?;
    let full = (BLOB_CHUNK_BYTES + BLOB_TAG_BYTES) as u64;
    let chunks = body.div_ceil(full).max(1);
    let plain = body.checked_sub(chunks * BLOB_TAG_BYTES as u64)?;
    (sealed_len(plain) == sealed_bytes).then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(file: &str) -> Aad {
        Aad::new("rampart file v1", &[b"channel", file.as_bytes(), &1i64.to_be_bytes()])
    }

    fn seal_all(key: &SymmetricKey, aad: Aad, data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let (mut sealer, header) = BlobSealer::new(key, aad);
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(BLOB_CHUNK_BYTES).collect() };
        let last = chunks.len() - 1;
        let sealed = chunks.iter().enumerate().map(|(i, c)| sealer.seal_chunk(c, i == last).expect("seal")).collect();
        (header.to_vec(), sealed)
    }

    #[test]
    fn chunks_open_in_any_order_and_round_trip() {
        let key = SymmetricKey::generate();
        let data: Vec<u8> = (0..(BLOB_CHUNK_BYTES * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let (header, sealed) = seal_all(&key, aad("f1"), &data);
        assert_eq!(sealed.len(), 3);
        let opener = BlobOpener::new(&key, aad("f1"), &header).expect("header");
        let third = opener.open_chunk(2, true, &sealed[2]).expect("last");
        assert_eq!(third.as_slice(), &data[BLOB_CHUNK_BYTES * 2..]);
        let first = opener.open_chunk(0, false, &sealed[0]).expect("first");
        assert_eq!(first.as_slice(), &data[..BLOB_CHUNK_BYTES]);
        let total: u64 = header.len() as u64 + sealed.iter().map(|c| c.len() as u64).sum::<u64>();
        assert_eq!(total, sealed_len(data.len() as u64));
        assert_eq!(plain_len(total), Some(data.len() as u64));
    }

    #[test]
    fn moved_reordered_or_truncated_chunks_fail() {
        let key = SymmetricKey::generate();
        let data = vec![7u8; BLOB_CHUNK_BYTES * 2];
        let (header, sealed) = seal_all(&key, aad("f1"), &data);
        let opener = BlobOpener::new(&key, aad("f1"), &header).expect("header");
        assert_eq!(opener.open_chunk(1, false, &sealed[0]), Err(OpenError::Integrity), "reordered");
        assert_eq!(opener.open_chunk(0, true, &sealed[0]), Err(OpenError::Integrity), "truncated after it");
        let other = BlobOpener::new(&key, aad("f2"), &header).expect("header");
        assert_eq!(other.open_chunk(0, false, &sealed[0]), Err(OpenError::Integrity), "another file's AAD");
        let wrong_key = BlobOpener::new(&SymmetricKey::generate(), aad("f1"), &header).expect("header");
        assert_eq!(wrong_key.open_chunk(0, false, &sealed[0]), Err(OpenError::Integrity));
        assert!(BlobOpener::new(&key, aad("f1"), &header[1..]).is_err());
    }

    #[test]
    fn an_empty_blob_is_one_empty_last_chunk() {
        let key = SymmetricKey::generate();
        let (header, sealed) = seal_all(&key, aad("f"), &[]);
        assert_eq!(sealed.len(), 1);
        let opener = BlobOpener::new(&key, aad("f"), &header).expect("header");
        assert!(opener.open_chunk(0, true, &sealed[0]).expect("open").is_empty());
        assert_eq!(plain_len(sealed_len(0)), Some(0));
    }

    #[test]
    fn sizes_map_both_ways() {
        for plain in [0, 1, 65_535, 65_536, 65_537, 131_072, 1_000_000] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain), "{plain}");
        }
        assert_eq!(plain_len(3), None);
        assert_eq!(plain_len(BLOB_HEADER_BYTES as u64 + 5), None);
    }

    #[test]
    fn the_sealer_refuses_misuse() {
        let key = SymmetricKey::generate();
        let (mut sealer, _) = BlobSealer::new(&key, aad("f"));
        assert_eq!(sealer.seal_chunk(&[1, 2, 3], false), Err(SealError::ChunkLength));
        assert!(sealer.seal_chunk(&[1, 2, 3], true).is_ok());
        assert_eq!(sealer.seal_chunk(&[1], true), Err(SealError::Finished));
    }
}
