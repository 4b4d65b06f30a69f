//! Exponential back-off of failed reconciles, so an overloaded apiserver (429, 5xx, timeouts)
//! is given room instead of being retried by every agent every few seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between retries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(120);

/// Remembered objects at most (each entry is forgotten when its object reconciles again, so
/// this only bounds objects deleted while failing).
pub const MAX_REMEMBERED: usize = 16_384;

/// The wait before the retry after the `failures`-th failure in a row of the object `key`:
///
/// `d = min(FIRST_RETRY · 2^(failures−1), LONGEST_RETRY)`, then `d + d · s / 4` where
/// `s ∈ [0, 1)` is taken from the key's FNV-1a hash — spread without a clock or a random
/// generator, so objects that failed together do not come back together and the same object
/// always waits the same.
pub fn retry_after(key: &str, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = FIRST_RETRY.saturating_mul(1u32 << doublings).min(LONGEST_RETRY);
    let spread = (crate::stable_hash::fnv1a(key.bytes()) % 1024) as f64 / 1024.0;
    base + base.mul_f64(spread / 4.0)
}

/// Failures in a row per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns the wait before its retry.
    pub fn failed(&self, key: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return LONGEST_RETRY;
        };
        if failures.len() >= MAX_REMEMBERED && !failures.contains_key(key) {
            // Objects deleted while failing: start over rather than grow.
            failures.clear();
        }
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        retry_after(key, *n)
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Objects with failures remembered.
    pub fn len(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_in_a_row_doubles_the_wait_up_to_the_longest() {
        let b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed("ns/a")).collect();
        for pair in waits.windows(2) {
            assert!(pair[1] >= pair[0], "{waits:?}");
        }
        let spread = waits[0].as_secs_f64() / FIRST_RETRY.as_secs_f64();
        assert!((1.0..1.25).contains(&spread), "{waits:?}");
        assert!((waits[1].as_secs_f64() / waits[0].as_secs_f64() - 2.0).abs() < 1e-9);
        assert!(
            waits[9] <= LONGEST_RETRY.mul_f64(1.25) && waits[9] >= LONGEST_RETRY,
            "{waits:?}"
        );
    }

    #[test]
    fn a_success_starts_the_back_off_over() {
        let b = Backoff::default();
        let first = b.failed("ns/a");
        assert!(b.failed("ns/a") > first);
        b.succeeded("ns/a");
        assert!(b.is_empty());
        assert_eq!(b.failed("ns/a"), first);
    }

    #[test]
    fn objects_that_fail_together_come_back_at_different_times() {
        let waits: std::collections::BTreeSet<Duration> =
            (0..100).map(|i| retry_after(&format!("ns/agent-{i}"), 3)).collect();
        assert!(waits.len() > 50, "only {} distinct waits", waits.len());
        assert_eq!(retry_after("ns/agent-7", 3), retry_after("ns/agent-7", 3));
    }

    #[test]
    fn the_remembered_failures_stay_bounded() {
        let b = Backoff::default();
        for i in 0..MAX_REMEMBERED + 10 {
            b.failed(&format!("ns/gone-{i}"));
        }
        assert!(b.len() <= MAX_REMEMBERED, "{}", b.len());
        assert!(!b.is_empty());
    }

    #[test]
    fn a_huge_failure_count_neither_overflows_nor_exceeds_the_longest_wait() {
        assert!(retry_after("k", u32::MAX) <= LONGEST_RETRY.mul_f64(1.25));
        assert!(retry_after("k", 0) >= FIRST_RETRY);
    }
}
