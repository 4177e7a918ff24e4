//! The command line: raw flags as clap parses them, and their validation into a `Plan` that the
//! rest of the tool takes without checking again (loopback only, every count and time bounded).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// At most this many WebSocket connections (one per user) in one run.
pub const USERS_MAX: usize = 20_000;
/// At most this many messages per second, all senders together.
pub const RATE_PER_SEC_MAX: u32 = 100_000;
/// The send phase lasts at most this long.
pub const DURATION_SECS_MAX: u64 = 600;
/// A whole run (every target, set-up included) is stopped after at most this long.
pub const TIMEOUT_SECS_MAX: u64 = 3_600;
/// A message body carries at most this many characters of padding after its timestamp.
pub const BODY_PAD_CHARS_MAX: usize = 8_000;
/// Outstanding HTTP sends per sender at most.
pub const INFLIGHT_PER_SENDER_MAX: usize = 1_024;
/// The label of the compared binary is at most this many characters (it is only printed).
pub const COMPARE_LABEL_CHARS_MAX: usize = 80;
/// A cluster run starts at most this many nodes (the shipped `deploy/haproxy.cfg` names three).
pub const NODES_MAX: usize = 3;
/// A PostgreSQL or NATS URL is at most this many characters.
pub const SERVICE_URL_CHARS_MAX: usize = 1_000;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for Rampart, measured against a bare TLS WebSocket broadcast baseline (loopback only)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the bare baseline server (the load generator starts it itself as a subprocess).
    BaselineServer(BaselineArgs),
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Loopback address to listen on; port 0 picks a free one, printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// PEM certificate chain of the server.
    #[arg(long)]
    pub cert: PathBuf,
    /// PEM private key of the server.
    #[arg(long)]
    pub key: PathBuf,
    /// Frames queued per connection before the connection is told to resync.
    #[arg(long, default_value_t = 1024)]
    pub queue_len: usize,
    /// The server exits by itself after this many seconds, even if nobody stops it.
    #[arg(long, default_value_t = 900)]
    pub lifetime_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One channel, every user a member with one connection; S senders at a fixed total rate.
    Fanout,
    /// Users in pairs, one DM channel per pair; S pairs send at a fixed total rate.
    Dm,
    /// N authenticated connections that send nothing; measures server memory per connection.
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetChoice {
    Rampart,
    Baseline,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Baseline,
    Rampart,
    /// A second rampart binary (`--compare-bin`), run with the same workload right after `Rampart`.
    Compare,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Baseline => "baseline",
            Target::Rampart => "rampart",
            Target::Compare => "compare",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workload to run.
    #[arg(long, value_enum, default_value_t = Scenario::Fanout)]
    pub scenario: Scenario,
    /// Users, each with one WebSocket connection (dm: an even number).
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Senders (fanout: default 10; dm: pairs that send, default all of them).
    #[arg(long)]
    pub senders: Option<usize>,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Length of the send phase (idle: how long the connections are held).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// After the send phase, how long to wait for deliveries still in flight.
    #[arg(long, default_value_t = 5)]
    pub drain_secs: u64,
    /// Which servers to measure; `both` runs the baseline, then Rampart, in the same run.
    #[arg(long, value_enum, default_value_t = TargetChoice::Both)]
    pub target: TargetChoice,
    /// The rampart binary (default: `rampart` beside this program, i.e. the same target dir).
    #[arg(long)]
    pub rampart_bin: Option<PathBuf>,
    /// A second rampart binary, measured with the same workload right after the first in this
    /// run (e.g. an older build); the report adds the first's figures as a ratio of its figures.
    #[arg(long)]
    pub compare_bin: Option<PathBuf>,
    /// How the report names the `--compare-bin` binary.
    #[arg(long, default_value = "compare", requires = "compare_bin")]
    pub compare_label: String,
    /// Loopback address the servers listen on; any other address is refused.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// HTTP/2 connections the Rampart senders share.
    #[arg(long, default_value_t = 4)]
    pub http_connections: usize,
    /// WebSocket connections opened at once.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Users enrolled and logged in at once (Argon2 is bounded per core on the server).
    #[arg(long, default_value_t = 8)]
    pub enroll_concurrency: usize,
    /// HTTP sends outstanding per sender; a send due while all are taken counts as an error.
    #[arg(long, default_value_t = 64)]
    pub inflight_per_sender: usize,
    /// Characters of padding in each message body after the timestamp.
    #[arg(long, default_value_t = 32)]
    pub body_pad_chars: usize,
    /// Hard limit on the whole run, every target and set-up included.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (server data, keys, logs) instead of removing it.
    #[arg(long)]
    pub keep_dir: bool,
    /// Cluster mode: this many `rampart serve` nodes (1 to 3) on one PostgreSQL schema and NATS,
    /// behind HAProxy with `deploy/haproxy.cfg`; every client goes through HAProxy. Without it,
    /// one node on its own SQLite store, reached directly.
    #[arg(long, requires = "postgres_url")]
    pub nodes: Option<usize>,
    /// Cluster mode: an administrator's PostgreSQL URL (loopback), with which a fresh schema is
    /// provisioned by `rampart db provision` and dropped at the end.
    #[arg(long, requires = "nodes")]
    pub postgres_url: Option<String>,
    /// Cluster mode: the NATS server the nodes talk over (loopback).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Cluster mode: the HAProxy binary (`apt-get install -y haproxy`).
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    pub haproxy_bin: PathBuf,
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub users: usize,
    pub senders: usize,
    pub rate_per_sec: u32,
    pub duration: Duration,
    pub drain: Duration,
    pub targets: Vec<Target>,
    pub rampart_bin: PathBuf,
    /// The `Compare` target's binary; present exactly when `targets` holds `Compare`.
    pub compare_bin: Option<PathBuf>,
    pub compare_label: String,
    pub host: IpAddr,
    pub http_connections: usize,
    pub connect_concurrency: usize,
    pub enroll_concurrency: usize,
    pub inflight_per_sender: usize,
    pub body_pad_chars: usize,
    pub timeout: Duration,
    pub json: bool,
    pub keep_dir: bool,
    /// Cluster mode (`--nodes`); `None`: one node on SQLite, as before.
    pub cluster: Option<ClusterPlan>,
}

/// A validated cluster run: where PostgreSQL, NATS and HAProxy are.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub nodes: usize,
    /// The administrator's URL; it may hold a password, so it is never printed.
    pub postgres_url: String,
    pub nats_url: String,
    pub haproxy_bin: PathBuf,
}

impl Plan {
    /// Deliveries each sent message should cause: every connection in the channel gets it, the
    /// sender's own included (API.md: "the sender's own connections included").
    pub fn recipients_per_message(&self) -> u64 {
        match self.scenario {
            Scenario::Fanout | Scenario::Idle => self.users as u64,
            Scenario::Dm => 2,
        }
    }

    /// The binary a Rampart-like target starts; `None` for the baseline.
    pub fn binary(&self, target: Target) -> Option<&Path> {
        match target {
            Target::Baseline => None,
            Target::Rampart => Some(&self.rampart_bin),
            Target::Compare => self.compare_bin.as_deref(),
        }
    }

    /// How the report names `target`: its name, or the `--compare-label` for `Compare`.
    pub fn label(&self, target: Target) -> &str {
        match target {
            Target::Compare => &self.compare_label,
            Target::Baseline | Target::Rampart => target.name(),
        }
    }
}

fn within<T: PartialOrd + std::fmt::Display>(flag: &str, value: T, min: T, max: T) -> anyhow::Result<T> {
    if value < min || value > max {
        bail!("--{flag} must be between {min} and {max} (got {value})");
    }
    Ok(value)
}

impl RunArgs {
    /// Checks every flag once; nothing downstream checks them again.
    pub fn validate(self) -> anyhow::Result<Plan> {
        if !self.host.is_loopback() {
            bail!(
                "--host {} is not a loopback address: this tool only loads servers it starts on this machine",
                self.host
            );
        }
        let users = within("users", self.users, 2, USERS_MAX)?;
        if self.scenario == Scenario::Dm && users % 2 != 0 {
            bail!("--users must be even for the dm scenario (users are paired)");
        }
        let senders_max = match self.scenario {
            Scenario::Dm => users / 2,
            Scenario::Fanout | Scenario::Idle => users,
        };
        let senders_default = match self.scenario {
            Scenario::Dm => senders_max,
            Scenario::Fanout | Scenario::Idle => senders_max.min(10),
        };
        let senders = within("senders", self.senders.unwrap_or(senders_default), 1, senders_max)?;
        let rampart_bin = match self.rampart_bin {
            Some(path) => path,
            None => std::env::current_exe()
                .context("cannot find this program's path to look for rampart beside it")?
                .with_file_name("rampart"),
        };
        let mut targets = match self.target {
            TargetChoice::Baseline => vec![Target::Baseline],
            TargetChoice::Rampart => vec![Target::Rampart],
            TargetChoice::Both => vec![Target::Baseline, Target::Rampart],
        };
        if targets.contains(&Target::Rampart) && !rampart_bin.is_file() {
            bail!(
                "no rampart binary at {} (build it with `cargo build --release -p rampart`, or pass --rampart-bin)",
                rampart_bin.display()
            );
        }
        if let Some(compare_bin) = &self.compare_bin {
            if !targets.contains(&Target::Rampart) {
                bail!("--compare-bin needs --target rampart or both: it is compared with the rampart target");
            }
            if !compare_bin.is_file() {
                bail!("no rampart binary at {} (--compare-bin)", compare_bin.display());
            }
            targets.push(Target::Compare);
        }
        let cluster = match self.nodes {
            None => None,
            Some(nodes) => Some(ClusterPlan {
                nodes: within("nodes", nodes, 1, NODES_MAX)?,
                postgres_url: service_url(
                    "postgres-url",
                    self.postgres_url.as_deref().unwrap_or_default(),
                    &["postgres", "postgresql"],
                )?,
                nats_url: service_url("nats-url", &self.nats_url, &["nats"])?,
                haproxy_bin: self.haproxy_bin,
            }),
        };
        if cluster.is_some() && !targets.contains(&Target::Rampart) {
            bail!("--nodes needs --target rampart or both: the baseline has no cluster mode");
        }
        let label_chars = self.compare_label.chars().count();
        if label_chars == 0 || label_chars > COMPARE_LABEL_CHARS_MAX || self.compare_label.contains(char::is_control) {
            bail!("--compare-label must be 1 to {COMPARE_LABEL_CHARS_MAX} printable characters");
        }
        Ok(Plan {
            scenario: self.scenario,
            users,
            senders,
            rate_per_sec: within("rate", self.rate, 1, RATE_PER_SEC_MAX)?,
            duration: Duration::from_secs(within("duration-secs", self.duration_secs, 1, DURATION_SECS_MAX)?),
            drain: Duration::from_secs(within("drain-secs", self.drain_secs, 0, 60)?),
            targets,
            rampart_bin,
            compare_bin: self.compare_bin,
            compare_label: self.compare_label,
            host: self.host,
            http_connections: within("http-connections", self.http_connections, 1, 64)?,
            connect_concurrency: within("connect-concurrency", self.connect_concurrency, 1, 1_024)?,
            enroll_concurrency: within("enroll-concurrency", self.enroll_concurrency, 1, 64)?,
            inflight_per_sender: within("inflight-per-sender", self.inflight_per_sender, 1, INFLIGHT_PER_SENDER_MAX)?,
            body_pad_chars: within("body-pad-chars", self.body_pad_chars, 0, BODY_PAD_CHARS_MAX)?,
            timeout: Duration::from_secs(within("timeout-secs", self.timeout_secs, 10, TIMEOUT_SECS_MAX)?),
            json: self.json,
            keep_dir: self.keep_dir,
            cluster,
        })
    }
}

/// Checks that `url` is `scheme://[user[:password]@]host[:port][/…]` with one of `schemes` and a
/// loopback host; the error names the flag, never the URL (it may hold a password).
fn service_url(flag: &str, url: &str, schemes: &[&str]) -> anyhow::Result<String> {
    if url.is_empty() || url.chars().count() > SERVICE_URL_CHARS_MAX || url.contains(char::is_whitespace) {
        bail!("--{flag} must be a URL of 1 to {SERVICE_URL_CHARS_MAX} characters without spaces");
    }
    let Some((scheme, rest)) = url.split_once("://") else { bail!("--{flag} must be a URL (scheme://host…)") };
    if !schemes.contains(&scheme) {
        bail!("--{flag} must start with {}://", schemes.join(":// or "));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map(|(host, _)| host).unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--{flag} must name a loopback host (127.0.0.1, ::1 or localhost): this tool only runs on this machine");
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Plan> {
        let mut all = vec!["loadgen", "--target", "baseline"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all)?;
        cli.run.validate()
    }

    #[test]
    fn refuses_addresses_off_loopback() {
        let error = parse(&["--host", "10.0.0.1"]).expect_err("non-loopback refused");
        assert!(error.to_string().contains("loopback"), "{error}");
        assert!(parse(&["--host", "192.168.1.2"]).is_err());
        assert!(parse(&["--host", "127.0.0.2"]).is_ok());
        assert!(parse(&["--host", "::1"]).is_ok());
    }

    #[test]
    fn bounds_counts_and_times() {
        assert!(parse(&["--users", "1"]).is_err());
        assert!(parse(&["--users", "20001"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--duration-secs", "601"]).is_err());
        assert!(parse(&["--scenario", "dm", "--users", "7"]).is_err());
        assert!(parse(&["--scenario", "dm", "--users", "8", "--senders", "5"]).is_err());
    }

    #[test]
    fn sender_defaults_follow_the_scenario() {
        let fanout = parse(&["--users", "40"]).expect("fanout");
        assert_eq!(fanout.senders, 10);
        assert_eq!(fanout.recipients_per_message(), 40);
        let dm = parse(&["--scenario", "dm", "--users", "40"]).expect("dm");
        assert_eq!(dm.senders, 20);
        assert_eq!(dm.recipients_per_message(), 2);
        let small = parse(&["--users", "4"]).expect("small");
        assert_eq!(small.senders, 4);
    }

    #[test]
    fn a_compared_binary_runs_right_after_rampart() {
        let this = std::env::current_exe().expect("this test binary");
        let this = this.to_str().expect("UTF-8 path");
        let run = |args: &[&str]| Cli::try_parse_from(args).map_err(anyhow::Error::from).and_then(|c| c.run.validate());
        let plan = run(&["loadgen", "--rampart-bin", this, "--compare-bin", this, "--compare-label", "old"])
            .expect("both targets and a compared binary");
        assert_eq!(plan.targets, [Target::Baseline, Target::Rampart, Target::Compare]);
        assert_eq!(plan.label(Target::Compare), "old");
        assert_eq!(plan.binary(Target::Compare), Some(Path::new(this)));
        let plan = run(&["loadgen", "--target", "rampart", "--rampart-bin", this, "--compare-bin", this])
            .expect("rampart and a compared binary");
        assert_eq!(plan.targets, [Target::Rampart, Target::Compare]);
        assert_eq!(plan.label(Target::Compare), "compare");
        assert!(run(&["loadgen", "--target", "baseline", "--compare-bin", this]).is_err(), "nothing to compare with");
        assert!(
            run(&["loadgen", "--target", "rampart", "--rampart-bin", this, "--compare-bin", "/nonexistent"]).is_err()
        );
        assert!(run(&["loadgen", "--target", "baseline", "--compare-label", "x"]).is_err(), "a label needs a binary");
        let plan = parse(&[]).expect("no comparison");
        assert_eq!(plan.targets, [Target::Baseline]);
        assert_eq!(plan.binary(Target::Compare), None);
    }

    #[test]
    fn cluster_mode_needs_postgres_on_loopback_and_at_most_three_nodes() {
        let this = std::env::current_exe().expect("this test binary");
        let this = this.to_str().expect("UTF-8 path");
        let run = |extra: &[&str]| {
            let mut args = vec!["loadgen", "--target", "rampart", "--rampart-bin", this];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map_err(anyhow::Error::from).and_then(|c| c.run.validate())
        };
        let pg = "postgres://postgres@127.0.0.1:5432/test";
        let plan = run(&["--nodes", "3", "--postgres-url", pg]).expect("a cluster");
        let cluster = plan.cluster.expect("cluster mode");
        assert_eq!((cluster.nodes, cluster.nats_url.as_str()), (3, "nats://127.0.0.1:4222"));
        assert!(run(&[]).expect("one node").cluster.is_none(), "the default is unchanged");
        assert!(run(&["--nodes", "2"]).is_err(), "--nodes needs --postgres-url");
        assert!(run(&["--postgres-url", pg]).is_err(), "--postgres-url needs --nodes");
        assert!(run(&["--nodes", "0", "--postgres-url", pg]).is_err());
        assert!(run(&["--nodes", "4", "--postgres-url", pg]).is_err());
        let remote =
            run(&["--nodes", "1", "--postgres-url", "postgres://u:secret@db.example.com/x"]).expect_err("not loopback");
        assert!(!remote.to_string().contains("secret"), "{remote}");
        assert!(run(&["--nodes", "1", "--postgres-url", "postgres://u:p@[::1]:5432/x"]).is_ok());
        assert!(run(&["--nodes", "1", "--postgres-url", "postgres://localhost/x"]).is_ok());
        assert!(run(&["--nodes", "1", "--postgres-url", "mysql://127.0.0.1/x"]).is_err());
        assert!(run(&["--nodes", "1", "--postgres-url", pg, "--nats-url", "nats://10.0.0.1:4222"]).is_err());
        let baseline = ["loadgen", "--target", "baseline", "--nodes", "1", "--postgres-url", pg];
        assert!(Cli::try_parse_from(baseline).map_err(anyhow::Error::from).and_then(|c| c.run.validate()).is_err());
    }
}
