//! One live connection: authenticate, register with the hub, send `ready`, honour `resume`, then
//! deliver events exactly once and in `seq` order per channel — catching up from the store
//! whenever a gap appears — and ephemeral typing notices, with heartbeats, an idle deadline, and
//! closing when the session ends or the client falls behind.
//!
//! Once started, a connection is two tasks. The writer owns the socket's sending half and all
//! the connection's state, and waits on its mailbox only, so a delivery wakes nothing else. The
//! reader owns the receiving half: it hands each client frame to the writer through the same
//! mailbox. The node's heartbeat timer raises each connection's heartbeat once per ping interval.
//!
//! Memory per idle connection is a product goal, so the writer's long-lived future holds only
//! `Live` and its loop: authentication and the start-up steps run in boxed futures of their own,
//! freed before the connection settles.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rampart_app::{App, Authenticated};
use rampart_core::channel::EventKind;
use rampart_core::{limits, ChannelId, Timestamp, UserId};
use rampart_crypto::Token;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::hub::{ClientMessage, Hub, LiveEvent, Outbound, Registration, SocketGuard};
use super::mailbox::{Mailbox, Signal};
use crate::config::WsLimits;
use crate::http::wire::event_frame;
use crate::server::ConnectionSlot;

pub struct Context {
    pub app: App,
    pub hub: Arc<Hub>,
    pub limits: WsLimits,
}

/// What a connection starts from: the server's context and, when the upgrade request carried a
/// valid token, its authentication. The caller boxes it, so each future that carries it to the
/// connection (and keeps the slot for its whole life) holds one pointer instead of a copy.
pub struct Start {
    pub ctx: Context,
    pub pre_auth: Option<(Authenticated, Token)>,
    /// Held for as long as the connection lives: its place under the connection caps, and its
    /// count among the node's open sockets (a draining node waits for that to reach zero).
    pub slot: Option<Arc<ConnectionSlot>>,
    pub socket_guard: SocketGuard,
}

/// How long a new connection waits for an optional `resume` before delivering live events. A
/// resume that comes later still works; only channels that already had live events delivered get
/// `resync` instead of a replay (a replay then would break `seq` order).
const RESUME_WINDOW_MS: u64 = 250;
/// Events sent in one catch-up before the client is told to resync (and fetch history) instead.
const CATCH_UP_EVENTS_MAX: usize = 10_000;
/// How long the final frames (resync, error, close) may take to write.
const FAREWELL_WRITE_MS: u64 = 10_000;
/// After our close frame, how long we keep reading (and discarding) what the client still sends
/// — its pongs, its own close — before dropping the socket. Dropping it with unread data makes
/// the kernel reset the connection, and a reset client may lose the close frame (and the
/// `resync` before it) that it has not read yet.
const CLOSE_LINGER_MS: u64 = 2_000;
/// The writer takes everything queued at once into a buffer of its own; a buffer grown past this
/// many slots by a burst is freed once drained, so an idle connection does not keep it.
pub(super) const BATCH_KEEP_SLOTS: usize = 64;
/// WebSocket close code for a policy violation, and for "try again later".
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;
/// WebSocket close code "service restart": the node is going away; reconnect (elsewhere).
const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code (application range) for a session past its idle or absolute end: sign in again.
const CLOSE_SESSION_EXPIRED: u16 = 4001;

/// The frame that tells a client its node is draining: reconnect (the load balancer sends it to
/// another node) and resume from its cursors.
fn reconnect_frame() -> Message {
    Message::Text(json!({ "type": "reconnect", "reason": "node_draining" }).to_string().into())
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientFrame {
    Auth { token: String },
    Resume { cursors: HashMap<String, i64> },
    Typing { channel_id: String },
}

fn error_frame(code: &str, message: &str) -> Message {
    Message::Text(json!({ "type": "error", "code": code, "message": message }).to_string().into())
}

enum Exit {
    /// The client closed or the socket failed.
    Gone,
    /// We close with this code and reason after sending `farewell` frames.
    Close { code: u16, reason: &'static str, farewell: Vec<Message> },
}

/// The socket's sending half, the writer's. (Split as soon as it is upgraded: the halves are a
/// pointer each, and the socket itself lives once, behind them.)
pub type Sink = SplitSink<WebSocket, Message>;
/// The socket's receiving half, the reader's (the writer's only until the connection is started).
pub type Source = SplitStream<WebSocket>;

/// A connection's place in one channel.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// The highest seq delivered (or known to the client).
    seq: i64,
    /// Whether a live event of the channel has been delivered on this connection.
    delivered_live: bool,
}

struct Live {
    ctx: Context,
    socket: Sink,
    /// Only the user's id: the rest of the session and user records is not kept for the
    /// connection's lifetime.
    user: UserId,
    token: Token,
    /// When the session ends unless used meanwhile (`App::session_ends_at`); the heartbeat
    /// closes the connection once the store agrees it has.
    session_ends_at: Timestamp,
    reg: Registration,
    /// Where the client is, per channel it belongs to.
    cursors: HashMap<ChannelId, Cursor>,
    last_heard: Instant,
    last_typing: Option<Instant>,
    /// `resume` frames honoured so far (at most `WS_RESUMES_PER_CONNECTION_MAX`).
    resumes: u8,
    /// The reader task, aborted when the connection is dropped.
    reader: Option<ReaderTask>,
    _held: (Option<Arc<ConnectionSlot>>, SocketGuard),
}

/// Waits for the first frame to be `auth` with a valid token.
async fn first_frame_auth(socket: &mut Sink, source: &mut Source, ctx: &Context) -> Option<(Authenticated, Token)> {
    let deadline = Duration::from_millis(ctx.limits.auth_timeout_ms);
    let frame = tokio::time::timeout(deadline, source.next()).await;
    let text = match frame {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Err(_) => {
            let _ = socket.send(error_frame("unauthenticated", "Authenticate within 5 seconds.")).await;
            return None;
        }
        _ => return None,
    };
    let token = match serde_json::from_str::<ClientFrame>(text.as_str()) {
        Ok(ClientFrame::Auth { token }) => Token::parse(&token),
        _ => None,
    };
    let authenticated = match token {
        Some(token) => ctx.app.authenticate_socket(&token).await.ok().map(|auth| (auth, token)),
        None => None,
    };
    if authenticated.is_none() {
        let _ = socket
            .send(error_frame(
                "unauthenticated",
                "The first frame must be {\"type\":\"auth\",\"token\":…} with a valid token.",
            ))
            .await;
    }
    authenticated
}

/// Runs a connection to its end. The returned future keeps only a pointer until the connection
/// is authenticated and registered, and only `Live` and its loop afterwards.
pub fn run(socket: Sink, source: Source, start: Box<Start>) -> impl Future<Output = ()> + Send {
    let opening = Box::new((socket, source, start));
    async move {
        let Some((live, source)) = Box::pin(open(opening)).await else { return };
        live.run(source).await;
    }
}

/// Authenticates (by the upgrade's token, else the first frame) and registers the connection.
async fn open(opening: Box<(Sink, Source, Box<Start>)>) -> Option<(Live, Source)> {
    let (mut socket, mut source, start) = *opening;
    let Start { ctx, pre_auth, slot, socket_guard } = *start;
    let authenticated = match pre_auth {
        Some(pair) => Some(pair),
        None => first_frame_auth(&mut socket, &mut source, &ctx).await,
    };
    let Some((auth, token)) = authenticated else {
        let _ = close(&mut socket, CLOSE_POLICY, "unauthenticated").await;
        return None;
    };
    let session_ends_at = ctx.app.session_ends_at(&auth.session);
    let (reg, user) = register(&ctx.hub, auth);
    let live = Live {
        ctx,
        socket,
        user,
        token,
        session_ends_at,
        reg,
        cursors: HashMap::new(),
        last_heard: Instant::now(),
        last_typing: None,
        resumes: 0,
        reader: None,
        _held: (slot, socket_guard),
    };
    Some((live, source))
}

/// Registers the connection, keeping of `auth` only the user's id.
fn register(hub: &Hub, auth: Authenticated) -> (Registration, UserId) {
    let reg = hub.register(&auth.user.id, &auth.session.id);
    (reg, auth.user.id)
}

async fn close<S>(socket: &mut S, code: u16, reason: &'static str) -> Result<(), axum::Error>
where
    S: futures_util::Sink<Message, Error = axum::Error> + Unpin,
{
    socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await
}

/// Aborts the reader when the writer is done, however it ends.
struct ReaderTask(JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reader: hands each frame the client sends to the writer through the connection's mailbox,
/// and reads the next frame only once the writer has handled the last one. Ends when the client
/// has gone (after saying so) or the writer has. (The heartbeat is the node's, `spawn_heartbeat`:
/// no timer per connection.)
async fn read_loop(mut source: Source, mailbox: Arc<Mailbox>) {
    while let Some(Ok(message)) = source.next().await {
        let (done, handled) = oneshot::channel();
        mailbox.push_client(Outbound::Client(Some(Box::new(ClientMessage { message, done }))));
        if handled.await.is_err() {
            return;
        }
    }
    mailbox.push_client(Outbound::Client(None));
}

impl Live {
    /// Serves the connection, then says goodbye as the exit asks.
    async fn run(mut self, source: Source) {
        let exit = self.serve(source).await;
        self.ctx.hub.unregister(self.reg.id);
        if let Exit::Close { code, reason, farewell } = exit {
            Box::pin(self.farewell(code, reason, farewell)).await;
        }
    }

    /// Writes the farewell frames and our close, then lingers (see `CLOSE_LINGER_MS`).
    async fn farewell(&mut self, code: u16, reason: &'static str, farewell: Vec<Message>) {
        let deadline = Duration::from_millis(FAREWELL_WRITE_MS);
        let written = tokio::time::timeout(deadline, async {
            for frame in farewell {
                self.socket.feed(frame).await?;
            }
            close(&mut self.socket, code, reason).await
        })
        .await;
        if matches!(written, Ok(Ok(()))) && self.reader.is_some() {
            let _ = tokio::time::timeout(Duration::from_millis(CLOSE_LINGER_MS), self.discard_until_gone()).await;
        }
    }

    /// Takes what the reader passes on, answering nothing, until the client has gone.
    async fn discard_until_gone(&mut self) {
        let mailbox = Arc::clone(&self.reg.mailbox);
        let mut batch = VecDeque::new();
        loop {
            // Unregistered: nothing raises a signal any more; what was raised is moot.
            mailbox.lower_all();
            std::future::poll_fn(|cx| mailbox.poll_next(cx, &mut batch)).await;
            for item in batch.drain(..) {
                match item {
                    Outbound::Client(Some(client)) => {
                        let _ = client.done.send(());
                    }
                    Outbound::Client(None) => return,
                    Outbound::Event(_) | Outbound::Ephemeral(_) => {}
                }
            }
        }
    }

    async fn serve(&mut self, mut source: Source) -> Exit {
        // The start-up steps run in their own boxed future, so their state (the channel list,
        // the ready frame) is freed before the long-lived loop instead of sitting in it.
        if let Some(exit) = Box::pin(self.start(&mut source)).await {
            return exit;
        }
        let reader = read_loop(source, Arc::clone(&self.reg.mailbox));
        self.reader = Some(ReaderTask(tokio::spawn(tracing::Instrument::in_current_span(reader))));
        self.main_loop().await
    }

    /// Subscribes, sends `ready`, and honours an immediate `resume`.
    async fn start(&mut self, source: &mut Source) -> Option<Exit> {
        let channels = match self.ctx.app.live_channels(&self.user).await {
            Ok(channels) => channels,
            Err(error) => {
                tracing::error!(%error, "cannot read a user's channels");
                return Some(Exit::Close { code: CLOSE_TRY_AGAIN, reason: "unavailable", farewell: vec![] });
            }
        };
        let ids: Vec<ChannelId> = channels.iter().map(|(id, _)| id.clone()).collect();
        self.ctx.hub.subscribe(self.reg.id, &ids);
        let snapshot: serde_json::Map<String, serde_json::Value> =
            channels.iter().map(|(id, seq)| (id.to_string(), json!(seq))).collect();
        self.cursors = channels.into_iter().map(|(id, seq)| (id, Cursor { seq, delivered_live: false })).collect();
        let ready = json!({ "type": "ready", "user_id": self.user.as_str(), "channels": snapshot }).to_string();
        if self.socket.send(Message::Text(ready.into())).await.is_err() {
            return Some(Exit::Gone);
        }
        // A resuming client sends `resume` right after `ready`; live events wait in the queue
        // meanwhile, so caught-up and live events come out in order.
        match tokio::time::timeout(Duration::from_millis(RESUME_WINDOW_MS), source.next()).await {
            Ok(Some(Ok(message))) => self.on_client_message(message).await,
            Ok(_) => Some(Exit::Gone),
            Err(_) => None,
        }
    }

    /// The writer's loop: it wakes only for its mailbox (events, ephemeral frames, the reader's
    /// client frames, signals), handles the signals first, then everything queued, and flushes.
    async fn main_loop(&mut self) -> Exit {
        let mailbox = Arc::clone(&self.reg.mailbox);
        let mut batch = VecDeque::new();
        loop {
            std::future::poll_fn(|cx| mailbox.poll_next(cx, &mut batch)).await;
            if mailbox.any_raised() {
                if let Some(exit) = Box::pin(self.on_control()).await {
                    return exit;
                }
            }
            while let Some(item) = batch.pop_front() {
                if let Some(exit) = self.on_outbound(item).await {
                    return exit;
                }
            }
            if self.socket.flush().await.is_err() {
                return Exit::Gone;
            }
            if batch.capacity() > BATCH_KEEP_SLOTS {
                batch = VecDeque::new();
            }
        }
    }

    /// The signals, most final first. A client that fell behind while this task waited on its
    /// socket is told to resync, not merely closed as idle; the heartbeat checks the idle
    /// deadline, then pings.
    async fn on_control(&mut self) -> Option<Exit> {
        let mailbox = Arc::clone(&self.reg.mailbox);
        if mailbox.take(Signal::Revoked) {
            let farewell = vec![error_frame("unauthenticated", "Your session has ended.")];
            return Some(Exit::Close { code: CLOSE_POLICY, reason: "session ended", farewell });
        }
        if mailbox.take(Signal::Recheck) {
            let Some(ends_at) = self.ctx.app.session_standing(&self.token).await else {
                let farewell = vec![error_frame("unauthenticated", "Your session has ended.")];
                return Some(Exit::Close { code: CLOSE_POLICY, reason: "session ended", farewell });
            };
            self.session_ends_at = ends_at;
        }
        if mailbox.take(Signal::Draining) {
            // What is queued is dropped: the client resumes from its cursors on its next node.
            let farewell = vec![reconnect_frame()];
            return Some(Exit::Close { code: CLOSE_SERVICE_RESTART, reason: "node draining", farewell });
        }
        if mailbox.take(Signal::Lagged) {
            // Too slow to keep up: drop what is queued (memory stays bounded), tell the client
            // which channels to refetch, and close.
            mailbox.clear();
            let farewell = self
                .cursors
                .keys()
                .map(|channel| {
                    Message::Text(json!({ "type": "resync", "channel_id": channel.as_str() }).to_string().into())
                })
                .collect();
            return Some(Exit::Close { code: CLOSE_TRY_AGAIN, reason: "too slow; resync", farewell });
        }
        if mailbox.take(Signal::Heartbeat) {
            if let Some(exit) = self.check_session_end().await {
                return Some(exit);
            }
            if self.last_heard.elapsed() > Duration::from_millis(self.ctx.limits.idle_timeout_ms) {
                return Some(Exit::Close { code: CLOSE_POLICY, reason: "idle", farewell: vec![] });
            }
            if self.socket.feed(Message::Ping(Default::default())).await.is_err() {
                return Some(Exit::Gone);
            }
        }
        None
    }

    /// At each heartbeat: once the session's end as last known has come, the store says whether
    /// it has (HTTP requests may have moved the idle deadline on); if so the connection closes.
    async fn check_session_end(&mut self) -> Option<Exit> {
        if rampart_app::now() < self.session_ends_at {
            return None;
        }
        match self.ctx.app.session_standing(&self.token).await {
            Some(ends_at) if rampart_app::now() < ends_at => {
                self.session_ends_at = ends_at;
                None
            }
            _ => {
                let farewell = vec![error_frame("unauthenticated", "Your session has expired: sign in again.")];
                Some(Exit::Close { code: CLOSE_SESSION_EXPIRED, reason: "session expired", farewell })
            }
        }
    }

    async fn on_outbound(&mut self, item: Outbound) -> Option<Exit> {
        match item {
            Outbound::Event(event) => self.on_event(&event).await,
            Outbound::Ephemeral(frame) => {
                self.socket.feed(Message::Text(Utf8Bytes::clone(&frame))).await.err().map(|_| Exit::Gone)
            }
            Outbound::Client(Some(client)) => {
                let ClientMessage { message, done } = *client;
                let exit = Box::pin(self.on_client_message(message)).await;
                // The reader may read the next frame.
                let _ = done.send(());
                exit
            }
            Outbound::Client(None) => Some(Exit::Gone),
        }
    }

    /// Delivers one live event exactly once and in order, catching up first if it skips ahead.
    async fn on_event(&mut self, event: &LiveEvent) -> Option<Exit> {
        let own_member_event = event.user.as_ref() == Some(&self.user);
        // The common case, the next event of a channel the client follows: one lookup, updated
        // in place, nothing allocated.
        if let Some(cursor) = self.cursors.get_mut(&event.channel) {
            if event.seq == cursor.seq + 1 && !own_member_event {
                if self.socket.feed(Message::Text(event.frame.clone())).await.is_err() {
                    return Some(Exit::Gone);
                }
                *cursor = Cursor { seq: event.seq, delivered_live: true };
                return None;
            }
        }
        let cursor = match self.cursors.get(&event.channel) {
            Some(cursor) => cursor.seq,
            // Just added to the channel: start from this event.
            None if own_member_event && event.kind == EventKind::MemberJoined => event.seq - 1,
            None => return None,
        };
        if event.seq <= cursor {
            return None;
        }
        if event.seq > cursor + 1 {
            if let Some(exit) = Box::pin(self.catch_up(&event.channel, cursor)).await {
                return Some(exit);
            }
            if let Some(cursor) = self.cursors.get_mut(&event.channel) {
                cursor.delivered_live = true;
            }
        } else {
            if self.socket.feed(Message::Text(event.frame.clone())).await.is_err() {
                return Some(Exit::Gone);
            }
            self.cursors.insert(event.channel.clone(), Cursor { seq: event.seq, delivered_live: true });
        }
        if own_member_event && event.kind == EventKind::MemberLeft {
            self.cursors.remove(&event.channel);
        }
        None
    }

    /// Moves the client's cursor in `channel` to `seq`.
    fn set_cursor(&mut self, channel: &ChannelId, seq: i64) {
        match self.cursors.get_mut(channel) {
            Some(cursor) => cursor.seq = seq,
            None => {
                self.cursors.insert(channel.clone(), Cursor { seq, delivered_live: false });
            }
        }
    }

    /// Sends every stored event after `from` in `channel`, page by page.
    async fn catch_up(&mut self, channel: &ChannelId, from: i64) -> Option<Exit> {
        let mut cursor = from;
        let mut sent = 0usize;
        loop {
            let page = match self.ctx.app.events_for_member(&self.user, channel, cursor, limits::WS_BACKFILL_PAGE).await
            {
                Ok(Some(page)) => page,
                Ok(None) => {
                    self.cursors.remove(channel);
                    return None;
                }
                Err(error) => {
                    tracing::error!(%error, "catch-up read failed");
                    return Some(Exit::Close { code: CLOSE_TRY_AGAIN, reason: "unavailable", farewell: vec![] });
                }
            };
            let full = page.len() as u32 == limits::WS_BACKFILL_PAGE;
            for event in &page {
                if self.socket.feed(Message::Text(event_frame(event).into())).await.is_err() {
                    return Some(Exit::Gone);
                }
                cursor = event.seq;
            }
            if self.socket.flush().await.is_err() {
                return Some(Exit::Gone);
            }
            self.set_cursor(channel, cursor);
            sent += page.len();
            if !full {
                return None;
            }
            if sent >= CATCH_UP_EVENTS_MAX {
                // Far behind: the client refetches history instead of replaying it all here.
                let resync = json!({ "type": "resync", "channel_id": channel.as_str() }).to_string();
                if self.socket.send(Message::Text(resync.into())).await.is_err() {
                    return Some(Exit::Gone);
                }
                let last = self.ctx.app.live_channels(&self.user).await.ok()?;
                if let Some((_, seq)) = last.into_iter().find(|(id, _)| id == channel) {
                    self.set_cursor(channel, seq);
                }
                return None;
            }
        }
    }

    async fn on_client_message(&mut self, message: Message) -> Option<Exit> {
        self.last_heard = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Some(Exit::Gone),
            Message::Ping(_) | Message::Pong(_) => return None,
            Message::Binary(_) => {
                let _ = self.socket.send(error_frame("invalid_input", "Frames are JSON text.")).await;
                return None;
            }
        };
        match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(ClientFrame::Resume { cursors }) => self.resume(cursors).await,
            Ok(ClientFrame::Typing { channel_id }) => {
                self.typing(&channel_id);
                None
            }
            Ok(ClientFrame::Auth { .. }) => {
                let _ = self.socket.send(error_frame("invalid_input", "Already authenticated.")).await;
                None
            }
            Err(_) => {
                let _ = self.socket.send(error_frame("invalid_input", "Unknown or malformed frame.")).await;
                None
            }
        }
    }

    async fn resume(&mut self, cursors: HashMap<String, i64>) -> Option<Exit> {
        // Each resume may read and decrypt thousands of stored events: a connection gets its
        // budget, and a replay past it costs the store nothing.
        if self.resumes >= limits::WS_RESUMES_PER_CONNECTION_MAX {
            let refused =
                error_frame("resume_refused", "This connection has already resumed: reconnect to resume again.");
            return self.socket.send(refused).await.err().map(|_| Exit::Gone);
        }
        if cursors.len() > limits::WS_RESUME_CHANNELS_MAX {
            let _ = self.socket.send(error_frame("invalid_input", "Too many channels in resume.")).await;
            return None;
        }
        self.resumes += 1;
        for (text, seq) in cursors {
            // Only channels the user belongs to; anything else is ignored (not found).
            let Some(channel) = ChannelId::parse(&text).filter(|c| self.cursors.contains_key(c)) else { continue };
            let cursor = self.cursors.get(&channel).copied();
            if cursor.is_some_and(|cursor| seq < cursor.seq && cursor.delivered_live) {
                // Newer events already went out live; replaying older ones now would break the
                // order, so the client refetches this channel's history instead.
                let resync = json!({ "type": "resync", "channel_id": channel.as_str() }).to_string();
                if self.socket.send(Message::Text(resync.into())).await.is_err() {
                    return Some(Exit::Gone);
                }
                continue;
            }
            if let Some(exit) = self.catch_up(&channel, seq.max(0)).await {
                return Some(exit);
            }
        }
        None
    }

    fn typing(&mut self, channel_id: &str) {
        let interval = Duration::from_millis(limits::WS_TYPING_INTERVAL_MS);
        if self.last_typing.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        let Some(channel) = ChannelId::parse(channel_id) else { return };
        let frame =
            json!({ "type": "typing", "channel_id": channel.as_str(), "user_id": self.user.as_str() }).to_string();
        if self.ctx.hub.typing(self.reg.id, &self.user, &channel, frame.into()) {
            self.last_typing = Some(Instant::now());
        }
    }
}
