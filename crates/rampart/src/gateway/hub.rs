//! The hub: which live connection listens to which channel, and delivery of committed events to
//! them. Each event is serialized once and shared; each connection has a bounded queue, and a
//! connection whose queue is full is marked lagging (it will be told to resync and closed) — the
//! hub never waits on a slow client and never grows memory for one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use rampart_app::EventSink;
use rampart_core::channel::EventKind;
use rampart_core::{ChannelId, SessionId, UserId};
use rampart_store::EventRecord;
use tokio::sync::{mpsc, Notify};

use crate::http::wire::event_frame;

pub type ConnId = u64;

/// One committed event, ready to send.
#[derive(Debug)]
pub struct LiveEvent {
    pub channel: ChannelId,
    pub seq: i64,
    pub kind: EventKind,
    /// For member events: who joined or left.
    pub user: Option<UserId>,
    pub frame: Utf8Bytes,
}

/// What the hub puts in a connection's queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    Event(Arc<LiveEvent>),
    /// An ephemeral frame (typing) with no seq.
    Ephemeral(Utf8Bytes),
}

/// Out-of-band signals to a connection's task.
#[derive(Debug, Default)]
pub struct Control {
    pub lagged: AtomicBool,
    pub revoked: AtomicBool,
    pub recheck: AtomicBool,
    /// The node is draining: the connection says `reconnect` and closes.
    pub draining: AtomicBool,
    pub notify: Notify,
}

impl Control {
    fn raise(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

#[derive(Debug)]
struct Entry {
    user: UserId,
    session: SessionId,
    tx: mpsc::Sender<Outbound>,
    control: Arc<Control>,
    channels: HashSet<ChannelId>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Entry>,
    by_user: HashMap<UserId, Vec<ConnId>>,
    by_channel: HashMap<ChannelId, Vec<ConnId>>,
}

impl State {
    fn subscribe(&mut self, conn: ConnId, channel: &ChannelId) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            if entry.channels.insert(channel.clone()) {
                self.by_channel.entry(channel.clone()).or_default().push(conn);
            }
        }
    }

    fn unsubscribe(&mut self, conn: ConnId, channel: &ChannelId) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.channels.remove(channel);
        }
        if let Some(list) = self.by_channel.get_mut(channel) {
            list.retain(|c| *c != conn);
            if list.is_empty() {
                self.by_channel.remove(channel);
            }
        }
    }
}

/// A registered connection's end of the hub.
#[derive(Debug)]
pub struct Registration {
    pub id: ConnId,
    pub rx: mpsc::Receiver<Outbound>,
    pub control: Arc<Control>,
}

#[derive(Debug)]
pub struct Hub {
    state: RwLock<State>,
    next_id: AtomicU64,
    queue_len: usize,
    /// Frames not queued because a connection's queue was full (each lagging connection is then
    /// told to resync), for the metrics endpoint.
    queue_drops: AtomicU64,
    /// Set once when the node drains: every connection, and any registered after, is told to
    /// reconnect elsewhere.
    draining: AtomicBool,
    /// Upgraded sockets whose task still runs (registered or not, farewell frames included): a
    /// draining node waits for this to reach zero before it exits.
    sockets: Arc<AtomicU64>,
}

/// Counts one upgraded socket in `Hub::open_sockets` while it lives.
#[derive(Debug)]
pub struct SocketGuard(Arc<AtomicU64>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    pub fn new(queue_len: usize) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(State::default()),
            next_id: AtomicU64::new(1),
            queue_len,
            queue_drops: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            sockets: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Registers a connection of `user` (before its channels are read, so no membership change
    /// can slip between the read and the subscription).
    pub fn register(&self, user: &UserId, session: &SessionId) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_len);
        let control = Arc::new(Control::default());
        let entry = Entry {
            user: user.clone(),
            session: session.clone(),
            tx,
            control: Arc::clone(&control),
            channels: HashSet::new(),
        };
        if let Ok(mut state) = self.state.write() {
            state.conns.insert(id, entry);
            state.by_user.entry(user.clone()).or_default().push(id);
            // Checked under the lock `drain` takes, so no connection misses the notice.
            if self.draining.load(Ordering::Acquire) {
                control.raise(&control.draining);
            }
        }
        Registration { id, rx, control }
    }

    pub fn subscribe(&self, conn: ConnId, channels: &[ChannelId]) {
        if let Ok(mut state) = self.state.write() {
            for channel in channels {
                state.subscribe(conn, channel);
            }
        }
    }

    pub fn unregister(&self, conn: ConnId) {
        let Ok(mut state) = self.state.write() else { return };
        let Some(entry) = state.conns.remove(&conn) else { return };
        for channel in &entry.channels {
            if let Some(list) = state.by_channel.get_mut(channel) {
                list.retain(|c| *c != conn);
                if list.is_empty() {
                    state.by_channel.remove(channel);
                }
            }
        }
        if let Some(list) = state.by_user.get_mut(&entry.user) {
            list.retain(|c| *c != conn);
            if list.is_empty() {
                state.by_user.remove(&entry.user);
            }
        }
    }

    /// Counts an upgraded socket until the guard is dropped, at the very end of its task.
    pub fn socket_opened(&self) -> SocketGuard {
        self.sockets.fetch_add(1, Ordering::AcqRel);
        SocketGuard(Arc::clone(&self.sockets))
    }

    /// Upgraded sockets whose task has not ended.
    pub fn open_sockets(&self) -> u64 {
        self.sockets.load(Ordering::Acquire)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.state.read().map(|s| s.conns.len()).unwrap_or(0)
    }

    /// Frames dropped so far because a connection's queue was full.
    pub fn queue_drops(&self) -> u64 {
        self.queue_drops.load(Ordering::Relaxed)
    }

    fn deliver(&self, channel: &ChannelId, item: &Outbound, skip_user: Option<&UserId>) {
        let Ok(state) = self.state.read() else { return };
        let Some(list) = state.by_channel.get(channel) else { return };
        for conn in list {
            let Some(entry) = state.conns.get(conn) else { continue };
            if skip_user.is_some_and(|u| *u == entry.user) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = entry.tx.try_send(item.clone()) {
                self.queue_drops.fetch_add(1, Ordering::Relaxed);
                entry.control.raise(&entry.control.lagged);
            }
        }
    }

    /// An ephemeral notice to a channel's listeners other than `from` (only if `from_conn`
    /// itself listens to the channel, i.e. is a member).
    pub fn typing(&self, from_conn: ConnId, from: &UserId, channel: &ChannelId, frame: Utf8Bytes) -> bool {
        let member =
            self.state.read().is_ok_and(|s| s.conns.get(&from_conn).is_some_and(|e| e.channels.contains(channel)));
        if member {
            self.deliver(channel, &Outbound::Ephemeral(frame), Some(from));
        }
        member
    }

    /// Connections on this session must close.
    pub fn end_session(&self, session: &SessionId) {
        if let Ok(state) = self.state.read() {
            for entry in state.conns.values().filter(|e| &e.session == session) {
                entry.control.raise(&entry.control.revoked);
            }
        }
    }

    /// Connections of this user must check their session again.
    pub fn recheck_user(&self, user: &UserId) {
        if let Ok(state) = self.state.read() {
            for conn in state.by_user.get(user).into_iter().flatten() {
                if let Some(entry) = state.conns.get(conn) {
                    entry.control.raise(&entry.control.recheck);
                }
            }
        }
    }

    /// The node drains: every connection, now and from now on, tells its client to reconnect
    /// (to another node) and closes.
    pub fn drain(&self) {
        if let Ok(state) = self.state.write() {
            self.draining.store(true, Ordering::Release);
            for entry in state.conns.values() {
                entry.control.raise(&entry.control.draining);
            }
        }
    }

    /// Every connection checks its session again (after missed notifications).
    pub fn recheck_all(&self) {
        if let Ok(state) = self.state.read() {
            for entry in state.conns.values() {
                entry.control.raise(&entry.control.recheck);
            }
        }
    }

    fn membership_change(&self, event: &LiveEvent, joined: bool) {
        let Some(user) = &event.user else { return };
        let Ok(mut state) = self.state.write() else { return };
        let conns = state.by_user.get(user).cloned().unwrap_or_default();
        for conn in conns {
            if joined {
                state.subscribe(conn, &event.channel);
            } else {
                state.unsubscribe(conn, &event.channel);
            }
        }
    }
}

impl EventSink for Hub {
    fn publish(&self, event: Arc<EventRecord>) {
        let live = Arc::new(LiveEvent {
            channel: event.channel_id.clone(),
            seq: event.seq,
            kind: event.kind,
            user: event.user_id.clone(),
            frame: Utf8Bytes::from(event_frame(&event)),
        });
        // A new member's connections listen before the event, so they receive their own join.
        if live.kind == EventKind::MemberJoined {
            self.membership_change(&live, true);
        }
        self.deliver(&live.channel, &Outbound::Event(Arc::clone(&live)), None);
        // A member who left hears that they left, then nothing more.
        if live.kind == EventKind::MemberLeft {
            self.membership_change(&live, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> (UserId, SessionId) {
        (UserId::parse(&format!("user-{n}")).expect("id"), SessionId::parse(&format!("session-{n}")).expect("id"))
    }

    #[test]
    fn drain_reaches_every_connection_and_those_registered_after() {
        let hub = Hub::new(4);
        let (user, session) = ids(1);
        let before = hub.register(&user, &session);
        assert!(!before.control.draining.load(Ordering::Acquire));
        hub.drain();
        assert!(before.control.draining.load(Ordering::Acquire), "an open connection is told");
        let (user, session) = ids(2);
        let after = hub.register(&user, &session);
        assert!(after.control.draining.load(Ordering::Acquire), "a connection registered during the drain is told");
    }

    #[test]
    fn open_sockets_are_counted_until_their_guard_drops() {
        let hub = Hub::new(4);
        let first = hub.socket_opened();
        let second = hub.socket_opened();
        assert_eq!(hub.open_sockets(), 2);
        drop(first);
        assert_eq!(hub.open_sockets(), 1);
        drop(second);
        assert_eq!(hub.open_sockets(), 0);
    }
}
