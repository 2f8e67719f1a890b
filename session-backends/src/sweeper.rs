//! The background thread that removes expired sessions from an embedded
//! store, shared by the memory and file stores.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// `period` ± 20 %, for background tasks that repeat (the memcached
/// prober, the PostgreSQL sweeper) so that many servers and processes
/// spread out instead of acting in step. Not for secrets: the randomness is
/// a hash of the clock under std's randomly keyed SipHash.
#[cfg_attr(not(any(feature = "memcache", feature = "postgres")), allow(dead_code))]
pub(crate) fn jitter(period: Duration) -> Duration {
    let random =
        std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::time::Instant::now());
    period.mul_f64(0.8 + 0.4 * (random % 1000) as f64 / 1000.0)
}

/// Shortest sweep interval the builders accept.
#[cfg_attr(not(any(feature = "memory", feature = "file")), allow(dead_code))]
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Runs `sweep` on `store` every `interval` on a thread of its own, which
/// ends by itself once the store is dropped (it holds only a weak
/// reference). A store whose sweeper cannot start still drops expired
/// entries on access; that is logged.
#[cfg_attr(not(any(feature = "memory", feature = "file")), allow(dead_code))]
pub(crate) fn spawn<T: Send + Sync + 'static>(
    store: &Arc<T>,
    interval: Duration,
    name: &str,
    sweep: fn(&T),
) {
    let weak: Weak<T> = Arc::downgrade(store);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(store) = weak.upgrade() else { return };
            sweep(&store);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, name, "sweeper not started; expired sessions are removed on access only");
    }
}
