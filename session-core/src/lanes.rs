//! Lanes for saves of one session from concurrent requests of this process:
//! they wait in line instead of racing each other's compare-and-swap, and
//! each builds on the version the previous one wrote.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec::Record;
use crate::id::StoreKey;
use crate::store::Version;

/// The lanes of one session configuration, keyed by store key. A lane
/// exists only while a save is in it.
#[derive(Default)]
pub(crate) struct SaveLanes {
    lanes: Mutex<HashMap<StoreKey, Arc<Lane>>>,
}

/// One session's lane.
pub(crate) struct Lane {
    /// The version and record the last save in this lane wrote, kept only
    /// while other saves wait.
    last_saved: tokio::sync::Mutex<Option<(Version, Record)>>,
}

impl Lane {
    pub(crate) fn last_saved(&self) -> &tokio::sync::Mutex<Option<(Version, Record)>> {
        &self.last_saved
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
    fn map(&self) -> MutexGuard<'_, HashMap<StoreKey, Arc<Lane>>> {
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
