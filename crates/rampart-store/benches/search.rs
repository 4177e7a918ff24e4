//! Search over the blind index at scale: stores N messages (default 1,000,000) of generated
//! English-like text across 20 channels through `post_message` (sealed and indexed, as the server
//! does), then reports the send path's rate, index rows and bytes per message (the database with
//! and without the index, measured in the same run), and search latency p50/p99 for common,
//! rare, two-word, phrase and prefix queries.
//!
//! `cargo bench -p rampart-store --bench search -- --messages 1000000`
//! `cargo bench -p rampart-store --bench search -- --compare-indexing 50000` (send path, index on vs off)

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rampart_core::channel::ChannelKind;
use rampart_core::search::SearchQuery;
use rampart_core::validate::{ChannelName, MessageBody, Topic};
use rampart_core::{ChannelId, MessageId, Role, Timestamp};
use rampart_store::conformance::make_user;
use rampart_store::{ChannelStore, CreateChannelOutcome, KeyConfig, NewChannel, NewMessage, SqliteStore};

const CHANNELS: usize = 20;
const VOCABULARY: usize = 5_000;
const QUERIES_PER_KIND: usize = 100;
/// Concurrent senders while the corpus is stored (as many clients would be).
const WRITERS: usize = 4;

/// xorshift64: reproducible text with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// An index skewed toward small values, like word frequencies (roughly Zipf).
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((n as f64) * u.powi(3)) as usize
    }
}

fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ro", "sa", "ti", "vu", "ber", "con", "dal", "fen", "gor", "han", "jus", "kel", "lim",
        "mor", "nal", "pet", "quin", "ras", "tor", "zen",
    ];
    let mut rng = Rng(0x5eed_0000_0000_0001);
    let mut words = std::collections::BTreeSet::new();
    while words.len() < VOCABULARY {
        let parts = 2 + (rng.next() % 3) as usize;
        words.insert((0..parts).map(|_| SYLLABLES[(rng.next() % SYLLABLES.len() as u64) as usize]).collect::<String>());
    }
    words.into_iter().collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn file_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

/// The database's size once its WAL is copied in and truncated: a checkpoint can be refused while
/// a pooled connection still reads, and a VACUUM in WAL mode leaves a whole copy in the WAL, so
/// counting the WAL would weigh the database twice.
async fn settled_bytes(store: &SqliteStore, dir: &std::path::Path) -> u64 {
    let wal = dir.join("rampart.db-wal");
    for _ in 0..50 {
        store.checkpoint().await.expect("checkpoint");
        if std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    file_bytes(dir)
}

/// Stores `messages` messages through `post_message` with `WRITERS` writers; returns messages/s.
async fn store_rate(
    store: std::sync::Arc<SqliteStore>,
    channels: std::sync::Arc<Vec<ChannelId>>,
    user: rampart_core::UserId,
    messages: usize,
) -> f64 {
    let words = std::sync::Arc::new(vocabulary());
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, channels, words, user) = (store.clone(), channels.clone(), words.clone(), user.clone());
        writers.spawn(async move {
            let mut rng = Rng(0xabcd_0000_0000_0003 + writer as u64);
            for i in (writer..messages).step_by(WRITERS) {
                let count = 4 + (rng.next() % 12) as usize;
                let text: Vec<&str> = (0..count).map(|_| words[rng.skewed(VOCABULARY)].as_str()).collect();
                let message = NewMessage {
                    id: MessageId::from_generated(format!("c{i:08}")),
                    channel_id: channels[i % CHANNELS].clone(),
                    sender_id: user.clone(),
                    body: MessageBody::parse(&text.join(" ")).expect("body"),
                    thread_id: None,
                    client_id: None,
                    created_at: Timestamp(1_700_000_000_000 + i as i64),
                    files: Vec::new(),
                };
                store.post_message(&message).await.expect("post");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

/// A fresh store with one user and `CHANNELS` channels.
async fn fresh(
    root: &std::path::Path,
    name: &str,
    indexed: bool,
) -> (SqliteStore, Vec<ChannelId>, rampart_core::UserId) {
    let keys = root.join(format!("{name}-keys"));
    let data = root.join(format!("{name}-data"));
    for dir in [&keys, &data] {
        std::fs::create_dir(dir).expect("dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let mut store =
        SqliteStore::open(&data.join("rampart.db"), &KeyConfig { key_dir: keys, epoch: Default::default() })
            .await
            .expect("open");
    if !indexed {
        store = store.without_search_index().await.expect("index off");
    }
    store.spawn_checkpointer();
    let user = make_user(&store, Role::Member).await;
    let mut channels = Vec::new();
    for i in 0..CHANNELS {
        let new = NewChannel {
            id: ChannelId::from_generated(format!("{name}-channel-{i}")),
            kind: ChannelKind::Public,
            name: ChannelName::parse(&format!("{name}-{i}")).expect("name"),
            topic: Topic::parse("").expect("topic"),
            created_by: user.id.clone(),
            created_at: Timestamp(0),
        };
        match store.create_channel(&new).await.expect("channel") {
            CreateChannelOutcome::Created(record, _) => channels.push(record.id),
            other => panic!("{other:?}"),
        }
    }
    (store, channels, user.id)
}

/// The send path with and without the index, in the same run, twice in alternating order.
async fn compare_indexing(messages: usize) {
    let root = tempfile::tempdir().expect("temp dir");
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..2 {
        for indexed in if round == 0 { [true, false] } else { [false, true] } {
            let name = format!("r{round}-{}", if indexed { "on" } else { "off" });
            let (store, channels, user) = fresh(root.path(), &name, indexed).await;
            let rate = store_rate(std::sync::Arc::new(store), std::sync::Arc::new(channels), user, messages).await;
            println!("  round {round}, index {}: {rate:.0} messages/s", if indexed { "on" } else { "off" });
            rates[usize::from(!indexed)].push(rate);
        }
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let (on, off) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "send path, {messages} messages, {WRITERS} writers: index on {on:.0}/s, off {off:.0}/s: on = {:.2}× off",
        on / off
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) =
        args.iter().position(|a| a == "--compare-indexing").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok())
    {
        compare_indexing(n).await;
        return;
    }
    let messages: usize = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let root = tempfile::tempdir().expect("temp dir");
    let keys = root.path().join("keys");
    let data = root.path().join("data");
    for dir in [&keys, &data] {
        std::fs::create_dir(dir).expect("dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let config = KeyConfig { key_dir: keys, epoch: Default::default() };
    let store = SqliteStore::open(&data.join("rampart.db"), &config).await.expect("open");
    // As the server does: passive checkpoints every second keep the WAL short.
    store.spawn_checkpointer();
    let user = make_user(&store, Role::Member).await;
    let mut channels = Vec::new();
    for i in 0..CHANNELS {
        let new = NewChannel {
            id: ChannelId::from_generated(format!("bench-channel-{i}")),
            kind: ChannelKind::Public,
            name: ChannelName::parse(&format!("bench-{i}")).expect("name"),
            topic: Topic::parse("").expect("topic"),
            created_by: user.id.clone(),
            created_at: Timestamp(0),
        };
        match store.create_channel(&new).await.expect("channel") {
            CreateChannelOutcome::Created(record, _) => channels.push(record.id),
            other => panic!("{other:?}"),
        }
    }
    let words = std::sync::Arc::new(vocabulary());
    println!("storing {messages} messages (sealed and indexed) in {CHANNELS} channels, {WRITERS} writers at once…");
    let started = Instant::now();
    let store = std::sync::Arc::new(store);
    let channels = std::sync::Arc::new(channels);
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, channels, words, user) = (store.clone(), channels.clone(), words.clone(), user.id.clone());
        writers.spawn(async move {
            let mut rng = Rng(0xfeed_0000_0000_0002 + writer as u64);
            let mut total_words = 0usize;
            for i in (writer..messages).step_by(WRITERS) {
                let count = 4 + (rng.next() % 12) as usize;
                total_words += count;
                let text: Vec<&str> = (0..count).map(|_| words[rng.skewed(VOCABULARY)].as_str()).collect();
                let message = NewMessage {
                    id: MessageId::from_generated(format!("m{i:08}")),
                    channel_id: channels[i % CHANNELS].clone(),
                    sender_id: user.clone(),
                    body: MessageBody::parse(&text.join(" ")).expect("body"),
                    thread_id: None,
                    client_id: None,
                    created_at: Timestamp(1_700_000_000_000 + i as i64),
                    files: Vec::new(),
                };
                store.post_message(&message).await.expect("post");
                if writer == 0 && (i + WRITERS) % 100_000 < WRITERS {
                    eprintln!(
                        "  ≈{} stored, {:.0} messages/s",
                        i + 1,
                        (i + 1) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            total_words
        });
    }
    let mut total_words = 0usize;
    while let Some(done) = writers.join_next().await {
        total_words += done.expect("writer");
    }
    let elapsed = started.elapsed();
    store.checkpoint().await.expect("checkpoint");
    let index_rows = store.search_index_rows().await.expect("count");
    let with_index = settled_bytes(&store, &data).await;

    let queries: Vec<(&str, Vec<String>)> = vec![
        ("common word", (0..QUERIES_PER_KIND).map(|i| words[i % 20].clone()).collect()),
        ("rare word", (0..QUERIES_PER_KIND).map(|i| words[VOCABULARY - 1 - i * 7].clone()).collect()),
        ("two words", (0..QUERIES_PER_KIND).map(|i| format!("{} {}", words[i % 50], words[100 + i * 3])).collect()),
        ("phrase", (0..QUERIES_PER_KIND).map(|i| format!("\"{} {}\"", words[i % 30], words[(i * 13) % 30])).collect()),
        ("prefix", (0..QUERIES_PER_KIND).map(|i| format!("{}*", &words[200 + i][..4])).collect()),
    ];
    println!();
    println!("| query kind | p50 | p99 | results per query (mean, page of 20) |");
    println!("|---|---|---|---|");
    for (kind, texts) in &queries {
        let mut times = Vec::with_capacity(texts.len());
        let mut results = 0usize;
        for text in texts {
            let query = SearchQuery::parse(text).expect("query");
            let started = Instant::now();
            let page = store.search(&user.id, &query, None, None, 20).await.expect("search");
            times.push(started.elapsed());
            results += page.messages.len();
        }
        times.sort();
        println!(
            "| {kind} | {:.2} ms | {:.2} ms | {:.1} |",
            percentile(&times, 0.50).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            results as f64 / texts.len() as f64
        );
    }

    store.drop_search_index().await.expect("drop index");
    let without_index = settled_bytes(&store, &data).await;
    println!();
    println!("messages: {messages}, words per message (mean): {:.1}", total_words as f64 / messages as f64);
    println!(
        "send path (seal + index + store, {WRITERS} writers): {:.0} messages/s ({:.1} s)",
        messages as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("index rows: {index_rows} ({:.1} per message)", index_rows as f64 / messages as f64);
    println!(
        "database: {:.0} MiB with the index, {:.0} MiB without: the index costs {:.0} bytes per message",
        with_index as f64 / 1048576.0,
        without_index as f64 / 1048576.0,
        (with_index.saturating_sub(without_index)) as f64 / messages as f64
    );
}
