//! A node of a cluster: several `rampart serve` nodes share PostgreSQL (all state) and talk over
//! NATS (`nats_url`), so that a client on one node hears what was said on another.
//!
//! What crosses the bus is a **notice**, never content: "channel C has event `seq` S (kind K, for
//! member events user U)", "someone is typing in C", "session X ended". A node that hears of an
//! event in a channel its own connections listen to reads the events it has not dispatched yet
//! back from the store — the committed, authoritative copy — and hands them to its hub, which
//! dispatches each channel in `seq` order. So message bodies stay sealed in the database, a
//! forged notice can cause at most a read, and a lost or reordered notice is repaired by the next
//! one: every read starts from what this node last dispatched, which is "backfill on any gap".
//! Core NATS loses notices when a connection drops or a subscriber falls behind (both raise an
//! event here), and a node that dies right after a commit takes its notice with it; so every
//! `CLUSTER_SWEEP_INTERVAL_MS`, and at once after such an event, the node compares each channel
//! its connections listen to with the channel's last `seq` in the store (one read per
//! `CLUSTER_SWEEP_CHANNELS_PER_READ` channels) and reads what it is missing ("sweep").
//!
//! Session notices are not believed either: the affected connections check their session against
//! the store, and the node's authentication cache drops the entries they name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions, Event};
use futures_util::{FutureExt, StreamExt};
use rampart_app::{App, SessionEnded};
use rampart_core::channel::EventKind;
use rampart_core::limits::{
    CLUSTER_BACKFILL_EVENTS_MAX, CLUSTER_BATCH_MAX, CLUSTER_NOTICE_BYTES_MAX, CLUSTER_OUTBOX_LEN,
    CLUSTER_SWEEP_CHANNELS_PER_READ, CLUSTER_SWEEP_INTERVAL_MS,
};
use rampart_core::{ChannelId, SessionId, UserId};
use rampart_store::EventRecord;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

use crate::config_cluster::ClusterConfig;
use crate::gateway::hub::{Hub, Relay};
use crate::node::NodeState;

/// How long the first connection to NATS may take before `serve` gives up.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// What one node tells the others. Field names are short: there is one per event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Notice {
    /// An event was committed: channel, seq, kind, and for member events the member.
    Event {
        c: String,
        s: i64,
        k: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u: Option<String>,
    },
    /// A user is typing in a channel (ephemeral).
    Typing { c: String, u: String },
    /// A session ended.
    Session { id: String },
    /// A user's sessions or rights changed.
    User { id: String },
    /// The sender missed some of its own session notices: everyone checks every session again.
    RecheckAll,
}

impl Notice {
    fn of_event(event: &EventRecord) -> Self {
        Notice::Event {
            c: event.channel_id.as_str().to_owned(),
            s: event.seq,
            k: event.kind.as_str().to_owned(),
            u: event.user_id.as_ref().map(|u| u.as_str().to_owned()),
        }
    }

    fn of_session_end(ended: &SessionEnded) -> Self {
        match ended {
            SessionEnded::Session(id) => Notice::Session { id: id.as_str().to_owned() },
            SessionEnded::AllOfUser(user) => Notice::User { id: user.as_str().to_owned() },
        }
    }
}

/// The bus's state and counts, for `/readyz` and the metrics endpoint.
#[derive(Debug, Default)]
pub struct BusStats {
    connected: AtomicBool,
    /// Set at the first connection; a later `Connected` is a reconnection.
    ever_connected: AtomicBool,
    /// A reconnection not yet acted on: notices may have been lost both ways meanwhile.
    reconnected: AtomicBool,
    pub published: AtomicU64,
    /// Notices not sent because the outbox was full.
    pub dropped: AtomicU64,
    pub received: AtomicU64,
    /// Notices that were not ours to read (too large, malformed, unknown ids).
    pub rejected: AtomicU64,
    /// Store reads of other nodes' events, and those that failed.
    pub backfills: AtomicU64,
    pub backfill_errors: AtomicU64,
    /// Sweeps (periodic, or after a reconnect or a lag), and channels a sweep found behind.
    pub sweeps: AtomicU64,
    pub sweep_repairs: AtomicU64,
}

impl BusStats {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The hub's relay onto the bus: notices queue here and a task publishes them, so a commit never
/// waits on NATS.
#[derive(Debug)]
struct Outbox {
    tx: mpsc::Sender<Notice>,
    stats: Arc<BusStats>,
}

impl Outbox {
    fn put(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Relay for Outbox {
    fn event(&self, event: &EventRecord) {
        self.put(Notice::of_event(event));
    }

    fn typing(&self, channel: &ChannelId, user: &UserId) {
        self.put(Notice::Typing { c: channel.as_str().to_owned(), u: user.as_str().to_owned() });
    }
}

/// This node's end of the bus, kept by `serve` for the end of a drain.
#[derive(Debug)]
pub struct Bus {
    client: Client,
    outbox: Arc<Outbox>,
}

/// How often a stopping node looks whether its outbox is empty.
const FLUSH_POLL_MS: u64 = 10;

impl Bus {
    /// Sends what is still queued (the notices of a draining node's last requests) within `wait`;
    /// what misses it is found by the other nodes' sweep.
    pub async fn flush(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, async {
            while self.outbox.tx.capacity() < self.outbox.tx.max_capacity() {
                tokio::time::sleep(Duration::from_millis(FLUSH_POLL_MS)).await;
            }
            let _ = self.client.flush().await;
        })
        .await;
    }
}

/// Connects to NATS and starts the node's part of the cluster: its events and session ends go
/// out, and the other nodes' come in to its hub. Fails when NATS cannot be reached at start; once
/// connected, the client reconnects on its own and `/readyz` says whether it is connected.
pub async fn start(config: &ClusterConfig, node: &NodeState, hub: Arc<Hub>, app: App) -> anyhow::Result<Bus> {
    let stats = Arc::new(BusStats::default());
    let sweep = Arc::new(Notify::new());
    let mut options = ConnectOptions::new()
        .name(format!("rampart {}", node.id))
        .no_echo()
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .event_callback({
            let (stats, sweep) = (Arc::clone(&stats), Arc::clone(&sweep));
            move |event| {
                on_bus_event(&stats, &sweep, &event);
                async {}
            }
        });
    if let Some(ca) = &config.nats_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    // The URL may hold credentials: the error names the key, never the value.
    let client = options
        .connect(config.nats_url.expose_secret())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the NATS server named by nats_url: {}", e.kind()))?;
    stats.connected.store(true, Ordering::Release);
    let subject = format!("{}.bus", config.subject_prefix);
    let subscriber = client.subscribe(subject.clone()).await.context("cannot subscribe to the cluster bus")?;
    tracing::info!(subject = %subject, "joined the cluster bus");

    let (tx, rx) = mpsc::channel(CLUSTER_OUTBOX_LEN);
    let outbox = Arc::new(Outbox { tx, stats: Arc::clone(&stats) });
    hub.set_relay(Arc::clone(&outbox) as Arc<dyn Relay>);
    node.set_bus(Arc::clone(&stats));
    tokio::spawn(publish(client.clone(), subject, rx, Arc::clone(&stats)));
    tokio::spawn(forward_session_ends(app.clone(), Arc::clone(&outbox)));
    let receiver = Receiver { hub, app, stats, outbox: Arc::clone(&outbox) };
    tokio::spawn(receiver.run(subscriber, sweep));
    Ok(Bus { client, outbox })
}

fn on_bus_event(stats: &BusStats, sweep: &Notify, event: &Event) {
    match event {
        Event::Connected => {
            stats.connected.store(true, Ordering::Release);
            if stats.ever_connected.swap(true, Ordering::AcqRel) {
                tracing::info!("cluster bus reconnected; re-checking sessions and reading channels up to date");
                stats.reconnected.store(true, Ordering::Release);
                sweep.notify_one();
            }
        }
        Event::Disconnected | Event::Closed => {
            stats.connected.store(false, Ordering::Release);
            tracing::warn!("cluster bus disconnected: this node is unready until it reconnects");
        }
        Event::SlowConsumer(_) => {
            tracing::warn!("this node fell behind the cluster bus; reading listened channels up to date");
            sweep.notify_one();
        }
        other => tracing::info!(event = %other, "cluster bus"),
    }
}

async fn publish(client: Client, subject: String, mut rx: mpsc::Receiver<Notice>, stats: Arc<BusStats>) {
    while let Some(notice) = rx.recv().await {
        let Ok(payload) = serde_json::to_vec(&notice) else { continue };
        // While disconnected the client buffers, then fails. A lost event notice is repaired by
        // the channel's next one or the others' periodic sweep; lost session notices by the
        // `RecheckAll` this node sends when it reconnects.
        match client.publish(subject.clone(), payload.into()).await {
            Ok(()) => stats.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Sessions ended and users changed on this node are told to the others.
async fn forward_session_ends(app: App, outbox: Arc<Outbox>) {
    let mut events = app.subscribe_session_events();
    loop {
        match events.recv().await {
            Ok(ended) => outbox.put(Notice::of_session_end(&ended)),
            Err(RecvError::Lagged(_)) => outbox.put(Notice::RecheckAll),
            Err(RecvError::Closed) => break,
        }
    }
}

/// What a batch of notices asks of the receiver after the session notices it acted on at once.
#[derive(Default)]
struct Taken {
    /// Per channel, the events to read.
    wanted: HashMap<ChannelId, Wanted>,
    /// Typing notices (channel, typist), to show once the typist is found to be a member.
    typists: Vec<(ChannelId, UserId)>,
}

/// What a batch of notices asks of one channel: its events `from` … `through`.
#[derive(Debug)]
struct Wanted {
    from: i64,
    through: i64,
}

struct Receiver {
    hub: Arc<Hub>,
    app: App,
    stats: Arc<BusStats>,
    outbox: Arc<Outbox>,
}

impl Receiver {
    async fn run(self, mut subscriber: async_nats::Subscriber, sweep: Arc<Notify>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(CLUSTER_SWEEP_INTERVAL_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = subscriber.next() => {
                    let Some(message) = message else { break };
                    // Whatever else has arrived joins this batch: one read per channel for a burst.
                    let mut batch = vec![message];
                    while batch.len() < CLUSTER_BATCH_MAX {
                        match subscriber.next().now_or_never() {
                            Some(Some(message)) => batch.push(message),
                            _ => break,
                        }
                    }
                    let Taken { wanted, typists } = self.take(batch.iter().map(|m| m.payload.as_ref()));
                    for (channel, want) in wanted {
                        self.backfill(&channel, want.from, want.through).await;
                    }
                    for (channel, user) in typists {
                        self.typing(channel, user).await;
                    }
                }
                () = sweep.notified() => {
                    if self.stats.reconnected.swap(false, Ordering::AcqRel) {
                        self.recheck_sessions_after_outage();
                    }
                    self.sweep().await;
                }
                _ = ticker.tick() => self.sweep().await,
            }
        }
        tracing::warn!("the cluster bus subscription ended");
    }

    /// Shows a typing notice from another node to the channel's listeners here, if the typist
    /// is a member (checked in the store: anyone who can publish on the bus could claim it).
    async fn typing(&self, channel: ChannelId, user: UserId) {
        match self.app.is_member(&channel, &user).await {
            Ok(true) => {
                let frame =
                    serde_json::json!({ "type": "typing", "channel_id": channel.as_str(), "user_id": user.as_str() });
                self.hub.typing_from_elsewhere(&user, &channel, frame.to_string().into());
            }
            Ok(false) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "cannot check a typing notice's member"),
        }
    }

    /// Acts on session notices at once and returns, per channel, the events to read, and the
    /// typing notices to check.
    fn take<'a>(&self, payloads: impl Iterator<Item = &'a [u8]>) -> Taken {
        let mut taken = Taken::default();
        for payload in payloads {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let notice = (payload.len() <= CLUSTER_NOTICE_BYTES_MAX)
                .then(|| serde_json::from_slice::<Notice>(payload).ok())
                .flatten();
            let Some(notice) = notice else {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if !self.apply(notice, &mut taken) {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        taken
    }

    /// One notice; false when its ids do not parse or its seq cannot be one.
    fn apply(&self, notice: Notice, taken: &mut Taken) -> bool {
        match notice {
            Notice::Event { c, s, k, u } => {
                let (Some(channel), Some(kind)) = (ChannelId::parse(&c), EventKind::parse(&k)) else { return false };
                if s < 1 {
                    return false;
                }
                let user = u.as_deref().map(UserId::parse);
                if matches!(user, Some(None)) {
                    return false;
                }
                // Only channels heard here, and joins of users connected here (their connections
                // start listening with that event).
                let joins_here =
                    kind == EventKind::MemberJoined && user.flatten().is_some_and(|u| self.hub.has_user(&u));
                if self.hub.listens(&channel) || joins_here {
                    let entry = taken.wanted.entry(channel).or_insert(Wanted { from: s, through: s });
                    entry.from = entry.from.min(s);
                    entry.through = entry.through.max(s);
                }
            }
            Notice::Typing { c, u } => {
                let (Some(channel), Some(user)) = (ChannelId::parse(&c), UserId::parse(&u)) else { return false };
                // Only where someone here listens; a burst's repeats are checked once.
                if self.hub.listens(&channel) && !taken.typists.contains(&(channel.clone(), user.clone())) {
                    taken.typists.push((channel, user));
                }
            }
            Notice::Session { id } => {
                let Some(session) = SessionId::parse(&id) else { return false };
                self.app.session_ended_elsewhere(&SessionEnded::Session(session.clone()));
                self.hub.recheck_session(&session);
            }
            Notice::User { id } => {
                let Some(user) = UserId::parse(&id) else { return false };
                self.app.session_ended_elsewhere(&SessionEnded::AllOfUser(user.clone()));
                self.hub.recheck_user(&user);
            }
            Notice::RecheckAll => {
                self.app.forget_cached_sessions();
                self.hub.recheck_all();
            }
        }
        true
    }

    /// Reads `channel`'s events after the last one this node dispatched, through `through` at
    /// least, and hands them to the hub. A channel not dispatched here since start is read from
    /// `from`, the first event the notices named: its connections hold their cursors from the
    /// store, so anything older is theirs already.
    async fn backfill(&self, channel: &ChannelId, from: i64, through: i64) {
        // Saturating: a notice's seq is only a hint, and a forged one may be anything positive.
        let oldest = through.saturating_sub(i64::from(CLUSTER_BACKFILL_EVENTS_MAX));
        let after = match self.hub.dispatched_through(channel) {
            Some(done) if done >= through => return,
            Some(done) => done.max(oldest),
            None => from.saturating_sub(1).max(oldest),
        };
        self.stats.backfills.fetch_add(1, Ordering::Relaxed);
        match self.app.events_for_fanout(channel, after, CLUSTER_BACKFILL_EVENTS_MAX).await {
            Ok(events) => {
                for event in &events {
                    self.hub.publish_fetched(event);
                }
            }
            Err(error) => {
                // The connections find the gap at the channel's next event and catch up then.
                self.stats.backfill_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "cannot read another node's events from the store");
            }
        }
    }

    /// Session notices may have been lost both ways while the bus was down: every connection
    /// here checks its session against the store, and every other node is asked to do the same.
    fn recheck_sessions_after_outage(&self) {
        self.app.forget_cached_sessions();
        self.hub.recheck_all();
        self.outbox.put(Notice::RecheckAll);
    }

    /// Every channel listened here is compared with its last `seq` in the store, and read up to
    /// date where this node is behind.
    async fn sweep(&self) {
        self.stats.sweeps.fetch_add(1, Ordering::Relaxed);
        let channels = self.hub.listened_channels();
        for chunk in channels.chunks(CLUSTER_SWEEP_CHANNELS_PER_READ) {
            let heads = match self.app.channel_heads(chunk).await {
                Ok(heads) => heads,
                Err(error) => {
                    tracing::warn!(%error, "cannot read channels' last seq for a sweep");
                    return;
                }
            };
            for (channel, head) in heads {
                match self.hub.dispatched_through(&channel) {
                    Some(done) if head > done => {
                        self.stats.sweep_repairs.fetch_add(1, Ordering::Relaxed);
                        self.backfill(&channel, head, head).await;
                    }
                    Some(_) => {}
                    None => self.hub.start_at(&channel, head),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_small_and_round_trip() {
        let notice = Notice::Event { c: "c1".into(), s: 42, k: "message.created".into(), u: None };
        let text = serde_json::to_string(&notice).expect("json");
        assert_eq!(text, r#"{"t":"event","c":"c1","s":42,"k":"message.created"}"#);
        assert_eq!(serde_json::from_str::<Notice>(&text).expect("parse"), notice);
        for notice in [
            Notice::Typing { c: "c".into(), u: "u".into() },
            Notice::Session { id: "s".into() },
            Notice::User { id: "u".into() },
            Notice::RecheckAll,
        ] {
            let text = serde_json::to_string(&notice).expect("json");
            assert!(text.len() < CLUSTER_NOTICE_BYTES_MAX);
            assert_eq!(serde_json::from_str::<Notice>(&text).expect("parse"), notice);
        }
    }
}
