//! Cluster mode (`--nodes N`): a fresh PostgreSQL schema made by `rampart db provision`, N
//! `rampart serve` nodes on it sharing one key and data directory and talking over NATS, and
//! HAProxy in front of them with the shipped `deploy/haproxy.cfg` (TLS passed through, PROXY v2,
//! health checks on `/readyz`). Every client connects through HAProxy. Dropping the deployment
//! stops HAProxy and then drops the schema and its roles; the nodes are stopped before it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::options::{ClusterPlan, Plan};
use crate::process::{output_within, ServerProcess};
use crate::rampart::{deployment_flags, free_port, LISTENING_MARKER};
use crate::tls::{client_config, ALPN_HTTP1};

/// The shipped load balancer configuration, as built into this program.
const HAPROXY_CONFIG: &str = include_str!("../../deploy/haproxy.cfg");
/// `rampart db provision` may take this long (it migrates the schema).
const PROVISION_TIMEOUT: Duration = Duration::from_secs(120);
/// One `psql` statement (a check, or the clean-up) may take this long.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);
/// `haproxy -c` may take this long.
const HAPROXY_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Reaching the NATS server's port may take this long.
const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HAProxy may take this long to see every node pass its health checks.
const LB_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Health checks each node must have answered before the run uses the balancer: the shipped
/// configuration's `rise 2`.
const NODE_HEALTH_CHECKS_MIN: usize = 2;
const LB_READY_POLL: Duration = Duration::from_millis(100);
/// One scrape of a node's `/metrics` may take this long.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// A generated schema name's random part, in hex digits (the roles add `_migrator`; PostgreSQL
/// names are at most 63 bytes).
const SCHEMA_SUFFIX_HEX_DIGITS: usize = 10;
/// What a node's log says for each request to `/readyz` (its request span).
const READYZ_LOG_MARK: &str = "route=/readyz";
/// The node counters reported, as `/metrics` names them (counters without `_total`).
const NODE_COUNTERS: [&str; 9] = [
    "rampart_messages_sent",
    "rampart_cluster_notices_published",
    "rampart_cluster_notices_dropped",
    "rampart_cluster_notices_received",
    "rampart_cluster_notices_rejected",
    "rampart_cluster_backfills",
    "rampart_cluster_backfill_errors",
    "rampart_cluster_sweeps",
    "rampart_websocket_queue_drops",
];
/// Shared services whose CPU time is reported, by command name (`/proc/PID/comm`); HAProxy is
/// this program's child and measured by its pid.
const SERVICE_COMMANDS: [&str; 2] = ["postgres", "nats-server"];
/// The node gauge reported as it is at the end.
const NODE_CONNECTIONS_GAUGE: &str = "rampart_websocket_connections";

/// HAProxy and the schema. Drop the nodes first: the schema is dropped with this.
#[derive(Debug)]
pub struct Deployment {
    haproxy: ServerProcess,
    /// Each node's admin listener (health and metrics), by node.
    admin_addresses: Vec<SocketAddr>,
    scraper: reqwest::Client,
    // Held for its `Drop`; last, so it is dropped after HAProxy stops.
    _schema: Schema,
}

/// A started cluster: its nodes, and what they stand on.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<ServerProcess>,
    pub deployment: Deployment,
    /// Where clients connect: HAProxy's frontend.
    pub address: SocketAddr,
}

/// Each node's counters at one moment, by node, by name.
pub type NodeCounters = Vec<BTreeMap<String, f64>>;

/// Provisions the schema, starts the nodes (the first alone, as it makes the keys and the
/// development certificate the others share), then HAProxy, and waits until HAProxy sees every
/// node healthy.
pub async fn start(plan: &Plan, cluster: &ClusterPlan, bin: &Path, dir: &Path) -> anyhow::Result<Cluster> {
    check_haproxy(cluster)?;
    check_nats(&cluster.nats_url).await?;
    let schema = Schema::provision(bin, &cluster.postgres_url, dir).await?;
    let lb_port = free_port(plan)?;
    let lb_address = SocketAddr::new(plan.host, lb_port);
    let config = crate::rampart::config_text(
        dir,
        &schema.top_level_config(dir, &cluster.nats_url, lb_port)?,
        &schema.tables_config(dir)?,
    )?;
    std::fs::write(dir.join("rampart.toml"), config).context("writing rampart.toml")?;
    let mut nodes = Vec::with_capacity(cluster.nodes);
    let mut admin_addresses = Vec::with_capacity(cluster.nodes);
    for number in 1..=cluster.nodes {
        let admin = SocketAddr::new(plan.host, free_port(plan)?);
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .args(deployment_flags(dir))
            .arg("--listen")
            .arg(SocketAddr::new(plan.host, free_port(plan)?).to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .env_remove("RUST_LOG");
        let log = dir.join(format!("node{number}.log"));
        let node = ServerProcess::start("rampart", command, &log, LISTENING_MARKER)
            .await
            .with_context(|| format!("starting node {number} of {}", cluster.nodes))?;
        nodes.push(node);
        admin_addresses.push(admin);
    }
    let ca_file = dir.join("keys").join("dev-ca.pem");
    let haproxy = start_haproxy(cluster, dir, lb_address, &nodes, &ca_file).await?;
    let ca_pem = std::fs::read(&ca_file).context("reading the development CA rampart wrote")?;
    let scraper = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&ca_pem, &[ALPN_HTTP1])?)
        .resolve("localhost", SocketAddr::new(plan.host, 0))
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .context("HTTP client for the nodes' metrics")?;
    let mut deployment = Deployment { haproxy, admin_addresses, scraper, _schema: schema };
    wait_until_balanced(&mut deployment, &mut nodes, lb_address, &ca_pem).await?;
    Ok(Cluster { nodes, deployment, address: lb_address })
}

impl Deployment {
    /// Fails if HAProxy has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.haproxy.check_alive()
    }

    /// CPU time used so far by PostgreSQL (every backend), NATS and HAProxy, by name, in seconds.
    /// PostgreSQL and NATS are the machine's: what else uses them is counted too.
    pub fn service_cpu_secs(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut all = BTreeMap::new();
        for command in SERVICE_COMMANDS {
            all.insert(command.to_owned(), crate::process::cpu_secs_of_command(command)?);
        }
        all.insert("haproxy".to_owned(), self.haproxy.cpu_secs()?);
        Ok(all)
    }

    /// Every node's counters now (`/metrics` on its admin listener).
    pub async fn scrape(&self) -> anyhow::Result<NodeCounters> {
        let mut all = Vec::with_capacity(self.admin_addresses.len());
        for (index, admin) in self.admin_addresses.iter().enumerate() {
            let url = format!("https://localhost:{}/metrics", admin.port());
            let response =
                self.scraper.get(&url).send().await.with_context(|| format!("node {} /metrics", index + 1))?;
            let status = response.status();
            let text = response.text().await.context("reading /metrics")?;
            if !status.is_success() {
                bail!("node {} answered /metrics with {status}", index + 1);
            }
            all.push(parse_metrics(&text));
        }
        Ok(all)
    }
}

/// The reported counters of `after` minus those of `before`, and the connections gauge as it is
/// in `after`.
pub fn counter_growth(before: &NodeCounters, after: &NodeCounters) -> NodeCounters {
    after
        .iter()
        .zip(before)
        .map(|(after, before)| {
            let mut grown: BTreeMap<String, f64> = NODE_COUNTERS
                .iter()
                .filter_map(|name| {
                    let now = after.get(*name)?;
                    Some(((*name).to_owned(), now - before.get(*name).copied().unwrap_or(0.0)))
                })
                .collect();
            if let Some(open) = after.get(NODE_CONNECTIONS_GAUGE) {
                grown.insert(NODE_CONNECTIONS_GAUGE.to_owned(), *open);
            }
            grown
        })
        .collect()
}

/// The reported metrics of a Prometheus/OpenMetrics text (unlabelled samples, `_total` dropped).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            let name = name.strip_suffix("_total").unwrap_or(name);
            let wanted = NODE_COUNTERS.contains(&name) || name == NODE_CONNECTIONS_GAUGE;
            Some((name.to_owned(), value.trim().parse::<f64>().ok()?)).filter(|_| wanted)
        })
        .collect()
}

fn check_haproxy(cluster: &ClusterPlan) -> anyhow::Result<()> {
    if !cluster.haproxy_bin.is_file() {
        bail!("no haproxy at {} (apt-get install -y haproxy, or pass --haproxy-bin)", cluster.haproxy_bin.display());
    }
    // The shipped configuration drops to the `haproxy` user in a chroot, which needs root.
    let uid = std::fs::metadata("/proc/self").map(|meta| std::os::unix::fs::MetadataExt::uid(&meta));
    if uid.context("cannot read this process's user id")? != 0 {
        bail!("cluster mode runs deploy/haproxy.cfg as shipped, which switches to the haproxy user: run as root");
    }
    Ok(())
}

/// Fails early, with a clear error, when nothing listens where `--nats-url` says.
async fn check_nats(url: &str) -> anyhow::Result<()> {
    let address = host_and_port(url, 4222);
    let connected = tokio::time::timeout(NATS_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await;
    match connected {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            Err(error).with_context(|| format!("cannot reach NATS at {address} (is nats-server running? --nats-url)"))
        }
        Err(_) => bail!("NATS at {address} did not answer within {NATS_CONNECT_TIMEOUT:?} (--nats-url)"),
    }
}

/// `host:port` of a validated `scheme://[userinfo@]host[:port]/…` URL.
fn host_and_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let has_port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => host_port.contains(':'),
    };
    if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}

/// The shipped configuration, with the `server` lines of nodes beyond `nodes` removed (it names
/// three).
fn haproxy_config(nodes: usize) -> anyhow::Result<String> {
    let mut kept = String::with_capacity(HAPROXY_CONFIG.len());
    let mut servers = 0;
    for line in HAPROXY_CONFIG.lines() {
        let server = (1..=crate::options::NODES_MAX)
            .find(|n| line.trim_start().starts_with(&format!("server node{n} \"${{RAMPART_NODE{n}}}\"")));
        if let Some(n) = server {
            servers += 1;
            if n > nodes {
                continue;
            }
        }
        kept.push_str(line);
        kept.push('\n');
    }
    if servers != crate::options::NODES_MAX {
        bail!("deploy/haproxy.cfg no longer has the `server nodeN \"${{RAMPART_NODEN}}\"` lines this tool expects");
    }
    Ok(kept)
}

async fn start_haproxy(
    cluster: &ClusterPlan,
    dir: &Path,
    lb_address: SocketAddr,
    nodes: &[ServerProcess],
    ca_file: &Path,
) -> anyhow::Result<ServerProcess> {
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(nodes.len())?).context("writing haproxy.cfg")?;
    let mut env: Vec<(String, String)> = vec![
        ("RAMPART_LB_BIND".to_owned(), lb_address.to_string()),
        ("RAMPART_CA_FILE".to_owned(), ca_file.display().to_string()),
        ("RAMPART_TLS_NAME".to_owned(), "localhost".to_owned()),
    ];
    for (index, node) in nodes.iter().enumerate() {
        env.push((format!("RAMPART_NODE{}", index + 1), node.address.to_string()));
    }
    let mut check = Command::new(&cluster.haproxy_bin);
    check.arg("-c").arg("-f").arg(&config).envs(env.iter().cloned());
    let checked = output_within(check, HAPROXY_CHECK_TIMEOUT, "haproxy -c", "apt-get install -y haproxy").await?;
    if !checked.status.success() {
        bail!("haproxy refuses deploy/haproxy.cfg: {}", String::from_utf8_lossy(&checked.stderr).trim());
    }
    let mut command = Command::new(&cluster.haproxy_bin);
    // -db: stay in the foreground, one process, logging to stderr.
    command.arg("-db").arg("-f").arg(&config).envs(env);
    ServerProcess::spawn("haproxy", command, &dir.join("haproxy.log"), lb_address)
}

/// Waits until every node has answered HAProxy's health checks (`rise`) and `/readyz` answers 200
/// through the balancer.
async fn wait_until_balanced(
    deployment: &mut Deployment,
    nodes: &mut [ServerProcess],
    lb_address: SocketAddr,
    ca_pem: &[u8],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + LB_READY_TIMEOUT;
    loop {
        deployment.haproxy.check_alive()?;
        for node in nodes.iter_mut() {
            node.check_alive()?;
        }
        let checked = nodes.iter().all(|n| n.log_text().matches(READYZ_LOG_MARK).count() >= NODE_HEALTH_CHECKS_MIN);
        if checked {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "HAProxy's health checks did not reach every node within {LB_READY_TIMEOUT:?}; its log ends:\n{}",
                deployment.haproxy.log_tail()
            );
        }
        tokio::time::sleep(LB_READY_POLL).await;
    }
    // A client of its own: its connection closes with it, so it does not skew `leastconn`.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(ca_pem, &[ALPN_HTTP1])?)
        .resolve("localhost", lb_address)
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .context("HTTP client for /readyz")?;
    let url = format!("https://localhost:{}/readyz", lb_address.port());
    let status = client.get(&url).send().await.context("GET /readyz through HAProxy")?.status();
    if status != reqwest::StatusCode::OK {
        bail!("/readyz through HAProxy answered {status}; HAProxy's log ends:\n{}", deployment.haproxy.log_tail());
    }
    Ok(())
}

/// A provisioned schema: its name, and the admin URL that drops it (and its roles) when dropped.
#[derive(Debug)]
struct Schema {
    name: String,
    admin_url: String,
    passwords: PathBuf,
}

impl Schema {
    /// Runs `rampart db provision` for a fresh schema. The guard exists before the command runs,
    /// so whatever it made is dropped even if it fails halfway.
    async fn provision(bin: &Path, admin_url: &str, dir: &Path) -> anyhow::Result<Schema> {
        psql(admin_url, "SELECT 1").await.context(
            "cannot reach PostgreSQL with --postgres-url (is it running, and is the URL an administrator's?)",
        )?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let random = (nanos ^ (u128::from(std::process::id()) << 20)) % (1 << (4 * SCHEMA_SUFFIX_HEX_DIGITS));
        let name = format!("rampart_bench_{random:0width$x}", width = SCHEMA_SUFFIX_HEX_DIGITS);
        let schema = Schema { name, admin_url: admin_url.to_owned(), passwords: dir.join("passwords") };
        let admin_ref = secret_file(dir, "admin-url", admin_url)?;
        let mut command = Command::new(bin);
        command
            .args(["db", "provision", "--admin-url", &admin_ref, "--schema", &schema.name, "--password-dir"])
            .arg(&schema.passwords)
            .env_remove("RUST_LOG");
        let output = output_within(command, PROVISION_TIMEOUT, "rampart db provision", "build rampart").await?;
        if !output.status.success() {
            bail!("rampart db provision failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(schema)
    }

    /// The URL of one of the schema's roles (`app`, `migrator`), with the password provisioning
    /// wrote for it.
    fn role_url(&self, suffix: &str) -> anyhow::Result<String> {
        let role = format!("{}_{suffix}", self.name);
        let path = self.passwords.join(format!("{role}.password"));
        let password = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (scheme, rest) = self.admin_url.split_once("://").context("--postgres-url is not a URL")?;
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        Ok(format!("{scheme}://{role}:{}@{host}", password.trim()))
    }

    /// The config's top-level keys (before any table): the public origin is the balancer's.
    fn top_level_config(&self, dir: &Path, nats_url: &str, lb_port: u16) -> anyhow::Result<String> {
        let app = secret_file(dir, "app-url", &self.role_url("app")?)?;
        Ok(format!(
            "public_origin = \"https://localhost:{lb_port}\"\ndatabase_url = {}\nnats_url = {}\n",
            toml_string(&app)?,
            toml_string(nats_url)?
        ))
    }

    /// The config's cluster tables: the schema, the migrator, the bus subject and the proxy.
    fn tables_config(&self, dir: &Path) -> anyhow::Result<String> {
        let migrator = secret_file(dir, "migrator-url", &self.role_url("migrator")?)?;
        Ok(format!(
            "[database]\nschema = \"{name}\"\nmigrator_url = {}\n\n[cluster]\nsubject_prefix = \"{name}\"\n\n\
             [proxy]\ntrusted = [\"127.0.0.1/32\"]\nprotocol = \"proxy-v2\"\n",
            toml_string(&migrator)?,
            name = self.name
        ))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = &self.name;
        let mut sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE;\n");
        for suffix in ["app", "auditor", "migrator"] {
            let role = format!("{name}_{suffix}");
            sql.push_str(&format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 EXECUTE 'DROP OWNED BY \"{role}\"'; EXECUTE 'DROP ROLE \"{role}\"'; END IF; END $$;\n"
            ));
        }
        let mut command = Command::new("psql");
        command.args(psql_args(&self.admin_url, &sql));
        let dropped = command.output();
        match dropped {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "loadgen: could not drop schema {name} and its roles: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("loadgen: could not run psql to drop schema {name} and its roles: {error}"),
        }
    }
}

/// psql's arguments for one statement. The URL goes on psql's command line, where it already is
/// on this program's (`--postgres-url`).
fn psql_args<'a>(url: &'a str, sql: &'a str) -> [&'a str; 8] {
    ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql]
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let mut command = Command::new("psql");
    command.args(psql_args(url, sql)).env("PGCONNECT_TIMEOUT", "5");
    let output = output_within(command, PSQL_TIMEOUT, "psql", "apt-get install -y postgresql-client").await?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    String::from_utf8(output.stdout).context("psql printed something that is not UTF-8")
}

/// Writes `text` to `dir/name` with mode 0600 and returns the `file:` reference to it.
fn secret_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let path = dir.join(name);
    // Created owner-only, never briefly readable by others.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!("file:{}", path.display()))
}

/// `value` as a TOML basic string; refuses what would need escaping (paths and URLs here never do).
fn toml_string(value: &str) -> anyhow::Result<String> {
    if value.contains(['"', '\\']) || value.contains(char::is_control) {
        bail!("{value:?} cannot be written in a TOML string as it is");
    }
    Ok(format!("\"{value}\""))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_shipped_haproxy_config_loses_only_the_unused_servers() {
        let three = haproxy_config(3).expect("three");
        assert_eq!(three.trim_end(), HAPROXY_CONFIG.trim_end());
        let one = haproxy_config(1).expect("one");
        assert!(one.contains("server node1 \"${RAMPART_NODE1}\""));
        assert!(!one.contains("RAMPART_NODE2") && !one.contains("RAMPART_NODE3"));
        assert_eq!(one.lines().count() + 2, three.lines().count());
    }

    #[test]
    fn finds_the_host_and_port_of_a_url() {
        assert_eq!(host_and_port("nats://127.0.0.1:4222", 4222), "127.0.0.1:4222");
        assert_eq!(host_and_port("nats://user:pw@localhost", 4222), "localhost:4222");
        assert_eq!(host_and_port("nats://[::1]", 4222), "[::1]:4222");
        assert_eq!(host_and_port("nats://[::1]:4333/", 4222), "[::1]:4333");
    }

    #[test]
    fn reads_the_reported_metrics() {
        let text = "# TYPE rampart_cluster_backfills counter\nrampart_cluster_backfills_total 12\n\
                    rampart_websocket_connections 500\nrampart_http_requests_total{route=\"/x\"} 3\n\
                    rampart_node_draining 0\n# EOF\n";
        let read = parse_metrics(text);
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(read["rampart_cluster_backfills"], 12.0);
        let before = vec![read.clone()];
        let mut after = read;
        after.insert("rampart_cluster_backfills".to_owned(), 20.0);
        after.insert("rampart_websocket_connections".to_owned(), 499.0);
        let grown = counter_growth(&before, &vec![after]);
        assert_eq!(grown[0]["rampart_cluster_backfills"], 8.0);
        assert_eq!(grown[0]["rampart_websocket_connections"], 499.0);
    }

    #[test]
    fn writes_secrets_owner_only_and_refuses_unquotable_values() {
        let dir = std::env::temp_dir().join(format!("loadgen-cluster-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let reference = secret_file(&dir, "url", "postgres://a:b@127.0.0.1/x").expect("written");
        let path = dir.join("url");
        assert_eq!(reference, format!("file:{}", path.display()));
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(toml_string("a\"b").is_err());
        assert_eq!(toml_string("nats://127.0.0.1:4222").expect("plain"), "\"nats://127.0.0.1:4222\"");
    }
}
