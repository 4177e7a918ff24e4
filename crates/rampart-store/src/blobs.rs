//! File contents on disk: one blob per file in `data_dir/blobs`, named by the file's random id
//! (never by anything a client sent), sealed chunk by chunk with `rampart_crypto::stream` under the
//! channel's data key, the AAD binding it to its channel, file and key epoch. A blob is written in
//! `blobs/tmp` and renamed into place only in the transaction that records its file, so a failed or
//! abandoned upload leaves nothing behind (its temporary file is removed when the writer or the
//! finished blob is dropped, and a sweep removes any a crash left).
//!
//! Everything here is synchronous file I/O on one chunk at a time (at most `BLOB_CHUNK_BYTES` of
//! plaintext in memory per writer or reader); async callers run it on the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rampart_core::{ChannelId, FileId};
use rampart_crypto::stream::{chunk_count, plain_len, sealed_len};
use rampart_crypto::{Aad, BlobOpener, BlobSealer, DataKey, BLOB_CHUNK_BYTES, BLOB_HEADER_BYTES, BLOB_TAG_BYTES};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The binding of a blob: its channel, its file and the key that sealed it.
pub(crate) fn blob_aad(channel: &ChannelId, file: &FileId, epoch: i64) -> Aad {
    Aad::new("rampart file v1", &[channel.as_str().as_bytes(), file.as_str().as_bytes(), &epoch.to_be_bytes()])
}

const TEMP_DIR: &str = "tmp";

/// The blob directory.
#[derive(Debug)]
pub(crate) struct Blobs {
    dir: PathBuf,
    temp_counter: AtomicU64,
}

fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

impl Blobs {
    /// The blob directory `dir`; it is made (mode 0700) when the first blob is written, so a
    /// command that only opens the store leaves no trace.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        Ok(Blobs { dir, temp_counter: AtomicU64::new(0) })
    }

    /// Where a stored file's blob lives: fanned out by the id's first two characters.
    pub fn path(&self, id: &FileId) -> PathBuf {
        let fan: String = id.as_str().chars().take(2).collect();
        self.dir.join(fan).join(id.as_str())
    }

    /// Starts a new blob for `file` in the temporary area.
    pub fn create(
        self: &Arc<Self>,
        key: Arc<DataKey>,
        channel: &ChannelId,
        file: &FileId,
        epoch: i64,
    ) -> io::Result<BlobWriter> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        private_dir(&self.dir.join(TEMP_DIR))?;
        let path = self.dir.join(TEMP_DIR).join(format!("{}.{n}", file.as_str()));
        let mut out = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        let (sealer, header) = BlobSealer::new(&key, blob_aad(channel, file, epoch));
        let mut writer = BlobWriter {
            blobs: Arc::clone(self),
            out: None,
            path,
            sealer,
            buffer: Zeroizing::new(Vec::with_capacity(BLOB_CHUNK_BYTES)),
            hasher: Sha256::new(),
            size: 0,
            file: file.clone(),
            channel: channel.clone(),
            epoch,
            key,
        };
        out.write_all(&header)?;
        writer.out = Some(out);
        Ok(writer)
    }

    /// Moves a finished blob to its place; it is then no longer removed when dropped.
    pub fn place(&self, blob: &mut FinishedBlob) -> io::Result<PathBuf> {
        let target = self.path(&blob.file);
        if let Some(parent) = target.parent() {
            private_dir(parent)?;
        }
        std::fs::rename(&blob.path, &target)?;
        blob.placed = true;
        Ok(target)
    }

    /// Opens a stored blob for reading; its size on disk must match `size` bytes of content.
    pub fn reader(
        &self,
        key: &DataKey,
        channel: &ChannelId,
        file: &FileId,
        epoch: i64,
        size: u64,
    ) -> io::Result<BlobReader> {
        BlobReader::open(&self.path(file), key, blob_aad(channel, file, epoch), size)
    }

    /// Removes a stored blob; a missing one is not an error.
    pub fn remove(&self, id: &FileId) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Removes temporary blobs older than `age` (left by a crash); returns how many.
    pub fn sweep_temp(&self, age: Duration) -> io::Result<u64> {
        let mut removed = 0;
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let entries = match std::fs::read_dir(self.dir.join(TEMP_DIR)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            other => other?,
        };
        for entry in entries {
            let entry = entry?;
            let old = entry.metadata()?.modified().is_ok_and(|at| at < cutoff);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A blob being written: plaintext in, sealed chunks out, SHA-256 of the plaintext kept.
pub struct BlobWriter {
    blobs: Arc<Blobs>,
    out: Option<File>,
    path: PathBuf,
    sealer: BlobSealer,
    buffer: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    size: u64,
    file: FileId,
    channel: ChannelId,
    epoch: i64,
    key: Arc<DataKey>,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").field("file", &self.file).field("size", &self.size).finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Bytes of content written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn file_id(&self) -> &FileId {
        &self.file
    }

    fn out(&mut self) -> io::Result<&mut File> {
        self.out.as_mut().ok_or_else(|| invalid("the blob is finished"))
    }

    /// Seals and writes the buffered chunk.
    fn flush_chunk(&mut self, last: bool) -> io::Result<()> {
        let sealed = self.sealer.seal_chunk(&self.buffer, last).map_err(|_| invalid("a blob chunk"))?;
        self.buffer.clear();
        self.out()?.write_all(&sealed)
    }

    /// Appends content. A full chunk is sealed only once more content follows it, so the last
    /// chunk is always sealed as the last.
    pub fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            if self.buffer.len() == BLOB_CHUNK_BYTES {
                self.flush_chunk(false)?;
            }
            let take = (BLOB_CHUNK_BYTES - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the last chunk and syncs the file to disk.
    pub fn finish(mut self) -> io::Result<FinishedBlob> {
        self.flush_chunk(true)?;
        let out = self.out.take().ok_or_else(|| invalid("the blob is finished"))?;
        out.sync_all()?;
        let written = out.metadata()?.len();
        if written != sealed_len(self.size) {
            return Err(invalid("a blob was not written whole"));
        }
        let hasher = std::mem::take(&mut self.hasher);
        Ok(FinishedBlob {
            blobs: Arc::clone(&self.blobs),
            path: std::mem::take(&mut self.path),
            file: self.file.clone(),
            channel: self.channel.clone(),
            epoch: self.epoch,
            key: Arc::clone(&self.key),
            size: self.size,
            sha256: hasher.finalize().into(),
            placed: false,
        })
    }
}

/// So encoders (a re-encoded image) can write straight into a blob.
impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.append(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not finished (an error, a refusal, an abandoned upload): nothing of it stays on disk.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete blob in the temporary area, not yet a stored file.
pub struct FinishedBlob {
    blobs: Arc<Blobs>,
    path: PathBuf,
    file: FileId,
    channel: ChannelId,
    epoch: i64,
    key: Arc<DataKey>,
    size: u64,
    sha256: [u8; 32],
    placed: bool,
}

impl std::fmt::Debug for FinishedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishedBlob").field("file", &self.file).field("size", &self.size).finish_non_exhaustive()
    }
}

impl FinishedBlob {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn file_id(&self) -> &FileId {
        &self.file
    }

    pub fn channel_id(&self) -> &ChannelId {
        &self.channel
    }

    pub fn key_epoch(&self) -> i64 {
        self.epoch
    }

    pub(crate) fn key(&self) -> &Arc<DataKey> {
        &self.key
    }

    /// Reads the content back (to re-encode an image, say).
    pub fn reader(&self) -> io::Result<BlobReader> {
        BlobReader::open(&self.path, &self.key, blob_aad(&self.channel, &self.file, self.epoch), self.size)
    }

    /// A new blob for the same file, sealed under the same key (the re-encoded image replaces
    /// this one).
    pub fn sibling(&self) -> io::Result<BlobWriter> {
        self.blobs.create(Arc::clone(&self.key), &self.channel, &self.file, self.epoch)
    }
}

impl Drop for FinishedBlob {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads a blob's content: `Read` and `Seek` over the plaintext, opening one chunk at a time.
/// A chunk that fails its integrity check is an `InvalidData` error.
pub struct BlobReader {
    file: File,
    opener: BlobOpener,
    size: u64,
    position: u64,
    current: Option<(u64, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader").field("size", &self.size).field("position", &self.position).finish()
    }
}

impl BlobReader {
    fn open(path: &Path, key: &DataKey, aad: Aad, size: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        if plain_len(file.metadata()?.len()) != Some(size) {
            return Err(invalid("a blob's size does not match its file"));
        }
        let mut header = [0u8; BLOB_HEADER_BYTES];
        file.read_exact(&mut header)?;
        let opener = BlobOpener::new(key, aad, &header).map_err(|_| invalid("a blob header"))?;
        Ok(BlobReader { file, opener, size, position: 0, current: None })
    }

    /// Bytes of content.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn load(&mut self, index: u64) -> io::Result<()> {
        if self.current.as_ref().is_some_and(|(i, _)| *i == index) {
            return Ok(());
        }
        let chunks = chunk_count(self.size);
        let last = index + 1 == chunks;
        let plain = if last { self.size - index * BLOB_CHUNK_BYTES as u64 } else { BLOB_CHUNK_BYTES as u64 };
        let offset = BLOB_HEADER_BYTES as u64 + index * (BLOB_CHUNK_BYTES + BLOB_TAG_BYTES) as u64;
        let mut sealed = vec![0u8; usize::try_from(plain).unwrap_or(BLOB_CHUNK_BYTES) + BLOB_TAG_BYTES];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut sealed)?;
        let index32 = u32::try_from(index).map_err(|_| invalid("a blob chunk index"))?;
        let opened = self
            .opener
            .open_chunk(index32, last, &sealed)
            .map_err(|_| invalid("a blob chunk failed its integrity check"))?;
        self.current = Some((index, opened));
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let index = self.position / BLOB_CHUNK_BYTES as u64;
        self.load(index)?;
        let chunk = self.current.as_ref().map(|(_, c)| c.as_slice()).unwrap_or(&[]);
        let start = usize::try_from(self.position - index * BLOB_CHUNK_BYTES as u64).unwrap_or(usize::MAX);
        let available = chunk.get(start..).unwrap_or(&[]);
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (ChannelId, FileId) {
        (ChannelId::from_generated("c1".into()), FileId::from_generated("f1abc".into()))
    }

    fn write(blobs: &Arc<Blobs>, key: &Arc<DataKey>, data: &[u8], pieces: usize) -> FinishedBlob {
        let (channel, file) = ids();
        let mut writer = blobs.create(Arc::clone(key), &channel, &file, 3).expect("create");
        for piece in data.chunks(pieces.max(1)) {
            writer.append(piece).expect("append");
        }
        writer.finish().expect("finish")
    }

    #[test]
    fn a_blob_round_trips_with_seeks_and_holds_no_plaintext() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Arc::new(Blobs::open(dir.path().join("blobs")).expect("open"));
        let key = Arc::new(DataKey::generate());
        let sentinel = b"SENTINEL-PLAINTEXT-42";
        let mut data: Vec<u8> = (0..BLOB_CHUNK_BYTES * 3 + 17).map(|i| (i % 253) as u8).collect();
        data[100_000..100_000 + sentinel.len()].copy_from_slice(sentinel);
        let mut blob = write(&blobs, &key, &data, 10_000);
        assert_eq!(blob.size(), data.len() as u64);
        assert_eq!(blob.sha256().to_vec(), Sha256::digest(&data).to_vec());
        let path = blobs.place(&mut blob).expect("place");
        drop(blob);
        let raw = std::fs::read(&path).expect("read");
        assert!(!raw.windows(sentinel.len()).any(|w| w == sentinel), "the blob holds plaintext");
        let (channel, file) = ids();
        let mut reader = blobs.reader(&key, &channel, &file, 3, data.len() as u64).expect("reader");
        let mut all = Vec::new();
        reader.read_to_end(&mut all).expect("read all");
        assert_eq!(all, data);
        reader.seek(SeekFrom::Start(BLOB_CHUNK_BYTES as u64 * 2 - 5)).expect("seek");
        let mut ten = [0u8; 10];
        reader.read_exact(&mut ten).expect("across a chunk edge");
        assert_eq!(&ten, &data[BLOB_CHUNK_BYTES * 2 - 5..BLOB_CHUNK_BYTES * 2 + 5]);
        assert!(blobs
            .reader(&key, &channel, &file, 4, data.len() as u64)
            .expect("open")
            .read_to_end(&mut all)
            .is_err());
        assert!(blobs.reader(&key, &channel, &file, 3, 5).is_err(), "a size that does not match");
    }

    #[test]
    fn unfinished_and_unplaced_blobs_leave_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Arc::new(Blobs::open(dir.path().join("blobs")).expect("open"));
        let key = Arc::new(DataKey::generate());
        let (channel, file) = ids();
        let mut writer = blobs.create(Arc::clone(&key), &channel, &file, 1).expect("create");
        writer.append(&[1; 100_000]).expect("append");
        drop(writer);
        drop(write(&blobs, &key, b"x", 1));
        let left = std::fs::read_dir(dir.path().join("blobs").join(TEMP_DIR)).expect("dir").count();
        assert_eq!(left, 0);
    }

    #[test]
    fn empty_and_exact_chunk_blobs_round_trip() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Arc::new(Blobs::open(dir.path().join("blobs")).expect("open"));
        let key = Arc::new(DataKey::generate());
        for data in [Vec::new(), vec![9u8; BLOB_CHUNK_BYTES], vec![8u8; BLOB_CHUNK_BYTES * 2]] {
            let blob = write(&blobs, &key, &data, BLOB_CHUNK_BYTES);
            let mut back = Vec::new();
            blob.reader().expect("reader").read_to_end(&mut back).expect("read");
            assert_eq!(back, data);
        }
    }
}
