//! Malware scanning with ClamAV's daemon, clamd, over its INSTREAM command (clamd(8)): after
//! `zINSTREAM\0`, the file goes as frames of a 4-byte big-endian length and that many bytes, a
//! zero length ends it, and clamd answers `stream: OK` or `stream: <signature> FOUND` (or an
//! `… ERROR`, such as its StreamMaxLength being crossed). A session is fed while the upload
//! streams, so the file is never read twice and never held whole.
//!
//! Written here rather than taken from the `clamav-client` crate: it takes a whole input stream at
//! once (a tee while uploading would need a task and a channel per upload), reads clamd's reply
//! with no bound, and has no deadlines; the framing itself is a few lines.

use std::time::Duration;

use rampart_app::{MalwareScanner, ScanError, ScanSession, ScanVerdict};
use rampart_core::limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config_files::ClamdAddress;

/// Largest INSTREAM frame sent (clamd's own default chunk is smaller than its limit).
const FRAME_BYTES_MAX: usize = 64 * 1024;

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// clamd at one address.
#[derive(Clone, Debug)]
pub struct Clamd {
    address: ClamdAddress,
    connect_timeout: Duration,
    verdict_timeout: Duration,
}

fn scan_error(what: &str, error: impl std::fmt::Display) -> ScanError {
    ScanError(format!("clamd: {what}: {error}"))
}

impl Clamd {
    pub fn new(address: ClamdAddress) -> Self {
        Self {
            address,
            connect_timeout: Duration::from_millis(limits::CLAMD_CONNECT_TIMEOUT_MS),
            verdict_timeout: Duration::from_millis(limits::CLAMD_VERDICT_TIMEOUT_MS),
        }
    }

    /// The address as configured, for the log.
    pub fn describe(&self) -> String {
        match &self.address {
            ClamdAddress::Unix(path) => format!("unix:{}", path.display()),
            ClamdAddress::Tcp(address) => format!("tcp:{address}"),
        }
    }

    async fn connect(&self) -> Result<Box<dyn Connection>, ScanError> {
        let connecting = async {
            Ok::<Box<dyn Connection>, std::io::Error>(match &self.address {
                ClamdAddress::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                ClamdAddress::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address.as_str()).await?),
            })
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(scan_error("cannot connect", error)),
            Err(_) => Err(ScanError("clamd: connecting timed out".into())),
        }
    }

    /// Whether clamd answers `PING` with `PONG`.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let mut connection = self.connect().await?;
        connection.write_all(b"zPING\0").await.map_err(|e| scan_error("ping", e))?;
        let reply = read_reply(&mut connection, self.verdict_timeout).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ScanError(format!("clamd: unexpected reply to PING: {reply}")))
        }
    }
}

/// Reads clamd's NUL-terminated (or closed) reply, bounded in size and time.
async fn read_reply(connection: &mut Box<dyn Connection>, wait: Duration) -> Result<String, ScanError> {
    let reading = async {
        let mut reply = Vec::with_capacity(64);
        let mut byte = [0u8; 256];
        loop {
            let n = connection.read(&mut byte).await?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&byte[..n]);
            if reply.contains(&0) || reply.len() >= limits::CLAMD_REPLY_BYTES_MAX {
                break;
            }
        }
        Ok::<Vec<u8>, std::io::Error>(reply)
    };
    let reply = match tokio::time::timeout(wait, reading).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => return Err(scan_error("reading the reply", error)),
        Err(_) => return Err(ScanError("clamd: no reply in time".into())),
    };
    let end = reply.iter().position(|b| *b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_owned())
}

/// What clamd's INSTREAM reply means.
fn parse_verdict(reply: &str) -> Result<ScanVerdict, ScanError> {
    let body = reply.strip_prefix("stream:").map(str::trim).unwrap_or(reply);
    if body == "OK" {
        return Ok(ScanVerdict::Clean);
    }
    if let Some(signature) = body.strip_suffix("FOUND") {
        return Ok(ScanVerdict::Infected(signature.trim().chars().take(200).collect()));
    }
    Err(ScanError(format!("clamd: {}", reply.chars().take(200).collect::<String>())))
}

#[async_trait::async_trait]
impl MalwareScanner for Clamd {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        let mut connection = self.connect().await?;
        connection.write_all(b"zINSTREAM\0").await.map_err(|e| scan_error("starting a scan", e))?;
        Ok(Box::new(InStream { connection, wait: self.verdict_timeout }))
    }
}

/// One INSTREAM scan in progress.
struct InStream {
    connection: Box<dyn Connection>,
    wait: Duration,
}

impl InStream {
    /// clamd closed its side mid-stream: what it said before closing.
    async fn refusal(&mut self, error: std::io::Error) -> ScanError {
        match read_reply(&mut self.connection, Duration::from_secs(1)).await {
            Ok(reply) if !reply.is_empty() => ScanError(format!("clamd refused the stream: {reply}")),
            _ => scan_error("sending data", error),
        }
    }
}

#[async_trait::async_trait]
impl ScanSession for InStream {
    async fn feed(&mut self, data: &[u8]) -> Result<(), ScanError> {
        for frame in data.chunks(FRAME_BYTES_MAX) {
            let length = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
            let writing = async {
                self.connection.write_all(&length).await?;
                self.connection.write_all(frame).await
            };
            match tokio::time::timeout(self.wait, writing).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(self.refusal(error).await),
                Err(_) => return Err(ScanError("clamd: sending data timed out".into())),
            }
        }
        Ok(())
    }

    async fn verdict(mut self: Box<Self>) -> Result<ScanVerdict, ScanError> {
        if let Err(error) = self.connection.write_all(&[0, 0, 0, 0]).await {
            return Err(self.refusal(error).await);
        }
        let _ = self.connection.flush().await;
        let reply = read_reply(&mut self.connection, self.wait).await?;
        parse_verdict(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A stand-in clamd: reads one INSTREAM, answers FOUND when the data holds `BAD`, or closes
    /// early with a size error past `limit` bytes.
    async fn fake_clamd(listener: UnixListener, limit: usize) {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut command = [0u8; 10];
        socket.read_exact(&mut command).await.expect("command");
        assert_eq!(&command, b"zINSTREAM\0");
        let mut data = Vec::new();
        loop {
            let mut length = [0u8; 4];
            socket.read_exact(&mut length).await.expect("length");
            let length = u32::from_be_bytes(length) as usize;
            if length == 0 {
                break;
            }
            let mut frame = vec![0u8; length];
            socket.read_exact(&mut frame).await.expect("frame");
            data.extend_from_slice(&frame);
            if data.len() > limit {
                socket.write_all(b"INSTREAM size limit exceeded. ERROR\0").await.expect("reply");
                return;
            }
        }
        let reply: &[u8] =
            if data.windows(3).any(|w| w == b"BAD") { b"stream: Test.Bad FOUND\0" } else { b"stream: OK\0" };
        socket.write_all(reply).await.expect("reply");
    }

    async fn scan(data: &[u8], limit: usize) -> Result<ScanVerdict, ScanError> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("clamd.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(fake_clamd(listener, limit));
        let clamd = Clamd::new(ClamdAddress::Unix(path));
        let mut session = clamd.start().await?;
        let mut result = Ok(());
        for piece in data.chunks(100_000) {
            result = session.feed(piece).await;
            if result.is_err() {
                break;
            }
        }
        let verdict = match result {
            Ok(()) => session.verdict().await,
            Err(error) => Err(error),
        };
        let _ = server.await;
        verdict
    }

    #[tokio::test]
    async fn clean_and_infected_streams_get_their_verdicts() {
        assert_eq!(scan(&vec![b'a'; 300_000], usize::MAX).await.expect("verdict"), ScanVerdict::Clean);
        let mut bad = vec![b'a'; 200_000];
        bad[150_000..150_003].copy_from_slice(b"BAD");
        assert_eq!(scan(&bad, usize::MAX).await.expect("verdict"), ScanVerdict::Infected("Test.Bad".into()));
    }

    #[tokio::test]
    async fn a_stream_over_clamds_limit_is_an_error_not_a_verdict() {
        let error = scan(&vec![b'a'; 2_000_000], 100_000).await.expect_err("over the limit");
        assert!(error.0.contains("size limit") || error.0.contains("sending"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_clamd_is_an_error() {
        let clamd = Clamd::new(ClamdAddress::Unix("/nonexistent/clamd.sock".into()));
        assert!(clamd.start().await.is_err());
        assert!(clamd.ping().await.is_err());
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_verdict("stream: OK").expect("ok"), ScanVerdict::Clean);
        assert_eq!(
            parse_verdict("stream: Eicar-Signature FOUND").expect("found"),
            ScanVerdict::Infected("Eicar-Signature".into())
        );
        assert!(parse_verdict("INSTREAM size limit exceeded. ERROR").is_err());
        assert!(parse_verdict("").is_err());
    }
}
