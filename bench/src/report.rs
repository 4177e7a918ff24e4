//! The report: each target's figures, Rampart's as a ratio of the baseline's (and of a compared
//! rampart binary's) measured in the same run, printed as plain text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::cluster::NodeCounters;
use crate::metrics::{LatencySummary, Metrics};
use crate::options::{Plan, Scenario, Target};
use crate::process::Memory;

/// What the servers used during the measured phase.
#[derive(Clone, Debug)]
pub struct ServerFigures {
    /// CPU time of each server process (one, or each node of a cluster), in seconds.
    pub node_cpu_secs: Vec<f64>,
    /// Resident memory summed over the server processes: before the connections, with them, at
    /// the end.
    pub memory: [Memory; 3],
    pub cluster: Option<ClusterFigures>,
}

/// Cluster mode's figures beyond the nodes' own.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterFigures {
    pub nodes: usize,
    /// CPU time of the services the nodes stand on (postgres, nats-server, haproxy), in seconds,
    /// over the same phase as `server_cpu_secs`.
    pub service_cpu_secs: BTreeMap<String, f64>,
    /// Each node's counters over the phase (from its `/metrics`): notices sent and received on
    /// the bus, store reads of other nodes' events (`backfills`), queue drops; and its open
    /// WebSocket connections at the end.
    pub node_counters: NodeCounters,
}

/// One target's figures.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub target: Target,
    /// The target's name, or `--compare-label` for the compared binary.
    pub label: String,
    /// The binary started for a Rampart-like target; `null` for the baseline.
    pub binary: Option<PathBuf>,
    pub connections: usize,
    /// Connections still open when the run ended.
    pub connections_open_at_end: usize,
    pub senders: usize,
    pub attempted: u64,
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    /// From the first send to the last delivery.
    pub window_secs: f64,
    pub deliveries_per_sec: f64,
    /// Sends accepted per second of the send phase.
    pub sent_per_sec: f64,
    /// Send→deliver: stamp in the body to the event on a receiving connection.
    pub latency: LatencySummary,
    /// Send→accept of HTTP sends (Rampart's `201`); empty for the baseline, whose sends are
    /// frames on an open WebSocket with no answer.
    pub accept_latency: LatencySummary,
    /// RSS of the server, or summed over a cluster's nodes.
    pub rss_kib_before: u64,
    pub rss_kib_connected: u64,
    pub rss_kib_after: u64,
    /// (RSS with the connections open − RSS before) / connections. In cluster mode the nodes are
    /// not restarted after set-up, so reused Argon2 memory may make it too small.
    pub rss_kib_per_connection: f64,
    /// Anonymous resident memory (`RssAnon`: the heap and stacks, not the binary's code or
    /// memory-mapped files), before the connections and with them.
    pub anon_kib_before: u64,
    pub anon_kib_connected: u64,
    /// (anonymous memory with the connections open − before) / connections: what the
    /// connections themselves hold.
    pub anon_kib_per_connection: f64,
    /// CPU time the server used (all threads; a cluster: all nodes) from the first send to the
    /// end of the drain (idle: over the hold). Less disturbed than throughput by other work on
    /// the machine.
    pub server_cpu_secs: f64,
    /// `server_cpu_secs` by node (one entry outside cluster mode).
    pub node_cpu_secs: Vec<f64>,
    /// Cluster mode (`--nodes`) only.
    pub cluster: Option<ClusterFigures>,
    /// `server_cpu_secs` per message sent, in milliseconds; `null` when nothing was sent.
    pub server_cpu_ms_per_message: Option<f64>,
}

impl TargetReport {
    pub fn new(
        plan: &Plan,
        target: Target,
        metrics: &Metrics,
        started_nanos: u64,
        connections_open_at_end: usize,
        servers: ServerFigures,
    ) -> Self {
        let [before, connected, after] = servers.memory;
        let per_connection = |with: u64, without: u64| with.saturating_sub(without) as f64 / plan.users as f64;
        let server_cpu_secs: f64 = servers.node_cpu_secs.iter().sum();
        let sent = metrics.sent.load(Ordering::Relaxed);
        let delivered = metrics.delivered.load(Ordering::Relaxed);
        let last = metrics.last_delivery_nanos.load(Ordering::Relaxed);
        let window_secs = if plan.scenario == Scenario::Idle {
            plan.duration.as_secs_f64()
        } else {
            last.saturating_sub(started_nanos) as f64 / 1e9
        };
        let per_sec = |count: u64| {
            if window_secs > 0.0 {
                count as f64 / window_secs
            } else {
                0.0
            }
        };
        let errors = metrics.errors();
        let (senders, expected) = match plan.scenario {
            Scenario::Idle => (0, 0),
            Scenario::Fanout | Scenario::Dm => (plan.senders, sent * plan.recipients_per_message()),
        };
        TargetReport {
            target,
            label: plan.label(target).to_owned(),
            binary: plan.binary(target).map(ToOwned::to_owned),
            connections: plan.users,
            connections_open_at_end,
            senders,
            attempted: metrics.attempted.load(Ordering::Relaxed),
            sent,
            delivered,
            expected,
            errors_total: errors.values().sum(),
            errors,
            window_secs,
            deliveries_per_sec: per_sec(delivered),
            sent_per_sec: sent as f64 / plan.duration.as_secs_f64(),
            latency: metrics.latency(),
            accept_latency: metrics.accept_latency(),
            rss_kib_before: before.rss_kib,
            rss_kib_connected: connected.rss_kib,
            rss_kib_after: after.rss_kib,
            rss_kib_per_connection: per_connection(connected.rss_kib, before.rss_kib),
            anon_kib_before: before.anon_kib,
            anon_kib_connected: connected.anon_kib,
            anon_kib_per_connection: per_connection(connected.anon_kib, before.anon_kib),
            server_cpu_secs,
            server_cpu_ms_per_message: (sent > 0).then(|| 1000.0 * server_cpu_secs / sent as f64),
            node_cpu_secs: servers.node_cpu_secs,
            cluster: servers.cluster,
        }
    }
}

/// One target's figures divided by another's (`null` where the divisor is zero).
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub deliveries_per_sec: Option<f64>,
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
    pub latency_p999: Option<f64>,
    pub rss_per_connection: Option<f64>,
    pub anon_per_connection: Option<f64>,
    pub server_cpu_per_message: Option<f64>,
}

impl Ratios {
    fn of(numerator: &TargetReport, divisor: &TargetReport) -> Self {
        let (n, d) = (numerator, divisor);
        Ratios {
            deliveries_per_sec: ratio(n.deliveries_per_sec, d.deliveries_per_sec),
            latency_p50: ratio(n.latency.p50_ms, d.latency.p50_ms),
            latency_p99: ratio(n.latency.p99_ms, d.latency.p99_ms),
            latency_p999: ratio(n.latency.p999_ms, d.latency.p999_ms),
            rss_per_connection: ratio(n.rss_kib_per_connection, d.rss_kib_per_connection),
            anon_per_connection: ratio(n.anon_kib_per_connection, d.anon_kib_per_connection),
            server_cpu_per_message: match (n.server_cpu_ms_per_message, d.server_cpu_ms_per_message) {
                (Some(n), Some(d)) => ratio(n, d),
                _ => None,
            },
        }
    }

    fn to_text(&self) -> String {
        let show = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.3}x"));
        format!(
            "  deliveries/s {}   latency p50 {}   p99 {}   p99.9 {}   RSS per connection {} (anonymous {})   CPU per message {}",
            show(self.deliveries_per_sec),
            show(self.latency_p50),
            show(self.latency_p99),
            show(self.latency_p999),
            show(self.rss_per_connection),
            show(self.anon_per_connection),
            show(self.server_cpu_per_message),
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub users: usize,
    pub senders: usize,
    pub rate_per_sec: u32,
    pub duration_secs: f64,
    pub body_pad_chars: usize,
    pub targets: Vec<TargetReport>,
    /// Present when both targets ran.
    pub rampart_over_baseline: Option<Ratios>,
    /// Present when a second rampart binary ran (`--compare-bin`).
    pub rampart_over_compare: Option<Ratios>,
}

fn ratio(rampart: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| rampart / baseline)
}

impl Report {
    pub fn new(plan: &Plan, targets: Vec<TargetReport>) -> Self {
        let find = |t: Target| targets.iter().find(|r| r.target == t);
        let ratios = |divisor: Target| match (find(Target::Rampart), find(divisor)) {
            (Some(r), Some(d)) => Some(Ratios::of(r, d)),
            _ => None,
        };
        let rampart_over_baseline = ratios(Target::Baseline);
        let rampart_over_compare = ratios(Target::Compare);
        Report {
            scenario: plan.scenario,
            users: plan.users,
            senders: if plan.scenario == Scenario::Idle { 0 } else { plan.senders },
            rate_per_sec: if plan.scenario == Scenario::Idle { 0 } else { plan.rate_per_sec },
            duration_secs: plan.duration.as_secs_f64(),
            body_pad_chars: plan.body_pad_chars,
            targets,
            rampart_over_baseline,
            rampart_over_compare,
        }
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let scenario = match self.scenario {
            Scenario::Fanout => "fanout",
            Scenario::Dm => "dm",
            Scenario::Idle => "idle",
        };
        let _ = writeln!(
            out,
            "scenario {scenario}: {} users (one connection each), {} senders, {} msg/s for {} s, body padding {} chars",
            self.users, self.senders, self.rate_per_sec, self.duration_secs, self.body_pad_chars
        );
        for target in &self.targets {
            write_target(&mut out, target);
        }
        if let Some(ratios) = &self.rampart_over_baseline {
            let _ = writeln!(out, "== rampart / baseline (same run)");
            let _ = writeln!(out, "{}", ratios.to_text());
        }
        if let Some(ratios) = &self.rampart_over_compare {
            let label = self.targets.iter().find(|t| t.target == Target::Compare).map_or("compare", |t| &t.label);
            let _ = writeln!(out, "== rampart / {label} (same run)");
            let _ = writeln!(out, "{}", ratios.to_text());
        }
        out
    }
}

fn write_target(out: &mut String, t: &TargetReport) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    match &t.binary {
        Some(binary) => {
            let _ = writeln!(out, "== {} ({})", t.label, binary.display());
        }
        None => {
            let _ = writeln!(out, "== {}", t.label);
        }
    }
    if t.senders > 0 {
        let share = if t.expected > 0 { 100.0 * t.delivered as f64 / t.expected as f64 } else { 0.0 };
        let _ = writeln!(
            out,
            "  messages    {} due, {} sent ({:.1}/s); {} of {} expected deliveries ({share:.2}%)",
            t.attempted, t.sent, t.sent_per_sec, t.delivered, t.expected
        );
        let _ = writeln!(
            out,
            "  throughput  {:.1} deliveries/s over {:.2} s (first send to last delivery)",
            t.deliveries_per_sec, t.window_secs
        );
        let l = &t.latency;
        let _ = writeln!(
            out,
            "  latency     p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, mean {:.3} ms ({} samples)",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
        );
        let a = &t.accept_latency;
        if a.samples > 0 {
            let _ = writeln!(
                out,
                "  accepted    p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (send to 201, {} samples)",
                a.p50_ms, a.p99_ms, a.p999_ms, a.max_ms, a.samples
            );
        }
    }
    match t.server_cpu_ms_per_message {
        Some(per_message) => {
            let _ = writeln!(
                out,
                "  server CPU  {:.2} s (first send to end of drain), {per_message:.3} ms per message sent",
                t.server_cpu_secs
            );
        }
        None => {
            let _ = writeln!(out, "  server CPU  {:.2} s while the connections were held", t.server_cpu_secs);
        }
    }
    if let Some(cluster) = &t.cluster {
        write_cluster(out, t, cluster);
    }
    let errors = if t.errors.is_empty() {
        "none".to_owned()
    } else {
        t.errors.iter().map(|(kind, n)| format!("{kind}={n}")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(out, "  errors      {} ({errors})", t.errors_total);
    let _ = writeln!(
        out,
        "  memory      RSS{} {:.1} MiB before, {:.1} MiB with {} connections, {:.1} MiB at the end; {:.1} KiB per connection",
        if t.cluster.is_some() { " (all nodes, not restarted after set-up)" } else { "" },
        mib(t.rss_kib_before),
        mib(t.rss_kib_connected),
        t.connections,
        mib(t.rss_kib_after),
        t.rss_kib_per_connection
    );
    let _ = writeln!(
        out,
        "              anonymous {:.1} MiB before, {:.1} MiB with the connections; {:.1} KiB per connection (RSS less file-backed pages: code, mapped database files)",
        mib(t.anon_kib_before),
        mib(t.anon_kib_connected),
        t.anon_kib_per_connection
    );
    if t.connections_open_at_end < t.connections {
        let _ = writeln!(
            out,
            "  warning     only {} of {} connections were still open at the end",
            t.connections_open_at_end, t.connections
        );
    }
}

/// Cluster mode: CPU by node and by service, and each node's bus counters.
fn write_cluster(out: &mut String, t: &TargetReport, cluster: &ClusterFigures) {
    let by_node: Vec<String> = t.node_cpu_secs.iter().map(|secs| format!("{secs:.2}")).collect();
    let services: Vec<String> =
        cluster.service_cpu_secs.iter().map(|(name, secs)| format!("{name} {secs:.2} s")).collect();
    let _ = writeln!(
        out,
        "  cluster     {} nodes behind haproxy; node CPU {} s; {}",
        cluster.nodes,
        by_node.join(" + "),
        services.join(", ")
    );
    let short = |name: &str| {
        name.trim_start_matches("rampart_").trim_start_matches("cluster_").trim_start_matches("websocket_").to_owned()
    };
    for (index, counters) in cluster.node_counters.iter().enumerate() {
        let shown: Vec<String> = counters.iter().map(|(name, value)| format!("{} {value:.0}", short(name))).collect();
        let _ = writeln!(out, "  node {}      {}", index + 1, shown.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_absent_when_the_baseline_is_zero() {
        assert_eq!(ratio(2.0, 4.0), Some(0.5));
        assert_eq!(ratio(2.0, 0.0), None);
    }
}
