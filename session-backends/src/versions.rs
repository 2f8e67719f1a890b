//! Versions for records written where none is.
//!
//! A version is what compare-and-swap compares, so a key deleted and
//! written again must never get back a version one of its earlier records
//! had: a request still holding that old version would otherwise match the
//! new record (a logged-out session's stale save landing on a new one).
//! Stores that count versions up from 1 for each new record (a file, a
//! Redis hash, a PostgreSQL row) start instead from this: microseconds
//! since the Unix epoch, strictly increasing within the process. An earlier
//! record of the key started lower and was rewritten fewer times than the
//! microseconds since (every write takes longer than one), so it never
//! reached it. Microseconds stay below 2^53 until the year 2255: exact in
//! Lua's doubles (Redis scripts) and in PostgreSQL's `bigint`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A version for a record created now.
pub(crate) fn fresh_version() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_fit_a_double() {
        let a = fresh_version();
        let b = fresh_version();
        assert!(b > a);
        assert!(b < 1 << 53);
    }
}
