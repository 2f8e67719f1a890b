//! The `Store` trait: where server-side sessions live.
//!
//! A store keeps opaque records (already encoded, and sealed at rest if the
//! store chooses) under [`StoreKey`]s until an absolute deadline. Every save
//! carries a [`SaveCondition`], so a store offers compare-and-swap and the
//! engine can merge concurrent requests instead of losing one's changes.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::index::UserIndex;

/// An opaque version of a stored record, handed out by [`Store::load`] and
/// checked by [`SaveCondition::IfVersion`]. Memcached's CAS unique, a
/// counter in memory, a generation number in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u64);

/// A record as loaded from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredRecord {
    /// The bytes saved.
    pub bytes: Vec<u8>,
    /// Their version, for a compare-and-swap save.
    pub version: Version,
    /// When the store will drop the record, if the store knows. Lets the
    /// engine skip a touch that would move the deadline only a little.
    pub expires_at: Option<OffsetDateTime>,
}

impl StoredRecord {
    /// A loaded record.
    pub fn new(bytes: Vec<u8>, version: Version, expires_at: Option<OffsetDateTime>) -> Self {
        StoredRecord {
            bytes,
            version,
            expires_at,
        }
    }
}

/// When a save may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveCondition {
    /// Only if no record exists under the key (a new session).
    IfAbsent,
    /// Only if the record still has this version (compare-and-swap).
    IfVersion(Version),
    /// Unconditionally.
    Always,
}

/// The result of a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// Written; the record now has this version.
    Saved(Version),
    /// Not written: the condition did not hold (the record changed, exists,
    /// or is gone).
    Conflict,
}

/// A place where server-side session records live.
///
/// Implementations must be safe to share between requests and runtimes
/// (`Send + Sync`, futures `Send`). Every method should be bounded by a
/// timeout of the store's own, so a request never hangs on a dead store.
/// `session_backends::conformance` holds the suite of rules every store
/// must pass.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The record under `key`, or `None` when absent or expired.
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError>;

    /// Writes `record` under `key` until `expires_at`, if `condition` holds.
    ///
    /// A record over the store's size limit must fail with
    /// [`StoreError::TooLarge`] and leave the previous record intact.
    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError>;

    /// Moves the deadline of the record under `key` without rewriting it.
    /// Returns false when there was no such record.
    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Removes the record under `key`; absent records are not an error.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;

    /// The largest record the store accepts, if it has a limit.
    fn max_record_size(&self) -> Option<usize> {
        None
    }

    /// A short name for logs and metrics (`memory`, `memcache`, `redis`,
    /// ...; never a key or an address). Default `custom`.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Whether records should reach this store sealed with the session's key
    /// ring (AES-256-GCM, bound to their store key), so that the store holds
    /// nothing readable or forgeable without the key. Stores outside the
    /// process (memcached, files) say yes by default; when true, unsealed
    /// records found in the store are refused.
    fn seals_at_rest(&self) -> bool {
        false
    }

    /// How the store keeps the per-user index of signed-in sessions
    /// ([`crate::Session::sign_in`]): [`UserIndexSupport::Native`] for a
    /// store that implements [`UserIndex`](crate::UserIndex),
    /// [`UserIndexSupport::Records(self)`](UserIndexSupport::Records) to
    /// let the engine keep each user's index in a record of this store by
    /// compare-and-swap (right for any store whose `IfVersion` saves are
    /// atomic), or [`UserIndexSupport::Unsupported`] (signing in then
    /// fails with [`SessionError::NoUserIndex`](crate::SessionError::NoUserIndex)).
    ///
    /// There is no default on purpose: a store written before the index
    /// existed fails to build until it says which, rather than listing no
    /// sessions at run time.
    fn user_index(&self) -> UserIndexSupport<'_>;
}

/// What takes a store ([`SessionConfig::server`](crate::SessionConfig::server),
/// the cascade's tiers): a
/// store by value, or one already shared in an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use session_core::{IntoStore, Store};
/// # #[derive(Debug)] struct MyStore;
/// # #[session_core::async_trait] impl Store for MyStore {
/// #   async fn load(&self, _: &session_core::StoreKey) -> Result<Option<session_core::StoredRecord>, session_core::StoreError> { Ok(None) }
/// #   async fn save(&self, _: &session_core::StoreKey, _: &[u8], _: session_core::time::OffsetDateTime, _: session_core::SaveCondition) -> Result<session_core::SaveOutcome, session_core::StoreError> { Ok(session_core::SaveOutcome::Conflict) }
/// #   async fn touch(&self, _: &session_core::StoreKey, _: session_core::time::OffsetDateTime) -> Result<bool, session_core::StoreError> { Ok(false) }
/// #   async fn delete(&self, _: &session_core::StoreKey) -> Result<(), session_core::StoreError> { Ok(()) }
/// #   fn user_index(&self) -> session_core::UserIndexSupport<'_> { session_core::UserIndexSupport::Records(self) }
/// # }
/// let by_value: Arc<dyn Store> = MyStore.into_store();
/// let shared: Arc<dyn Store> = Arc::new(MyStore);
/// let same: Arc<dyn Store> = shared.clone().into_store();
/// assert!(Arc::ptr_eq(&shared, &same));
/// # drop(by_value);
/// ```
pub trait IntoStore {
    /// The store, shared.
    fn into_store(self) -> Arc<dyn Store>;
}

impl<S: Store> IntoStore for S {
    fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

impl<S: Store> IntoStore for Arc<S> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

impl IntoStore for Arc<dyn Store> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

/// How a store keeps the per-user index of signed-in sessions
/// ([`Store::user_index`]).
#[non_exhaustive]
pub enum UserIndexSupport<'a> {
    /// The store implements [`UserIndex`] itself.
    Native(&'a dyn UserIndex),
    /// The engine keeps each user's index in one record of this store
    /// (under [`UserKey::record_key`](crate::UserKey::record_key)), updated by compare-and-swap, capped
    /// at [`MAX_RECORD_INDEX_ENTRIES`](crate::MAX_RECORD_INDEX_ENTRIES) and sealed when the store
    /// [seals at rest](Store::seals_at_rest). Any store whose saves honour
    /// [`SaveCondition::IfVersion`] can say this of itself; a tier list
    /// names its authoritative tier.
    Records(&'a dyn Store),
    /// No index: signing a session in fails with
    /// [`SessionError::NoUserIndex`](crate::SessionError::NoUserIndex).
    Unsupported,
}
