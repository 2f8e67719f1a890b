//! Retrying compare-and-swap conflicts: the budget a save (or an update of
//! a user's index record) keeps trying for, and the random waits between
//! its attempts.

use std::time::Duration;

use crate::seal;

/// How long a save keeps retrying compare-and-swap conflicts.
pub const CAS_BUDGET: Duration = Duration::from_millis(1500);
/// First and largest backoff ceiling between conflicting attempts.
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// A random wait in `[0, min(BACKOFF_MAX, BACKOFF_BASE * 2^attempt))`
/// ("full jitter"), so conflicting writers spread out instead of retrying
/// in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let mut random = [0u8; 8];
    seal::random(&mut random);
    let fraction = u64::from_le_bytes(random) as f64 / u64::MAX as f64;
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_growing_ceiling() {
        for attempt in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_MAX);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(10)).collect();
        assert!(spread.len() > 40, "waits are random, not in step");
    }
}
