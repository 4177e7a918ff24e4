//! A cluster as it runs: three real `rampart serve` nodes sharing one PostgreSQL (a schema made by
//! `rampart db provision`, served as its app role) and the machine's NATS, with clients spread
//! over them. One node is killed with SIGKILL mid-stream, or every node is restarted in turn under
//! traffic; clients of a lost node reconnect to another and resume, senders retry with the same
//! `client_id`, and every client must end with every event exactly once, in order. Sessions,
//! throttles and typing cross nodes too. Skips without `RAMPART_TEST_POSTGRES_URL` and
//! `RAMPART_TEST_NATS_URL`, except under `CI=true`, where that fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::postgres::{provision, server_url, Provisioned};
use crate::support::{client_trusting, unique, Dirs, Server, User, Ws, PASSWORD};

const NATS_VARIABLE: &str = "RAMPART_TEST_NATS_URL";
/// How long a client may take to receive everything once the senders are done.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

fn nats_url() -> Option<String> {
    crate::support::service_url(NATS_VARIABLE, "NATS")
}

/// Nodes on fixed ports (a restarted node comes back where it was), sharing one key directory
/// (the same KEK, audit key and certificate, as a deployment copies them to every node).
struct Cluster {
    dirs: Arc<Dirs>,
    config: String,
    ports: Vec<u16>,
    nodes: Vec<Option<Server>>,
    /// Which nodes clients may use now.
    alive: Arc<Mutex<Vec<bool>>>,
    ca: Vec<u8>,
    _schema: Provisioned,
}

impl Cluster {
    async fn start(count: usize) -> Option<Cluster> {
        Self::start_with(count, "").await
    }

    /// `extra`: more TOML, whole tables.
    async fn start_with(count: usize, extra: &str) -> Option<Cluster> {
        let (pg, nats) = (server_url()?, nats_url()?);
        let dirs = Arc::new(Dirs::new());
        let schema = provision(&pg, &dirs);
        let config = format!(
            "nats_url = \"{nats}\"\n{}[limits]\nshutdown_drain_ms = 5000\n[cluster]\nsubject_prefix = \"{}\"\n{extra}",
            schema.serve_config(&dirs),
            schema.schema
        );
        let ports: Vec<u16> = (0..count).map(|_| crate::support::free_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            nodes.push(Some(Self::spawn(&dirs, &config, *port).await));
        }
        let ca = nodes[0].as_ref().expect("node").ca_pem();
        let alive = Arc::new(Mutex::new(vec![true; count]));
        Some(Cluster { dirs, config, ports, nodes, alive, ca, _schema: schema })
    }

    async fn spawn(dirs: &Arc<Dirs>, config: &str, port: u16) -> Server {
        let (dirs, config) = (Arc::clone(dirs), config.to_owned());
        tokio::task::spawn_blocking(move || Server::start_on(dirs, &config, &[], port)).await.expect("start")
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("a running node")
    }

    fn set_alive(&self, i: usize, up: bool) {
        self.alive.lock().expect("alive")[i] = up;
    }

    fn view(&self) -> View {
        View { ports: self.ports.clone(), alive: Arc::clone(&self.alive), ca: self.ca.clone() }
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self, i: usize) {
        self.set_alive(i, false);
        let mut node = self.nodes[i].take().expect("running");
        node.child.kill().expect("kill");
        node.child.wait().expect("wait");
    }

    /// SIGTERM, then started again on its port.
    async fn restart(&mut self, i: usize) {
        self.set_alive(i, false);
        let node = self.nodes[i].take().expect("running");
        tokio::task::spawn_blocking(move || node.stop()).await.expect("stop");
        self.nodes[i] = Some(Self::spawn(&self.dirs, &self.config, self.ports[i]).await);
        self.set_alive(i, true);
    }
}

/// What clients know of the cluster: where the nodes are and which are up.
#[derive(Clone)]
struct View {
    ports: Vec<u16>,
    alive: Arc<Mutex<Vec<bool>>>,
    ca: Vec<u8>,
}

impl View {
    /// The node to use: `home` while it is up, else the next one that is.
    fn pick(&self, home: usize) -> u16 {
        let alive = self.alive.lock().expect("alive").clone();
        let n = self.ports.len();
        let i = (0..n).map(|k| (home + k) % n).find(|i| alive[*i]).expect("some node is up");
        self.ports[i]
    }
}

/// What one client heard: the cursor it started from, each event (seq, kind), and how often it
/// had to reconnect.
struct Heard {
    start: i64,
    seen: Vec<(i64, String)>,
    reconnects: u32,
}

/// A client listening to `channel` on its home node, reconnecting elsewhere (with `resume`) when
/// its node goes away, until it has seen `target`. Returns the seqs and kinds it received, and the
/// cursor it started from.
async fn listen(
    view: View,
    user: User,
    channel: String,
    home: usize,
    ready_tx: tokio::sync::mpsc::Sender<()>,
    mut target: watch::Receiver<Option<i64>>,
) -> Heard {
    let mut start = None;
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut reconnects = 0u32;
    let mut settle_deadline: Option<Instant> = None;
    loop {
        let port = view.pick(home);
        let origin = format!("https://localhost:{port}");
        let Ok(mut ws) = Ws::open(port, &view.ca, &[("origin", origin)]).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        ws.send(json!({ "type": "auth", "token": user.token })).await;
        let Ok(Some(ready)) = ws.poll(Duration::from_secs(10)).await else { continue };
        assert_eq!(ready["type"], "ready", "{ready}");
        match start {
            None => {
                cursor = ready["channels"][&channel].as_i64().expect("a member's channel is in ready");
                start = Some(cursor);
                let _ = ready_tx.send(()).await;
            }
            Some(_) => {
                reconnects += 1;
                ws.send(json!({ "type": "resume", "cursors": { &channel: cursor } })).await;
            }
        }
        loop {
            if let Some(t) = *target.borrow_and_update() {
                if cursor >= t {
                    return Heard { start: start.expect("started"), seen, reconnects };
                }
                let deadline = *settle_deadline.get_or_insert_with(|| Instant::now() + SETTLE_WAIT);
                assert!(Instant::now() < deadline, "{} stuck at {cursor} of {t}", user.username);
            }
            match ws.poll(Duration::from_millis(200)).await {
                Ok(None) => {}
                Ok(Some(frame)) => match frame["type"].as_str() {
                    Some("event") if frame["channel_id"] == channel.as_str() => {
                        let seq = frame["seq"].as_i64().expect("seq");
                        let kind = frame["kind"].as_str().expect("kind").to_owned();
                        seen.push((seq, kind));
                        cursor = cursor.max(seq);
                    }
                    Some("reconnect") => break,
                    Some("resync") => panic!("{} was told to resync: {frame}", user.username),
                    _ => {}
                },
                Err(()) => break,
            }
        }
    }
}

/// A sender posting `count` messages (or until `stop`) through its home node, retrying a failed
/// send on whichever node is up with the same `client_id`. Returns the seqs the sends got.
async fn send(
    view: View,
    user: User,
    channel: String,
    home: usize,
    count: usize,
    stop: watch::Receiver<bool>,
) -> Vec<i64> {
    let client = client_trusting(std::slice::from_ref(&view.ca), false);
    let mut seqs = Vec::new();
    for n in 0..count {
        if *stop.borrow() {
            break;
        }
        let client_id = unique("cid-");
        let body = json!({ "body": format!("{} says {n}", user.username), "client_id": client_id });
        let started = Instant::now();
        let seq = loop {
            assert!(started.elapsed() < Duration::from_secs(60), "a send never landed");
            let port = view.pick(home);
            let url = format!("https://localhost:{port}/api/v1/channels/{channel}/messages");
            let response = client.post(url).headers(user.bearer()).json(&body).send().await;
            match response {
                Ok(r) if r.status() == 201 || r.status() == 200 => {
                    let message: Value = r.json().await.expect("json");
                    break message["seq"].as_i64().expect("seq");
                }
                Ok(r) if r.status() == 429 => tokio::time::sleep(Duration::from_millis(500)).await,
                // Refused, reset, or 503 from a draining node: another node, same client_id.
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        seqs.push(seq);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    seqs
}

/// Users spread over the nodes, all in one public channel.
async fn members(cluster: &Cluster, count: usize) -> (Vec<User>, String) {
    let mut users = Vec::new();
    for i in 0..count {
        users.push(cluster.node(i % cluster.ports.len()).user("member").await);
    }
    let channel = cluster.node(0).channel(&users[0], "public").await;
    for (i, user) in users.iter().enumerate().skip(1) {
        let node = cluster.node(i % cluster.ports.len());
        let response = node.post_json(user, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
        assert_eq!(response.status(), 204, "{}", response.text().await.unwrap_or_default());
    }
    (users, channel)
}

/// Every listener saw exactly the events after its start, once each, in order; and every sent
/// message appears once.
fn check(results: &[Heard], target: i64, sent: usize) {
    for heard in results {
        let seqs: Vec<i64> = heard.seen.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<i64> = (heard.start + 1..=target).collect();
        assert_eq!(seqs, expected, "events from {} to {target}, exactly once and in order", heard.start);
    }
    let created = results[0].seen.iter().filter(|(_, kind)| kind == "message.created").count();
    assert_eq!(created, sent, "every send once, retries included (from seq {})", results[0].start);
}

/// Starts listeners for every user and waits until each has its `ready`.
async fn start_listeners(
    cluster: &Cluster,
    users: &[User],
    channel: &str,
    target: &watch::Sender<Option<i64>>,
) -> Vec<tokio::task::JoinHandle<Heard>> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(users.len());
    let listeners: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let view = cluster.view();
            let home = i % cluster.ports.len();
            tokio::spawn(listen(view, user.clone(), channel.to_owned(), home, ready_tx.clone(), target.subscribe()))
        })
        .collect();
    for _ in users {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await.expect("every listener is ready");
    }
    listeners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_stream_loses_nothing() {
    let Some(mut cluster) = Cluster::start(3).await else { return };
    let (users, channel) = members(&cluster, 6).await;
    let (target_tx, _) = watch::channel(None);
    let listeners = start_listeners(&cluster, &users, &channel, &target_tx).await;
    let (_stop_tx, stop_rx) = watch::channel(false);
    const EACH: usize = 30;
    let senders: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let home = i % 3;
            tokio::spawn(send(cluster.view(), user.clone(), channel.clone(), home, EACH, stop_rx.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cluster.kill(2);
    let mut last = 0;
    for sender in senders {
        last = last.max(sender.await.expect("sender").into_iter().max().unwrap_or(0));
    }
    target_tx.send(Some(last)).expect("target");
    let mut results = Vec::new();
    for listener in listeners {
        results.push(listener.await.expect("listener"));
    }
    check(&results, last, users.len() * EACH);
    let moved = results.iter().filter(|heard| heard.reconnects > 0).count();
    assert!(moved >= 2, "the killed node's clients reconnected elsewhere ({moved})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_traffic_loses_nothing() {
    let Some(mut cluster) = Cluster::start(3).await else { return };
    let (users, channel) = members(&cluster, 6).await;
    let (target_tx, _) = watch::channel(None);
    let listeners = start_listeners(&cluster, &users, &channel, &target_tx).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let senders: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            tokio::spawn(send(cluster.view(), user.clone(), channel.clone(), i % 3, usize::MAX, stop_rx.clone()))
        })
        .collect();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.restart(i).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop_tx.send(true).expect("stop");
    let (mut last, mut sent) = (0, 0);
    for sender in senders {
        let seqs = sender.await.expect("sender");
        sent += seqs.len();
        last = last.max(seqs.into_iter().max().unwrap_or(0));
    }
    target_tx.send(Some(last)).expect("target");
    let mut results = Vec::new();
    for listener in listeners {
        results.push(listener.await.expect("listener"));
    }
    check(&results, last, sent);
    assert!(results.iter().all(|heard| heard.reconnects > 0), "every client moved at least once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_throttles_and_typing_hold_across_nodes() {
    let limits = "[messages]\nsend_rate_per_sec = 1\nsend_burst = 3\n";
    let Some(cluster) = Cluster::start_with(2, limits).await else { return };
    let (a, b) = (cluster.node(0), cluster.node(1));

    // A login throttled on node A is throttled on node B, even with the right password.
    let victim = a.user("member").await;
    let client = client_trusting(std::slice::from_ref(&cluster.ca), false);
    let login = |server: &Server, password: &str| {
        client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({ "username": victim.username, "password": password, "mode": "token" }))
            .send()
    };
    let mut throttled = false;
    for _ in 0..30 {
        let response = login(a, "not the password").await.expect("login");
        if response.status() == 429 {
            throttled = true;
            break;
        }
        assert_eq!(response.status(), 401);
    }
    assert!(throttled, "node A throttles repeated failures");
    let response = login(b, PASSWORD).await.expect("login");
    assert_eq!(response.status(), 429, "node B sees node A's throttle");
    assert!(response.headers().contains_key("retry-after"));

    // Typing on node B reaches a member connected to node A.
    let (alice, bob) = (a.user("member").await, b.user("member").await);
    let channel = a.channel(&alice, "public").await;
    let (mut alice_ws, _) = a.ws(&alice).await;
    let (mut bob_ws, _) = b.ws(&bob).await;
    // Bob's join on node B reaches Alice on node A, and subscribes Bob's socket there.
    let joined = b.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
    assert_eq!(joined.status(), 204);
    let event = alice_ws.expect_event("member.joined").await;
    assert_eq!(event["channel_id"], channel.as_str());
    bob_ws.expect_event("member.joined").await;
    bob_ws.send(json!({ "type": "typing", "channel_id": channel })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let frame = alice_ws.next_within(Duration::from_secs(10)).await.expect("a frame");
        if frame["type"] == "typing" {
            assert_eq!(frame["user_id"], bob.id.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "no typing notice from the other node");
    }

    // One user's send limit is one budget, whichever node the sends reach.
    let path = format!("/api/v1/channels/{channel}/messages");
    for (n, node) in [a, b, a].into_iter().enumerate() {
        let response = node.post_json(&alice, &path, json!({ "body": format!("burst {n}") })).await;
        assert_eq!(response.status(), 201, "within the burst");
    }
    for node in [b, a] {
        let response = node.post_json(&alice, &path, json!({ "body": "one too many" })).await;
        crate::support::expect_error(response, 429, "too_many_requests").await;
    }

    // Logging out on node A closes the session's socket on node B, and node B refuses the token.
    let response = a.post_json(&bob, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(response.status(), 204);
    let (_, closed) = bob_ws.drain_until_closed(Duration::from_secs(10)).await;
    assert!(closed, "the logged-out session's socket on the other node is closed");
    let response = b.get_json(&bob, "/api/v1/channels").await;
    assert_eq!(response.status(), 401, "the other node refuses the ended session at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notice_is_repaired_by_the_sweep() {
    let Some(cluster) = Cluster::start(1).await else { return };
    // A second node on a subject of its own hears none of the first node's notices, as if every
    // one were lost: only its periodic comparison with the store can bring it the events.
    let prefix = format!("subject_prefix = \"{}\"", cluster._schema.schema);
    assert!(cluster.config.contains(&prefix));
    let deaf_config = cluster.config.replace(&prefix, &format!("subject_prefix = \"{}-deaf\"", cluster._schema.schema));
    let deaf = Cluster::spawn(&cluster.dirs, &deaf_config, crate::support::free_port()).await;
    let a = cluster.node(0);
    let (alice, bob) = (a.user("member").await, a.user("member").await);
    let channel = a.channel(&alice, "public").await;
    let joined = a.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
    assert_eq!(joined.status(), 204);
    let (mut bob_ws, _) = deaf.ws(&bob).await;
    // Past one sweep, so the deaf node knows where the channel stood.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let sent = a.say(&alice, &channel, "heard without a notice").await;
    let started = Instant::now();
    let event = bob_ws.expect_event("message.created").await;
    assert_eq!(event["seq"], sent["seq"]);
    assert!(started.elapsed() < Duration::from_secs(8), "within a sweep interval or two: {:?}", started.elapsed());
}

/// Anyone who can publish on the bus can make a node read the store and check sessions, and
/// nothing more: malformed, oversized and forged notices are counted and dropped, deliver nothing,
/// end no session, and leave the channel's order intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_notices_change_nothing() {
    let Some(cluster) = Cluster::start(1).await else { return };
    let admin = format!("127.0.0.1:{}", crate::support::free_port());
    let node = {
        let (dirs, config, admin) = (Arc::clone(&cluster.dirs), cluster.config.clone(), admin.clone());
        let port = crate::support::free_port();
        tokio::task::spawn_blocking(move || Server::start_on(dirs, &config, &["--admin-listen", &admin], port))
            .await
            .expect("start")
    };
    let (alice, bob) = (node.user("member").await, node.user("member").await);
    let channel = node.channel(&alice, "public").await;
    assert_eq!(node.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    node.say(&alice, &channel, "before").await;
    let (mut bob_ws, _) = node.ws(&bob).await;

    let bus = async_nats::connect(nats_url().expect("NATS")).await.expect("connect to NATS");
    let subject = format!("{}.bus", cluster._schema.schema);
    let oversized = format!("{{\"t\":\"user\",\"id\":\"{}\"}}", "u".repeat(2_000));
    let forged: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        oversized.into_bytes(),
        json!({ "t": "event", "c": "../etc", "s": 1, "k": "message.created" }).to_string().into_bytes(),
        json!({ "t": "event", "c": channel, "s": i64::MIN, "k": "message.created" }).to_string().into_bytes(),
        json!({ "t": "event", "c": channel, "s": 0, "k": "message.created" }).to_string().into_bytes(),
        json!({ "t": "launch", "c": channel }).to_string().into_bytes(),
        // Well formed, and lies: the node reads the store and finds nothing to deliver.
        json!({ "t": "event", "c": channel, "s": 1_000_000, "k": "message.created" }).to_string().into_bytes(),
        json!({ "t": "event", "c": channel, "s": i64::MAX, "k": "member.joined", "u": bob.id })
            .to_string()
            .into_bytes(),
        // Someone who is not a member does not type here (checked in the store; counted).
        json!({ "t": "typing", "c": channel, "u": "user-not-a-member" }).to_string().into_bytes(),
        // Bob's session did not end: his connection checks it against the store and stays.
        json!({ "t": "user", "id": bob.id }).to_string().into_bytes(),
        json!({ "t": "recheck_all" }).to_string().into_bytes(),
    ];
    for payload in forged {
        bus.publish(subject.clone(), payload.into()).await.expect("publish");
    }
    bus.flush().await.expect("flush");

    assert_eq!(bob_ws.next_within(Duration::from_millis(1_500)).await, None, "nothing is delivered, nothing closes");
    let next = node.say(&alice, &channel, "after").await;
    let event = bob_ws.expect_event("message.created").await;
    assert_eq!((event["seq"].clone(), event["data"]["body"].clone()), (next["seq"].clone(), json!("after")));

    let client = client_trusting(&[node.ca_pem()], false);
    let metrics =
        client.get(format!("https://{admin}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a count")
    };
    assert_eq!(
        counter("rampart_cluster_notices_rejected"),
        7,
        "the malformed, the oversized, the impossible, the typing outsider"
    );
    let health = client.get(format!("https://{admin}/readyz")).send().await.expect("readyz");
    assert_eq!(health.status(), 200);
}
