//! The embedded store: sessions in this process's memory.

use std::collections::BTreeSet;
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
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord, Version,
};

/// Entries removed per lock hold by the sweeper, so it never stalls a shard.
const SWEEP_BATCH: usize = 64;

/// Sessions held in memory: sharded maps, a bound on their number (the
/// entry closest to expiry is evicted first), a deadline per entry, and a
/// background thread that removes expired entries a few at a time.
///
/// Sessions are lost on restart and not shared between processes; use a
/// server store for that.
///
/// ```
/// use session_backends::MemoryStore;
/// let store = MemoryStore::builder().max_sessions(10_000).build();
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
    max_record_size: usize,
    next_version: AtomicU64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Arc<str>, Entry, RandomState>,
    /// (expiry in Unix ms, key): the eviction and sweeping order.
    by_expiry: BTreeSet<(i64, Arc<str>)>,
}

struct Entry {
    bytes: Vec<u8>,
    version: u64,
    expires_ms: i64,
}

impl Shard {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.by_expiry.remove(&(entry.expires_ms, key));
        Some(entry)
    }

    /// The live entry under `key` and its key, in one lookup; an expired
    /// one is removed. Takes the fields apart so the caller can update the
    /// expiry index while it holds the entry.
    fn live<'a>(
        entries: &'a mut HashMap<Arc<str>, Entry, RandomState>,
        by_expiry: &mut BTreeSet<(i64, Arc<str>)>,
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
                by_expiry.remove(&(entry.expires_ms, key));
                None
            }
            RawEntryMut::Vacant(_) => None,
        }
    }

    fn sweep(&mut self, now_ms: i64, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            match self.by_expiry.first() {
                Some((expires, _)) if *expires <= now_ms => {
                    let (_, key) = self.by_expiry.pop_first().expect("first exists");
                    self.entries.remove(&key);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }
}

/// Builder of a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_sessions: usize,
    shards: usize,
    max_record_size: usize,
    sweep_interval: Duration,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            max_sessions: 1_000_000,
            shards: 64,
            max_record_size: 1 << 20,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

impl MemoryStoreBuilder {
    /// Most sessions held; past it the session closest to expiry is evicted.
    /// Default 1,000,000.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
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
        let shards = self.shards.min(self.max_sessions.next_power_of_two());
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::default(),
            max_per_shard: self.max_sessions.div_ceil(shards),
            max_record_size: self.max_record_size,
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
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let mut shard = self.inner.shard(key.as_str());
        let Shard { entries, by_expiry } = &mut *shard;
        Ok(Shard::live(entries, by_expiry, key.as_str(), now_ms()).map(|(_, e)| record(e)))
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
        let mut shard = self.inner.shard(key.as_str());
        let shard = &mut *shard;
        if let Some((k, entry)) =
            Shard::live(&mut shard.entries, &mut shard.by_expiry, key.as_str(), now)
        {
            if !allowed(Some(entry.version)) {
                return Ok(SaveOutcome::Conflict);
            }
            // Rewrite in place: no new key, and the old buffer is reused.
            let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
            if entry.expires_ms != expires_ms {
                shard.by_expiry.remove(&(entry.expires_ms, k.clone()));
                shard.by_expiry.insert((expires_ms, k.clone()));
                entry.expires_ms = expires_ms;
            }
            entry.bytes.clear();
            entry.bytes.extend_from_slice(bytes);
            entry.version = version;
            return Ok(SaveOutcome::Saved(Version(version)));
        }
        if !allowed(None) {
            return Ok(SaveOutcome::Conflict);
        }
        let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
        let k: Arc<str> = Arc::from(key.as_str());
        shard.entries.insert(
            k.clone(),
            Entry {
                bytes: bytes.to_vec(),
                version,
                expires_ms,
            },
        );
        shard.by_expiry.insert((expires_ms, k));
        while shard.entries.len() > self.inner.max_per_shard {
            let Some((_, victim)) = shard.by_expiry.pop_first() else {
                break;
            };
            shard.entries.remove(&victim);
            tracing::debug!("memory store full: evicted the session closest to expiry");
        }
        Ok(SaveOutcome::Saved(Version(version)))
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let expires_ms = to_ms(expires_at);
        let mut shard = self.inner.shard(key.as_str());
        let Shard { entries, by_expiry } = &mut *shard;
        let Some((k, entry)) = Shard::live(entries, by_expiry, key.as_str(), now_ms()) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut entry.expires_ms, expires_ms);
        if old != expires_ms {
            by_expiry.remove(&(old, k.clone()));
            by_expiry.insert((expires_ms, k.clone()));
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
            "b was closest"
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

    #[tokio::test]
    async fn evicts_the_entry_closest_to_expiry_when_full() {
        let store = MemoryStore::builder().max_sessions(3).shards(1).build();
        let now = OffsetDateTime::now_utc();
        for (k, secs) in [("a", 300), ("b", 100), ("c", 200)] {
            store
                .save(
                    &key(k),
                    b"x",
                    now + Duration::from_secs(secs),
                    SaveCondition::Always,
                )
                .await
                .unwrap();
        }
        store
            .save(
                &key("d"),
                b"x",
                now + Duration::from_secs(400),
                SaveCondition::Always,
            )
            .await
            .unwrap();
        assert_eq!(store.len(), 3);
        assert!(store.load(&key("b")).await.unwrap().is_none());
        for k in ["a", "c", "d"] {
            assert!(store.load(&key(k)).await.unwrap().is_some(), "{k}");
        }
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
}
