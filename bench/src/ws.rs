//! Client WebSocket connections over TLS (tokio-rustls, then the tungstenite handshake): open,
//! say the first frame (Rampart's `auth`, the baseline's `join`), wait for `ready`, then count the
//! `message.created` events that arrive and their send→deliver latency.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::metrics::{parse_stamp, Metrics};

/// How long opening a connection (TCP, TLS, upgrade, first frame, `ready`) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames waiting to be written on one connection (only the baseline's senders write).
pub const OUTBOUND_QUEUE_LEN: usize = 256;
/// Largest frame or message accepted from a server.
const FRAME_BYTES_MAX: usize = 1 << 20;

/// Where and how to open connections to one server.
#[derive(Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// `wss://localhost:PORT/path`: the name is what the certificate is checked against.
    pub url: String,
    /// Sent as `Origin`, as a browser would (Rampart checks it against its public origin).
    pub origin: Option<String>,
    pub tls: TlsConnector,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("address", &self.address).field("url", &self.url).finish_non_exhaustive()
    }
}

/// The first frame a connection sends, and what its `ready` answer must show.
#[derive(Clone, Debug)]
pub struct Hello {
    pub frame: String,
    /// A channel the `ready` frame must list (Rampart), counted as an error when missing.
    pub expect_channel: Option<String>,
    /// Answer `ready` with `resume` and the cursors it gave (Rampart): a client that has seen
    /// nothing new says so at once, instead of leaving the server to wait out its resume window
    /// before it delivers live events.
    pub resume: bool,
}

/// An open connection; dropping it stops its tasks and closes the socket.
#[derive(Debug)]
pub struct Connection {
    pub outbound: mpsc::Sender<Message>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connection {
    /// Whether the server has not closed the connection.
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    frame_type: String,
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
    data: Option<FrameData>,
    channels: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct FrameData {
    body: Option<String>,
}

/// Small read and write buffers: with thousands of connections in this process, tungstenite's
/// default 128 KiB each would cost the load generator gigabytes.
const BUFFER_BYTES: usize = 8 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(FRAME_BYTES_MAX + BUFFER_BYTES)
        .max_message_size(Some(FRAME_BYTES_MAX))
        .max_frame_size(Some(FRAME_BYTES_MAX))
}

/// Opens connection number `index`, sends `hello`, and waits for `ready`.
pub async fn open(
    endpoint: &Endpoint,
    hello: &Hello,
    index: usize,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Connection> {
    tokio::time::timeout(OPEN_TIMEOUT, open_inner(endpoint, hello, index, metrics))
        .await
        .context("opening the connection timed out")?
}

async fn open_inner(
    endpoint: &Endpoint,
    hello: &Hello,
    index: usize,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Connection> {
    let mut socket = upgrade(endpoint).await?;
    socket.send(Message::text(hello.frame.clone())).await.context("sending the first frame")?;
    await_ready(&mut socket, hello, &metrics).await?;
    let (sink, stream) = socket.split();
    let (outbound, queue) = mpsc::channel::<Message>(OUTBOUND_QUEUE_LEN);
    let writer = tokio::spawn(write_loop(sink, queue, Arc::clone(&metrics)));
    let reader = tokio::spawn(read_loop(stream, index, metrics));
    Ok(Connection { outbound, reader, writer })
}

type Socket = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// TCP, TLS (the certificate checked for `localhost`), then the WebSocket upgrade.
async fn upgrade(endpoint: &Endpoint) -> anyhow::Result<Socket> {
    let tcp = TcpStream::connect(endpoint.address).await.context("TCP connect")?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let name = rustls::pki_types::ServerName::try_from("localhost").context("server name")?.to_owned();
    let tls = endpoint.tls.connect(name, tcp).await.context("TLS handshake")?;
    let mut request = endpoint.url.as_str().into_client_request().context("WebSocket URL")?;
    if let Some(origin) = &endpoint.origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).context("origin")?);
    }
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config()))
        .await
        .context("WebSocket upgrade")?;
    Ok(socket)
}

/// Waits for `ready` (other frames before it are skipped), checks it, and resumes if asked.
async fn await_ready(socket: &mut Socket, hello: &Hello, metrics: &Metrics) -> anyhow::Result<()> {
    loop {
        let message = socket.next().await.context("the server closed before ready")?.context("reading ready")?;
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Frame = serde_json::from_str(&text).context("a frame that is not JSON")?;
        match frame.frame_type.as_str() {
            "ready" => {
                let cursors = frame.channels.unwrap_or_default();
                if let Some(channel) = &hello.expect_channel {
                    if !cursors.contains_key(channel) {
                        metrics.error("ready_without_channel");
                    }
                }
                if hello.resume {
                    let resume = serde_json::json!({"type": "resume", "cursors": cursors});
                    socket.send(Message::text(resume.to_string())).await.context("sending resume")?;
                }
                return Ok(());
            }
            "error" => bail!(
                "the server refused the connection: {} ({})",
                frame.code.unwrap_or_default(),
                frame.message.unwrap_or_default()
            ),
            _ => continue,
        }
    }
}

async fn write_loop(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Message>, metrics: Arc<Metrics>) {
    while let Some(message) = queue.recv().await {
        if sink.send(message).await.is_err() {
            if !metrics.stopping.load(Ordering::Relaxed) {
                metrics.error("ws_write_failed");
            }
            return;
        }
    }
    let _ = sink.close().await;
}

async fn read_loop(mut stream: SplitStream<Socket>, index: usize, metrics: Arc<Metrics>) {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => on_frame(&text, index, &metrics),
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(_) => {
                if !metrics.stopping.load(Ordering::Relaxed) {
                    metrics.error("ws_read_failed");
                }
                return;
            }
        }
    }
    if !metrics.stopping.load(Ordering::Relaxed) {
        metrics.error("ws_closed_by_server");
    }
}

/// Counts one frame: a benchmark message is a delivery; `resync` and `error` are errors.
fn on_frame(text: &str, index: usize, metrics: &Metrics) {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        metrics.error("ws_frame_unreadable");
        return;
    };
    match frame.frame_type.as_str() {
        "event" if frame.kind.as_deref() == Some("message.created") => {
            let stamp = frame.data.and_then(|d| d.body).and_then(|body| parse_stamp(&body));
            match stamp {
                Some(sent_nanos) => metrics.record_delivery(index, sent_nanos),
                None => metrics.error("ws_message_without_stamp"),
            }
        }
        "resync" => metrics.error("ws_resync"),
        "error" => metrics.error(&format!("ws_error_{}", frame.code.as_deref().unwrap_or("unknown"))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Clock;

    #[test]
    fn counts_deliveries_and_errors_from_frames() {
        let metrics = Metrics::new(Clock::new()).expect("metrics");
        let event = r#"{"type":"event","channel_id":"c","seq":1,"kind":"message.created","data":{"id":"m","body":"bench t=0 s=1 n=1 pad","client_id":"x"}}"#;
        on_frame(event, 3, &metrics);
        on_frame(r#"{"type":"event","channel_id":"c","seq":2,"kind":"member.joined","data":{}}"#, 3, &metrics);
        on_frame(r#"{"type":"resync","channel_id":"c"}"#, 3, &metrics);
        on_frame(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#, 3, &metrics);
        on_frame("not json", 3, &metrics);
        assert_eq!(metrics.delivered.load(Ordering::Relaxed), 1);
        let errors = metrics.errors();
        assert_eq!(errors.get("ws_resync"), Some(&1));
        assert_eq!(errors.get("ws_error_rate_limited"), Some(&1));
        assert_eq!(errors.get("ws_frame_unreadable"), Some(&1));
    }
}
