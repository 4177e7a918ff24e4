//! Counters of what the use cases did — messages sent, login failures, throttle and rate-limit
//! refusals, security alerts by kind, the audit forwarder's backlog — as plain atomics. The binary
//! reads them when `/metrics` is scraped; this crate knows nothing of any metrics format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Distinct alert kinds counted under their own name; past this, alerts are counted under
/// `ALERT_KIND_OTHER`, so the label set stays bounded whatever the callers pass.
pub const ALERT_KINDS_MAX: usize = 64;
/// The kind that alerts beyond `ALERT_KINDS_MAX` distinct kinds are counted under.
pub const ALERT_KIND_OTHER: &str = "other";

/// Monotonic counters (and one level) of the application. Every field only grows, except
/// `audit_forward_backlog`, which the audit forwarder sets to the records it has yet to send.
#[derive(Debug, Default)]
pub struct AppCounters {
    /// Messages stored and published (a repeated `client_id` is not counted again).
    pub messages_sent: AtomicU64,
    /// Logins refused for a wrong name or password or a disabled account.
    pub login_failures: AtomicU64,
    /// Login, enrollment and password-change attempts refused by the throttle before any check.
    pub login_throttled: AtomicU64,
    /// Messages refused by the per-user send rate limit.
    pub send_rate_limited: AtomicU64,
    /// Audit records waiting to be forwarded (set by the forwarder; 0 when there is none).
    pub audit_forward_backlog: AtomicI64,
    alerts_by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl AppCounters {
    /// Adds one to `counter` (a field of this struct).
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one security alert of `kind` (a fixed name from the code, such as
    /// `"login_spray"`; never a value taken from a request).
    pub fn alert(&self, kind: &'static str) {
        let Ok(mut alerts) = self.alerts_by_kind.lock() else { return };
        let kind = if alerts.contains_key(kind) || alerts.len() < ALERT_KINDS_MAX { kind } else { ALERT_KIND_OTHER };
        *alerts.entry(kind).or_insert(0) += 1;
    }

    /// Alerts counted so far, by kind, in name order.
    pub fn alerts(&self) -> Vec<(&'static str, u64)> {
        self.alerts_by_kind.lock().map(|alerts| alerts.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default()
    }

    /// Sets the audit forwarder's backlog (records not yet sent).
    pub fn set_audit_forward_backlog(&self, records: i64) {
        self.audit_forward_backlog.store(records, Ordering::Relaxed);
    }

    /// Reads a counter (a field of this struct).
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_counted_by_kind_and_the_kinds_are_bounded() {
        let counters = AppCounters::default();
        counters.alert("login_spray");
        counters.alert("login_spray");
        counters.alert("audit_gap");
        assert_eq!(counters.alerts(), vec![("audit_gap", 1), ("login_spray", 2)]);

        // Kinds from a table of leaked names: one more than fit.
        let names: Vec<&'static str> =
            (0..ALERT_KINDS_MAX).map(|n| &*Box::leak(format!("kind{n:03}").into_boxed_str())).collect();
        for name in &names {
            counters.alert(name);
        }
        let alerts = counters.alerts();
        assert_eq!(alerts.len(), ALERT_KINDS_MAX + 1, "the cap plus the overflow kind");
        assert!(alerts.iter().any(|(kind, n)| *kind == ALERT_KIND_OTHER && *n > 0));
        // A kind counted before the cap was reached keeps counting under its own name.
        counters.alert("login_spray");
        assert!(counters.alerts().contains(&("login_spray", 3)));
    }

    #[test]
    fn counters_and_the_backlog_read_back() {
        let counters = AppCounters::default();
        AppCounters::bump(&counters.messages_sent);
        AppCounters::bump(&counters.messages_sent);
        assert_eq!(AppCounters::read(&counters.messages_sent), 2);
        counters.set_audit_forward_backlog(17);
        assert_eq!(counters.audit_forward_backlog.load(Ordering::Relaxed), 17);
    }
}
