//! Runs one scenario against one target: starts the server, prepares its users and rooms, opens
//! the connections, measures server memory, sends at a fixed rate for a bounded time, drains, and
//! returns the target's figures. Both targets go through the same `measure`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::Deployment;
use crate::metrics::{message_body, Clock, Metrics};
use crate::options::{Plan, Scenario, Target};
use crate::process::{Memory, ServerProcess};
use crate::rampart::{post_message, Rampart};
use crate::report::{ClusterFigures, ServerFigures, TargetReport};
use crate::ws::{Connection, Endpoint, Hello};

/// After the connections are open, the server gets this long to settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);
/// How often the drain and the idle hold look at their counters.
const POLL: Duration = Duration::from_millis(20);

/// How a sender sends.
#[derive(Clone, Debug)]
enum SendPath {
    /// Rampart: `POST /api/v1/channels/{id}/messages` with the sender's token.
    Http { client: reqwest::Client, url: String, token: String },
    /// Baseline: a frame on the sender's own connection, broadcast by the server to its room.
    Ws { connection: usize, room: String },
}

/// What `measure` needs from a prepared target.
struct Setup {
    endpoint: Endpoint,
    hellos: Vec<Hello>,
    senders: Vec<SendPath>,
}

/// Runs the plan's scenario against `target`, with its files under `dir`.
pub async fn run_target(plan: &Plan, target: Target, dir: &Path) -> anyhow::Result<TargetReport> {
    let dir = dir.join(target.name());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match plan.binary(target) {
        None => run_baseline(plan, &dir).await,
        Some(bin) => run_rampart(plan, target, bin, &dir).await,
    }
}

async fn run_baseline(plan: &Plan, dir: &Path) -> anyhow::Result<TargetReport> {
    let made = crate::tls::make_baseline_certificate()?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &made.cert_pem).context("writing the baseline certificate")?;
    std::fs::write(&key, &made.key_pem).context("writing the baseline key")?;
    let mut command =
        std::process::Command::new(std::env::current_exe().context("cannot find this program to start the baseline")?);
    command
        .arg("baseline-server")
        .arg("--listen")
        .arg(std::net::SocketAddr::new(plan.host, 0).to_string())
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--lifetime-secs")
        .arg((plan.timeout.as_secs() + 60).to_string());
    let mut process =
        ServerProcess::start("baseline", command, &dir.join("server.log"), crate::baseline::LISTENING_MARKER).await?;
    let tls = crate::tls::client_config(made.ca_pem.as_bytes(), &[crate::tls::ALPN_HTTP1])?;
    let endpoint = Endpoint {
        address: process.address,
        url: format!("wss://localhost:{}/ws", process.address.port()),
        origin: None,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
    };
    let room_of = |user: usize| match plan.scenario {
        Scenario::Fanout | Scenario::Idle => "fanout".to_owned(),
        Scenario::Dm => format!("dm-{}", user / 2),
    };
    let hellos = (0..plan.users)
        .map(|user| Hello { frame: json!({"room": room_of(user)}).to_string(), expect_channel: None, resume: false })
        .collect();
    let senders =
        sender_users(plan).into_iter().map(|user| SendPath::Ws { connection: user, room: room_of(user) }).collect();
    let setup = Setup { endpoint, hellos, senders };
    measure(plan, Target::Baseline, std::slice::from_mut(&mut process), None, setup).await
}

/// The users who send: fanout, the first S; dm, the first user of each of the first S pairs.
fn sender_users(plan: &Plan) -> Vec<usize> {
    match plan.scenario {
        Scenario::Fanout => (0..plan.senders).collect(),
        Scenario::Dm => (0..plan.senders).map(|pair| pair * 2).collect(),
        Scenario::Idle => Vec::new(),
    }
}

/// Runs a Rampart-like target (`Rampart` or `Compare`) from `bin`, each in its own fresh
/// directory, so binaries with different database schemas never share data.
async fn run_rampart(plan: &Plan, target: Target, bin: &Path, dir: &Path) -> anyhow::Result<TargetReport> {
    let rampart = Rampart::start(plan, bin, dir, "server-setup.log").await?;
    let (admin, users) =
        rampart.make_users(plan, dir, plan.users).await.context("enrolling and logging in the users")?;
    // The channel each user's connection must see, by user.
    let channel_of: Vec<String> = match plan.scenario {
        Scenario::Fanout | Scenario::Idle => {
            let id = rampart.make_fanout_channel(plan, &admin, &users).await?;
            vec![id; users.len()]
        }
        Scenario::Dm => {
            rampart.make_dm_channels(plan, &users).await?.into_iter().flat_map(|id| [id.clone(), id]).collect()
        }
    };
    let mut rampart = rampart.restart(plan, dir).await?;
    let hellos = users
        .iter()
        .zip(&channel_of)
        .map(|(user, channel)| Hello {
            frame: json!({"type": "auth", "token": user.token}).to_string(),
            expect_channel: Some(channel.clone()),
            resume: true,
        })
        .collect();
    let senders = sender_users(plan)
        .into_iter()
        .enumerate()
        .map(|(k, user)| SendPath::Http {
            client: rampart.clients[k % rampart.clients.len()].clone(),
            url: format!("{}/api/v1/channels/{}/messages", rampart.base_url, channel_of[user]),
            token: users[user].token.clone(),
        })
        .collect();
    let setup = Setup { endpoint: rampart.endpoint.clone(), hellos, senders };
    measure(plan, target, &mut rampart.processes, rampart.cluster.as_mut(), setup).await
}

/// The servers' resident memory, summed.
fn memory_sum(processes: &[ServerProcess]) -> anyhow::Result<Memory> {
    processes.iter().try_fold(Memory::default(), |sum, process| Ok(sum + process.memory()?))
}

fn check_alive(processes: &mut [ServerProcess], cluster: &mut Option<&mut Deployment>) -> anyhow::Result<()> {
    for process in processes.iter_mut() {
        process.check_alive()?;
    }
    match cluster {
        Some(cluster) => cluster.check_alive(),
        None => Ok(()),
    }
}

/// `processes`: the server, or a cluster's nodes (their CPU time and RSS are summed).
async fn measure(
    plan: &Plan,
    target: Target,
    processes: &mut [ServerProcess],
    mut cluster: Option<&mut Deployment>,
    setup: Setup,
) -> anyhow::Result<TargetReport> {
    let metrics = Arc::new(Metrics::new(Clock::new())?);
    let memory_before = memory_sum(processes)?;
    let connections = open_all(plan, &setup, &metrics).await?;
    tokio::time::sleep(SETTLE).await;
    check_alive(processes, &mut cluster)?;
    let memory_connected = memory_sum(processes)?;
    let cluster_before = match &cluster {
        Some(cluster) => Some((cluster.service_cpu_secs()?, cluster.scrape().await?)),
        None => None,
    };
    let cpu_before_secs = processes.iter().map(ServerProcess::cpu_secs).collect::<anyhow::Result<Vec<f64>>>()?;
    let started_nanos = metrics.clock.now_nanos();
    if plan.scenario == Scenario::Idle {
        tokio::time::sleep(plan.duration).await;
    } else {
        send_phase(plan, &setup.senders, &connections, &metrics).await;
        drain(plan, &metrics).await;
    }
    check_alive(processes, &mut cluster)?;
    let node_cpu_secs = processes
        .iter()
        .zip(&cpu_before_secs)
        .map(|(process, before)| Ok(process.cpu_secs()? - before))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let cluster = match (&cluster, cluster_before) {
        (Some(cluster), Some((cpu_before, counters_before))) => {
            let cpu_after = cluster.service_cpu_secs()?;
            let counters_after = cluster.scrape().await?;
            Some(ClusterFigures {
                nodes: processes.len(),
                service_cpu_secs: cpu_after
                    .into_iter()
                    .map(|(name, after)| {
                        let before = cpu_before.get(&name).copied().unwrap_or(0.0);
                        (name, after - before)
                    })
                    .collect(),
                node_counters: crate::cluster::counter_growth(&counters_before, &counters_after),
            })
        }
        _ => None,
    };
    let memory_after = memory_sum(processes)?;
    let still_open = connections.iter().filter(|c| c.is_open()).count();
    metrics.stopping.store(true, Ordering::Relaxed);
    drop(connections);
    let servers = ServerFigures { node_cpu_secs, memory: [memory_before, memory_connected, memory_after], cluster };
    Ok(TargetReport::new(plan, target, &metrics, started_nanos, still_open, servers))
}

/// Opens every connection, `connect_concurrency` at a time; the first failure ends the run.
async fn open_all(plan: &Plan, setup: &Setup, metrics: &Arc<Metrics>) -> anyhow::Result<Vec<Connection>> {
    let opened: Vec<anyhow::Result<Connection>> = futures_util::stream::iter(setup.hellos.iter().enumerate())
        .map(|(index, hello)| crate::ws::open(&setup.endpoint, hello, index, Arc::clone(metrics)))
        .buffered(plan.connect_concurrency)
        .collect()
        .await;
    let mut connections = Vec::with_capacity(opened.len());
    for (index, connection) in opened.into_iter().enumerate() {
        connections.push(connection.with_context(|| format!("opening connection {index}"))?);
    }
    Ok(connections)
}

/// Runs every sender until the send phase ends, then waits for their outstanding sends.
async fn send_phase(plan: &Plan, senders: &[SendPath], connections: &[Connection], metrics: &Arc<Metrics>) {
    let rate_per_sender = f64::from(plan.rate_per_sec) / senders.len() as f64;
    let period = Duration::from_secs_f64(1.0 / rate_per_sender);
    let start = Instant::now();
    let pacing = Pacing {
        period,
        deadline: start + plan.duration,
        // A bound on count as well as time: what the rate allows in the duration, and one more.
        count_max: (rate_per_sender * plan.duration.as_secs_f64()).ceil() as u64 + 1,
    };
    let pad: Arc<str> = "x".repeat(plan.body_pad_chars).into();
    let mut tasks = JoinSet::new();
    for (index, path) in senders.iter().enumerate() {
        let outbound = match path {
            SendPath::Ws { connection, .. } => Some(connections[*connection].outbound.clone()),
            SendPath::Http { .. } => None,
        };
        // Senders start spread over one period, not all on the same tick.
        let first = start + period.mul_f64(index as f64 / senders.len() as f64);
        let sender = Sender {
            index,
            path: path.clone(),
            outbound,
            metrics: Arc::clone(metrics),
            inflight: Arc::new(Semaphore::new(plan.inflight_per_sender)),
            pad: Arc::clone(&pad),
        };
        tasks.spawn(sender.run(pacing, first));
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits until every expected delivery has arrived, or the drain time is up.
async fn drain(plan: &Plan, metrics: &Metrics) {
    let deadline = Instant::now() + plan.drain;
    loop {
        let expected = metrics.sent.load(Ordering::Relaxed) * plan.recipients_per_message();
        if metrics.delivered.load(Ordering::Relaxed) >= expected || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Clone, Copy, Debug)]
struct Pacing {
    period: Duration,
    deadline: Instant,
    count_max: u64,
}

struct Sender {
    index: usize,
    path: SendPath,
    outbound: Option<mpsc::Sender<Message>>,
    metrics: Arc<Metrics>,
    inflight: Arc<Semaphore>,
    pad: Arc<str>,
}

impl Sender {
    /// Sends one message per tick until the deadline or `count_max`. A tick that comes late is
    /// made up at once (a token bucket), so the rate holds over the phase; a send due while the
    /// sender's in-flight sends are all taken is counted as `send_backpressure`, never queued.
    async fn run(self, pacing: Pacing, first: Instant) {
        let mut ticker = tokio::time::interval_at(first, pacing.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut outstanding = JoinSet::new();
        let mut number = 0_u64;
        while number < pacing.count_max {
            ticker.tick().await;
            if Instant::now() >= pacing.deadline {
                break;
            }
            number += 1;
            while outstanding.try_join_next().is_some() {}
            self.send_one(number, &mut outstanding);
        }
        while outstanding.join_next().await.is_some() {}
    }

    fn send_one(&self, number: u64, outstanding: &mut JoinSet<()>) {
        let metrics = &self.metrics;
        metrics.attempted.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("bench-{}-{number}", self.index);
        match &self.path {
            SendPath::Http { client, url, token } => {
                let Ok(permit) = Arc::clone(&self.inflight).try_acquire_owned() else {
                    metrics.error("send_backpressure");
                    return;
                };
                let (client, url, token) = (client.clone(), url.clone(), token.clone());
                let metrics = Arc::clone(metrics);
                let pad = Arc::clone(&self.pad);
                let index = self.index;
                outstanding.spawn(async move {
                    let sent_nanos = metrics.clock.now_nanos();
                    let body = message_body(sent_nanos, index, number, &pad);
                    let status = post_message(&client, &url, &token, &body, &client_id).await;
                    drop(permit);
                    match status {
                        Some(reqwest::StatusCode::CREATED) => {
                            metrics.record_accepted(sent_nanos);
                            metrics.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(status) => metrics.error(&format!("send_http_{}", status.as_u16())),
                        None => metrics.error("send_failed"),
                    }
                });
            }
            SendPath::Ws { room, .. } => {
                let body = message_body(metrics.clock.now_nanos(), self.index, number, &self.pad);
                // Shaped like Rampart's event, so receivers parse the same frame on both targets.
                let frame = json!({
                    "type": "event", "channel_id": room, "seq": number, "kind": "message.created",
                    "data": {"body": body, "client_id": client_id},
                });
                let Some(outbound) = &self.outbound else {
                    metrics.error("send_failed");
                    return;
                };
                match outbound.try_send(Message::text(frame.to_string())) {
                    Ok(()) => {
                        metrics.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => metrics.error("send_backpressure"),
                    Err(mpsc::error::TrySendError::Closed(_)) => metrics.error("send_failed"),
                }
            }
        }
    }
}
