//! Shared files. An upload is streamed, never held whole: its first `FILE_SNIFF_BYTES` decide its
//! type (content first, the name's extension must agree, the type must be allowed), then every byte
//! goes into a sealed temporary blob and, as it arrives, to the malware scanner; crossing the size
//! limit or the quota ends it at once and nothing stays. A clean file that is a raster image is
//! re-encoded without its metadata (bounded decoding), then recorded, with the quota checked again
//! in the recording transaction. A download is for members of the file's channel only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_core::channel::ChannelAction;
use rampart_core::files::{FileKind, FileName, TypePolicy};
use rampart_core::{limits, ChannelId, FileId, UserId};
use rampart_store::{BlobReader, BlobWriter, FileRecord, FinishedBlob, InsertFileOutcome, NewFile};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{images, new_id, now, App, AppError, Authenticated, Outcome, RequestMeta};

/// How uploads are judged and stored.
#[derive(Clone, Debug)]
pub struct FilePolicy {
    pub bytes_max: u64,
    pub quota_bytes: u64,
    pub types: TypePolicy,
    /// Re-encode raster images, dropping EXIF (GPS included) and every other metadata.
    pub strip_image_metadata: bool,
    pub image_pixels_max: u64,
    /// Scan every upload before accepting it; off only by explicit configuration.
    pub scanning: bool,
    /// Write an audit record for every download.
    pub audit_downloads: bool,
    pub uploads_at_once_max: usize,
    pub uploads_per_user_at_once_max: usize,
    pub upload_idle_ms: u64,
    /// 0: no minimum rate.
    pub upload_rate_min_bytes_per_sec: u64,
    pub upload_rate_window_ms: u64,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            bytes_max: limits::FILE_BYTES_MAX,
            quota_bytes: limits::FILE_QUOTA_BYTES_PER_USER,
            types: TypePolicy::default(),
            strip_image_metadata: true,
            image_pixels_max: limits::IMAGE_PIXELS_MAX,
            scanning: true,
            audit_downloads: false,
            uploads_at_once_max: limits::FILE_UPLOADS_AT_ONCE_MAX,
            uploads_per_user_at_once_max: limits::FILE_UPLOADS_PER_USER_AT_ONCE_MAX,
            upload_idle_ms: limits::FILE_UPLOAD_IDLE_MS,
            upload_rate_min_bytes_per_sec: limits::FILE_UPLOAD_RATE_MIN_BYTES_PER_SEC,
            upload_rate_window_ms: limits::FILE_UPLOAD_RATE_WINDOW_MS,
        }
    }
}

/// Why a scan gave no verdict (the scanner is down, slow, or answered something unexpected). The
/// text is for the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScanError(pub String);

/// A scanner's verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanVerdict {
    Clean,
    /// The signature's name, as the scanner reported it.
    Infected(String),
}

/// A malware scanner (clamd, in the binary). One session per file, fed as the upload streams.
#[async_trait::async_trait]
pub trait MalwareScanner: Send + Sync + std::fmt::Debug {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScanError>;
}

/// Scanning one file.
#[async_trait::async_trait]
pub trait ScanSession: Send {
    async fn feed(&mut self, data: &[u8]) -> Result<(), ScanError>;
    async fn verdict(self: Box<Self>) -> Result<ScanVerdict, ScanError>;
}

/// A stored file, as the uploader learns of it.
pub type StoredFile = FileRecord;

/// How fast an upload's bytes arrive: no silence of `idle`, and over each window of time spent
/// waiting for them, after the first (grace), at least the minimum rate.
struct Pace {
    idle: Duration,
    window: Duration,
    rate_min_bytes_per_sec: u64,
    /// Whether the window of grace is over.
    graced: bool,
    /// Time spent waiting for the client, and bytes received, in the current window.
    waited: Duration,
    bytes: u64,
    last_byte: Instant,
}

impl Pace {
    fn new(policy: &FilePolicy) -> Self {
        Self {
            idle: Duration::from_millis(policy.upload_idle_ms),
            window: Duration::from_millis(policy.upload_rate_window_ms.max(1)),
            rate_min_bytes_per_sec: policy.upload_rate_min_bytes_per_sec,
            graced: false,
            waited: Duration::ZERO,
            bytes: 0,
            last_byte: Instant::now(),
        }
    }

    /// How long the next read may wait: until the upload has been silent for `idle`, or its
    /// window is over.
    fn read_deadline(&self) -> Duration {
        let silent = self.idle.saturating_sub(self.last_byte.elapsed());
        silent.min(self.window.saturating_sub(self.waited))
    }

    /// Records a wait of `waited` that brought `bytes`: an error when the upload has been silent
    /// for `idle`, or a window ended under the minimum rate.
    fn record(&mut self, waited: Duration, bytes: u64) -> Result<(), AppError> {
        if bytes > 0 {
            self.last_byte = Instant::now();
        } else if self.last_byte.elapsed() >= self.idle {
            return Err(AppError::UploadStalled);
        }
        self.waited += waited;
        self.bytes += bytes;
        if self.waited >= self.window {
            let bytes_min = self.rate_min_bytes_per_sec.saturating_mul(self.window.as_millis() as u64) / 1000;
            if self.graced && self.bytes < bytes_min {
                return Err(AppError::UploadTooSlow { bytes_per_sec_min: self.rate_min_bytes_per_sec });
            }
            self.graced = true;
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(())
    }
}

/// Reads into `buffer` until it is full or the body ends, at the pace `pace` allows.
async fn fill<R: AsyncRead + Unpin>(body: &mut R, buffer: &mut Vec<u8>, pace: &mut Pace) -> Result<bool, AppError> {
    let capacity = buffer.capacity();
    while buffer.len() < capacity {
        let spare = capacity - buffer.len();
        let before = buffer.len();
        let started = Instant::now();
        // Cancel-safe: a read cut off at the deadline loses no bytes.
        let read = tokio::time::timeout(pace.read_deadline(), (&mut *body).take(spare as u64).read_buf(buffer)).await;
        if matches!(read, Ok(Ok(0))) {
            return Ok(false);
        }
        pace.record(started.elapsed(), (buffer.len() - before) as u64)?;
        match read {
            Err(_) => continue,
            Ok(Err(error)) => {
                return Err(AppError::Invalid(rampart_core::validate::FieldError::new(
                    "file",
                    read_error_message(&error),
                )))
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok(true)
}

/// What a client is told when its upload body could not be read (the cause is logged).
fn read_error_message(error: &std::io::Error) -> &'static str {
    tracing::info!(%error, "an upload body could not be read");
    "The upload could not be read to its end."
}

/// Runs blocking blob work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("blob task: {e}")))?
        .map_err(|e| AppError::Internal(format!("blob: {e}")))
}

/// Uploads in progress per user.
pub(crate) type UploadsPerUser = Arc<Mutex<HashMap<UserId, usize>>>;

/// One user's place among their uploads in progress; dropping it frees the place.
struct UserUploadSlot {
    open: UploadsPerUser,
    user: UserId,
}

impl UserUploadSlot {
    /// A place for one more upload of `user`, or 429 when they have `max` in progress.
    fn take(open: &UploadsPerUser, user: &UserId, max: usize) -> Result<Self, AppError> {
        let mut counts = open.lock().map_err(|_| AppError::Internal("upload counts poisoned".into()))?;
        let mine = counts.entry(user.clone()).or_insert(0);
        if *mine >= max.max(1) {
            return Err(AppError::UserUploadsBusy { max });
        }
        *mine += 1;
        Ok(Self { open: Arc::clone(open), user: user.clone() })
    }
}

impl Drop for UserUploadSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.open.lock() {
            if let Some(count) = counts.get_mut(&self.user) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.user);
                }
            }
        }
    }
}

/// The limit an upload may not cross: the size limit, or what is left of the quota.
struct Budget {
    bytes_max: u64,
    quota_left: u64,
}

impl Budget {
    fn check(&self, size: u64) -> Result<(), AppError> {
        if size > self.bytes_max {
            return Err(AppError::TooLarge(format!("Files may be at most {} bytes.", self.bytes_max)));
        }
        if size > self.quota_left {
            return Err(AppError::QuotaExceeded);
        }
        Ok(())
    }
}

impl App {
    /// Installs the malware scanner that uploads are fed to (scanning on and no scanner refuses
    /// every upload).
    pub fn set_scanner(&self, scanner: Arc<dyn MalwareScanner>) {
        let _ = self.inner.scanner.set(scanner);
    }

    fn file_policy(&self) -> &FilePolicy {
        &self.inner.config.files
    }

    /// Receives a file for `channel`, streamed from `body`, named `name` by the client.
    pub async fn upload_file<R: AsyncRead + Unpin + Send>(
        &self,
        auth: &Authenticated,
        channel: &ChannelId,
        name: &str,
        body: &mut R,
        meta: &RequestMeta,
    ) -> Result<StoredFile, AppError> {
        self.channel_access(auth, channel, ChannelAction::Post).await?;
        let name = FileName::sanitize(name)?;
        let policy = self.file_policy().clone();
        let _mine =
            UserUploadSlot::take(&self.inner.uploads_per_user, &auth.user.id, policy.uploads_per_user_at_once_max)?;
        let _permit = self.inner.uploads.clone().try_acquire_owned().map_err(|_| AppError::UploadsBusy)?;
        let used = self.inner.store.user_file_bytes(&auth.user.id).await?;
        let budget = Budget { bytes_max: policy.bytes_max, quota_left: policy.quota_bytes.saturating_sub(used) };
        if budget.quota_left == 0 {
            return Err(AppError::QuotaExceeded);
        }
        let mut pace = Pace::new(&policy);

        let mut head = Vec::with_capacity(limits::FILE_SNIFF_BYTES);
        let mut more = fill(body, &mut head, &mut pace).await?;
        budget.check(head.len() as u64)?;
        let kind = policy.types.classify(&head, &name).map_err(|refusal| AppError::FileType(refusal.message()))?;
        let mut scan = self.start_scan(&policy).await?;
        let file_id = FileId::from_generated(new_id());
        let mut writer = self.inner.store.create_blob(channel, &file_id, now()).await?;
        let mut buffer = head;
        loop {
            if let Some(scan) = scan.as_mut() {
                scan.feed(&buffer).await.map_err(|e| AppError::ScanUnavailable(e.0))?;
            }
            writer = append(writer, buffer).await?;
            if !more {
                break;
            }
            buffer = Vec::with_capacity(rampart_crypto::BLOB_CHUNK_BYTES);
            more = fill(body, &mut buffer, &mut pace).await?;
            budget.check(writer.size() + buffer.len() as u64)?;
        }
        let blob = blocking(move || writer.finish()).await?;
        if let Some(scan) = scan {
            self.judge(scan, auth, channel, &name, meta).await?;
        }
        let blob = self.clean_image(blob, kind, &policy).await?;
        let file = NewFile {
            id: file_id,
            channel_id: channel.clone(),
            uploader_id: auth.user.id.clone(),
            name,
            kind,
            created_at: now(),
        };
        match self.inner.store.insert_file(&file, blob, policy.quota_bytes).await? {
            InsertFileOutcome::Stored(record) => Ok(record),
            InsertFileOutcome::QuotaExceeded { .. } => Err(AppError::QuotaExceeded),
        }
    }

    /// A scan session when scanning is on; refused (fail closed) when the scanner is missing or
    /// unreachable.
    async fn start_scan(&self, policy: &FilePolicy) -> Result<Option<Box<dyn ScanSession>>, AppError> {
        if !policy.scanning {
            return Ok(None);
        }
        let scanner = self.inner.scanner.get().ok_or_else(|| AppError::ScanUnavailable("no scanner set".into()))?;
        scanner.start().await.map(Some).map_err(|e| AppError::ScanUnavailable(e.0))
    }

    /// The scanner's verdict: an infected file is refused and audited.
    async fn judge(
        &self,
        scan: Box<dyn ScanSession>,
        auth: &Authenticated,
        channel: &ChannelId,
        name: &FileName,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        match scan.verdict().await.map_err(|e| AppError::ScanUnavailable(e.0))? {
            ScanVerdict::Clean => Ok(()),
            ScanVerdict::Infected(signature) => {
                tracing::warn!(user_id = %auth.user.id, channel_id = %channel, %signature, "an upload was refused: malware");
                let details = json!({ "channel_id": channel.as_str(), "signature": signature, "name": name.as_str() });
                self.audit(
                    auth.user.id.as_str(),
                    "file.malware_refused",
                    Some(channel.as_str()),
                    Some(meta),
                    Outcome::Failure,
                    details,
                )
                .await?;
                Err(AppError::MalwareDetected)
            }
        }
    }

    /// A raster image re-encoded without metadata, when that is on; other files as they are.
    async fn clean_image(
        &self,
        blob: FinishedBlob,
        kind: FileKind,
        policy: &FilePolicy,
    ) -> Result<FinishedBlob, AppError> {
        if !(kind.is_raster_image() && policy.strip_image_metadata) {
            return Ok(blob);
        }
        let _turn =
            self.inner.image_decodes.acquire().await.map_err(|_| AppError::Internal("image pool closed".into()))?;
        let pixels_max = policy.image_pixels_max;
        let result = tokio::task::spawn_blocking(move || images::reencode(&blob, kind, pixels_max))
            .await
            .map_err(|e| AppError::Internal(format!("image task: {e}")))?;
        result.map_err(images::ImageRefusal::into_app_error)
    }

    /// A file the caller may download (a member of its channel), and a reader of its content.
    /// Anyone else learns nothing: not found.
    pub async fn open_file(
        &self,
        auth: &Authenticated,
        id: &FileId,
        meta: &RequestMeta,
    ) -> Result<(FileRecord, BlobReader), AppError> {
        let file = self.inner.store.file(id).await?.ok_or(AppError::NotFound)?;
        let access = self.channel_access(auth, &file.channel_id, ChannelAction::View).await?;
        if access.membership.is_none() {
            return Err(AppError::NotFound);
        }
        if file.name.is_none() || file.sha256.is_none() {
            return Err(AppError::Internal(format!("file {id} failed its integrity check")));
        }
        let reader = self.inner.store.open_blob(&file).await?;
        if self.file_policy().audit_downloads {
            let details = json!({ "channel_id": file.channel_id.as_str(), "size": file.size });
            self.audit_done(auth, "file.downloaded", Some(id.as_str()), meta, details).await?;
        }
        Ok((file, reader))
    }

    /// Deletes files never attached to a message within `FILE_UNATTACHED_TTL_MS`, and temporary
    /// blobs older than the longest upload; returns how many files.
    pub async fn sweep_files(&self) -> Result<u64, AppError> {
        let before = now().plus_ms(-limits::FILE_UNATTACHED_TTL_MS);
        Ok(self.inner.store.sweep_files(before, 2 * limits::FILE_UPLOAD_TIMEOUT_MS).await?)
    }

    /// Bytes of files the user keeps stored.
    pub async fn file_bytes_used(&self, user: &UserId) -> Result<u64, AppError> {
        Ok(self.inner.store.user_file_bytes(user).await?)
    }
}

/// Appends a buffer to the blob on the blocking pool.
async fn append(mut writer: BlobWriter, buffer: Vec<u8>) -> Result<BlobWriter, AppError> {
    blocking(move || writer.append(&buffer).map(|()| writer)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: u64, window_ms: u64) -> Pace {
        Pace::new(&FilePolicy {
            upload_rate_min_bytes_per_sec: rate,
            upload_rate_window_ms: window_ms,
            upload_idle_ms: 60_000,
            ..FilePolicy::default()
        })
    }

    #[test]
    fn the_first_window_is_grace_and_a_slow_window_after_it_ends_the_upload() {
        let second = Duration::from_secs(1);
        let mut slow = pace(1024, 10_000);
        for _ in 0..10 {
            slow.record(second, 10).expect("grace: no rate in the first window");
        }
        for _ in 0..9 {
            slow.record(second, 100).expect("the window is not over");
        }
        assert!(matches!(slow.record(second, 100), Err(AppError::UploadTooSlow { bytes_per_sec_min: 1024 })));
    }

    #[test]
    fn an_upload_at_the_minimum_rate_goes_on_and_the_deadline_ends_at_the_window() {
        let second = Duration::from_secs(1);
        let mut steady = pace(1024, 10_000);
        for _ in 0..40 {
            steady.record(second, 1024).expect("at the minimum rate");
        }
        let mut off = pace(0, 1_000);
        for _ in 0..10 {
            off.record(second, 0).expect("no minimum");
        }
        let fresh = pace(1024, 2_000);
        assert!(fresh.read_deadline() <= Duration::from_secs(2));
    }
}
