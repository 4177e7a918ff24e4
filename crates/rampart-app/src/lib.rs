//! Rampart's use cases. Each public method of `App` is one thing a user or admin does: it checks
//! permission through `rampart_core::policy`, runs the store transaction, writes the audit record
//! and tells live connections what changed. HTTP knows nothing of this crate's insides and this
//! crate knows nothing of HTTP.
#![forbid(unsafe_code)]

mod accounts;
mod admin;
mod alerts;
mod audit;
mod audit_log;
mod auth_cache;
mod counters;
mod edge;
mod error;
mod files;
mod forwarding;
mod hashing;
mod images;
mod keys;
mod messaging;
mod sessions;

pub use accounts::{EnrollInput, LoginInput, LoginOutcome};
pub use admin::{IssuedInvitation, UserChange};
pub use alerts::{AlertNotice, ALERT_ACTION};
pub use audit::{AuditPolicy, ExportFormat, Outcome};
pub use audit_log::AuditLog;
pub use counters::{AppCounters, ALERT_KINDS_MAX, ALERT_KIND_OTHER};
pub use error::AppError;
pub use files::{FilePolicy, MalwareScanner, ScanError, ScanSession, ScanVerdict, StoredFile};
pub use hashing::HashPool;
pub use keys::{KekRotation, Reencryption, Rekey, RekeyStep};
pub use messaging::{ChannelAccess, EventSink, NoLiveConnections, SearchInput, SendInput};
pub use sessions::{Authenticated, NewSessionIssued, SessionEnded, SessionUser};

use std::num::NonZeroU32;
use std::sync::Arc;

use rampart_core::throttle::ThrottlePolicy;
use rampart_core::{limits, Timestamp};
use rampart_crypto::PasswordParams;
use rampart_store::{AuditStore, Backend};
use tokio::sync::broadcast;

/// Session lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout_ms: i64,
    pub lifetime_ms: i64,
    pub per_user_max: u32,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_ms: limits::SESSION_IDLE_TIMEOUT_MS,
            lifetime_ms: limits::SESSION_LIFETIME_MS,
            per_user_max: limits::SESSIONS_PER_USER_MAX,
        }
    }
}

/// Everything the use cases can be tuned by.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub sessions: SessionPolicy,
    pub account_throttle: ThrottlePolicy,
    pub ip_throttle: ThrottlePolicy,
    pub password_params: PasswordParams,
    /// Password hashes computed at once; defaults to the number of cores.
    pub hash_workers: usize,
    pub hash_queue_max: usize,
    /// Messages one user may send per second, sustained, and in a burst.
    pub send_rate_per_sec: u32,
    pub send_burst: u32,
    /// Send limits kept in the store, so the nodes of a cluster share them (one write per send);
    /// otherwise in this process's memory.
    pub send_limit_shared: bool,
    pub audit: AuditPolicy,
    pub detectors: rampart_core::detect::DetectorPolicy,
    pub files: FilePolicy,
    /// Per-address limits key an IPv6 client on this many leading bits.
    pub ipv6_prefix_len: u8,
    /// Requests one client address may make to the endpoints that need no session.
    pub unauthenticated_burst: u32,
    pub unauthenticated_per_minute: u32,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            sessions: SessionPolicy::default(),
            account_throttle: ThrottlePolicy::ACCOUNT_DEFAULT,
            ip_throttle: ThrottlePolicy::IP_DEFAULT,
            password_params: PasswordParams {
                memory_kib: limits::ARGON2_MEMORY_KIB,
                iterations: limits::ARGON2_ITERATIONS,
                parallelism: limits::ARGON2_PARALLELISM,
            },
            hash_workers: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            hash_queue_max: limits::PASSWORD_HASH_QUEUE_MAX,
            send_rate_per_sec: limits::SEND_RATE_PER_SEC,
            send_burst: limits::SEND_BURST,
            send_limit_shared: false,
            audit: AuditPolicy::default(),
            detectors: rampart_core::detect::DetectorPolicy::default(),
            files: FilePolicy::default(),
            ipv6_prefix_len: limits::IPV6_PREFIX_LEN,
            unauthenticated_burst: limits::UNAUTHENTICATED_BURST,
            unauthenticated_per_minute: limits::UNAUTHENTICATED_PER_MINUTE,
        }
    }
}

/// Who made a request and from where, as the edge saw it.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: String,
    pub user_agent: String,
}

impl RequestMeta {
    pub fn new(ip: String, user_agent: &str) -> Self {
        let user_agent: String =
            user_agent.chars().filter(|c| !c.is_control()).take(limits::USER_AGENT_CHARS_MAX).collect();
        Self { ip, user_agent }
    }
}

/// Depth of the queue that tells live connections a session or user was ended.
const SESSION_EVENTS_QUEUE_LEN: usize = 1024;

/// The application: shared, cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    inner: Arc<Inner>,
}

type SendLimiter = governor::DefaultKeyedRateLimiter<rampart_core::UserId>;

struct Inner {
    store: Arc<dyn Backend>,
    audit: Arc<dyn AuditStore>,
    audit_keys: audit::AuditKeys,
    hashes: HashPool,
    config: AppConfig,
    session_events: broadcast::Sender<SessionEnded>,
    sink: Arc<dyn EventSink>,
    send_limiter: SendLimiter,
    address_limiter: edge::AddressLimiter,
    refusals: edge::Refusals,
    auth_cache: auth_cache::AuthCache,
    counters: AppCounters,
    alerts: alerts::AlertState,
    /// The malware scanner, once the binary has set one.
    scanner: std::sync::OnceLock<Arc<dyn MalwareScanner>>,
    /// Uploads in progress (bounded: past it, 429 at once).
    uploads: Arc<tokio::sync::Semaphore>,
    /// Uploads in progress per user (bounded: past `uploads_per_user_at_once_max`, 429 at once).
    uploads_per_user: files::UploadsPerUser,
    /// Image decodes at once (each may hold a large pixel buffer).
    image_decodes: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("store", &self.store).field("config", &self.config).finish_non_exhaustive()
    }
}

impl App {
    pub fn new(
        store: Arc<dyn Backend>,
        audit: Arc<dyn AuditStore>,
        audit_signer: rampart_crypto::AuditSigner,
        config: AppConfig,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, AppError> {
        let hashes = HashPool::new(config.password_params, config.hash_workers, config.hash_queue_max)?;
        let (session_events, _) = broadcast::channel(SESSION_EVENTS_QUEUE_LEN);
        let rate = NonZeroU32::new(config.send_rate_per_sec)
            .ok_or_else(|| AppError::Internal("send rate must be positive".into()))?;
        let burst = NonZeroU32::new(config.send_burst)
            .ok_or_else(|| AppError::Internal("send burst must be positive".into()))?;
        let send_limiter = governor::RateLimiter::dashmap(governor::Quota::per_second(rate).allow_burst(burst));
        let per_minute = NonZeroU32::new(config.unauthenticated_per_minute)
            .ok_or_else(|| AppError::Internal("the unauthenticated request rate must be positive".into()))?;
        let address_burst = NonZeroU32::new(config.unauthenticated_burst)
            .ok_or_else(|| AppError::Internal("the unauthenticated request burst must be positive".into()))?;
        let address_limiter =
            governor::RateLimiter::dashmap(governor::Quota::per_minute(per_minute).allow_burst(address_burst));
        let refusals = std::sync::Mutex::new(rampart_core::refusals::RefusalWindows::new(
            limits::AUDIT_REFUSAL_WINDOW_MS,
            limits::AUDIT_REFUSAL_KEYS_MAX,
        ));
        let auth_cache = auth_cache::AuthCache::default();
        let audit_keys = audit::AuditKeys { signer: audit_signer, state: Default::default() };
        let counters = AppCounters::default();
        let alerts = alerts::AlertState::new(config.detectors);
        let uploads = Arc::new(tokio::sync::Semaphore::new(config.files.uploads_at_once_max.max(1)));
        let image_decodes = tokio::sync::Semaphore::new(limits::IMAGE_DECODES_AT_ONCE_MAX);
        let inner = Inner {
            store,
            audit,
            audit_keys,
            hashes,
            config,
            session_events,
            sink,
            send_limiter,
            address_limiter,
            refusals,
            auth_cache,
            counters,
            alerts,
            scanner: std::sync::OnceLock::new(),
            uploads,
            uploads_per_user: Default::default(),
            image_decodes,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Drops cached authentications past their lifetime (and the room they held).
    pub fn purge_auth_cache(&self) {
        self.inner.auth_cache.purge_expired();
    }

    /// Forgets rate-limit state of users idle long enough to be back at a full burst.
    pub async fn trim_rate_limits(&self) -> Result<(), AppError> {
        self.inner.send_limiter.retain_recent();
        self.inner.send_limiter.shrink_to_fit();
        if self.inner.config.send_limit_shared {
            self.inner.store.rate_sweep(now().0.saturating_mul(1_000)).await?;
        }
        Ok(())
    }

    /// What the use cases have counted, for the metrics endpoint.
    pub fn counters(&self) -> &AppCounters {
        &self.inner.counters
    }

    /// Live connections subscribe here to close when their session or user is ended.
    pub fn subscribe_session_events(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.session_events.subscribe()
    }

    /// Whether the server can serve: the store answers.
    pub async fn ready(&self) -> bool {
        self.inner.store.ping().await.is_ok()
    }
}

/// The wall clock, in the core's unit.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

/// A fresh random id (UUID v4 text).
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
