//! The per-user index a store keeps beside its sessions: for each user (a
//! keyed hash of the user id, [`UserKey`]) the live sessions signed in as
//! that user, each an [`IndexEntry`] under its opaque [`SessionHandle`].
//!
//! An entry is what makes a signed-in session live: the engine refuses a
//! signed-in session whose entry is gone, so ending a session is removing
//! its entry. Entries are only ever created by a sign-in (with a fresh
//! handle) and otherwise only updated *if present*, so no write that was in
//! flight when a session was ended can bring its entry back.
//!
//! A store offers the index natively ([`UserIndexSupport::Native`]: a Redis
//! sorted set, a PostgreSQL table) or lets the engine keep each user's
//! index in one record of its own, updated by compare-and-swap
//! ([`UserIndexSupport::Records`]: memcached, files, any store with
//! [`SaveCondition::IfVersion`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::keys::{DerivedKeys, KeyRing};
use crate::seal::{self, Purpose, SealMode, NO_EXPIRY};
use crate::store::{SaveCondition, SaveOutcome, Store};

/// Most entries a record-kept index holds; a sign-in past it drops the
/// least recently seen entry (its session is ended).
pub const MAX_RECORD_INDEX_ENTRIES: usize = 1000;
/// Most bytes of sign-in metadata (keys and values) an entry keeps.
pub const MAX_SIGN_IN_METADATA: usize = 1024;
/// Longest `User-Agent` kept in an entry, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// The key a user's index is filed under: base64url of HMAC-SHA256 of the
/// user id with a key derived from the master secret (43 characters of
/// `[A-Za-z0-9_-]`). Stores never see the user id itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserKey(String);

impl UserKey {
    pub(crate) fn derive(keys: &DerivedKeys, user_id: &str) -> Self {
        let mut mac = keys.user.clone();
        mac.update(user_id.as_bytes());
        UserKey(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// The user's key under every key of the ring, the primary's first.
    pub(crate) fn all(ring: &KeyRing, user_id: &str) -> Vec<UserKey> {
        std::iter::once(ring.primary())
            .chain(ring.old_keys())
            .map(|k| UserKey::derive(k, user_id))
            .collect()
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A user key from text, for stores' own tests and tools.
    pub fn from_raw(key: impl Into<String>) -> Self {
        UserKey(key.into())
    }

    /// The store key of the record that holds this user's index in a
    /// record-kept index: `u-` and the user key, which no session's store
    /// key (43 characters) can equal.
    pub fn record_key(&self) -> StoreKey {
        StoreKey::from_raw(format!("u-{}", self.0))
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..8).unwrap_or(&self.0);
        write!(f, "UserKey({shown}..)")
    }
}

/// The opaque handle of a signed-in session in its user's list: 128 random
/// bits, base64url (22 characters). Not the token, not the store key, and
/// nothing either can be found from; the same on every server and for the
/// session's whole life. Safe to show to the user and to put in URLs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionHandle(String);

impl SessionHandle {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 16];
        seal::random(&mut bytes);
        SessionHandle(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A handle from text (a URL path segment, a form field). Anything but
    /// 22 characters of `[A-Za-z0-9_-]` is refused (`None`), so a handle
    /// from a client is safe to hand to a store as is.
    ///
    /// ```
    /// use session_core::SessionHandle;
    /// assert!(SessionHandle::parse("AAAAAAAAAAAAAAAAAAAAAA").is_some());
    /// assert!(SessionHandle::parse("../etc/passwd").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| SessionHandle(text.to_owned()))
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Handles are not credentials, but logs only need to correlate.
        let shown = self.0.get(..6).unwrap_or(&self.0);
        write!(f, "SessionHandle({shown}..)")
    }
}

/// One signed-in session in its user's index.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IndexEntry {
    /// The session's handle.
    #[serde(rename = "h")]
    pub handle: SessionHandle,
    /// When it signed in (Unix seconds).
    #[serde(rename = "c")]
    pub created: i64,
    /// When it signed in, in Unix microseconds: orders sign-ins within one
    /// second (the per-user limit ends the earliest).
    #[serde(rename = "t", default)]
    pub signed_in_micros: i64,
    /// Its last request, at most a minute behind (Unix seconds).
    #[serde(rename = "s")]
    pub last_seen: i64,
    /// When the entry lapses unless updated (Unix seconds): a little after
    /// the session's own deadline.
    #[serde(rename = "e")]
    pub expires: i64,
    /// The `User-Agent` it signed in with, at most 256 characters.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Small metadata the application added at sign-in.
    #[serde(rename = "m", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl IndexEntry {
    /// Whether the entry still counts at `now` (Unix seconds).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires > now
    }

    /// The entry's expiry as a time, for stores that expire entries
    /// themselves (clamped to the years a timestamp can hold).
    pub fn expires_at(&self) -> OffsetDateTime {
        unix_time(self.expires)
    }

    /// The entry as bytes (CBOR), for a store to keep.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        ciborium::into_writer(self, &mut out).expect("an index entry always serialises");
        out
    }

    /// An entry from bytes made by [`to_bytes`](Self::to_bytes); `None` for
    /// anything else (a store must treat it as absent, never panic).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        ciborium::from_reader(bytes).ok()
    }
}

impl fmt::Debug for IndexEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexEntry")
            .field("handle", &self.handle)
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Unix seconds as a time, clamped to what `OffsetDateTime` holds (numbers
/// from a store may be anything).
pub(crate) fn unix_time(secs: i64) -> OffsetDateTime {
    // 9999-12-31T23:59:59Z, the last second `OffsetDateTime` holds by default.
    const LAST: i64 = 253_402_300_799;
    OffsetDateTime::from_unix_timestamp(secs.clamp(0, LAST)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A store's per-user index of signed-in sessions.
///
/// Every method takes `now` (Unix seconds) from the engine's clock: entries
/// whose `expires` is not after it are absent to every method, and a store
/// drops them when it meets them (or lets its own expiry do it), so the
/// index of a user whose sessions all lapsed holds nothing.
///
/// Conformance rules: `session_backends::conformance::user_index`.
#[async_trait]
pub trait UserIndex: Send + Sync {
    /// Adds `entry` to `user`'s index, replacing an entry with its handle.
    /// An index with a cap drops its least recently seen entries past it.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn put(&self, user: &UserKey, entry: &IndexEntry, now: i64) -> Result<(), StoreError>;

    /// Replaces the entry with `entry`'s handle *only if it is present* and
    /// live; false (and nothing written) when it is not.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn update(
        &self,
        user: &UserKey,
        entry: &IndexEntry,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The live entry under `handle`.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn get(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<Option<IndexEntry>, StoreError>;

    /// Every live entry of `user`, in any order.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn list(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError>;

    /// Removes the entry under `handle`; whether a live one was there.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn remove(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Removes every entry of `user` but `keep`'s, in one step; how many
    /// live entries went.
    ///
    /// # Errors
    ///
    /// The store failed.
    async fn remove_all(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
        now: i64,
    ) -> Result<usize, StoreError>;
}

/// How a store keeps the per-user index of signed-in sessions
/// ([`Store::user_index`]).
#[non_exhaustive]
pub enum UserIndexSupport<'a> {
    /// The store implements [`UserIndex`] itself.
    Native(&'a dyn UserIndex),
    /// The engine keeps each user's index in one record of this store
    /// (under [`UserKey::record_key`]), updated by compare-and-swap, capped
    /// at [`MAX_RECORD_INDEX_ENTRIES`] and sealed when the store
    /// [seals at rest](Store::seals_at_rest). Any store whose saves honour
    /// [`SaveCondition::IfVersion`] can say this of itself; a tier list
    /// names its authoritative tier.
    Records(&'a dyn Store),
    /// No index: signing a session in fails with
    /// [`SessionError::NoUserIndex`](crate::SessionError::NoUserIndex).
    Unsupported,
}

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
    /// [`crate::CAS_BUDGET`] is spent. `change` returns what the caller
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
            if started.elapsed() >= crate::CAS_BUDGET {
                return Err(StoreError::Contended { attempts: attempt });
            }
            if attempt > 1 {
                tokio::time::sleep(crate::save::backoff(attempt)).await;
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
