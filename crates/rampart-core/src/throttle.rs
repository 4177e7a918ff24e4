//! Login throttling as pure arithmetic: given the failures so far and the time, how long must the
//! next attempt wait. The store keeps the state (so it survives restarts and spans nodes); this
//! module only computes it.

use std::net::IpAddr;

use crate::limits;
use crate::time::Timestamp;

/// The network a client address counts as for per-address limits: an IPv4 address (or an
/// IPv4-mapped IPv6 one, which is the same client) as itself, an IPv6 address as its first
/// `ipv6_prefix_len` bits, so rotating through one's own /64 is one address, not 2^64.
pub fn client_network(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// The key per-address limits store for a client address as the edge wrote it: `client_network`
/// as text, with `/len` for IPv6 (`2001:db8:1:2::/64`). Text that is no address is its own key.
pub fn client_key(ip: &str, ipv6_prefix_len: u8) -> String {
    match ip.parse::<IpAddr>().map(|ip| (ip.to_canonical(), client_network(ip, ipv6_prefix_len))) {
        Ok((IpAddr::V4(_), network)) => network.to_string(),
        Ok((IpAddr::V6(_), network)) => format!("{network}/{}", ipv6_prefix_len.min(128)),
        Err(_) => ip.to_owned(),
    }
}

/// The throttle key (in the `Ip` scope) of one account name tried from one client network: the
/// failures of this address on this account. Client keys never start with `account:`, and the
/// network comes first, so no typed name can reach another address's key.
pub fn account_from_client_key(client_key: &str, account: &str) -> String {
    format!("account:{client_key}:{account}")
}

/// What a login attempt may do, before its password is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginGate {
    /// The password may be checked.
    Open,
    /// Refused without checking the password: come back after this many milliseconds.
    Wait(i64),
}

/// Whether a login may check its password, from the states of the client's network, of the
/// account name, and of this network's failures on this account (all `None` when clean).
///
/// The client's own throttles (its network, and its failures on this name) always apply. The
/// account's backoff, fed by every address, applies only to networks that have failed on this
/// account within the window: a known user keeps signing in from their own address while others
/// guess, and each fresh address gets one guess before the account's lock covers it too. The
/// password is never checked while refused, so a refusal says nothing about it.
pub fn login_gate(
    by_client: Option<&ThrottleState>,
    by_account: Option<&ThrottleState>,
    by_account_from_client: Option<&ThrottleState>,
    now: Timestamp,
    account_policy: &ThrottlePolicy,
) -> LoginGate {
    let has_failed_here = by_account_from_client
        .is_some_and(|state| state.failures > 0 && state.last_failure_at.ms_until(now) <= account_policy.window_ms);
    let account_wait = if has_failed_here { wait_ms(by_account, now) } else { None };
    match [wait_ms(by_client, now), wait_ms(by_account_from_client, now), account_wait].into_iter().flatten().max() {
        Some(wait) => LoginGate::Wait(wait),
        None => LoginGate::Open,
    }
}

/// What is throttled: one account name (whether or not it exists), or one client IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThrottleScope {
    Account,
    Ip,
}

impl ThrottleScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::Account => "account",
            ThrottleScope::Ip => "ip",
        }
    }
}

/// The tunables of one scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures that impose no wait.
    pub free_failures: u32,
    /// Failures at which the scope is locked for `lock_ms`.
    pub lock_failures: u32,
    pub backoff_ms_base: i64,
    pub backoff_ms_max: i64,
    pub lock_ms: i64,
    /// Failures are forgotten this long after the last one.
    pub window_ms: i64,
}

impl ThrottlePolicy {
    pub const ACCOUNT_DEFAULT: ThrottlePolicy = ThrottlePolicy {
        free_failures: limits::LOGIN_ACCOUNT_FREE_FAILURES,
        lock_failures: limits::LOGIN_ACCOUNT_LOCK_FAILURES,
        backoff_ms_base: limits::LOGIN_BACKOFF_MS_BASE,
        backoff_ms_max: limits::LOGIN_BACKOFF_MS_MAX,
        lock_ms: limits::LOGIN_LOCK_MS,
        window_ms: limits::LOGIN_FAILURE_WINDOW_MS,
    };
    pub const IP_DEFAULT: ThrottlePolicy = ThrottlePolicy {
        free_failures: limits::LOGIN_IP_FREE_FAILURES,
        lock_failures: limits::LOGIN_IP_LOCK_FAILURES,
        ..ThrottlePolicy::ACCOUNT_DEFAULT
    };
}

/// The stored state of one throttled key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: u32,
    pub last_failure_at: Timestamp,
    /// No attempt is accepted before this time.
    pub blocked_until: Timestamp,
}

/// The state after one more failure at `now`.
pub fn after_failure(previous: Option<ThrottleState>, now: Timestamp, policy: &ThrottlePolicy) -> ThrottleState {
    let failures = match previous {
        Some(state) if state.last_failure_at.ms_until(now) <= policy.window_ms => state.failures.saturating_add(1),
        _ => 1,
    };
    let wait_ms = if failures >= policy.lock_failures {
        policy.lock_ms
    } else if failures > policy.free_failures {
        let doublings = (failures - policy.free_failures - 1).min(30);
        policy.backoff_ms_base.saturating_mul(1_i64 << doublings).min(policy.backoff_ms_max)
    } else {
        0
    };
    ThrottleState { failures, last_failure_at: now, blocked_until: now.plus_ms(wait_ms) }
}

/// Milliseconds the caller must still wait, or `None` when an attempt may be made now.
pub fn wait_ms(state: Option<&ThrottleState>, now: Timestamp) -> Option<i64> {
    let remaining = now.ms_until(state?.blocked_until);
    (remaining > 0).then_some(remaining)
}

/// `Retry-After` is in whole seconds; round up so a client never comes back too early.
pub fn retry_after_secs(wait_ms: i64) -> u64 {
    u64::try_from(wait_ms.max(1).saturating_add(999) / 1000).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ThrottlePolicy = ThrottlePolicy::ACCOUNT_DEFAULT;

    fn fail_n(n: u32, now: Timestamp) -> ThrottleState {
        let mut state = None;
        for _ in 0..n {
            state = Some(after_failure(state, now, &P));
        }
        state.expect("n > 0")
    }

    #[test]
    fn free_failures_impose_no_wait() {
        let now = Timestamp(1_000_000);
        let state = fail_n(P.free_failures, now);
        assert_eq!(wait_ms(Some(&state), now), None);
    }

    #[test]
    fn waits_double_then_cap_then_lock() {
        let now = Timestamp(1_000_000);
        let first = fail_n(P.free_failures + 1, now);
        assert_eq!(wait_ms(Some(&first), now), Some(P.backoff_ms_base));
        let second = after_failure(Some(first), now, &P);
        assert_eq!(wait_ms(Some(&second), now), Some(2 * P.backoff_ms_base));
        let capped = fail_n(P.lock_failures - 1, now);
        assert_eq!(wait_ms(Some(&capped), now), Some(P.backoff_ms_max));
        let locked = fail_n(P.lock_failures, now);
        assert_eq!(wait_ms(Some(&locked), now), Some(P.lock_ms));
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let now = Timestamp(1_000_000);
        let state = fail_n(P.lock_failures, now);
        let later = now.plus_ms(P.window_ms + 1);
        assert_eq!(after_failure(Some(state), later, &P).failures, 1);
    }

    /// Issue 16 item 8: an account locked by one address's failures does not refuse another.
    #[test]
    fn an_account_locked_from_one_address_stays_open_to_an_address_that_has_not_failed() {
        let now = Timestamp(1_000_000);
        let locked = fail_n(P.lock_failures, now);
        let attacker_pair = fail_n(P.lock_failures, now);
        assert!(matches!(login_gate(None, Some(&locked), Some(&attacker_pair), now, &P), LoginGate::Wait(_)));
        assert_eq!(login_gate(None, Some(&locked), None, now, &P), LoginGate::Open, "a fresh address may try");
        // One failure from a fresh address puts it under the account's lock as well.
        let one = fail_n(1, now);
        assert_eq!(login_gate(None, Some(&locked), Some(&one), now, &P), LoginGate::Wait(P.lock_ms));
        // The address's own throttle still applies.
        let client = fail_n(P.lock_failures, now);
        assert!(matches!(login_gate(Some(&client), None, None, now, &P), LoginGate::Wait(_)));
        // A failure here older than the window no longer counts.
        let later = now.plus_ms(P.window_ms + 1);
        assert_eq!(login_gate(None, Some(&locked), Some(&one), later, &P), LoginGate::Open);
    }

    /// Issue 16 item 9: IPv6 clients are keyed on their /64 (configurable), IPv4-mapped ones as IPv4.
    #[test]
    fn ipv6_clients_are_keyed_on_their_prefix_and_mapped_ipv4_as_ipv4() {
        let a = client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64);
        let b = client_key("2001:db8:1:2::1", 64);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b, "one /64 is one client");
        assert_ne!(client_key("2001:db8:1:3::1", 64), a, "the next /64 is another");
        assert_eq!(client_key("2001:db8:1:3::1", 48), client_key("2001:db8:1:2::1", 48));
        assert_eq!(client_key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(client_key("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("unknown", 64), "unknown");
        assert_eq!(client_network("::1".parse().expect("ip"), 0), "::".parse::<IpAddr>().expect("ip"));
    }

    /// Rotating through the addresses of one /64 meets the same throttle.
    #[test]
    fn rotating_addresses_within_a_prefix_shares_one_throttle() {
        let now = Timestamp(1_000_000);
        let mut states = std::collections::HashMap::new();
        for i in 0..P.lock_failures {
            let key = client_key(&format!("2001:db8:0:7::{i:x}"), limits::IPV6_PREFIX_LEN);
            let previous = states.get(&key).copied();
            states.insert(key, after_failure(previous, now, &P));
        }
        assert_eq!(states.len(), 1);
        let state = states.values().next().expect("one");
        assert_eq!(wait_ms(Some(state), now), Some(P.lock_ms));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
    }
}
