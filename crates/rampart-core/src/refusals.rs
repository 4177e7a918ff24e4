//! Aggregating repeated refusals for the audit log, as a pure state machine. Anyone can make the
//! server refuse a login or an enrollment, as often as they like; one audit record for each would
//! let them grow the chained log without bound. Instead, the first refusal of a key (action,
//! outcome, reason, name, client network) in a window is recorded at once (so alerts and readers
//! see it as before), the rest are counted, and the count becomes one summary record when the
//! window closes (or at stop). Memory is bounded by `keys_max` open windows.

use std::collections::HashMap;

use crate::Timestamp;

/// Refusals of one key counted after the first, to be written as one summary record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalSummary<T> {
    /// What the caller kept of the window's first refusal, to write the summary with.
    pub payload: T,
    /// Refusals after the first.
    pub count: u32,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen<T> {
    /// Write this refusal's record now (it opens a window).
    pub record_now: bool,
    /// Summaries of windows that closed on the way, to write first.
    pub closed: Vec<RefusalSummary<T>>,
}

#[derive(Debug)]
struct Open<T> {
    opened_at: Timestamp,
    summary: RefusalSummary<T>,
}

/// Open windows by key.
#[derive(Debug)]
pub struct RefusalWindows<T> {
    window_ms: i64,
    keys_max: usize,
    open: HashMap<String, Open<T>>,
}

impl<T> RefusalWindows<T> {
    pub fn new(window_ms: i64, keys_max: usize) -> Self {
        RefusalWindows { window_ms, keys_max: keys_max.max(1), open: HashMap::new() }
    }

    /// One refusal of `key` at `now`; `payload` is made only when it opens a window.
    pub fn seen(&mut self, key: &str, now: Timestamp, payload: impl FnOnce() -> T) -> Seen<T> {
        let mut closed = Vec::new();
        if let Some(open) = self.open.get_mut(key) {
            if open.opened_at.ms_until(now) < self.window_ms {
                open.summary.count = open.summary.count.saturating_add(1);
                if open.summary.count == 1 {
                    open.summary.first_at = now;
                }
                open.summary.last_at = now;
                return Seen { record_now: false, closed };
            }
            closed.extend(self.open.remove(key).and_then(|open| counted(open.summary)));
        }
        if self.open.len() >= self.keys_max {
            closed.extend(self.close_due(now));
            if self.open.len() >= self.keys_max {
                closed.extend(self.close_all());
            }
        }
        let summary = RefusalSummary { payload: payload(), count: 0, first_at: now, last_at: now };
        self.open.insert(key.to_owned(), Open { opened_at: now, summary });
        Seen { record_now: true, closed }
    }

    /// Closes the windows that have run their time: the summaries with a count, oldest first.
    pub fn close_due(&mut self, now: Timestamp) -> Vec<RefusalSummary<T>> {
        let window_ms = self.window_ms;
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, open)| open.opened_at.ms_until(now) >= window_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut closed: Vec<_> =
            due.iter().filter_map(|key| self.open.remove(key)).filter_map(|open| counted(open.summary)).collect();
        closed.sort_by_key(|summary| summary.first_at);
        closed
    }

    /// Closes every window (at stop).
    pub fn close_all(&mut self) -> Vec<RefusalSummary<T>> {
        let mut closed: Vec<_> = self.open.drain().filter_map(|(_, open)| counted(open.summary)).collect();
        closed.sort_by_key(|summary| summary.first_at);
        closed
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

fn counted<T>(summary: RefusalSummary<T>) -> Option<RefusalSummary<T>> {
    (summary.count > 0).then_some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_recorded_at_once_and_the_rest_counted_into_one_summary() {
        let mut windows = RefusalWindows::new(60_000, 100);
        assert!(windows.seen("a", Timestamp(0), || "first").record_now);
        for i in 1..30 {
            let seen = windows.seen("a", Timestamp(i * 100), || "again");
            assert!(!seen.record_now && seen.closed.is_empty());
        }
        assert!(windows.close_due(Timestamp(59_999)).is_empty(), "the window is still open");
        let closed = windows.close_due(Timestamp(60_000));
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].payload, closed[0].count), ("first", 29));
        assert_eq!((closed[0].first_at, closed[0].last_at), (Timestamp(100), Timestamp(2_900)));
        assert_eq!(windows.open_windows(), 0);
    }

    #[test]
    fn keys_are_apart_and_a_lone_refusal_has_no_summary() {
        let mut windows = RefusalWindows::new(60_000, 100);
        assert!(windows.seen("a", Timestamp(0), || 1).record_now);
        assert!(windows.seen("b", Timestamp(0), || 2).record_now);
        assert!(!windows.seen("b", Timestamp(1), || 2).record_now);
        let closed = windows.close_all();
        assert_eq!(closed.iter().map(|s| (s.payload, s.count)).collect::<Vec<_>>(), [(2, 1)]);
    }

    #[test]
    fn a_refusal_after_the_window_closes_it_and_opens_another() {
        let mut windows = RefusalWindows::new(1_000, 100);
        windows.seen("a", Timestamp(0), || 0);
        windows.seen("a", Timestamp(10), || 0);
        let seen = windows.seen("a", Timestamp(5_000), || 1);
        assert!(seen.record_now);
        assert_eq!(seen.closed.len(), 1);
        assert_eq!(seen.closed[0].count, 1);
    }

    #[test]
    fn memory_stays_bounded_and_nothing_is_lost() {
        let mut windows = RefusalWindows::new(60_000, 10);
        let (mut recorded, mut summarized) = (0, 0);
        for i in 0..100 {
            let key = format!("k{}", i % 20);
            let seen = windows.seen(&key, Timestamp(i), || ());
            recorded += u32::from(seen.record_now);
            summarized += seen.closed.iter().map(|s| s.count).sum::<u32>();
            assert!(windows.open_windows() <= 10);
        }
        summarized += windows.close_all().iter().map(|s| s.count).sum::<u32>();
        // Every refusal is either recorded at once or counted in a summary.
        assert_eq!(recorded + summarized, 100);
    }
}
