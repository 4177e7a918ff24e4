//! What one target's run counts while it runs: sends, deliveries, errors by kind, and the
//! send→deliver latency in sharded HdrHistograms (one lock per shard, so readers rarely contend).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to this many (2 minutes), to 3 digits.
pub const LATENCY_US_MAX: u64 = 120_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Histogram shards: connection `i` records into shard `i % SHARDS`.
pub const SHARDS: usize = 16;
/// Distinct error kinds kept; further kinds are folded into "other".
const ERROR_KINDS_MAX: usize = 64;

/// One time base for the whole process: a sender stamps nanoseconds since it, a receiver in the
/// same process subtracts — no clock skew, no wall-clock jumps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self { base: Instant::now() }
    }

    pub fn now_nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub clock: Clock,
    /// Sends that fell due (those skipped for back-pressure are also counted as errors).
    pub attempted: AtomicU64,
    /// Sends the server accepted (Rampart: 201; baseline: frame queued on the socket).
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Nanoseconds (on `clock`) of the last delivery seen.
    pub last_delivery_nanos: AtomicU64,
    /// Set before the connections are closed on purpose, so their closing is not an error.
    pub stopping: AtomicBool,
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Send→accept latency of HTTP sends (request out to `201` back); empty for the baseline.
    accepted: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// The latency figures of a run, in milliseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Metrics {
    pub fn new(clock: Clock) -> anyhow::Result<Self> {
        let mut shards = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
                .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
            shards.push(Mutex::new(histogram));
        }
        Ok(Self {
            clock,
            attempted: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            last_delivery_nanos: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            shards,
            accepted: Mutex::new(new_histogram()?),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records one delivery of a message stamped `sent_nanos`, seen by connection `connection`.
    pub fn record_delivery(&self, connection: usize, sent_nanos: u64) {
        let now = self.clock.now_nanos();
        let latency_us = now.saturating_sub(sent_nanos) / 1_000;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_nanos.fetch_max(now, Ordering::Relaxed);
        let shard = &self.shards[connection % SHARDS];
        shard
            .lock()
            .expect("a histogram lock is never poisoned: recording cannot panic")
            .saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
    }

    /// Records that a send stamped `sent_nanos` was accepted by the server now.
    pub fn record_accepted(&self, sent_nanos: u64) {
        let latency_us = self.clock.now_nanos().saturating_sub(sent_nanos) / 1_000;
        self.accepted
            .lock()
            .expect("a histogram lock is never poisoned: recording cannot panic")
            .saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
    }

    /// Counts one error of kind `kind` (a short snake_case word such as `send_http_429`).
    pub fn error(&self, kind: &str) {
        let mut errors = self.errors.lock().expect("the error lock is never poisoned: counting cannot panic");
        if errors.len() >= ERROR_KINDS_MAX && !errors.contains_key(kind) {
            *errors.entry("other".to_owned()).or_insert(0) += 1;
        } else {
            *errors.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().expect("the error lock is never poisoned: counting cannot panic").clone()
    }

    /// Send→deliver latency over every connection.
    pub fn latency(&self) -> LatencySummary {
        let Ok(mut all) = new_histogram() else {
            return LatencySummary::default();
        };
        for shard in &self.shards {
            let shard = shard.lock().expect("a histogram lock is never poisoned: recording cannot panic");
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*shard);
        }
        summarize(&all)
    }

    /// Send→accept latency of the HTTP sends.
    pub fn accept_latency(&self) -> LatencySummary {
        summarize(&self.accepted.lock().expect("a histogram lock is never poisoned: recording cannot panic"))
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .map_err(|e| anyhow::anyhow!("histogram: {e}"))
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1_000.0;
    LatencySummary {
        samples: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        mean_ms: histogram.mean() / 1_000.0,
    }
}

/// Reads the send stamp out of a message body written by `message_body`.
pub fn parse_stamp(body: &str) -> Option<u64> {
    let rest = body.strip_prefix("bench t=")?;
    let digits = rest.split(' ').next()?;
    digits.parse().ok()
}

/// The body of a benchmark message: the send stamp first, then who sent it, then padding.
pub fn message_body(sent_nanos: u64, sender: usize, number: u64, pad: &str) -> String {
    format!("bench t={sent_nanos} s={sender} n={number} {pad}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_stamp() {
        let body = message_body(123_456_789, 3, 7, "xxxx");
        assert_eq!(parse_stamp(&body), Some(123_456_789));
        assert_eq!(parse_stamp("hello t=5"), None);
        assert_eq!(parse_stamp("bench t=abc s=1"), None);
    }

    #[test]
    fn latency_percentiles_come_from_every_shard() {
        let clock = Clock::new();
        let metrics = Metrics::new(clock).expect("metrics");
        std::thread::sleep(std::time::Duration::from_millis(5));
        for connection in 0..100 {
            metrics.record_delivery(connection, 0);
        }
        let latency = metrics.latency();
        assert_eq!(latency.samples, 100);
        assert!(latency.p50_ms >= 5.0, "{latency:?}");
        assert!(latency.p999_ms >= latency.p50_ms);
        assert_eq!(metrics.delivered.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let metrics = Metrics::new(Clock::new()).expect("metrics");
        for kind in 0..(ERROR_KINDS_MAX + 10) {
            metrics.error(&format!("kind_{kind}"));
        }
        let errors = metrics.errors();
        assert_eq!(errors.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(errors.get("other"), Some(&10));
    }
}
