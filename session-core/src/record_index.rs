//! A user's index kept in one record of a store, updated by
//! compare-and-swap ([`UserIndexSupport::Records`](crate::UserIndexSupport::Records)):
//! memory, files, memcached, and any store whose `IfVersion` saves are
//! atomic.

use std::time::Instant;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::index::{
    unix_time, IndexEntry, SessionHandle, UserIndex, UserKey, MAX_RECORD_INDEX_ENTRIES,
};
use crate::keys::KeyRing;
use crate::retry::{backoff, CAS_BUDGET};
use crate::seal::{self, Purpose, SealMode, NO_EXPIRY};
use crate::store::{SaveCondition, SaveOutcome, Store};

/// An index kept in one record per user of a store (see
/// [`UserIndexSupport::Records`]).
pub(crate) struct RecordIndex<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) keys: &'a KeyRing,
}

/// A user's index as read from its record.
struct ReadIndex {
    entries: Vec<IndexEntry>,
    version: crate::store::Version,
    /// Sealed with an older key of the ring: to be re-sealed with the
    /// primary before that key is dropped.
    stale_seal: bool,
}

impl RecordIndex<'_> {
    async fn read(&self, key: &StoreKey, now: i64) -> Result<Option<ReadIndex>, StoreError> {
        let Some(stored) = self.store.load(key).await? else {
            return Ok(None);
        };
        let (mut entries, stale_seal) = self.decode(key, stored.bytes, now).unwrap_or_else(|| {
            tracing::warn!("a user index record is unreadable; it is replaced");
            (Vec::new(), false)
        });
        entries.retain(|e| e.is_live(now));
        Ok(Some(ReadIndex {
            entries,
            version: stored.version,
            stale_seal,
        }))
    }

    /// The entries, and whether an older key sealed them.
    fn decode(&self, key: &StoreKey, bytes: Vec<u8>, now: i64) -> Option<(Vec<IndexEntry>, bool)> {
        if bytes.is_empty() {
            return Some((Vec::new(), false));
        }
        let (plain, stale_seal) = if seal::is_sealed(&bytes) {
            let opened =
                seal::Sealer::new(self.keys, SealMode::Private, Purpose::AtRest, key.as_str())
                    .open_raw(bytes, now)
                    .ok()?;
            (opened.payload, !opened.primary)
        } else if self.store.seals_at_rest() {
            return None;
        } else {
            (bytes, false)
        };
        Some((ciborium::from_reader(plain.as_slice()).ok()?, stale_seal))
    }

    /// Reads the live entries of `user`; a record sealed with an older key
    /// of the ring is written again under the primary, so a key rotation
    /// does not lose the index when the old key is dropped.
    async fn read_entries(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError> {
        let Some(read) = self.read(&user.record_key(), now).await? else {
            return Ok(Vec::new());
        };
        if read.stale_seal {
            return self
                .modify(user, now, |entries| (entries.clone(), true))
                .await;
        }
        Ok(read.entries)
    }

    fn encode(&self, key: &StoreKey, entries: &[IndexEntry], now: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * 96 + 8);
        ciborium::into_writer(entries, &mut out).expect("index entries always serialise");
        if self.store.seals_at_rest() {
            return seal::Sealer::new(self.keys, SealMode::Private, Purpose::AtRest, key.as_str())
                .seal_raw(now, NO_EXPIRY, &out);
        }
        out
    }

    /// Reads the user's record, lets `change` edit its live entries, and
    /// writes the result by compare-and-swap, again on conflict until
    /// [`CAS_BUDGET`] is spent. `change` returns what the caller
    /// gets, and whether anything changed (nothing is written otherwise).
    async fn modify<T>(
        &self,
        user: &UserKey,
        now: i64,
        mut change: impl FnMut(&mut Vec<IndexEntry>) -> (T, bool) + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        let key = user.record_key();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let (mut entries, condition) = match self.read(&key, now).await? {
                Some(read) => (read.entries, SaveCondition::IfVersion(read.version)),
                None => (Vec::new(), SaveCondition::IfAbsent),
            };
            let (result, changed) = change(&mut entries);
            if !changed {
                return Ok(result);
            }
            // Bounded by count and by the store's record size: the least
            // recently seen entries go first, and of those seen in the same
            // second the earliest added (the record is kept newest first,
            // a put adds at the front, and the sort is stable).
            entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
            entries.truncate(MAX_RECORD_INDEX_ENTRIES);
            let mut bytes = self.encode(&key, &entries, now);
            if let Some(max) = self.store.max_record_size() {
                while bytes.len() > max && !entries.is_empty() {
                    let keep = entries.len() * max / bytes.len();
                    entries.truncate(keep.min(entries.len() - 1));
                    bytes = self.encode(&key, &entries, now);
                }
            }
            // An empty index stays a short while (a delete could not be
            // conditional on the version just read).
            let until = entries
                .iter()
                .map(|e| e.expires)
                .max()
                .unwrap_or(now.saturating_add(60));
            let until = unix_time(until);
            if let SaveOutcome::Saved(_) = self.store.save(&key, &bytes, until, condition).await? {
                return Ok(result);
            }
            attempt += 1;
            if started.elapsed() >= CAS_BUDGET {
                return Err(StoreError::Contended { attempts: attempt });
            }
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

#[async_trait]
impl UserIndex for RecordIndex<'_> {
    async fn put(&self, user: &UserKey, entry: &IndexEntry, now: i64) -> Result<(), StoreError> {
        self.modify(user, now, |entries| {
            entries.retain(|e| e.handle != entry.handle);
            entries.insert(0, entry.clone());
            ((), true)
        })
        .await
    }

    async fn update(
        &self,
        user: &UserKey,
        entry: &IndexEntry,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.modify(user, now, |entries| {
            match entries.iter_mut().find(|e| e.handle == entry.handle) {
                Some(found) => {
                    *found = entry.clone();
                    (true, true)
                }
                None => (false, false),
            }
        })
        .await
    }

    async fn get(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let entries = self.read_entries(user, now).await?;
        Ok(entries.into_iter().find(|e| e.handle == *handle))
    }

    async fn list(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError> {
        self.read_entries(user, now).await
    }

    async fn remove(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.modify(user, now, |entries| {
            let before = entries.len();
            entries.retain(|e| e.handle != *handle);
            let removed = entries.len() != before;
            (removed, removed)
        })
        .await
    }

    async fn remove_all(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.modify(user, now, |entries| {
            let before = entries.len();
            entries.retain(|e| Some(&e.handle) == keep);
            let removed = before - entries.len();
            (removed, removed > 0)
        })
        .await
    }
}
