//! Metrics in the Prometheus text format, served at `/metrics` on the admin listener only, and only
//! to peers in `metrics.allow`. HTTP requests are counted and timed by `track_http` under their
//! route template (never the raw path, so the label set stays bounded); everything else is read at
//! scrape time from where it lives: the app's counters, the hub, the connection limiter and the
//! TLS resolver. Every metric name starts with `rampart_`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rampart_app::{App, AppCounters};
use rampart_core::ErrorCode;

use crate::gateway::hub::Hub;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::server::ConnectionLimiter;
use crate::tls::ReloadingResolver;

/// The route label of a request no route matched (a 404), whatever its path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Upper bounds of the request duration histogram, in seconds.
const DURATION_BUCKETS_SECONDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The registry and the access rule of `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    allow: Vec<IpNet>,
}

/// What is read at scrape time.
#[derive(Debug)]
pub struct Sources {
    pub app: App,
    pub hub: Arc<Hub>,
    /// Open TCP connections of every listener (they share one limiter).
    pub connections: Arc<ConnectionLimiter>,
    pub tls: Arc<ReloadingResolver>,
    /// This node's id (the `rampart_node_info` label) and whether it drains.
    pub node: Arc<crate::node::NodeState>,
}

impl Metrics {
    /// Metrics for peers in `allow`; `sources` is `None` only in tests of the HTTP part.
    pub fn new(allow: Vec<IpNet>, sources: Option<Sources>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "rampart_http_requests",
            "HTTP requests answered on the public listener, by route template, method and status",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS_SECONDS));
        registry.register(
            "rampart_http_request_duration_seconds",
            "Time from a request's arrival to its response head, by route template",
            durations.clone(),
        );
        if let Some(sources) = sources {
            registry.register_collector(Box::new(sources));
        }
        Self { registry, requests, durations, allow }
    }

    /// Whether `peer` may scrape. An IPv4 peer seen as IPv6 (`::ffff:a.b.c.d`, on a dual-stack
    /// listener) is matched as IPv4.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allow.iter().any(|net| net.contains(&peer))
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn observe(&self, route: String, method: &'static str, status: u16, elapsed: Duration) {
        self.durations.get_or_create(&RouteLabels { route: route.clone() }).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
    }
}

/// Middleware: counts and times each request under its route template (axum's `MatchedPath`,
/// such as `/api/v1/channels/{id}`), or `UNMATCHED_ROUTE` when no route matched.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// A peer allowed to scrape by `metrics.allow`; anyone else gets 403.
#[derive(Debug)]
pub struct Scraper;

impl FromRequestParts<AppState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // No peer address means the check cannot be made: refuse.
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        match peer {
            Some(ip) if state.metrics.allows(ip) => Ok(Scraper),
            _ => {
                tracing::info!(peer = ?peer, "metrics scrape refused: the peer is not in metrics.allow");
                Err(ApiError::of(ErrorCode::Forbidden))
            }
        }
    }
}

/// `GET /metrics` on the admin listener.
pub async fn scrape(_scraper: Scraper, State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            tracing::error!("cannot encode the metrics");
            ApiError::of(ErrorCode::Internal).into_response()
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The method label: the standard methods by name, anything else as `OTHER` (bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        // The node id is a validated token (`NodeId`), safe as a label value.
        {
            let mut info = e.encode_descriptor("rampart_node_info", "This node's id.", None, MetricType::Gauge)?;
            ConstGauge::new(1i64).encode(info.encode_family(&[("node", self.node.id.as_str())])?)?;
        }
        let draining = i64::from(self.node.is_draining());
        gauge(e, "rampart_node_draining", "1 while the node drains before it stops.", draining)?;
        if let Some(bus) = self.node.bus() {
            use crate::cluster::BusStats;
            gauge(
                e,
                "rampart_cluster_bus_connected",
                "1 while the cluster bus (NATS) is connected.",
                i64::from(bus.is_connected()),
            )?;
            for (name, help, value) in [
                ("rampart_cluster_notices_published", "Notices this node sent to the cluster bus.", &bus.published),
                (
                    "rampart_cluster_notices_dropped",
                    "Notices not sent: the outbox was full or the bus down.",
                    &bus.dropped,
                ),
                ("rampart_cluster_notices_received", "Notices received from the other nodes.", &bus.received),
                (
                    "rampart_cluster_notices_rejected",
                    "Received notices that were malformed or too large.",
                    &bus.rejected,
                ),
                ("rampart_cluster_backfills", "Store reads of other nodes' events.", &bus.backfills),
                (
                    "rampart_cluster_backfill_errors",
                    "Store reads of other nodes' events that failed.",
                    &bus.backfill_errors,
                ),
                (
                    "rampart_cluster_sweeps",
                    "Times every listened channel was read up to date after a reconnect or lag.",
                    &bus.sweeps,
                ),
            ] {
                counter(e, name, help, BusStats::read(value))?;
            }
        }
        let tcp = i64::from(self.connections.open_connections());
        gauge(e, "rampart_tcp_connections", "Open TCP connections, all listeners.", tcp)?;
        let ws = i64::try_from(self.hub.connections()).unwrap_or(i64::MAX);
        gauge(e, "rampart_websocket_connections", "Open WebSocket connections.", ws)?;
        let drops = self.hub.queue_drops();
        counter(
            e,
            "rampart_websocket_queue_drops",
            "Events not queued to a lagging connection (told to resync).",
            drops,
        )?;

        let c: &AppCounters = self.app.counters();
        counter(e, "rampart_messages_sent", "Messages sent.", AppCounters::read(&c.messages_sent))?;
        counter(
            e,
            "rampart_login_failures",
            "Logins refused for bad credentials.",
            AppCounters::read(&c.login_failures),
        )?;
        let throttled = AppCounters::read(&c.login_throttled);
        counter(
            e,
            "rampart_login_throttled",
            "Login, enrollment and password changes refused by the throttle.",
            throttled,
        )?;
        let limited = AppCounters::read(&c.send_rate_limited);
        counter(e, "rampart_send_rate_limited", "Messages refused by the per-user send rate limit.", limited)?;
        let backlog = c.audit_forward_backlog.load(std::sync::atomic::Ordering::Relaxed);
        gauge(e, "rampart_audit_forward_backlog", "Audit records not yet forwarded.", backlog)?;

        let mut alerts =
            e.encode_descriptor("rampart_alerts", "Security alerts raised, by kind.", None, MetricType::Counter)?;
        for (kind, count) in c.alerts() {
            ConstCounter::new(count).encode(alerts.encode_family(&[("kind", kind)])?)?;
        }

        // Left out when the certificate cannot be read, rather than reported as expired.
        if let Some(not_after) = self.tls.not_after_unix_secs() {
            let left = not_after.saturating_sub(rampart_app::now().0 / 1000);
            gauge(e, "rampart_tls_certificate_expiry_seconds", "Seconds until the served certificate expires.", left)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn net(text: &str) -> IpNet {
        text.parse().expect("net")
    }

    #[test]
    fn the_allowlist_matches_by_prefix_and_sees_mapped_ipv4_as_ipv4() {
        let metrics = Metrics::new(vec![net("127.0.0.1/32"), net("10.0.0.0/8"), net("2001:db8::/32")], None);
        for allowed in ["127.0.0.1", "10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3", "2001:db8::1"] {
            assert!(metrics.allows(allowed.parse().expect("ip")), "{allowed}");
        }
        for refused in ["127.0.0.2", "11.0.0.0", "9.255.255.255", "::1", "2001:db9::1", "::ffff:11.0.0.1"] {
            assert!(!metrics.allows(refused.parse().expect("ip")), "{refused}");
        }
        let nobody = Metrics::new(Vec::new(), None);
        assert!(!nobody.allows("127.0.0.1".parse().expect("ip")));
    }

    async fn get_status(app: &Router, path: &str) -> u16 {
        let request = axum::http::Request::get(path).body(Body::empty()).expect("request");
        app.clone().oneshot(request).await.expect("response").status().as_u16()
    }

    #[tokio::test]
    async fn requests_are_labelled_by_route_template_and_unmatched_paths_collapse() {
        let metrics = Arc::new(Metrics::new(Vec::new(), None));
        let api = Router::new().route("/things/{id}", get(|| async { "thing" }));
        let app = Router::new()
            .nest("/api/v1", api)
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), track_http));
        for path in ["/api/v1/things/1", "/api/v1/things/2", "/healthz"] {
            assert_eq!(get_status(&app, path).await, 200, "{path}");
        }
        for path in ["/nope", "/api/v1/secret-guess", "/api/v1/things/1/extra"] {
            assert_eq!(get_status(&app, path).await, 404, "{path}");
        }
        let text = metrics.render().expect("render");
        assert!(
            text.contains(r#"rampart_http_requests_total{route="/api/v1/things/{id}",method="GET",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rampart_http_requests_total{route="/healthz",method="GET",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rampart_http_requests_total{route="unmatched",method="GET",status="404"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"rampart_http_request_duration_seconds_count{route="unmatched"} 3"#), "{text}");
        for raw in ["/nope", "secret-guess", "things/1", "things/2"] {
            assert!(!text.contains(raw), "a raw path leaked into a label: {raw}\n{text}");
        }
    }

    #[test]
    fn odd_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").expect("method")), "OTHER");
    }
}
