//! The Rampart target: starts `rampart serve` on loopback with fresh directories and generous
//! limits (or, with `--nodes`, a cluster behind HAProxy: `cluster.rs`), makes an admin through
//! `rampart invite`, enrolls and logs in the users through the HTTP API (invitations from the
//! admin), makes the channels, and sends messages over HTTP/2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::cluster::Deployment;
use crate::options::Plan;
use crate::process::ServerProcess;
use crate::tls::{client_config, ALPN_HTTP1, ALPN_HTTP2};
use crate::ws::Endpoint;

/// What `rampart serve` logs, followed by its `https://` address, once it accepts.
pub const LISTENING_MARKER: &str = "rampart is listening on";
/// One set-up request may take this long (enrollment waits for Argon2).
const SETUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// One send may take this long before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A set-up request answered 429 is tried this many times in all.
const SETUP_TRIES_MAX: u32 = 5;
/// Longest wait on a `Retry-After` during set-up.
const RETRY_AFTER_SECS_MAX: u64 = 5;
/// `rampart invite` may take this long.
const INVITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Response text kept in an error message.
const ERROR_TEXT_CHARS_MAX: usize = 300;

/// A running Rampart and the clients that talk to it.
#[derive(Debug)]
pub struct Rampart {
    /// The binary this server runs (`--rampart-bin` or `--compare-bin`).
    pub bin: PathBuf,
    /// The node, or a cluster's nodes.
    pub processes: Vec<ServerProcess>,
    /// Cluster mode: HAProxy and the schema, dropped after the nodes (declared after them).
    pub cluster: Option<Deployment>,
    /// `https://localhost:PORT` of the node, or of HAProxy in cluster mode.
    pub base_url: String,
    /// The senders' HTTP/2 pool: one connection per client.
    pub clients: Vec<reqwest::Client>,
    pub endpoint: Endpoint,
}

/// An enrolled, logged-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// The config: `top_level` keys and `tables` (cluster mode; else empty) around the bench's limits.
pub fn config_text(dir: &Path, top_level: &str, tables: &str) -> anyhow::Result<String> {
    let audit = dir.join("audit");
    let audit = audit.to_str().context("the temporary path is not UTF-8")?;
    if audit.contains(['"', '\\']) {
        bail!("the temporary path {audit} cannot be written in a TOML string");
    }
    // Limits a benchmark needs above the defaults, everything else as shipped: every connection
    // comes from 127.0.0.1, and a few users send far more than a person would, so the per-IP
    // connection cap and the per-user send rate would measure the limiters, not the server.
    // Experiments can add TOML (whole tables) through RAMPART_BENCH_EXTRA_CONFIG.
    let extra = std::env::var("RAMPART_BENCH_EXTRA_CONFIG").unwrap_or_default();
    Ok(format!(
        "audit_dir = \"{audit}\"\n{top_level}\n\
         [limits]\nconnections_per_ip_max = 100000\nconnections_max = 100000\n\n\
         [messages]\nsend_rate_per_sec = 1000000\nsend_burst = 1000000\n\n{tables}\n{extra}\n"
    ))
}

impl Rampart {
    /// Stops this server and starts a new one on the same deployment. Set-up hashes passwords
    /// with Argon2 (tens of MiB each), and the allocator keeps that memory; measured from a fresh
    /// process, the RSS a connection adds is the connection's, not reused hashing memory.
    /// A cluster is kept as it is: its RSS is not measured per connection, and its nodes would
    /// have to pass HAProxy's health checks again.
    pub async fn restart(self, plan: &Plan, dir: &Path) -> anyhow::Result<Rampart> {
        if self.cluster.is_some() {
            return Ok(self);
        }
        let bin = self.bin.clone();
        drop(self);
        Self::start(plan, &bin, dir, "server-measured.log").await
    }

    /// Starts `bin serve` in `dir` (data, keys, audit and the log `log_name` under it), or in
    /// cluster mode the nodes and HAProxy (logs `node1.log`…, `haproxy.log`).
    pub async fn start(plan: &Plan, bin: &Path, dir: &Path, log_name: &str) -> anyhow::Result<Rampart> {
        let (processes, cluster, address) = match &plan.cluster {
            Some(cluster) => {
                let started = crate::cluster::start(plan, cluster, bin, dir).await?;
                (started.nodes, Some(started.deployment), started.address)
            }
            None => {
                let process = Self::start_one(plan, bin, dir, log_name).await?;
                let address = process.address;
                (vec![process], None, address)
            }
        };
        let ca_pem =
            std::fs::read(dir.join("keys").join("dev-ca.pem")).context("reading the development CA rampart wrote")?;
        let mut clients = Vec::with_capacity(plan.http_connections);
        for _ in 0..plan.http_connections {
            let tls = client_config(&ca_pem, &[ALPN_HTTP2, ALPN_HTTP1])?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .resolve("localhost", address)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(SETUP_REQUEST_TIMEOUT)
                .build()
                .context("HTTP client")?;
            clients.push(client);
        }
        let base_url = format!("https://localhost:{}", address.port());
        let endpoint = Endpoint {
            address,
            url: format!("wss://localhost:{}/api/v1/events", address.port()),
            origin: Some(base_url.clone()),
            tls: tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca_pem, &[ALPN_HTTP1])?)),
        };
        Ok(Rampart { bin: bin.to_owned(), processes, cluster, base_url, clients, endpoint })
    }

    async fn start_one(plan: &Plan, bin: &Path, dir: &Path, log_name: &str) -> anyhow::Result<ServerProcess> {
        let config = dir.join("rampart.toml");
        std::fs::write(&config, config_text(dir, "", "")?).context("writing rampart.toml")?;
        let port = free_port(plan)?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .args(deployment_flags(dir))
            .arg("--listen")
            .arg(std::net::SocketAddr::new(plan.host, port).to_string())
            // The config file's log level, not whatever the caller's shell had.
            .env_remove("RUST_LOG");
        ServerProcess::start("rampart", command, &dir.join(log_name), LISTENING_MARKER).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Makes the admin (through `rampart invite`) and `count` members (through the API).
    pub async fn make_users(&self, plan: &Plan, dir: &Path, count: usize) -> anyhow::Result<(User, Vec<User>)> {
        let invitation = invite_admin(&self.bin, dir).await?;
        let admin = self
            .enroll_and_login(&invitation, "bench-admin", "bench passphrase for the administrator")
            .await
            .context("the admin")?;
        let users: Vec<anyhow::Result<User>> = futures_util::stream::iter(0..count)
            .map(|i| self.make_member(&admin, i))
            .buffered(plan.enroll_concurrency)
            .collect()
            .await;
        let users = users.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        Ok((admin, users))
    }

    async fn make_member(&self, admin: &User, index: usize) -> anyhow::Result<User> {
        let invitation = self
            .call(admin, "/api/v1/admin/invitations", json!({"role": "member"}), &[StatusCode::CREATED])
            .await
            .context("creating an invitation")?;
        let token = invitation["token"].as_str().context("the invitation has no token")?;
        let username = format!("bench-user-{index}");
        let password = format!("bench passphrase for user {index}");
        self.enroll_and_login(token, &username, &password).await.with_context(|| format!("user {username}"))
    }

    async fn enroll_and_login(&self, invitation: &str, username: &str, password: &str) -> anyhow::Result<User> {
        let enrolled = self
            .request(
                None,
                "/api/v1/auth/enroll",
                json!({"token": invitation, "username": username, "password": password, "display_name": username}),
                &[StatusCode::CREATED],
            )
            .await
            .context("enrolling")?;
        let id = enrolled["user"]["id"].as_str().context("enrollment returned no user id")?.to_owned();
        let login = self
            .request(
                None,
                "/api/v1/auth/login",
                json!({"username": username, "password": password, "mode": "token"}),
                &[StatusCode::OK],
            )
            .await
            .context("logging in")?;
        let token = login["token"].as_str().context("login returned no token")?.to_owned();
        Ok(User { id, token })
    }

    /// One public channel that every user joins; returns its id.
    pub async fn make_fanout_channel(&self, plan: &Plan, admin: &User, users: &[User]) -> anyhow::Result<String> {
        let channel = self
            .call(admin, "/api/v1/channels", json!({"name": "bench-fanout", "kind": "public"}), &[StatusCode::CREATED])
            .await
            .context("creating the channel (is the messaging API built?)")?;
        let id = channel["id"].as_str().context("the channel has no id")?.to_owned();
        let path = format!("/api/v1/channels/{id}/join");
        let joins: Vec<anyhow::Result<Value>> = futures_util::stream::iter(users)
            .map(|user| self.call_empty(user, &path, &[StatusCode::NO_CONTENT]))
            .buffer_unordered(plan.connect_concurrency)
            .collect()
            .await;
        for join in joins {
            join.context("joining the channel")?;
        }
        Ok(id)
    }

    /// One DM channel per pair (users 2k and 2k+1); returns their ids by pair.
    pub async fn make_dm_channels(&self, plan: &Plan, users: &[User]) -> anyhow::Result<Vec<String>> {
        let dms: Vec<anyhow::Result<Value>> = futures_util::stream::iter(users.chunks_exact(2))
            .map(|pair| {
                self.call(
                    &pair[0],
                    "/api/v1/dms",
                    json!({"user_id": pair[1].id}),
                    &[StatusCode::OK, StatusCode::CREATED],
                )
            })
            .buffered(plan.connect_concurrency)
            .collect()
            .await;
        let mut ids = Vec::with_capacity(dms.len());
        for dm in dms {
            let dm = dm.context("creating a DM (is the messaging API built?)")?;
            ids.push(dm["id"].as_str().context("the DM has no id")?.to_owned());
        }
        Ok(ids)
    }

    async fn call(&self, user: &User, path: &str, body: Value, ok: &[StatusCode]) -> anyhow::Result<Value> {
        self.request(Some(user), path, body, ok).await
    }

    async fn call_empty(&self, user: &User, path: &str, ok: &[StatusCode]) -> anyhow::Result<Value> {
        self.send_with_retry(|| self.clients[0].post(self.url(path)).bearer_auth(&user.token), ok).await
    }

    /// POSTs `body` as JSON, retrying on 429 after `Retry-After`, and returns the JSON answer.
    async fn request(&self, user: Option<&User>, path: &str, body: Value, ok: &[StatusCode]) -> anyhow::Result<Value> {
        self.send_with_retry(
            || {
                let request = self.clients[0].post(self.url(path)).json(&body);
                match user {
                    Some(user) => request.bearer_auth(&user.token),
                    None => request,
                }
            },
            ok,
        )
        .await
    }

    async fn send_with_retry(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        ok: &[StatusCode],
    ) -> anyhow::Result<Value> {
        for _ in 0..SETUP_TRIES_MAX {
            let response = build().send().await.context("HTTP request")?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, RETRY_AFTER_SECS_MAX);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let text = response.text().await.context("reading the answer")?;
            if !ok.contains(&status) {
                let shown: String = text.chars().take(ERROR_TEXT_CHARS_MAX).collect();
                bail!("answered {status}: {shown}");
            }
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the answer is not JSON");
        }
        bail!("still throttled (429) after {SETUP_TRIES_MAX} tries")
    }
}

/// Sends one message; the status code (or `None` when the request failed).
pub async fn post_message(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
    client_id: &str,
) -> Option<StatusCode> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .timeout(SEND_TIMEOUT)
        .json(&json!({"body": body, "client_id": client_id}))
        .send()
        .await
        .ok()?;
    let status = response.status();
    // Read the answer to the end so the HTTP/2 stream is finished cleanly.
    let _ = response.bytes().await;
    Some(status)
}

/// `--config`, `--data-dir` and `--key-dir` of the deployment in `dir`.
pub fn deployment_flags(dir: &Path) -> Vec<std::ffi::OsString> {
    let path = |name: &str| -> PathBuf { dir.join(name) };
    vec![
        "--config".into(),
        path("rampart.toml").into(),
        "--data-dir".into(),
        path("data").into(),
        "--key-dir".into(),
        path("keys").into(),
    ]
}

/// A free port on the plan's loopback address (bound, then released for the server).
pub fn free_port(plan: &Plan) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((plan.host, 0)).context("finding a free port")?;
    Ok(listener.local_addr().context("free port")?.port())
}

/// Runs `rampart invite --role admin` against the deployment in `dir`; returns the token.
async fn invite_admin(bin: &Path, dir: &Path) -> anyhow::Result<String> {
    let mut command = Command::new(bin);
    command.arg("invite").args(deployment_flags(dir)).args(["--role", "admin"]).env_remove("RUST_LOG");
    let output = tokio::time::timeout(INVITE_TIMEOUT, tokio::task::spawn_blocking(move || command.output()))
        .await
        .context("rampart invite timed out")?
        .context("rampart invite task")?
        .context("cannot run rampart invite")?;
    if !output.status.success() {
        bail!("rampart invite failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let token = String::from_utf8(output.stdout)
        .context("rampart invite printed something that is not UTF-8")?
        .trim()
        .to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("rampart invite did not print a single token");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_sets_the_audit_dir_and_limits() {
        let text = config_text(Path::new("/tmp/rampart-bench-x/rampart"), "", "").expect("config");
        assert!(text.contains("audit_dir = \"/tmp/rampart-bench-x/rampart/audit\""));
        assert!(text.contains("connections_per_ip_max = 100000"));
        assert!(text.contains("[messages]\nsend_rate_per_sec = 1000000\n"));
        assert!(config_text(Path::new("/tmp/a\"b"), "", "").is_err());
        let text = config_text(
            Path::new("/tmp/x"),
            "nats_url = \"nats://127.0.0.1:4222\"\n",
            "[proxy]\nprotocol = \"proxy-v2\"\n",
        )
        .expect("cluster config");
        let (before_tables, _) = text.split_once("\n[").expect("tables");
        assert!(before_tables.contains("nats_url"), "top-level keys come before every table:\n{text}");
        assert!(text.contains("\n[proxy]\nprotocol = \"proxy-v2\"\n"));
    }
}
