//! The bare baseline: a minimal TLS WebSocket broadcast server with no auth and no storage, run
//! as `loadgen baseline-server` in its own process so that its memory is measured as Rampart's is.
//!
//! Protocol: a client's first frame is `{"room":"NAME"}`; the server answers `{"type":"ready"}`.
//! Every later text frame is sent unchanged to every connection in the room, the sender's own
//! included (as Rampart delivers to all of a channel's connections). Each connection has a bounded
//! queue; when it is full the frame is dropped for that connection and it is sent
//! `{"type":"resync"}` instead of being dropped silently (the `tokio::sync::broadcast` story).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::options::BaselineArgs;

/// What the server prints on stdout, followed by its `https://` address, once it accepts.
pub const LISTENING_MARKER: &str = "baseline is listening on";
/// Open connections at most; more are closed at once.
const CONNECTIONS_MAX: usize = 100_000;
/// Rooms at most.
const ROOMS_MAX: usize = 100_000;
/// Room names are at most this long.
const ROOM_NAME_CHARS_MAX: usize = 64;
/// The TLS handshake, the upgrade and the first frame must each come within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket buffers and frame limit: the same as Rampart's defaults (4 KiB buffers, 16 KiB
/// frames, 1 MiB of pending writes), so that memory per connection compares what each server
/// does with a connection, not how big a read buffer it picked (tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4 * 1024;
const WRITE_BUFFER_BYTES: usize = 4 * 1024;
const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;
const FRAME_BYTES_MAX: usize = 16 * 1024;
/// Frames written before one flush, so a busy connection is not one syscall per frame.
const WRITE_BATCH_MAX: usize = 64;
/// Bounds of `--queue-len`.
const QUEUE_LEN_MAX: usize = 1 << 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    room: String,
}

/// One member of a room: its bounded queue and whether it has lost a frame.
struct Member {
    id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    lagged: Arc<AtomicBool>,
}

struct Hub {
    rooms: Mutex<HashMap<String, Vec<Member>>>,
    next_id: AtomicU64,
    open: AtomicUsize,
}

impl Hub {
    fn join(&self, room: &str, queue: mpsc::Sender<Utf8Bytes>, lagged: Arc<AtomicBool>) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rooms = self.rooms.lock().expect("the room lock is never poisoned");
        if !rooms.contains_key(room) && rooms.len() >= ROOMS_MAX {
            return None;
        }
        rooms.entry(room.to_owned()).or_default().push(Member { id, queue, lagged });
        Some(id)
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.rooms.lock().expect("the room lock is never poisoned");
        if let Some(members) = rooms.get_mut(room) {
            members.retain(|m| m.id != id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Queues `text` for every member of `room`; a full queue marks its member as lagged.
    fn broadcast(&self, room: &str, text: &Utf8Bytes) {
        let rooms = self.rooms.lock().expect("the room lock is never poisoned");
        let Some(members) = rooms.get(room) else {
            return;
        };
        for member in members {
            if member.queue.try_send(text.clone()).is_err() {
                member.lagged.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Runs the baseline server until `lifetime_secs` have passed or the process is killed.
pub async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    let server = Server::bind(&args).await?;
    println!("{LISTENING_MARKER} https://{}", server.address()?);
    server.run(Duration::from_secs(args.lifetime_secs)).await
}

/// A bound baseline server, not yet accepting.
struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Arc<Hub>,
    queue_len: usize,
}

impl Server {
    async fn bind(args: &BaselineArgs) -> anyhow::Result<Server> {
        if !args.listen.ip().is_loopback() {
            bail!("--listen {} is not a loopback address", args.listen);
        }
        if args.queue_len == 0 || args.queue_len > QUEUE_LEN_MAX {
            bail!("--queue-len must be between 1 and {QUEUE_LEN_MAX}");
        }
        let config = crate::tls::server_config(&args.cert, &args.key)?;
        let listener =
            TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let hub = Hub { rooms: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0), open: AtomicUsize::new(0) };
        Ok(Server {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            hub: Arc::new(hub),
            queue_len: args.queue_len,
        })
    }

    fn address(&self) -> anyhow::Result<std::net::SocketAddr> {
        self.listener.local_addr().context("local address")
    }

    /// Accepts connections for `lifetime`, each served by its own task.
    async fn run(self, lifetime: Duration) -> anyhow::Result<()> {
        let lifetime = tokio::time::sleep(lifetime);
        tokio::pin!(lifetime);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = self.listener.accept() => accepted.context("accept")?,
                () = &mut lifetime => return Ok(()),
            };
            if self.hub.open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
                continue;
            }
            self.hub.open.fetch_add(1, Ordering::Relaxed);
            let (acceptor, hub, queue_len) = (self.acceptor.clone(), Arc::clone(&self.hub), self.queue_len);
            tokio::spawn(async move {
                let _ = connection(tcp, acceptor, Arc::clone(&hub), queue_len).await;
                hub.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, hub: Arc<Hub>, queue_len: usize) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await??;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(FRAME_BYTES_MAX))
        .max_frame_size(Some(FRAME_BYTES_MAX));
    let socket =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async_with_config(tls, Some(config)))
            .await??;
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next()).await?;
    let Some(Ok(Message::Text(first))) = first else {
        bail!("no join frame");
    };
    let join: Join = serde_json::from_str(&first)?;
    if join.room.is_empty() || join.room.chars().count() > ROOM_NAME_CHARS_MAX {
        bail!("bad room name");
    }
    let (queue, queued) = mpsc::channel::<Utf8Bytes>(queue_len);
    let lagged = Arc::new(AtomicBool::new(false));
    let Some(id) = hub.join(&join.room, queue, Arc::clone(&lagged)) else {
        bail!("too many rooms");
    };
    if sink.send(Message::text(r#"{"type":"ready"}"#)).await.is_err() {
        hub.leave(&join.room, id);
        return Ok(());
    }
    let writer = tokio::spawn(write_loop(sink, queued, lagged));
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => hub.broadcast(&join.room, &text),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    hub.leave(&join.room, id);
    writer.abort();
    Ok(())
}

type Sink = SplitSink<WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>, Message>;

/// Writes queued frames in batches, one flush per batch, and a `resync` after a dropped frame.
async fn write_loop(
    mut sink: Sink,
    mut queued: mpsc::Receiver<Utf8Bytes>,
    lagged: Arc<AtomicBool>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH_MAX {
            match queued.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if lagged.swap(false, Ordering::Relaxed) {
            batch.push(Utf8Bytes::from_static(r#"{"type":"resync"}"#));
        }
        for text in batch {
            sink.feed(Message::Text(text)).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{message_body, Clock, Metrics};
    use crate::ws::{Endpoint, Hello};

    fn hello(room: &str) -> Hello {
        Hello { frame: serde_json::json!({"room": room}).to_string(), expect_channel: None, resume: false }
    }

    async fn wait_for(metrics: &Metrics, delivered: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metrics.delivered.load(Ordering::Relaxed) < delivered && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A frame reaches every connection in its room, the sender's own included, and no other room.
    #[tokio::test]
    async fn broadcasts_within_a_room_only() {
        let made = crate::tls::make_baseline_certificate().expect("certificate");
        let dir = std::env::temp_dir().join(format!("rampart-bench-baseline-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), &made.cert_pem).expect("cert");
        std::fs::write(dir.join("key.pem"), &made.key_pem).expect("key");
        let args = BaselineArgs {
            listen: "127.0.0.1:0".parse().expect("address"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            queue_len: 16,
            lifetime_secs: 30,
        };
        let server = Server::bind(&args).await.expect("bind");
        std::fs::remove_dir_all(&dir).expect("clean");
        let address = server.address().expect("address");
        let running = tokio::spawn(server.run(Duration::from_secs(30)));
        let tls = crate::tls::client_config(made.ca_pem.as_bytes(), &[crate::tls::ALPN_HTTP1]).expect("client TLS");
        let endpoint = Endpoint {
            address,
            url: format!("wss://localhost:{}/ws", address.port()),
            origin: None,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        };
        let metrics = Arc::new(Metrics::new(Clock::new()).expect("metrics"));
        let mut connections = Vec::new();
        for (index, room) in ["a", "a", "b"].into_iter().enumerate() {
            connections
                .push(crate::ws::open(&endpoint, &hello(room), index, Arc::clone(&metrics)).await.expect("open"));
        }
        let body = message_body(metrics.clock.now_nanos(), 0, 1, "");
        let frame = serde_json::json!({"type": "event", "kind": "message.created", "data": {"body": body}});
        connections[0].outbound.send(Message::text(frame.to_string())).await.expect("send");
        wait_for(&metrics, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(metrics.delivered.load(Ordering::Relaxed), 2, "both members of room a, nobody in b");
        assert!(metrics.errors().is_empty(), "{:?}", metrics.errors());
        assert!(connections.iter().all(|c| c.is_open()));
        metrics.stopping.store(true, Ordering::Relaxed);
        running.abort();
    }
}
