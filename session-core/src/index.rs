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

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::keys::{DerivedKeys, KeyRing};
use crate::seal;

/// Most entries a user's index holds (in a record, in Redis, in
/// PostgreSQL); a sign-in past it drops an older entry (its session is
/// ended).
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

/// Whom a session is signed in as: the user's key, the id of the ring key
/// it was derived with, and the session's handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    #[serde(rename = "u")]
    pub(crate) user: UserKey,
    #[serde(rename = "k")]
    pub(crate) key_id: [u8; 4],
    #[serde(rename = "h")]
    pub(crate) handle: SessionHandle,
}
