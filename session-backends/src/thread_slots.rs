//! Which of a store's connection slots this thread uses.
//!
//! A network client's connection is driven by a task on the runtime that
//! made it. Under a single-threaded runtime (actix-web runs one per worker
//! thread) a connection made by another worker makes every command wait for
//! that worker's thread to run its driver, and wakes it: two threads per
//! round trip, and a wait as long as that worker's current job. So workers
//! of single-threaded runtimes take slots 1 and up in turn, each with
//! connections of its own. Under tokio's multi-threaded runtime (axum,
//! Rocket) tasks move between threads anyway, and shared connections batch
//! more per write: slot 0, which no single-threaded runtime shares (a slot
//! is shared only by runtimes of one kind, and only past one per core).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Handle, RuntimeFlavor};

/// How many slots a store keeps: slot 0 for multi-threaded runtimes and one
/// per core (at most 16) for single-threaded ones. Each is filled on first
/// use, so slots no thread takes cost nothing.
pub(crate) fn slot_count() -> usize {
    1 + std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// This thread's slot, of `slots`.
pub(crate) fn thread_slot(slots: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let single_threaded =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
    if single_threaded && slots > 1 {
        1 + SLOT.with(|slot| *slot % (slots - 1))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_threaded_runtimes_take_slot_zero_and_single_threaded_ones_the_rest() {
        let slots = 3;
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async { thread_slot(slots) }), 0);
        let single = || {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async { thread_slot(slots) })
            })
            .join()
            .unwrap()
        };
        let taken: Vec<usize> = (0..4).map(|_| single()).collect();
        assert!(
            taken.iter().all(|slot| (1..slots).contains(slot)),
            "{taken:?}"
        );
        // Threads take the slots in turn (other tests' threads may take
        // turns between these, never all of them).
        assert!(taken.iter().any(|slot| *slot != taken[0]), "{taken:?}");
        // No runtime: slot 0.
        assert_eq!(thread_slot(slots), 0);
        assert_eq!(thread_slot(1), 0);
    }
}
