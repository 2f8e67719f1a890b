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
    if single_threaded {
        slot_of(SLOT.with(|n| *n), slots)
    } else {
        0
    }
}

/// The slot of the `n`th thread of a single-threaded runtime: 1 and up in
/// turn (0 when there is no other).
fn slot_of(n: usize, slots: usize) -> usize {
    if slots > 1 {
        1 + n % (slots - 1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_threaded_runtimes_take_the_slots_after_zero_in_turn() {
        let taken: Vec<usize> = (0..5).map(|n| slot_of(n, 3)).collect();
        assert_eq!(taken, [1, 2, 1, 2, 1]);
        assert_eq!(slot_of(7, 1), 0);
        assert!(slot_count() >= 2);
    }

    #[test]
    fn multi_threaded_runtimes_and_no_runtime_take_slot_zero() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async { thread_slot(3) }), 0);
        assert_eq!(thread_slot(3), 0);
        let single = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async { thread_slot(3) })
        })
        .join()
        .unwrap();
        assert!((1..3).contains(&single), "{single}");
    }
}
