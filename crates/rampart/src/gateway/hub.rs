//! The hub: which live connection listens to which channel, and delivery of committed events to
//! them. Each event is serialized once and shared; each connection has a bounded queue, and a
//! connection whose queue is full is marked lagging (it will be told to resync and closed) — the
//! hub never waits on a slow client and never grows memory for one.
//!
//! Events of one channel are dispatched in `seq` order. Concurrent sends commit in order but each
//! publishes after its own commit, so they can arrive swapped; a connection that sees a gap reads
//! it back from the store, and with hundreds of listeners one swap would cost hundreds of reads.
//! The hub instead holds an early event until the missing one arrives (normally microseconds
//! later), for at most `HUB_REORDER_WAIT_MS`; a gap still open then is dispatched as it is and
//! the connections catch up from the store, so nothing is ever lost by waiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use rampart_app::EventSink;
use rampart_core::channel::EventKind;
use rampart_core::limits::{HUB_REORDER_HELD_MAX, HUB_REORDER_WAIT_MS};
use rampart_core::{ChannelId, SessionId, UserId};
use rampart_store::EventRecord;
use tokio::sync::oneshot;

use super::mailbox::{Mailbox, Signal};

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

/// What a connection's mailbox carries to its writer: from the hub, events and ephemeral frames;
/// from the connection's own reader, what the client sent. One queue, so the writer wakes for
/// one reason only: something to do.
#[derive(Debug)]
pub enum Outbound {
    Event(Arc<LiveEvent>),
    /// An ephemeral frame (typing) with no seq. (In an `Arc`, so every variant is one pointer
    /// and each queued item stays small.)
    Ephemeral(Arc<Utf8Bytes>),
    /// A frame the client sent (boxed: client frames are rare and the queue's slots stay small),
    /// or `None` once the client has closed or its socket has failed.
    Client(Option<Box<ClientMessage>>),
}

/// A frame from the client on its way from the connection's reader to its writer. The reader
/// reads nothing more until `done` is answered (or dropped), so a client has at most one frame
/// waiting, as when one task both read and wrote.
#[derive(Debug)]
pub struct ClientMessage {
    pub message: Message,
    pub done: oneshot::Sender<()>,
}

/// A connection listening to a channel: what the hub needs to deliver to it, without a lookup.
#[derive(Debug)]
struct Listener {
    conn: ConnId,
    mailbox: Arc<Mailbox>,
}

#[derive(Debug)]
struct Entry {
    user: UserId,
    session: SessionId,
    mailbox: Arc<Mailbox>,
    channels: HashSet<ChannelId>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Entry>,
    by_user: HashMap<UserId, Vec<ConnId>>,
    by_channel: HashMap<ChannelId, Vec<Listener>>,
}

impl State {
    fn subscribe(&mut self, conn: ConnId, channel: &ChannelId) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            if entry.channels.insert(channel.clone()) {
                let listener = Listener { conn, mailbox: Arc::clone(&entry.mailbox) };
                self.by_channel.entry(channel.clone()).or_default().push(listener);
            }
        }
    }

    fn unsubscribe(&mut self, conn: ConnId, channel: &ChannelId) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.channels.remove(channel);
        }
        if let Some(list) = self.by_channel.get_mut(channel) {
            list.retain(|l| l.conn != conn);
            if list.is_empty() {
                self.by_channel.remove(channel);
            }
        }
    }
}

/// Dispatch order of one channel: the next `seq` to go out and the events that came ahead of it.
#[derive(Debug, Default)]
struct ChannelOrder {
    /// `None` until the first event of the channel since start.
    next: Option<i64>,
    held: BTreeMap<i64, Arc<LiveEvent>>,
}

impl ChannelOrder {
    /// Takes `event` in; returns what may go out now, in order, and whether `event` was held.
    fn admit(&mut self, event: Arc<LiveEvent>) -> (Vec<Arc<LiveEvent>>, bool) {
        let seq = event.seq;
        match self.next {
            // First since start, or late (its gap was already given up on, or a duplicate): out
            // at once; connections drop what they already have.
            None => {
                self.next = Some(seq + 1);
                (vec![event], false)
            }
            Some(next) if seq < next => (vec![event], false),
            Some(next) if seq == next => {
                let mut ready = vec![event];
                let mut after = seq + 1;
                while let Some(held) = self.held.remove(&after) {
                    ready.push(held);
                    after += 1;
                }
                self.next = Some(after);
                (ready, false)
            }
            Some(_) => {
                self.held.insert(seq, event);
                if self.held.len() > HUB_REORDER_HELD_MAX {
                    return (self.give_up(), false);
                }
                (Vec::new(), true)
            }
        }
    }

    /// Stops waiting: everything held goes out in order, past the gap.
    fn give_up(&mut self) -> Vec<Arc<LiveEvent>> {
        let ready: Vec<_> = std::mem::take(&mut self.held).into_values().collect();
        if let Some(last) = ready.last() {
            self.next = Some(last.seq + 1);
        }
        ready
    }
}

/// Where the hub passes on what the other nodes of a cluster must hear: events committed here,
/// and typing notices. Unset on a single node. Must not block.
pub trait Relay: Send + Sync + std::fmt::Debug {
    fn event(&self, event: &EventRecord);
    fn typing(&self, channel: &ChannelId, user: &UserId);
}

/// A registered connection's end of the hub.
#[derive(Debug)]
pub struct Registration {
    pub id: ConnId,
    pub mailbox: Arc<Mailbox>,
}

#[derive(Debug)]
pub struct Hub {
    state: RwLock<State>,
    /// Per channel dispatch order. Locked across a dispatch (so two publishers cannot interleave
    /// their batches), always before `state`, never after it.
    order: Mutex<HashMap<ChannelId, ChannelOrder>>,
    /// For the timer that ends a wait.
    this: Weak<Hub>,
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
    /// The cluster's bus, when this node is one of several.
    relay: OnceLock<Arc<dyn Relay>>,
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
        Arc::new_cyclic(|this| Self {
            state: RwLock::new(State::default()),
            order: Mutex::new(HashMap::new()),
            this: this.clone(),
            next_id: AtomicU64::new(1),
            queue_len,
            queue_drops: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            sockets: Arc::new(AtomicU64::new(0)),
            relay: OnceLock::new(),
        })
    }

    /// Makes this node relay its events and typing notices to the rest of a cluster (once).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Registers a connection of `user` (before its channels are read, so no membership change
    /// can slip between the read and the subscription).
    pub fn register(&self, user: &UserId, session: &SessionId) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::new(self.queue_len));
        let entry = Entry {
            user: user.clone(),
            session: session.clone(),
            mailbox: Arc::clone(&mailbox),
            channels: HashSet::new(),
        };
        if let Ok(mut state) = self.state.write() {
            state.conns.insert(id, entry);
            state.by_user.entry(user.clone()).or_default().push(id);
            // Checked under the lock `drain` takes, so no connection misses the notice.
            if self.draining.load(Ordering::Acquire) {
                mailbox.raise(Signal::Draining);
            }
        }
        Registration { id, mailbox }
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
                list.retain(|l| l.conn != conn);
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

    /// Queues `item()` for each listener of `channel` (but `skip_user`'s).
    fn deliver(&self, channel: &ChannelId, item: impl Fn() -> Outbound, skip_user: Option<&UserId>) {
        let Ok(state) = self.state.read() else { return };
        let Some(list) = state.by_channel.get(channel) else { return };
        for listener in list {
            // Only typing skips a user; events go to every listener without a lookup.
            if let Some(user) = skip_user {
                if state.conns.get(&listener.conn).is_none_or(|entry| entry.user == *user) {
                    continue;
                }
            }
            if !listener.mailbox.deliver(item()) {
                self.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An ephemeral notice to a channel's listeners other than `from` (only if `from_conn`
    /// itself listens to the channel, i.e. is a member).
    pub fn typing(&self, from_conn: ConnId, from: &UserId, channel: &ChannelId, frame: Utf8Bytes) -> bool {
        let member =
            self.state.read().is_ok_and(|s| s.conns.get(&from_conn).is_some_and(|e| e.channels.contains(channel)));
        if member {
            let frame = Arc::new(frame);
            self.deliver(channel, || Outbound::Ephemeral(Arc::clone(&frame)), Some(from));
            if let Some(relay) = self.relay.get() {
                relay.typing(channel, from);
            }
        }
        member
    }

    /// A typing notice from another node's connection: to this node's listeners of the channel
    /// other than the typist.
    pub fn typing_from_elsewhere(&self, from: &UserId, channel: &ChannelId, frame: Utf8Bytes) {
        let frame = Arc::new(frame);
        self.deliver(channel, || Outbound::Ephemeral(Arc::clone(&frame)), Some(from));
    }

    /// Whether a connection here listens to `channel`.
    pub fn listens(&self, channel: &ChannelId) -> bool {
        self.state.read().is_ok_and(|s| s.by_channel.contains_key(channel))
    }

    /// Whether `user` has a connection here.
    pub fn has_user(&self, user: &UserId) -> bool {
        self.state.read().is_ok_and(|s| s.by_user.contains_key(user))
    }

    /// The channels some connection here listens to.
    pub fn listened_channels(&self) -> Vec<ChannelId> {
        self.state.read().map(|s| s.by_channel.keys().cloned().collect()).unwrap_or_default()
    }

    /// The last `seq` of `channel` dispatched in order here, if any event of it was since start.
    pub fn dispatched_through(&self, channel: &ChannelId) -> Option<i64> {
        let order = self.order.lock().ok()?;
        order.get(channel).and_then(|entry| entry.next).map(|next| next - 1)
    }

    /// Marks `channel` dispatched through `head` if nothing of it was since start: its
    /// connections took their cursors from the store, so later events follow on from there (a
    /// connection that is behind still catches up by itself at the next event).
    pub fn start_at(&self, channel: &ChannelId, head: i64) {
        if let Ok(mut order) = self.order.lock() {
            let entry = order.entry(channel.clone()).or_default();
            if entry.next.is_none() {
                entry.next = Some(head + 1);
            }
        }
    }

    /// Connections on this session check it again (a notice from another node: checked against
    /// the store rather than believed).
    pub fn recheck_session(&self, session: &SessionId) {
        if let Ok(state) = self.state.read() {
            for entry in state.conns.values().filter(|e| &e.session == session) {
                entry.mailbox.raise(Signal::Recheck);
            }
        }
    }

    /// Connections on this session must close.
    pub fn end_session(&self, session: &SessionId) {
        if let Ok(state) = self.state.read() {
            for entry in state.conns.values().filter(|e| &e.session == session) {
                entry.mailbox.raise(Signal::Revoked);
            }
        }
    }

    /// Connections of this user must check their session again.
    pub fn recheck_user(&self, user: &UserId) {
        if let Ok(state) = self.state.read() {
            for conn in state.by_user.get(user).into_iter().flatten() {
                if let Some(entry) = state.conns.get(conn) {
                    entry.mailbox.raise(Signal::Recheck);
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
                entry.mailbox.raise(Signal::Draining);
            }
        }
    }

    /// Raises the heartbeat of the connections in `slot` of `slots` (by id). The node's one
    /// heartbeat timer walks the slots, so every connection beats once per ping interval without
    /// a timer of its own, and the pings are spread over the interval rather than sent together.
    pub fn heartbeat(&self, slot: u64, slots: u64) {
        if let Ok(state) = self.state.read() {
            for (id, entry) in &state.conns {
                if id % slots == slot {
                    entry.mailbox.raise(Signal::Heartbeat);
                }
            }
        }
    }

    /// Every connection checks its session again (after missed notifications).
    pub fn recheck_all(&self) {
        if let Ok(state) = self.state.read() {
            for entry in state.conns.values() {
                entry.mailbox.raise(Signal::Recheck);
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

impl Hub {
    fn dispatch(&self, live: &Arc<LiveEvent>) {
        // A new member's connections listen before the event, so they receive their own join.
        if live.kind == EventKind::MemberJoined {
            self.membership_change(live, true);
        }
        self.deliver(&live.channel, || Outbound::Event(Arc::clone(live)), None);
        // A member who left hears that they left, then nothing more.
        if live.kind == EventKind::MemberLeft {
            self.membership_change(live, false);
        }
    }

    /// Events held in `channel` at or below `seq` stop waiting (the timer of the event `seq`).
    fn end_wait(&self, channel: &ChannelId, seq: i64) {
        let Ok(mut order) = self.order.lock() else { return };
        let Some(entry) = order.get_mut(channel) else { return };
        if entry.held.first_key_value().is_some_and(|(first, _)| *first <= seq) {
            for live in entry.give_up() {
                self.dispatch(&live);
            }
        }
    }

    /// Starts the timer that ends the wait for the gap before `seq`.
    fn arm_wait(&self, channel: ChannelId, seq: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (never the case in the server): no wait at all.
            self.end_wait(&channel, seq);
            return;
        };
        let hub = self.this.clone();
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(HUB_REORDER_WAIT_MS)).await;
            if let Some(hub) = hub.upgrade() {
                hub.end_wait(&channel, seq);
            }
        });
    }
}

impl EventSink for Hub {
    fn publish(&self, event: Arc<EventRecord>) {
        self.publish_live(live_event(&event), false);
        if let Some(relay) = self.relay.get() {
            relay.event(&event);
        }
    }
}

/// A committed event as it goes out: its frame serialized once for every listener.
fn live_event(event: &EventRecord) -> Arc<LiveEvent> {
    Arc::new(LiveEvent {
        channel: event.channel_id.clone(),
        seq: event.seq,
        kind: event.kind,
        user: event.user_id.clone(),
        frame: Utf8Bytes::from(event_frame(event)),
    })
}

impl Hub {
    /// An event another node committed, read back from the store: dispatched in order like a
    /// local one, unless this node has already dispatched past it (then it is dropped here rather
    /// than by every connection).
    pub fn publish_fetched(&self, event: &EventRecord) {
        self.publish_live(live_event(event), true);
    }

    fn publish_live(&self, live: Arc<LiveEvent>, skip_stale: bool) {
        let (channel, seq) = (live.channel.clone(), live.seq);
        let held = {
            let Ok(mut order) = self.order.lock() else { return };
            let entry = order.entry(channel.clone()).or_default();
            if skip_stale && (entry.next.is_some_and(|next| seq < next) || entry.held.contains_key(&seq)) {
                return;
            }
            let (ready, held) = entry.admit(live);
            for live in &ready {
                self.dispatch(live);
            }
            held
        };
        if held {
            self.arm_wait(channel, seq);
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
        assert!(!before.mailbox.is_raised(Signal::Draining));
        hub.drain();
        assert!(before.mailbox.is_raised(Signal::Draining), "an open connection is told");
        let (user, session) = ids(2);
        let after = hub.register(&user, &session);
        assert!(after.mailbox.is_raised(Signal::Draining), "a connection registered during the drain is told");
    }

    #[test]
    fn the_heartbeat_reaches_each_connection_once_per_round_of_slots() {
        let hub = Hub::new(4);
        let regs: Vec<Registration> = (0..7)
            .map(|n| {
                let (user, session) = ids(n);
                hub.register(&user, &session)
            })
            .collect();
        let slots = 3;
        for slot in 0..slots {
            hub.heartbeat(slot, slots);
            let beaten: Vec<bool> = regs.iter().map(|r| r.mailbox.take(Signal::Heartbeat)).collect();
            let expected: Vec<bool> = regs.iter().map(|r| r.id % slots == slot).collect();
            assert_eq!(beaten, expected, "slot {slot}");
        }
    }

    #[test]
    fn a_queue_slot_is_two_words() {
        // A busy connection's mailbox keeps its buffers' capacity: slot size is memory per
        // connection.
        assert!(std::mem::size_of::<Outbound>() <= 2 * std::mem::size_of::<usize>());
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

    fn live(seq: i64) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            channel: ChannelId::from_generated("c".into()),
            seq,
            kind: EventKind::MessageCreated,
            user: None,
            frame: Utf8Bytes::from_static("{}"),
        })
    }

    fn seqs(events: &[Arc<LiveEvent>]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn in_order_events_go_out_at_once() {
        let mut order = ChannelOrder::default();
        for seq in 1..=3 {
            let (ready, held) = order.admit(live(seq));
            assert_eq!((seqs(&ready), held), (vec![seq], false));
        }
    }

    #[test]
    fn a_swapped_pair_goes_out_in_order() {
        let mut order = ChannelOrder::default();
        order.admit(live(4));
        let (ready, held) = order.admit(live(6));
        assert!(ready.is_empty() && held, "6 waits for 5");
        let (ready, held) = order.admit(live(7));
        assert!(ready.is_empty() && held);
        let (ready, _) = order.admit(live(5));
        assert_eq!(seqs(&ready), vec![5, 6, 7]);
        assert_eq!(seqs(&order.admit(live(8)).0), vec![8]);
    }

    #[test]
    fn giving_up_on_a_gap_sends_the_rest_and_a_late_event_still_goes_out() {
        let mut order = ChannelOrder::default();
        order.admit(live(1));
        order.admit(live(3));
        order.admit(live(4));
        assert_eq!(seqs(&order.give_up()), vec![3, 4]);
        assert_eq!(seqs(&order.admit(live(5)).0), vec![5]);
        // The missing one, late: out at once (connections that caught up drop it).
        assert_eq!(seqs(&order.admit(live(2)).0), vec![2]);
    }

    #[test]
    fn held_events_are_bounded() {
        let mut order = ChannelOrder::default();
        order.admit(live(1));
        for seq in 3..3 + HUB_REORDER_HELD_MAX as i64 {
            assert!(order.admit(live(seq)).1);
        }
        let (ready, held) = order.admit(live(3 + HUB_REORDER_HELD_MAX as i64));
        assert!(!held);
        assert_eq!(ready.len(), HUB_REORDER_HELD_MAX + 1);
        assert!(order.held.is_empty());
    }

    #[tokio::test]
    async fn swapped_publishes_reach_a_connection_in_order() {
        let hub = Hub::new(16);
        let user = UserId::from_generated("u".into());
        let reg = hub.register(&user, &SessionId::from_generated("s".into()));
        hub.subscribe(reg.id, &[ChannelId::from_generated("c".into())]);
        for seq in [1, 3, 2, 4] {
            hub.publish_live(live(seq), false);
        }
        let mut got = Vec::new();
        while let Some(Outbound::Event(event)) = reg.mailbox.pop() {
            got.push(event.seq);
        }
        assert_eq!(got, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_gap_that_never_fills_is_given_up_after_the_wait() {
        let hub = Hub::new(16);
        let user = UserId::from_generated("u".into());
        let reg = hub.register(&user, &SessionId::from_generated("s".into()));
        let channel = ChannelId::from_generated("c".into());
        hub.subscribe(reg.id, std::slice::from_ref(&channel));
        hub.publish_live(live(1), false);
        hub.publish_live(live(3), false);
        let first = reg.mailbox.pop().expect("1 went out");
        assert!(matches!(first, Outbound::Event(e) if e.seq == 1));
        assert!(reg.mailbox.pop().is_none(), "3 waits");
        tokio::time::sleep(Duration::from_millis(HUB_REORDER_WAIT_MS * 3)).await;
        let next = reg.mailbox.pop().expect("3 went out after the wait");
        assert!(matches!(next, Outbound::Event(e) if e.seq == 3));
    }
}
