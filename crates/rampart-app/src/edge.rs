//! The unauthenticated edge: how client addresses are keyed for per-address limits (an IPv6 client
//! by its prefix), the request budget of one address on the endpoints that need no session, and
//! the aggregation of repeated refusals into one audit record per window
//! (`rampart_core::refusals`), so refused requests cannot grow the audit log without bound.

use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use rampart_core::refusals::{RefusalSummary, RefusalWindows};
use rampart_core::throttle;
use serde_json::json;

use crate::{now, App, AppCounters, AppError, Outcome, RequestMeta};

/// What a summary record is written with: the first refusal's fields.
#[derive(Clone, Debug)]
pub(crate) struct RefusalRecord {
    action: String,
    target: Option<String>,
    outcome: Outcome,
    meta: RequestMeta,
    details: serde_json::Value,
}

pub(crate) type Refusals = Mutex<RefusalWindows<RefusalRecord>>;
pub(crate) type AddressLimiter = governor::DefaultKeyedRateLimiter<String>;

/// One refusal to audit: `reason` and `name` (an account name as typed, folded) are part of its key.
pub(crate) struct Refusal<'a> {
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: Outcome,
    pub reason: &'a str,
    pub name: &'a str,
    pub details: serde_json::Value,
}

impl App {
    /// The key of the client's address for per-address limits (`throttle::client_key`).
    pub fn client_key(&self, meta: &RequestMeta) -> String {
        throttle::client_key(&meta.ip, self.inner.config.ipv6_prefix_len)
    }

    /// Spends one request of the client address's unauthenticated budget, or refuses (429) when
    /// it is spent. A refusal is audited, aggregated like the others.
    pub(crate) async fn spend_address_budget(&self, meta: &RequestMeta, action: &str) -> Result<(), AppError> {
        let client = self.client_key(meta);
        let Err(not_until) = self.inner.address_limiter.check_key(&client) else {
            return Ok(());
        };
        AppCounters::bump(&self.inner.counters.login_throttled);
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let refusal = Refusal {
            action,
            target: None,
            outcome: Outcome::Denied,
            reason: "address_budget",
            name: "",
            details: json!({ "reason": "address_budget", "wait_ms": wait_ms }),
        };
        self.audit_refusal(refusal, meta).await?;
        Err(AppError::AddressBudget { retry_after_secs: throttle::retry_after_secs(wait_ms) })
    }

    /// Audits a refusal: the first of its key in a window at once, the rest counted into one
    /// summary record written when the window closes (`flush_refusals`).
    pub(crate) async fn audit_refusal(&self, refusal: Refusal<'_>, meta: &RequestMeta) -> Result<(), AppError> {
        let client = self.client_key(meta);
        let key =
            [refusal.action, refusal.outcome.as_str(), refusal.reason, refusal.name, client.as_str()].join("\u{0}");
        let seen = {
            let mut windows = self.inner.refusals.lock().unwrap_or_else(|p| p.into_inner());
            windows.seen(&key, now(), || RefusalRecord {
                action: refusal.action.to_owned(),
                target: refusal.target.map(str::to_owned),
                outcome: refusal.outcome,
                meta: RequestMeta { ip: client.clone(), user_agent: meta.user_agent.clone() },
                details: refusal.details.clone(),
            })
        };
        self.write_summaries(seen.closed).await?;
        if seen.record_now {
            self.audit("anonymous", refusal.action, refusal.target, Some(meta), refusal.outcome, refusal.details)
                .await?;
        }
        Ok(())
    }

    /// Writes the summaries of refusal windows that have closed; with `all`, of every window (at
    /// stop). Also forgets budgets of addresses idle long enough to be full again.
    pub async fn flush_refusals(&self, all: bool) -> Result<(), AppError> {
        let closed = {
            let mut windows = self.inner.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if all {
                windows.close_all()
            } else {
                windows.close_due(now())
            }
        };
        self.inner.address_limiter.retain_recent();
        self.write_summaries(closed).await
    }

    async fn write_summaries(&self, closed: Vec<RefusalSummary<RefusalRecord>>) -> Result<(), AppError> {
        for summary in closed {
            let record = summary.payload;
            let mut details = record.details;
            if let Some(object) = details.as_object_mut() {
                object.remove("wait_ms");
                object.insert("repeated".to_owned(), json!(summary.count));
                object.insert("first_at".to_owned(), json!(summary.first_at.0));
                object.insert("last_at".to_owned(), json!(summary.last_at.0));
            }
            self.audit(
                "anonymous",
                &record.action,
                record.target.as_deref(),
                Some(&record.meta),
                record.outcome,
                details,
            )
            .await?;
        }
        Ok(())
    }
}
