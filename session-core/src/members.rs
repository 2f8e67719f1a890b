//! What an engine remembers of the user index: per signed-in session, the
//! index's last answer, trusted for [`MEMBER_CACHE`] (a refusal for longer:
//! an ended session never comes back), and a generation that every end
//! made through the engine bumps, so no answer from before an end is used
//! after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::index::{IndexEntry, SessionHandle};

/// How long an engine trusts what the index said of a live session.
pub const MEMBER_CACHE: Duration = Duration::from_secs(1);
/// How long a refusal is remembered (an ended session never comes back, so
/// this only bounds memory).
const REFUSAL_CACHE: Duration = Duration::from_secs(3600);
/// Answers remembered at most; past it the cache starts afresh.
const MEMBER_CACHE_ENTRIES: usize = 100_000;

/// When the index was asked, in which generation, and what it said.
type Answer = (Instant, u64, Option<IndexEntry>);

/// What an engine remembers of the index: per handle, when it asked, the
/// generation it asked in, and the entry (`None`: refused).
#[derive(Default)]
pub(crate) struct Members {
    cache: Mutex<HashMap<SessionHandle, Answer>>,
    /// Bumped by every end made through this engine: answers from before
    /// are not used again.
    generation: AtomicU64,
}

impl Members {
    pub(crate) fn lookup(&self, handle: &SessionHandle) -> Option<Option<IndexEntry>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, generation, entry) = cache.get(handle)?;
        let ttl = if entry.is_some() {
            MEMBER_CACHE
        } else {
            REFUSAL_CACHE
        };
        let current = *generation == self.generation.load(Ordering::Acquire);
        // A refusal stays true whatever ended since.
        (at.elapsed() < ttl && (current || entry.is_none())).then(|| entry.clone())
    }

    pub(crate) fn remember(
        &self,
        handle: &SessionHandle,
        asked_in: u64,
        entry: Option<IndexEntry>,
    ) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != asked_in && entry.is_some() {
            // An end happened while the index was asked: the answer may
            // predate it.
            return;
        }
        if cache.len() >= MEMBER_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(handle.clone(), (Instant::now(), asked_in, entry));
    }

    /// The generation an answer about to be asked for belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
