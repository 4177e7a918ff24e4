//! Security detectors over sliding windows, as pure state machines: the caller feeds what
//! happened (with the time) and gets back the alerts to raise. Brute force (failures from one IP),
//! credential stuffing (failures across many accounts from one IP), distributed guessing (failures
//! on one account from many IPs) and mass export (exports by one actor). Each alert fires once per
//! subject per window. Memory is bounded: past `KEYS_MAX` subjects, idle ones are forgotten.

use std::collections::{HashMap, VecDeque};

use crate::Timestamp;

/// Subjects (IPs, accounts, actors) tracked per detector before idle ones are dropped.
pub const KEYS_MAX: usize = 100_000;

/// Thresholds; a detector fires when its count within `window_ms` reaches its maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorPolicy {
    pub window_ms: i64,
    /// Failed logins from one IP.
    pub ip_failures_max: u32,
    /// Distinct account names failing from one IP.
    pub ip_accounts_max: u32,
    /// Distinct IPs failing on one account name.
    pub account_ips_max: u32,
    /// Exports (audit export, bulk download) by one actor within `export_window_ms`.
    pub exports_max: u32,
    pub export_window_ms: i64,
}

impl Default for DetectorPolicy {
    fn default() -> Self {
        DetectorPolicy {
            window_ms: crate::limits::DETECTOR_WINDOW_SECS as i64 * 1000,
            ip_failures_max: crate::limits::DETECTOR_IP_FAILURES_MAX,
            ip_accounts_max: crate::limits::DETECTOR_IP_ACCOUNTS_MAX,
            account_ips_max: crate::limits::DETECTOR_ACCOUNT_IPS_MAX,
            exports_max: crate::limits::DETECTOR_EXPORTS_MAX,
            export_window_ms: crate::limits::DETECTOR_EXPORT_WINDOW_SECS as i64 * 1000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    BruteForce,
    CredentialStuffing,
    DistributedGuessing,
    PrivilegeEscalation,
    MassExport,
    AdminNewIp,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::BruteForce,
        AlertKind::CredentialStuffing,
        AlertKind::DistributedGuessing,
        AlertKind::PrivilegeEscalation,
        AlertKind::MassExport,
        AlertKind::AdminNewIp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BruteForce => "brute_force",
            AlertKind::CredentialStuffing => "credential_stuffing",
            AlertKind::DistributedGuessing => "distributed_guessing",
            AlertKind::PrivilegeEscalation => "privilege_escalation",
            AlertKind::MassExport => "mass_export",
            AlertKind::AdminNewIp => "admin_new_ip",
        }
    }
}

/// An alert to raise: what, about whom (an IP, an account name or a user id), and the count seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub subject: String,
    pub count: u32,
}

/// Events of one subject within the window, and when it last alerted.
#[derive(Debug)]
struct Window {
    times: VecDeque<Timestamp>,
    /// Distinct other keys (accounts of an IP, IPs of an account) with their last time.
    distinct: HashMap<String, Timestamp>,
    alerted_at: HashMap<AlertKind, Timestamp>,
    last: Timestamp,
}

impl Default for Window {
    fn default() -> Self {
        Window { times: VecDeque::new(), distinct: HashMap::new(), alerted_at: HashMap::new(), last: Timestamp(0) }
    }
}

impl Window {
    fn prune(&mut self, now: Timestamp, window_ms: i64) {
        let oldest = Timestamp(now.0 - window_ms);
        while self.times.front().is_some_and(|t| *t <= oldest) {
            self.times.pop_front();
        }
        self.distinct.retain(|_, t| *t > oldest);
    }

    /// True when `kind` has not alerted within the window: it may alert now.
    fn may_alert(&mut self, kind: AlertKind, now: Timestamp, window_ms: i64) -> bool {
        match self.alerted_at.get(&kind) {
            Some(at) if now.0 - at.0 < window_ms => false,
            _ => {
                self.alerted_at.insert(kind, now);
                true
            }
        }
    }
}

#[derive(Debug)]
pub struct Detectors {
    policy: DetectorPolicy,
    by_ip: HashMap<String, Window>,
    by_account: HashMap<String, Window>,
    by_exporter: HashMap<String, Window>,
}

fn window_of<'a>(map: &'a mut HashMap<String, Window>, key: &str, now: Timestamp, window_ms: i64) -> &'a mut Window {
    if map.len() >= KEYS_MAX && !map.contains_key(key) {
        let oldest = Timestamp(now.0 - window_ms);
        map.retain(|_, w| w.last > oldest);
        if map.len() >= KEYS_MAX {
            map.clear();
        }
    }
    let window = map.entry(key.to_owned()).or_default();
    window.prune(now, window_ms);
    window.last = now;
    window
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Detectors {
    pub fn new(policy: DetectorPolicy) -> Self {
        Detectors { policy, by_ip: HashMap::new(), by_account: HashMap::new(), by_exporter: HashMap::new() }
    }

    /// A failed (or throttled) login for `account` (as typed, folded) from `ip`.
    pub fn login_failed(&mut self, ip: &str, account: &str, now: Timestamp) -> Vec<Alert> {
        let policy = self.policy;
        let mut alerts = Vec::new();
        let by_ip = window_of(&mut self.by_ip, ip, now, policy.window_ms);
        by_ip.times.push_back(now);
        by_ip.distinct.insert(account.to_owned(), now);
        let (failures, accounts) = (count(by_ip.times.len()), count(by_ip.distinct.len()));
        if failures >= policy.ip_failures_max && by_ip.may_alert(AlertKind::BruteForce, now, policy.window_ms) {
            alerts.push(Alert { kind: AlertKind::BruteForce, subject: ip.to_owned(), count: failures });
        }
        if accounts >= policy.ip_accounts_max && by_ip.may_alert(AlertKind::CredentialStuffing, now, policy.window_ms) {
            alerts.push(Alert { kind: AlertKind::CredentialStuffing, subject: ip.to_owned(), count: accounts });
        }
        let by_account = window_of(&mut self.by_account, account, now, policy.window_ms);
        by_account.distinct.insert(ip.to_owned(), now);
        let ips = count(by_account.distinct.len());
        if ips >= policy.account_ips_max && by_account.may_alert(AlertKind::DistributedGuessing, now, policy.window_ms)
        {
            alerts.push(Alert { kind: AlertKind::DistributedGuessing, subject: account.to_owned(), count: ips });
        }
        alerts
    }

    /// An export (or bulk download) by `actor`.
    pub fn exported(&mut self, actor: &str, now: Timestamp) -> Option<Alert> {
        let policy = self.policy;
        let window = window_of(&mut self.by_exporter, actor, now, policy.export_window_ms);
        window.times.push_back(now);
        let exports = count(window.times.len());
        (exports >= policy.exports_max && window.may_alert(AlertKind::MassExport, now, policy.export_window_ms))
            .then(|| Alert { kind: AlertKind::MassExport, subject: actor.to_owned(), count: exports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DetectorPolicy {
        DetectorPolicy {
            window_ms: 60_000,
            ip_failures_max: 5,
            ip_accounts_max: 4,
            account_ips_max: 3,
            exports_max: 2,
            export_window_ms: 60_000,
        }
    }

    fn kinds(alerts: &[Alert]) -> Vec<AlertKind> {
        alerts.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn failures_from_one_ip_on_one_account_are_brute_force_once_per_window() {
        let mut detectors = Detectors::new(policy());
        let mut fired = Vec::new();
        for i in 0..12 {
            fired.extend(detectors.login_failed("10.0.0.1", "alice", Timestamp(i * 100)));
        }
        assert_eq!(kinds(&fired), [AlertKind::BruteForce]);
        assert_eq!(fired[0].subject, "10.0.0.1");
        assert_eq!(fired[0].count, 5);
        // After the window, it can fire again.
        let later: Vec<_> =
            (0..5).flat_map(|i| detectors.login_failed("10.0.0.1", "alice", Timestamp(200_000 + i))).collect();
        assert_eq!(kinds(&later), [AlertKind::BruteForce]);
    }

    #[test]
    fn many_accounts_from_one_ip_is_credential_stuffing() {
        let mut detectors = Detectors::new(DetectorPolicy { ip_failures_max: 100, ..policy() });
        let fired: Vec<_> = (0..6)
            .flat_map(|i| detectors.login_failed("10.0.0.2", &format!("user{i}"), Timestamp(i64::from(i))))
            .collect();
        assert_eq!(kinds(&fired), [AlertKind::CredentialStuffing]);
    }

    #[test]
    fn one_account_from_many_ips_is_distributed_guessing() {
        let mut detectors = Detectors::new(policy());
        let fired: Vec<_> = (0..4)
            .flat_map(|i| detectors.login_failed(&format!("10.0.1.{i}"), "bob", Timestamp(i64::from(i))))
            .collect();
        assert_eq!(kinds(&fired), [AlertKind::DistributedGuessing]);
        assert_eq!(fired[0].subject, "bob");
    }

    #[test]
    fn ordinary_mistakes_fire_nothing() {
        let mut detectors = Detectors::new(policy());
        for (i, (ip, account)) in [("10.0.0.1", "alice"), ("10.0.0.2", "bob"), ("10.0.0.1", "alice")].iter().enumerate()
        {
            assert!(detectors.login_failed(ip, account, Timestamp(i as i64 * 1_000)).is_empty());
        }
        // Failures spread wider than the window never add up.
        for i in 0..20 {
            assert!(detectors.login_failed("10.0.0.9", "carol", Timestamp(i * 70_000)).is_empty());
        }
    }

    #[test]
    fn repeated_exports_are_mass_export() {
        let mut detectors = Detectors::new(policy());
        assert_eq!(detectors.exported("system", Timestamp(0)), None);
        assert_eq!(detectors.exported("system", Timestamp(1)).map(|a| a.kind), Some(AlertKind::MassExport));
        assert_eq!(detectors.exported("system", Timestamp(2)), None, "once per window");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut detectors = Detectors::new(DetectorPolicy {
            ip_failures_max: 1_000,
            ip_accounts_max: 1_000,
            account_ips_max: 1_000,
            ..policy()
        });
        for i in 0..(KEYS_MAX + 10) {
            detectors.login_failed(&format!("ip{i}"), "x", Timestamp(i as i64 * 1_000));
        }
        assert!(detectors.by_ip.len() <= KEYS_MAX);
    }
}
