//! Lanes for saves of one session from concurrent requests of this process:
//! they wait in line instead of racing each other's compare-and-swap. The
//! save at the head of the line takes the change lists of every save queued
//! behind it, replays them on its record and writes them all with one
//! compare-and-swap (combining); a save that arrives later builds on the
//! version the previous one wrote.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

// Store keys are keyed hashes the engine derives (no client chooses them),
// so a fast hash is enough; SipHash was two visible shares of a save.
use foldhash::fast::RandomState;
use tokio::sync::oneshot;

use crate::codec::Record;
use crate::error::StoreError;
use crate::id::StoreKey;
use crate::state::Change;
use crate::store::Version;

/// The lanes of one session configuration, keyed by store key. A lane
/// exists only while a save is in it.
#[derive(Default)]
pub(crate) struct SaveLanes {
    lanes: Mutex<HashMap<StoreKey, Arc<Lane>, RandomState>>,
}

/// One session's lane.
pub(crate) struct Lane {
    /// The version and record the last save in this lane wrote, kept only
    /// while other saves wait. Holding this lock is leading the lane.
    last_saved: tokio::sync::Mutex<Option<(Version, Record)>>,
    /// Saves waiting for the lock, whose changes the leader may write for
    /// them.
    queue: Mutex<Vec<Queued>>,
}

/// A save waiting in a lane: its changes, and where the leader that took
/// them reports what became of them.
pub(crate) struct Queued {
    ticket: u64,
    pub(crate) changes: Vec<Change>,
    pub(crate) reply: oneshot::Sender<RiderReply>,
}

/// What the leader of a lane tells a save that rode in its write.
pub(crate) enum RiderReply {
    /// Written: the record as written.
    Written(Record),
    /// The session was ended by another request meanwhile.
    Ended,
    /// Not written (the combined record was too large for the store, or
    /// could not be encoded): the save makes its own attempt.
    SaveAlone,
    /// The write failed in a way that does not say whether it landed (a
    /// timeout, a lost connection): replaying the change could apply it
    /// twice, so the save fails with this error instead.
    Failed(StoreError),
}

impl Lane {
    pub(crate) fn last_saved(&self) -> &tokio::sync::Mutex<Option<(Version, Record)>> {
        &self.last_saved
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `changes` for the lane's leader; returns the ticket to take
    /// them back with and where the result will come.
    pub(crate) fn enqueue(&self, changes: &[Change]) -> (u64, oneshot::Receiver<RiderReply>) {
        static TICKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let ticket = TICKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, result) = oneshot::channel();
        self.queue().push(Queued {
            ticket,
            changes: changes.to_vec(),
            reply,
        });
        (ticket, result)
    }

    /// Takes back a queued save that no leader took; false when a leader
    /// had taken it.
    pub(crate) fn dequeue(&self, ticket: u64) -> bool {
        let mut queue = self.queue();
        let before = queue.len();
        queue.retain(|q| q.ticket != ticket);
        queue.len() != before
    }

    /// Every save queued so far, for the leader to write.
    pub(crate) fn take_queue(&self) -> Vec<Queued> {
        std::mem::take(&mut *self.queue())
    }
}

/// A place in a lane; leaving (dropping it, also when the save's future is
/// cancelled) removes the lane when nobody else is in it.
pub(crate) struct InLane<'a> {
    lanes: &'a SaveLanes,
    key: &'a StoreKey,
    lane: Arc<Lane>,
}

impl InLane<'_> {
    /// Whether another save is in this lane (the map and this place hold
    /// two references).
    pub(crate) fn has_waiters(&self) -> bool {
        Arc::strong_count(&self.lane) > 2
    }
}

impl std::ops::Deref for InLane<'_> {
    type Target = Lane;

    fn deref(&self) -> &Lane {
        &self.lane
    }
}

impl Drop for InLane<'_> {
    fn drop(&mut self) {
        let mut map = self.lanes.map();
        // Under the map's lock nobody can enter: two references (the map's
        // and ours) mean this was the last save of the lane.
        if Arc::strong_count(&self.lane) == 2 {
            map.remove(self.key);
        }
    }
}

impl SaveLanes {
    fn map(&self) -> MutexGuard<'_, HashMap<StoreKey, Arc<Lane>, RandomState>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins (or opens) the lane of `key`.
    pub(crate) fn enter<'a>(&'a self, key: &'a StoreKey) -> InLane<'a> {
        let mut map = self.map();
        let lane = map
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Lane {
                    last_saved: tokio::sync::Mutex::new(None),
                    queue: Mutex::new(Vec::new()),
                })
            })
            .clone();
        InLane {
            lanes: self,
            key,
            lane,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl fmt::Debug for SaveLanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveLanes")
            .field("active", &self.map().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_lives_while_someone_is_in_it() {
        let lanes = SaveLanes::default();
        let key = StoreKey::from_raw("k");
        let first = lanes.enter(&key);
        assert!(!first.has_waiters());
        let second = lanes.enter(&key);
        assert!(first.has_waiters());
        drop(first);
        assert_eq!(lanes.len(), 1);
        drop(second);
        assert_eq!(lanes.len(), 0, "the last one out removes the lane");
    }
}
