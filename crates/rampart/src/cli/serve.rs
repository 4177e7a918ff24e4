//! `rampart serve`: open the deployment, set up TLS, bind the listeners, issue the first owner's
//! enrollment link if the server has no account, then serve until SIGTERM or Ctrl-C, and drain:
//! unready at once, no new connections, WebSocket clients told to reconnect, open requests
//! finished, exit within `limits.shutdown_drain_ms`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rampart_app::Outcome;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, LogFormat};
use crate::gateway::hub::Hub;
use crate::http::{self, AppState};
use crate::metrics::{Metrics, Sources};
use crate::node::NodeState;
use crate::server::{bind, ConnectionLimiter, Listener};
use crate::{fsutil, gateway, tls};

/// How often expired and idle sessions are deleted.
const SESSION_SWEEP_INTERVAL_MS: u64 = 10 * 60 * 1000;
/// How often cached authentications past their 2 s lifetime are dropped (they are also dropped
/// every 1,024 insertions, which a quiet server may not reach).
const AUTH_CACHE_SWEEP_INTERVAL_MS: u64 = 60 * 1000;
/// The file, in `key_dir`, holding the first owner's enrollment link.
pub const OWNER_ENROLLMENT_FILE: &str = "owner-enrollment.txt";

pub fn init_logging(config: &Config, to_stdout: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},hyper=warn,sqlx=warn,rustls=warn", config.log_level))
    });
    let ansi = if to_stdout { std::io::stdout().is_terminal() } else { std::io::stderr().is_terminal() };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    let result = match (config.log_format, to_stdout) {
        (LogFormat::Json, true) => builder.json().with_writer(std::io::stdout).try_init(),
        (LogFormat::Json, false) => builder.json().with_writer(std::io::stderr).try_init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stdout).try_init(),
        (LogFormat::Text, false) => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Opens the directories and stores of a deployment and builds the application, delivering
/// committed events to `sink`.
pub async fn open_app(config: &Config, sink: Arc<dyn rampart_app::EventSink>) -> anyhow::Result<rampart_app::App> {
    for dir in [&config.data_dir, &config.key_dir, &config.audit_dir] {
        fsutil::ensure_private_dir(dir)?;
    }
    fsutil::check_private_dir(&config.key_dir)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let keys = rampart_store::KeyConfig {
        key_dir: config.key_dir.clone(),
        epoch: rampart_store::EpochPolicy {
            messages_max: config.encryption.epoch_messages_max,
            days_max: config.encryption.epoch_days_max,
        },
    };
    let stores = crate::storage::open(config, &keys).await?;
    let signer =
        rampart_crypto::AuditSigner::load_or_create(&config.key_dir).context("cannot load the audit signing key")?;
    let app = rampart_app::App::new(stores.backend, stores.audit, signer, config.app.clone(), sink)
        .map_err(|e| anyhow::anyhow!("cannot start the application: {e}"))?;
    app.load_audit_state().await.map_err(|e| anyhow::anyhow!("cannot read the audit log: {e}"))?;
    // A start on an over-privileged database role is on the record, or it does not happen.
    for problem in &stores.overridden {
        let details = serde_json::json!({ "problem": problem.to_string() });
        app.audit("system", crate::storage::PRIVILEGE_OVERRIDE_ACTION, None, None, Outcome::Success, details)
            .await
            .map_err(|e| anyhow::anyhow!("cannot write the audit log: {e}"))?;
    }
    Ok(app)
}

fn tls_acceptor(config: &Config) -> anyhow::Result<(TlsAcceptor, Arc<tls::ReloadingResolver>)> {
    let (cert_file, key_file) = match &config.tls_files {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => {
            let host = config.public_origin.as_deref().and_then(origin_host);
            let (cert, key, made) = tls::ensure_dev_certificate(&config.key_dir, host.as_deref())?;
            tracing::warn!(
                made_now = made,
                ca = %config.key_dir.join("dev-ca.pem").display(),
                "USING A DEVELOPMENT CERTIFICATE from a local CA that no browser trusts. Production needs a \
                 certificate from a real CA: set tls.cert_file and tls.key_file in rampart.toml"
            );
            (cert, key)
        }
    };
    let resolver = tls::ReloadingResolver::load(&cert_file, &key_file)?;
    let acceptor = TlsAcceptor::from(tls::server_config(Arc::clone(&resolver))?);
    Ok((acceptor, resolver))
}

/// `chat.example.com` from `https://chat.example.com:8443`.
fn origin_host(origin: &str) -> Option<String> {
    let rest = origin.strip_prefix("https://")?;
    if let Some(bracketed) = rest.strip_prefix('[') {
        return bracketed.split(']').next().map(str::to_owned);
    }
    rest.split(':').next().map(str::to_owned)
}

async fn write_owner_enrollment(config: &Config, app: &rampart_app::App, origin: &str) -> anyhow::Result<()> {
    let path = config.key_dir.join(OWNER_ENROLLMENT_FILE);
    match app.first_owner_invitation().await.map_err(|e| anyhow::anyhow!("first owner invitation: {e}"))? {
        Some(issued) => {
            let link = http::admin_enrollment_url(origin, issued.token.expose());
            let text = format!(
                "Rampart owner enrollment (one use, expires {}):\n{link}\n\nOr with curl:\n  \
                 curl --cacert {} -H 'Content-Type: application/json' {origin}/api/v1/auth/enroll \\\n    \
                 -d '{{\"token\":\"{}\",\"username\":\"owner\",\"display_name\":\"Owner\",\"password\":\"<a long passphrase>\"}}'\n",
                http::wire::rfc3339(issued.expires_at),
                config.key_dir.join("dev-ca.pem").display(),
                issued.token.expose(),
            );
            fsutil::write_private(&path, text.as_bytes())?;
            tracing::warn!(file = %path.display(), "no account exists yet: the owner's one-time enrollment link is in this file (mode 0600)");
            if std::io::stdout().is_terminal() {
                println!("\nEnroll the first owner (one use): {link}\n");
            }
        }
        None if app.has_no_users().await.unwrap_or(false) => {
            tracing::warn!(
                file = %path.display(),
                "no account exists yet: use the enrollment link written earlier to this file, or `rampart invite --role owner`"
            );
        }
        None => {}
    }
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config, true);
    // Every line the serve task, its listeners, connections and requests log carries the node id.
    let span = tracing::info_span!("node", node = %config.node_id);
    tracing::Instrument::instrument(serve(config), span).await
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let node = NodeState::new(config.node_id.clone());
    let hub = Hub::new(config.ws.queue_len_max);
    let app = open_app(&config, hub.clone()).await?;
    gateway::spawn_session_listener(&app, hub.clone());
    gateway::spawn_heartbeat(&hub, std::time::Duration::from_millis(config.ws.ping_interval_ms));
    let bus = match &config.cluster {
        Some(cluster) => Some(crate::cluster::start(cluster, &node, hub.clone(), app.clone()).await?),
        None => None,
    };
    set_up_scanning(&config, &app).await;
    let (acceptor, resolver) = tls_acceptor(&config)?;

    let main_listener = bind(config.listen, "HTTPS").await?;
    let bound = main_listener.local_addr()?;
    let public_origin = config.public_origin.clone().unwrap_or_else(|| format!("https://localhost:{}", bound.port()));
    let state_hub = hub.clone();
    let connections = ConnectionLimiter::new(
        config.limits.connections_per_ip_max,
        config.limits.connections_max,
        config.limits.ipv6_prefix_len,
    );
    let sources = Sources {
        app: app.clone(),
        hub: hub.clone(),
        connections: connections.clone(),
        tls: Arc::clone(&resolver),
        node: Arc::clone(&node),
    };
    let proxy = Arc::new(config.proxy.clone());
    let metrics = Arc::new(Metrics::new(config.metrics.allow.clone(), Some(sources)));
    let state = AppState {
        app: app.clone(),
        limits: config.limits,
        public_origin: public_origin.clone(),
        hub,
        ws: config.ws,
        metrics,
        uploads: http::UploadLimits {
            bytes_max: config.app.files.bytes_max,
            timeout_ms: config.files.upload_timeout_ms,
        },
        proxy: Arc::clone(&proxy),
        node: Arc::clone(&node),
    };
    // The public listeners stop first, at the start of the drain; the admin listener (readiness
    // for the load balancer, metrics) and the rest once it is over.
    let (public_shutdown_tx, public_shutdown_rx) = watch::channel(false);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut public_tasks = tokio::task::JoinSet::new();
    let mut tasks = tokio::task::JoinSet::new();

    let https = Listener {
        router: http::router(state.clone()),
        tls: Some(acceptor.clone()),
        limits: config.limits,
        connections: connections.clone(),
        proxy: (!proxy.trusted.is_empty()).then(|| Arc::clone(&proxy)),
    };
    public_tasks.spawn(tracing::Instrument::in_current_span(https.run(main_listener, public_shutdown_rx.clone())));
    if let Some(addr) = config.http_listen {
        let listener = bind(addr, "HTTP redirect").await?;
        tracing::info!(url = %format!("http://{}", listener.local_addr()?), "redirecting plain HTTP to {public_origin}");
        let redirect = Listener {
            router: http::redirect::router(public_origin.clone()),
            tls: None,
            limits: config.limits,
            connections: connections.clone(),
            proxy: None,
        };
        public_tasks.spawn(tracing::Instrument::in_current_span(redirect.run(listener, public_shutdown_rx.clone())));
    }
    if let Some(addr) = config.admin_listen {
        let listener = bind(addr, "admin").await?;
        tracing::info!(url = %format!("https://{}", listener.local_addr()?), "admin listener (health, metrics)");
        let admin = Listener {
            router: http::admin_router(state.clone()),
            tls: Some(acceptor),
            limits: config.limits,
            connections,
            proxy: None,
        };
        tasks.spawn(tracing::Instrument::in_current_span(admin.run(listener, shutdown_rx.clone())));
    }

    let audit_app = app.clone();
    resolver.spawn_watcher(Duration::from_millis(config.tls_reload_poll_ms), move |result| {
        let app = audit_app.clone();
        tokio::spawn(async move {
            let (outcome, details) = match result {
                Ok(()) => (Outcome::Success, serde_json::json!({})),
                Err(reason) => (Outcome::Failure, serde_json::json!({ "reason": reason })),
            };
            if let Err(error) =
                app.audit("system", "config.tls_certificate_reloaded", None, None, outcome, details).await
            {
                tracing::error!(%error, "cannot audit the certificate reload");
            }
        });
    });
    spawn_session_sweeper(app.clone());
    spawn_audit_checkpointer(app.clone(), Duration::from_secs(config.audit_checkpoint_interval_secs));
    spawn_refusal_flusher(app.clone());
    if let (Some(webhook), Some(notices)) = (config.webhook.clone(), app.take_alert_notices()) {
        crate::webhook::spawn(webhook, notices)?;
    }
    if let Some(target) = config.audit_forward.clone() {
        tracing::info!(target = %target.url, "forwarding audit records to a collector");
        // Joined with the listeners at stop; it returns as soon as the stop is signalled.
        let forwarder = crate::forward::Forwarder::new(app.clone(), target)?.run(shutdown_rx.clone());
        tasks.spawn(tracing::Instrument::in_current_span(forwarder));
    }
    write_owner_enrollment(&config, &app, &public_origin).await?;
    app.audit(
        "system",
        "server.start",
        None,
        None,
        Outcome::Success,
        serde_json::json!({ "listen": bound.to_string() }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot write the audit log: {e}"))?;
    tracing::info!(url = %format!("https://{bound}"), public_origin = %public_origin, node = %node.id, "rampart is listening on https://{bound}");
    if !tracing::enabled!(tracing::Level::INFO) {
        // Scripts and operators wait for this line; it is printed even when info logs are off.
        println!("rampart is listening on https://{bound}");
    }

    wait_for_shutdown_signal().await;
    let drain = Duration::from_millis(config.limits.shutdown_drain_ms);
    drain_node(&node, &state_hub, drain, public_shutdown_tx, public_tasks).await;
    if let Some(bus) = &bus {
        bus.flush(Duration::from_millis(BUS_FLUSH_MS)).await;
    }
    let _ = shutdown_tx.send(true);
    // The admin listener and the forwarder stop at once; nothing is waited for past this bound.
    if tokio::time::timeout(Duration::from_millis(FINAL_STOP_MS), async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    // Refusals counted since their window's first record are written as their summaries.
    if let Err(error) = app.flush_refusals(true).await {
        tracing::error!(%error, "cannot write the summaries of refused requests");
    }
    app.audit("system", "server.stop", None, None, Outcome::Success, serde_json::json!({}))
        .await
        .map_err(|e| anyhow::anyhow!("cannot write the audit log: {e}"))?;
    // The last records are signed before the process ends, so an offline verify covers them.
    app.audit_checkpoint().await.map_err(|e| anyhow::anyhow!("cannot sign the audit log: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The longest a drained node waits for its last cluster notices to go out.
const BUS_FLUSH_MS: u64 = 1_000;
/// The longest the admin listener and the forwarder may take to stop once the drain is over.
const FINAL_STOP_MS: u64 = 2_000;
/// How often a draining node looks whether its WebSocket clients have all been seen off.
const DRAIN_POLL_MS: u64 = 50;

/// SIGTERM: `/readyz` answers 503 at once, the public listeners stop accepting, every WebSocket
/// client is sent `reconnect` and closed, and open requests finish — all within `drain`, after
/// which what is left is cut.
async fn drain_node(
    node: &NodeState,
    hub: &Hub,
    drain: Duration,
    public_shutdown: watch::Sender<bool>,
    mut public_tasks: tokio::task::JoinSet<()>,
) {
    let deadline = tokio::time::Instant::now() + drain;
    node.start_draining();
    let _ = public_shutdown.send(true);
    hub.drain();
    tracing::info!(
        websocket_connections = hub.connections(),
        drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
        "draining: unready, no new connections, WebSocket clients told to reconnect"
    );
    // Each listener bounds its own drain by the same time; the sockets' goodbyes are waited for too.
    let listeners = async { while public_tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(deadline, listeners).await.is_err() {
        public_tasks.abort_all();
    }
    while hub.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
    }
    let left = hub.open_sockets();
    if left > 0 {
        tracing::warn!(left, "WebSocket connections still open after the drain time; closing them");
    }
}

/// Signs the audit chain's head every `interval` when records were added since the last signature.
fn spawn_audit_checkpointer(app: rampart_app::App, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = app.audit_checkpoint().await {
                tracing::error!(%error, "cannot sign an audit checkpoint");
            }
        }
    });
}

/// How often windows of aggregated refusals are looked at, to write the summaries of those that
/// closed (`rampart_core::limits::AUDIT_REFUSAL_WINDOW_MS`).
const REFUSAL_FLUSH_INTERVAL_MS: u64 = 5 * 1000;

fn spawn_refusal_flusher(app: rampart_app::App) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(REFUSAL_FLUSH_INTERVAL_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = app.flush_refusals(false).await {
                tracing::error!(%error, "cannot write the summaries of refused requests");
            }
        }
    });
}

/// Points uploads at clamd when scanning is on. An unreachable clamd is not fatal at start (uploads
/// are refused with 503 until it answers), but it is logged loudly.
async fn set_up_scanning(config: &Config, app: &rampart_app::App) {
    let Some(address) = config.files.clamd.clone() else {
        return;
    };
    let clamd = crate::clamd::Clamd::new(address);
    match clamd.ping().await {
        Ok(()) => tracing::info!(clamd = %clamd.describe(), "uploads are scanned for malware by clamd"),
        Err(error) => tracing::error!(
            clamd = %clamd.describe(),
            %error,
            "clamd does not answer: every upload is refused until it does (files.scanning)"
        ),
    }
    app.set_scanner(Arc::new(clamd));
}

fn spawn_session_sweeper(app: rampart_app::App) {
    let cache_app = app.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(AUTH_CACHE_SWEEP_INTERVAL_MS));
        loop {
            ticker.tick().await;
            cache_app.purge_auth_cache();
        }
    });
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(SESSION_SWEEP_INTERVAL_MS));
        loop {
            ticker.tick().await;
            if let Err(error) = app.trim_rate_limits().await {
                tracing::warn!(%error, "cannot sweep the shared rate limits");
            }
            match app.sweep_sessions().await {
                Ok(0) => {}
                Ok(ended) => tracing::info!(ended, "expired sessions removed"),
                Err(error) => tracing::warn!(%error, "session sweep failed"),
            }
            match app.sweep_files().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "files never attached to a message removed"),
                Err(error) => tracing::warn!(%error, "file sweep failed"),
            }
        }
    });
}

async fn wait_for_shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::origin_host;

    #[test]
    fn origin_host_strips_scheme_and_port() {
        assert_eq!(origin_host("https://chat.example.com:8443").as_deref(), Some("chat.example.com"));
        assert_eq!(origin_host("https://chat.example.com").as_deref(), Some("chat.example.com"));
        assert_eq!(origin_host("https://[::1]:8443").as_deref(), Some("::1"));
    }
}
