//! One live connection: authenticate, register with the hub, send `ready`, honour `resume`, then
//! deliver events exactly once and in `seq` order per channel — catching up from the store
//! whenever a gap appears — and ephemeral typing notices, with heartbeats, an idle deadline, and
//! closing when the session ends or the client falls behind.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rampart_app::{App, Authenticated};
use rampart_core::channel::EventKind;
use rampart_core::{limits, ChannelId};
use rampart_crypto::Token;
use serde::Deserialize;
use serde_json::json;

use super::hub::{Hub, LiveEvent, Outbound, Registration};
use crate::config::WsLimits;
use crate::http::wire::event_frame;

pub struct Context {
    pub app: App,
    pub hub: Arc<Hub>,
    pub limits: WsLimits,
}

/// How long a new connection waits for an optional `resume` before delivering live events. A
/// resume that comes later still works; only channels that already had live events delivered get
/// `resync` instead of a replay (a replay then would break `seq` order).
const RESUME_WINDOW_MS: u64 = 250;
/// Events sent in one catch-up before the client is told to resync (and fetch history) instead.
const CATCH_UP_EVENTS_MAX: usize = 10_000;
/// How long the final frames (resync, error, close) may take to write.
const FAREWELL_WRITE_MS: u64 = 10_000;
/// Queued frames written together before one flush.
const OUTBOUND_BATCH_MAX: usize = 64;
/// WebSocket close code for a policy violation, and for "try again later".
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;
/// WebSocket close code "service restart": the node is going away; reconnect (elsewhere).
const CLOSE_SERVICE_RESTART: u16 = 1012;

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

struct Live {
    ctx: Context,
    socket: WebSocket,
    auth: Authenticated,
    token: Token,
    reg: Registration,
    /// The highest seq delivered (or known to the client) per channel.
    cursors: HashMap<ChannelId, i64>,
    /// Channels that have had a live event delivered on this connection.
    delivered_live: std::collections::HashSet<ChannelId>,
    last_heard: Instant,
    last_typing: Option<Instant>,
}

/// Waits for the first frame to be `auth` with a valid token.
async fn first_frame_auth(socket: &mut WebSocket, ctx: &Context) -> Option<(Authenticated, Token)> {
    let deadline = Duration::from_millis(ctx.limits.auth_timeout_ms);
    let frame = tokio::time::timeout(deadline, socket.next()).await;
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
        Some(token) => ctx.app.authenticate(&token).await.ok().map(|auth| (auth, token)),
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

pub async fn run(mut socket: WebSocket, ctx: Context, pre_auth: Option<(Authenticated, Token)>) {
    let authenticated = match pre_auth {
        Some(pair) => Some(pair),
        None => first_frame_auth(&mut socket, &ctx).await,
    };
    let Some((auth, token)) = authenticated else {
        let _ = close(&mut socket, CLOSE_POLICY, "unauthenticated").await;
        return;
    };
    let reg = ctx.hub.register(&auth.user.id, &auth.session.id);
    let conn_id = reg.id;
    let hub = Arc::clone(&ctx.hub);
    let mut live = Live {
        ctx,
        socket,
        auth,
        token,
        reg,
        cursors: HashMap::new(),
        delivered_live: std::collections::HashSet::new(),
        last_heard: Instant::now(),
        last_typing: None,
    };
    let exit = live.serve().await;
    hub.unregister(conn_id);
    if let Exit::Close { code, reason, farewell } = exit {
        let deadline = Duration::from_millis(FAREWELL_WRITE_MS);
        let _ = tokio::time::timeout(deadline, async {
            for frame in farewell {
                live.socket.feed(frame).await?;
            }
            close(&mut live.socket, code, reason).await
        })
        .await;
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) -> Result<(), axum::Error> {
    socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await
}

impl Live {
    async fn serve(&mut self) -> Exit {
        // The start-up steps run in their own boxed future, so their state (the channel list,
        // the ready frame) is freed before the long-lived loop instead of sitting in it.
        if let Some(exit) = Box::pin(self.start()).await {
            return exit;
        }
        self.main_loop().await
    }

    /// Subscribes, sends `ready`, and honours an immediate `resume`.
    async fn start(&mut self) -> Option<Exit> {
        let channels = match self.ctx.app.live_channels(&self.auth.user.id).await {
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
        self.cursors = channels.into_iter().collect();
        let ready = json!({ "type": "ready", "user_id": self.auth.user.id.as_str(), "channels": snapshot }).to_string();
        if self.socket.send(Message::Text(ready.into())).await.is_err() {
            return Some(Exit::Gone);
        }
        // A resuming client sends `resume` right after `ready`; live events wait in the queue
        // meanwhile, so caught-up and live events come out in order.
        match tokio::time::timeout(Duration::from_millis(RESUME_WINDOW_MS), self.socket.next()).await {
            Ok(Some(Ok(message))) => self.on_client_message(message).await,
            Ok(_) => Some(Exit::Gone),
            Err(_) => None,
        }
    }

    async fn main_loop(&mut self) -> Exit {
        let mut ping = tokio::time::interval(Duration::from_millis(self.ctx.limits.ping_interval_ms));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                item = self.reg.rx.recv() => {
                    let Some(item) = item else { return Exit::Gone };
                    if let Some(exit) = self.on_outbound(item).await {
                        return exit;
                    }
                    // Whatever else is already queued goes out in the same write.
                    for _ in 1..OUTBOUND_BATCH_MAX {
                        let Ok(item) = self.reg.rx.try_recv() else { break };
                        if let Some(exit) = self.on_outbound(item).await {
                            return exit;
                        }
                    }
                    if self.socket.flush().await.is_err() {
                        return Exit::Gone;
                    }
                }
                message = self.socket.next() => {
                    let Some(Ok(message)) = message else { return Exit::Gone };
                    if let Some(exit) = Box::pin(self.on_client_message(message)).await {
                        return exit;
                    }
                }
                _ = self.reg.control.notify.notified() => {
                    if let Some(exit) = Box::pin(self.on_control()).await {
                        return exit;
                    }
                }
                _ = ping.tick() => {
                    // A pending signal first: a client that fell behind while this task waited on
                    // its socket is told to resync, not merely closed as idle.
                    if let Some(exit) = Box::pin(self.on_control()).await {
                        return exit;
                    }
                    if self.last_heard.elapsed() > Duration::from_millis(self.ctx.limits.idle_timeout_ms) {
                        return Exit::Close { code: CLOSE_POLICY, reason: "idle", farewell: vec![] };
                    }
                    if self.socket.send(Message::Ping(Default::default())).await.is_err() {
                        return Exit::Gone;
                    }
                }
            }
        }
    }

    async fn on_control(&mut self) -> Option<Exit> {
        let control = Arc::clone(&self.reg.control);
        if control.revoked.swap(false, Ordering::AcqRel) {
            let farewell = vec![error_frame("unauthenticated", "Your session has ended.")];
            return Some(Exit::Close { code: CLOSE_POLICY, reason: "session ended", farewell });
        }
        if control.recheck.swap(false, Ordering::AcqRel) && !self.ctx.app.session_is_live(&self.token).await {
            let farewell = vec![error_frame("unauthenticated", "Your session has ended.")];
            return Some(Exit::Close { code: CLOSE_POLICY, reason: "session ended", farewell });
        }
        if control.draining.swap(false, Ordering::AcqRel) {
            // What is queued is dropped: the client resumes from its cursors on its next node.
            let farewell = vec![reconnect_frame()];
            return Some(Exit::Close { code: CLOSE_SERVICE_RESTART, reason: "node draining", farewell });
        }
        if control.lagged.swap(false, Ordering::AcqRel) {
            // Too slow to keep up: drop what is queued (memory stays bounded), tell the client
            // which channels to refetch, and close.
            while self.reg.rx.try_recv().is_ok() {}
            let farewell = self
                .cursors
                .keys()
                .map(|channel| {
                    Message::Text(json!({ "type": "resync", "channel_id": channel.as_str() }).to_string().into())
                })
                .collect();
            return Some(Exit::Close { code: CLOSE_TRY_AGAIN, reason: "too slow; resync", farewell });
        }
        None
    }

    async fn on_outbound(&mut self, item: Outbound) -> Option<Exit> {
        let result = match item {
            Outbound::Ephemeral(frame) => self.socket.feed(Message::Text(Utf8Bytes::clone(&frame))).await,
            Outbound::Event(event) => return self.on_event(&event).await,
        };
        result.err().map(|_| Exit::Gone)
    }

    /// Delivers one live event exactly once and in order, catching up first if it skips ahead.
    async fn on_event(&mut self, event: &LiveEvent) -> Option<Exit> {
        let own_member_event = event.user.as_ref() == Some(&self.auth.user.id);
        let cursor = match self.cursors.get(&event.channel) {
            Some(cursor) => *cursor,
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
        } else {
            if self.socket.feed(Message::Text(event.frame.clone())).await.is_err() {
                return Some(Exit::Gone);
            }
            // Updated in place: the hot path allocates nothing per delivery.
            match self.cursors.get_mut(&event.channel) {
                Some(cursor) => *cursor = event.seq,
                None => {
                    self.cursors.insert(event.channel.clone(), event.seq);
                }
            }
        }
        if !self.delivered_live.contains(&event.channel) {
            self.delivered_live.insert(event.channel.clone());
        }
        if own_member_event && event.kind == EventKind::MemberLeft {
            self.cursors.remove(&event.channel);
        }
        None
    }

    /// Sends every stored event after `from` in `channel`, page by page.
    async fn catch_up(&mut self, channel: &ChannelId, from: i64) -> Option<Exit> {
        let mut cursor = from;
        let mut sent = 0usize;
        loop {
            let page = match self
                .ctx
                .app
                .events_for_member(&self.auth.user.id, channel, cursor, limits::WS_BACKFILL_PAGE)
                .await
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
            self.cursors.insert(channel.clone(), cursor);
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
                let last = self.ctx.app.live_channels(&self.auth.user.id).await.ok()?;
                if let Some((_, seq)) = last.into_iter().find(|(id, _)| id == channel) {
                    self.cursors.insert(channel.clone(), seq);
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
        if cursors.len() > limits::WS_RESUME_CHANNELS_MAX {
            let _ = self.socket.send(error_frame("invalid_input", "Too many channels in resume.")).await;
            return None;
        }
        for (text, seq) in cursors {
            // Only channels the user belongs to; anything else is ignored (not found).
            let Some(channel) = ChannelId::parse(&text).filter(|c| self.cursors.contains_key(c)) else { continue };
            let behind = self.cursors.get(&channel).is_some_and(|cursor| seq < *cursor);
            if behind && self.delivered_live.contains(&channel) {
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
        let frame = json!({ "type": "typing", "channel_id": channel.as_str(), "user_id": self.auth.user.id.as_str() })
            .to_string();
        if self.ctx.hub.typing(self.reg.id, &self.auth.user.id, &channel, frame.into()) {
            self.last_typing = Some(Instant::now());
        }
    }
}
