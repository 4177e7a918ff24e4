//! Login throttling as pure arithmetic: given the failures so far and the time, how long must the
//! next attempt wait. The store keeps the state (so it survives restarts and spans nodes); this
//! module only computes it.

use crate::limits;
use crate::time::Timestamp;

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

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
    }
}
