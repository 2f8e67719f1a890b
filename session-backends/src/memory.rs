//! The embedded store: sessions in this process's memory.

use std::collections::{BTreeSet, VecDeque};
use std::hash::BuildHasher;

// Store keys are HMAC outputs the client cannot choose, so a fast seeded
// hash is enough (SipHash was a visible share of a request's cost).
use foldhash::fast::RandomState;
use hashbrown::hash_map::{HashMap, RawEntryMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord,
    UserIndexSupport, Version,
};

/// Entries removed per lock hold by the sweeper, so it never stalls a shard.
const SWEEP_BATCH: usize = 64;

/// Bytes an entry costs beyond its key and record: the map slot, the `Arc`
/// header, the expiry index node and the queue slot, rounded up.
const ENTRY_OVERHEAD: usize = 160;

/// Sessions held in memory: sharded maps, bounds on their number and on
/// their bytes, a deadline per entry, and a background thread that removes
/// expired entries a few at a time.
///
/// # Eviction
///
/// When a bound is reached, sessions that were never used again after they
/// were written go first, oldest first (a probation queue, as in segmented
/// LRU and S3-FIFO): a flood of anonymous requests that each create a session
/// only pushes out its own kind, and a user who came back even once keeps
/// their session. Sessions used again move to a second queue, evicted only
/// when probation is empty, each getting a second chance if it was used since
/// it was last passed over (CLOCK). A read costs one flag write, no
/// reordering.
///
/// Sessions are lost on restart and not shared between processes; use a
/// server store for that.
///
/// ```
/// use session_backends::MemoryStore;
/// let store = MemoryStore::builder()
///     .max_sessions(10_000)
///     .max_bytes(64 << 20)
///     .build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_per_shard: usize,
    max_bytes_per_shard: usize,
    max_record_size: usize,
    next_version: AtomicU64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Arc<str>, Entry, RandomState>,
    order: Order,
}

/// Everything about a shard's entries but the entries: kept apart so an
/// entry can be held while these are updated.
#[derive(Default)]
struct Order {
    /// (expiry in Unix ms, key): the sweeping order.
    by_expiry: BTreeSet<(i64, Arc<str>)>,
    /// Entries not used since they were written, oldest first. Items are
    /// (key, the entry's `id`); an item whose entry is gone or was written
    /// anew is stale and skipped.
    probation: VecDeque<(Arc<str>, u64)>,
    /// Entries used at least once after they were written.
    protected: VecDeque<(Arc<str>, u64)>,
    /// Bytes held by the shard's entries, as [`Entry::cost`] counts them.
    bytes: usize,
}

/// The two eviction queues of a shard.
#[derive(Clone, Copy)]
enum Segment {
    Probation,
    Protected,
}

struct Entry {
    bytes: Vec<u8>,
    version: u64,
    expires_ms: i64,
    /// Tells this entry's queue items from those of an earlier entry under
    /// the same key (the version it was created with).
    id: u64,
    /// Used (read, rewritten or touched) since it was written or since
    /// eviction last passed over it.
    used: bool,
}

impl Entry {
    fn cost(key: &str, len: usize) -> usize {
        key.len() + len + ENTRY_OVERHEAD
    }
}

impl Order {
    /// Accounts for an entry that left the map.
    fn forget(&mut self, key: Arc<str>, entry: &Entry) {
        self.bytes -= Entry::cost(&key, entry.bytes.len());
        self.by_expiry.remove(&(entry.expires_ms, key));
    }

    /// Drops stale queue items once they outnumber the live entries, so a
    /// store that deletes more than it evicts does not grow its queues.
    fn compact(&mut self, entries: &HashMap<Arc<str>, Entry, RandomState>) {
        let live = |(key, id): &(Arc<str>, u64)| entries.get(key).is_some_and(|e| e.id == *id);
        if self.probation.len() + self.protected.len() > 2 * entries.len() + 64 {
            self.probation.retain(live);
            self.protected.retain(live);
        }
    }
}

impl Shard {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.order.forget(key, &entry);
        self.order.compact(&self.entries);
        Some(entry)
    }

    /// The live entry under `key` and its key, in one lookup; an expired
    /// one is removed. Takes the fields apart so the caller can update the
    /// order while it holds the entry.
    fn live<'a>(
        entries: &'a mut HashMap<Arc<str>, Entry, RandomState>,
        order: &mut Order,
        key: &str,
        now_ms: i64,
    ) -> Option<(&'a Arc<str>, &'a mut Entry)> {
        match entries.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(slot) if slot.get().expires_ms > now_ms => {
                let (key, entry) = slot.into_key_value();
                Some((&*key, entry))
            }
            RawEntryMut::Occupied(slot) => {
                let (key, entry) = slot.remove_entry();
                order.forget(key, &entry);
                None
            }
            RawEntryMut::Vacant(_) => None,
        }
    }

    /// Evicts one entry: the oldest never used again, else the first used
    /// one not used since eviction last passed it. `false` when empty.
    fn evict_one(&mut self) -> bool {
        let Shard { entries, order } = self;
        // Probation: a used entry is promoted; the first unused one goes.
        // Protected (CLOCK): a used entry gets a second chance.
        Self::evict_from(entries, order, Segment::Probation)
            || Self::evict_from(entries, order, Segment::Protected)
    }

    /// Walks `segment` from its oldest item: stale items are dropped, used
    /// entries move to the back of the protected queue with their flag
    /// cleared, and the first unused entry is removed.
    fn evict_from(
        entries: &mut HashMap<Arc<str>, Entry, RandomState>,
        order: &mut Order,
        segment: Segment,
    ) -> bool {
        loop {
            let queue = match segment {
                Segment::Probation => &mut order.probation,
                Segment::Protected => &mut order.protected,
            };
            let Some((key, id)) = queue.pop_front() else {
                return false;
            };
            match entries.get_mut(&key) {
                Some(entry) if entry.id == id && entry.used => {
                    entry.used = false;
                    order.protected.push_back((key, id));
                }
                Some(entry) if entry.id == id => {
                    let (key, entry) = entries.remove_entry(&key).expect("present");
                    order.forget(key, &entry);
                    return true;
                }
                _ => {}
            }
        }
    }

    /// Evicts until `more_entries` new entries and `more_bytes` more bytes fit.
    fn make_room(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        more_entries: usize,
        more_bytes: usize,
    ) {
        let mut evicted = 0usize;
        while (self.entries.len() + more_entries > max_entries
            || self.order.bytes + more_bytes > max_bytes)
            && self.evict_one()
        {
            evicted += 1;
        }
        if evicted > 0 {
            tracing::debug!(
                evicted,
                "memory store full: evicted sessions never used again first"
            );
        }
    }

    fn sweep(&mut self, now_ms: i64, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            match self.order.by_expiry.first() {
                Some((expires, _)) if *expires <= now_ms => {
                    let (_, key) = self.order.by_expiry.pop_first().expect("first exists");
                    if let Some(entry) = self.entries.remove(&key) {
                        self.order.bytes -= Entry::cost(&key, entry.bytes.len());
                    }
                    removed += 1;
                }
                _ => break,
            }
        }
        if removed > 0 {
            self.order.compact(&self.entries);
        }
        removed
    }
}

/// Builder of a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_sessions: usize,
    max_bytes: usize,
    shards: usize,
    max_record_size: usize,
    sweep_interval: Duration,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            max_sessions: 1_000_000,
            max_bytes: 256 << 20,
            shards: 64,
            max_record_size: 1 << 20,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

impl MemoryStoreBuilder {
    /// Most sessions held; past it, sessions are evicted as the type's docs
    /// say. Default 1,000,000.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// Most bytes held by sessions (records, keys and about 160 bytes of
    /// bookkeeping each); past it, sessions are evicted as the type's docs
    /// say. Default 256 MiB. Each shard gets an equal share, so fewer shards
    /// are used when a share would not hold one record of
    /// [`max_record_size`](Self::max_record_size); a budget below that size
    /// lowers the record limit to fit.
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max.max(4096);
        self
    }

    /// Number of independently locked shards (rounded up to a power of two).
    /// Default 64.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.clamp(1, 1 << 16).next_power_of_two();
        self
    }

    /// Largest record accepted, in bytes. Default 1 MiB.
    pub fn max_record_size(mut self, max: usize) -> Self {
        self.max_record_size = max;
        self
    }

    /// How often the sweeper removes expired sessions. Default 1 s.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(crate::sweeper::MIN_INTERVAL);
        self
    }

    /// Builds the store and starts its sweeper thread, which ends by itself
    /// once the store is dropped.
    pub fn build(self) -> MemoryStore {
        // The largest entry must fit in one shard's share of the bytes.
        let max_record_size = self
            .max_record_size
            .min(self.max_bytes - ENTRY_OVERHEAD - 64);
        let largest = max_record_size + ENTRY_OVERHEAD + 64;
        let fitting = (self.max_bytes / largest).max(1);
        // Largest power of two not above `fitting`.
        let fitting = 1 << (usize::BITS - 1 - fitting.leading_zeros());
        let shards = self
            .shards
            // `next_power_of_two` of a cap near `usize::MAX` overflows (to 0
            // in release builds: no shard, and a division by zero).
            .min(
                self.max_sessions
                    .checked_next_power_of_two()
                    .unwrap_or(usize::MAX),
            )
            .min(fitting);
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::default(),
            max_per_shard: self.max_sessions.div_ceil(shards),
            max_bytes_per_shard: self.max_bytes / shards,
            max_record_size,
            next_version: AtomicU64::new(1),
        });
        crate::sweeper::spawn(
            &inner,
            self.sweep_interval,
            "session-memory-sweeper",
            |inner| {
                inner.sweep();
            },
        );
        MemoryStore { inner }
    }
}

fn now_ms() -> i64 {
    // `SystemTime` rather than `OffsetDateTime`: no calendar fields, no
    // 128-bit division on every load.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs() as i64 * 1000 + i64::from(d.subsec_millis())
    })
}

fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Inner {
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) as usize & (self.shards.len() - 1);
        // A panic while holding a shard lock cannot leave it inconsistent in a
        // way that matters more than losing the store: keep serving.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes expired entries, at most a batch per lock hold. Shards are
    /// visited in turn, one batch each, so a shard's lock is free while the
    /// others are swept: re-locking the same shard at once let the sweeper
    /// barge ahead of waiting requests until the whole shard was clean
    /// (loads waited ~4 ms behind a sweep of 500,000 sessions).
    fn sweep(&self) -> usize {
        let mut removed = 0;
        let mut pending: Vec<usize> = (0..self.shards.len()).collect();
        while !pending.is_empty() {
            pending.retain(|&i| {
                let n = self.shards[i]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sweep(now_ms(), SWEEP_BATCH);
                removed += n;
                n == SWEEP_BATCH
            });
            if !pending.is_empty() {
                // With few shards left, let a waiting request take the lock.
                std::thread::yield_now();
            }
        }
        removed
    }
}

impl MemoryStore {
    /// A store with default limits.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set limits.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// Number of entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }

    /// Bytes held, as counted against
    /// [`max_bytes`](MemoryStoreBuilder::max_bytes).
    pub fn bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).order.bytes)
            .sum()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes expired entries now; returns how many. The sweeper thread does
    /// this every interval.
    pub fn sweep_expired(&self) -> usize {
        self.inner.sweep()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("max_per_shard", &self.inner.max_per_shard)
            .field("max_bytes_per_shard", &self.inner.max_bytes_per_shard)
            .finish_non_exhaustive()
    }
}

fn record(entry: &Entry) -> StoredRecord {
    let expires =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(entry.expires_ms) * 1_000_000).ok();
    StoredRecord::new(entry.bytes.clone(), Version(entry.version), expires)
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn user_index(&self) -> UserIndexSupport<'_> {
        // Each user's index in one record, by compare-and-swap under the
        // map's lock.
        UserIndexSupport::Records(self)
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let mut shard = self.inner.shard(key.as_str());
        let Shard { entries, order } = &mut *shard;
        Ok(
            Shard::live(entries, order, key.as_str(), now_ms()).map(|(_, entry)| {
                entry.used = true;
                record(entry)
            }),
        )
    }

    async fn save(
        &self,
        key: &StoreKey,
        bytes: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(bytes.len(), self.inner.max_record_size)?;
        let now = now_ms();
        let expires_ms = to_ms(expires_at);
        let allowed = |current: Option<u64>| match condition {
            SaveCondition::IfAbsent => current.is_none(),
            SaveCondition::IfVersion(Version(v)) => current == Some(v),
            _ => true,
        };
        let (max_entries, max_bytes) = (self.inner.max_per_shard, self.inner.max_bytes_per_shard);
        let mut shard = self.inner.shard(key.as_str());
        let shard = &mut *shard;
        if let Some((k, entry)) =
            Shard::live(&mut shard.entries, &mut shard.order, key.as_str(), now)
        {
            if !allowed(Some(entry.version)) {
                return Ok(SaveOutcome::Conflict);
            }
            // Rewrite in place: no new key, and the old buffer is reused.
            let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
            let order = &mut shard.order;
            if entry.expires_ms != expires_ms {
                order.by_expiry.remove(&(entry.expires_ms, k.clone()));
                order.by_expiry.insert((expires_ms, k.clone()));
                entry.expires_ms = expires_ms;
            }
            order.bytes = order.bytes - entry.bytes.len() + bytes.len();
            let grew = bytes.len() > entry.bytes.len();
            entry.bytes.clear();
            entry.bytes.extend_from_slice(bytes);
            entry.version = version;
            entry.used = true;
            if grew {
                shard.make_room(max_entries, max_bytes, 0, 0);
            }
            return Ok(SaveOutcome::Saved(Version(version)));
        }
        if !allowed(None) {
            return Ok(SaveOutcome::Conflict);
        }
        let cost = Entry::cost(key.as_str(), bytes.len());
        shard.make_room(max_entries, max_bytes, 1, cost);
        let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
        let k: Arc<str> = Arc::from(key.as_str());
        shard.entries.insert(
            k.clone(),
            Entry {
                bytes: bytes.to_vec(),
                version,
                expires_ms,
                id: version,
                used: false,
            },
        );
        let order = &mut shard.order;
        order.bytes += cost;
        order.by_expiry.insert((expires_ms, k.clone()));
        order.probation.push_back((k, version));
        Ok(SaveOutcome::Saved(Version(version)))
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let expires_ms = to_ms(expires_at);
        let mut shard = self.inner.shard(key.as_str());
        let Shard { entries, order } = &mut *shard;
        let Some((k, entry)) = Shard::live(entries, order, key.as_str(), now_ms()) else {
            return Ok(false);
        };
        entry.used = true;
        let old = std::mem::replace(&mut entry.expires_ms, expires_ms);
        if old != expires_ms {
            order.by_expiry.remove(&(old, k.clone()));
            order.by_expiry.insert((expires_ms, k.clone()));
        }
        Ok(true)
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.inner.shard(key.as_str()).remove(key.as_str());
        Ok(())
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(self.inner.max_record_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StoreKey {
        StoreKey::from_raw(s)
    }

    #[tokio::test]
    async fn a_sweep_takes_as_many_turns_as_the_shards_need() {
        let store = MemoryStore::builder().shards(2).build();
        let now = OffsetDateTime::now_utc();
        let n = SWEEP_BATCH * 7 + 3;
        for i in 0..n {
            let deadline = now - Duration::from_secs(1);
            store
                .save(
                    &key(&format!("old{i}")),
                    b"x",
                    deadline,
                    SaveCondition::Always,
                )
                .await
                .unwrap();
        }
        let live = now + Duration::from_secs(60);
        store
            .save(&key("live"), b"x", live, SaveCondition::Always)
            .await
            .unwrap();
        assert_eq!(store.sweep_expired(), n);
        assert_eq!(store.len(), 1);
        assert!(store.load(&key("live")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_rewrite_moves_the_entry_in_the_expiry_order() {
        let store = MemoryStore::builder().max_sessions(2).shards(1).build();
        let now = OffsetDateTime::now_utc();
        let at = |secs| now + Duration::from_secs(secs);
        for (k, secs) in [("a", 100), ("b", 200)] {
            store
                .save(&key(k), b"x", at(secs), SaveCondition::Always)
                .await
                .unwrap();
        }
        // Rewritten in place, with a later deadline and a larger value.
        store
            .save(&key("a"), b"longer value", at(300), SaveCondition::Always)
            .await
            .unwrap();
        store
            .save(&key("c"), b"x", at(250), SaveCondition::Always)
            .await
            .unwrap();
        assert!(
            store.load(&key("b")).await.unwrap().is_none(),
            "b was never used again"
        );
        let a = store.load(&key("a")).await.unwrap().expect("a kept");
        assert_eq!(a.bytes, b"longer value");
        assert_eq!(store.len(), 2);
        // Rewritten in place with an earlier, already passed deadline: swept.
        store
            .save(
                &key("a"),
                b"y",
                now - Duration::from_secs(1),
                SaveCondition::Always,
            )
            .await
            .unwrap();
        assert_eq!(store.sweep_expired(), 1);
        assert!(store.load(&key("c")).await.unwrap().is_some());
    }

    async fn save_new(store: &MemoryStore, k: &str, bytes: &[u8]) {
        let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        store
            .save(&key(k), bytes, later, SaveCondition::Always)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn when_full_the_oldest_session_never_used_again_goes_first() {
        let store = MemoryStore::builder().max_sessions(3).shards(1).build();
        for k in ["a", "b", "c"] {
            save_new(&store, k, b"x").await;
        }
        // `a` is used again; `b` is now the oldest never used.
        assert!(store.load(&key("a")).await.unwrap().is_some());
        save_new(&store, "d", b"x").await;
        assert_eq!(store.len(), 3);
        assert!(store.load(&key("b")).await.unwrap().is_none());
        for k in ["a", "c", "d"] {
            assert!(store.load(&key(k)).await.unwrap().is_some(), "{k}");
        }
    }

    #[tokio::test]
    async fn a_flood_of_new_sessions_leaves_a_session_used_twice_intact() {
        let store = MemoryStore::builder().max_sessions(64).shards(1).build();
        save_new(&store, "user", b"logged in").await;
        for _ in 0..2 {
            assert!(store.load(&key("user")).await.unwrap().is_some());
        }
        for i in 0..10_000 {
            save_new(&store, &format!("anonymous{i}"), b"{}").await;
        }
        assert_eq!(store.len(), 64);
        let user = store.load(&key("user")).await.unwrap().expect("kept");
        assert_eq!(user.bytes, b"logged in");
        // The queues hold no more than the entries they order.
        let shard = store.inner.shards[0].lock().unwrap();
        assert!(shard.order.probation.len() + shard.order.protected.len() <= 64);
    }

    #[tokio::test]
    async fn the_byte_budget_bounds_what_is_held_and_spares_used_sessions() {
        let store = MemoryStore::builder().max_bytes(1 << 20).build();
        save_new(&store, "user", &[1; 1000]).await;
        assert!(store.load(&key("user")).await.unwrap().is_some());
        let big = vec![7u8; 20_000];
        for i in 0..1_000 {
            save_new(&store, &format!("anonymous{i}"), &big).await;
            assert!(store.bytes() <= 1 << 20, "{} bytes held", store.bytes());
        }
        assert!(store.len() < 60, "{} held", store.len());
        assert!(store.load(&key("user")).await.unwrap().is_some());
        // A rewrite that grows a record is held to the budget too.
        save_new(&store, "user", &vec![2; 900_000]).await;
        assert!(store.bytes() <= 1 << 20);
        assert_eq!(
            store.load(&key("user")).await.unwrap().unwrap().bytes.len(),
            900_000
        );
    }

    #[tokio::test]
    async fn a_budget_smaller_than_a_record_lowers_the_record_limit() {
        let store = MemoryStore::builder().max_bytes(64 << 10).build();
        assert!(store.max_record_size().unwrap() < 64 << 10);
        let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
        let refused = store
            .save(&key("k"), &vec![0; 64 << 10], later, SaveCondition::Always)
            .await;
        assert!(
            matches!(refused, Err(StoreError::TooLarge { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn deletes_without_evictions_do_not_grow_the_queues() {
        let store = MemoryStore::builder().shards(1).build();
        for i in 0..10_000 {
            let k = format!("s{i}");
            save_new(&store, &k, b"x").await;
            store.delete(&key(&k)).await.unwrap();
        }
        assert_eq!(store.bytes(), 0);
        let shard = store.inner.shards[0].lock().unwrap();
        assert!(shard.order.probation.len() <= 64 + 1);
    }

    #[tokio::test]
    async fn sweep_removes_only_expired_entries_in_batches() {
        let store = MemoryStore::builder()
            .shards(1)
            .sweep_interval(Duration::from_secs(3600))
            .build();
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        for i in 0..(SWEEP_BATCH * 3 + 7) {
            store
                .save(&key(&format!("old{i}")), b"x", past, SaveCondition::Always)
                .await
                .unwrap();
        }
        let future = OffsetDateTime::now_utc() + Duration::from_secs(60);
        store
            .save(&key("live"), b"x", future, SaveCondition::Always)
            .await
            .unwrap();
        assert_eq!(store.sweep_expired(), SWEEP_BATCH * 3 + 7);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn sweeper_thread_runs_and_stops_with_the_store() {
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_millis(20))
            .build();
        let soon = OffsetDateTime::now_utc() + Duration::from_millis(30);
        store
            .save(&key("k"), b"x", soon, SaveCondition::Always)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.len(), 0, "the sweeper removed the expired entry");
        let weak = Arc::downgrade(&store.inner);
        drop(store);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(weak.upgrade().is_none());
    }

    #[tokio::test]
    async fn a_cap_of_usize_max_is_no_cap() {
        let store = MemoryStore::builder().max_sessions(usize::MAX).build();
        let key = StoreKey::from_raw("k");
        let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
        store
            .save(&key, b"x", later, SaveCondition::Always)
            .await
            .unwrap();
        assert!(store.load(&key).await.unwrap().is_some());
    }
}
