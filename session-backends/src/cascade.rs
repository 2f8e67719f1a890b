//! Tiers of stores: read fastest first, write through all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use session_core::adapter::Observed;
use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, IntoStore, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord,
    UserIndexSupport, Version,
};

/// Bytes in front of every record: the cascade's own version (u64) and the
/// record's deadline (Unix ms, i64), which capped cache tiers cannot report.
const FRAME_LEN: usize = 16;

struct Tier {
    store: Arc<dyn Store>,
    /// Longest time a record may live in this tier (bounds staleness of a
    /// per-process cache in front of a shared store).
    max_ttl: Option<Duration>,
}

/// Stores in tiers, fastest first; typically memory in front of memcached
/// (in front of files).
///
/// - **Reads** go to the fastest tier holding the record; a miss is filled
///   back into the faster tiers.
/// - **Writes** go through every tier. Compare-and-swap is decided by the
///   *authoritative* tier (the last one written synchronously, by default
///   the slowest), against a version the cascade keeps inside the record;
///   on a conflict the faster tiers' copies are dropped, so the retry reads
///   fresh data.
/// - A tier whose size limit a record exceeds is skipped (its stale copy is
///   deleted); only the authoritative tier's limit is an error.
/// - **Deletes** go to every tier, the authoritative one first.
///   **Touches** go to the authoritative tier first: when it no longer has
///   the session (revoked through another process), every faster copy is
///   dropped instead of extended.
///
/// **Revocation.** A purge or renewal deletes the session from every tier,
/// slowest first. Every copy written to a faster tier after a slower one
/// was read (a read's fill-back, the copies of a save, a write-behind copy)
/// is followed by a re-check of the tier it came from (the authoritative
/// one for a save), and taken back when the record there is gone or newer:
/// either the re-check sees the delete, or the copy landed before the
/// delete reached the copy's tier. So a copy that was on its way during a logout cannot
/// bring the session back. What a delete cannot reach is another process's private
/// memory tier: there a revoked session can still be read until that copy's
/// cache TTL ends ([`cache_tier`](CascadeStoreBuilder::cache_tier)); writes
/// to it fail at once (the authoritative compare-and-swap finds it gone)
/// and touches drop it. Keep that TTL short (the demo uses 1 s) or use no
/// memory tier where a logout must take effect everywhere at once.
///
/// **Consistency between processes.** A memory tier is private to its
/// process: after another process writes to the shared tier, this process
/// may serve its older copy until that copy expires. Writes are still safe
/// (the authoritative compare-and-swap catches the stale version and the
/// engine merges), but reads can be stale. [`cache_tier`](CascadeStoreBuilder::cache_tier)
/// bounds this with a short TTL for the tier; use no memory tier where reads
/// must always be fresh.
///
/// **Write-behind** ([`write_behind`](CascadeStoreBuilder::write_behind), off
/// by default) writes the slowest tier in a background task after the
/// response, as the Go cascade's asynchronous datastore save did. Its risks:
/// a write lost if the process stops first, failures only logged, and
/// requests that follow quickly may complete before the slow tier has the
/// data (it is then not authoritative: the tier before it is, which must
/// therefore be shared by every process: the builder refuses write-behind
/// behind a cache tier or a memory store). A re-check of the authoritative
/// tier that fails is retried, then reported (an error in the log), never
/// taken for a delete.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use session_backends::{CascadeStore, MemoryStore};
///
/// let store = CascadeStore::builder()
///     .cache_tier(Arc::new(MemoryStore::new()), Duration::from_secs(5))
///     .tier(Arc::new(MemoryStore::new()))
///     .build()
///     .unwrap();
/// ```
#[derive(Clone)]
pub struct CascadeStore {
    inner: Arc<Inner>,
}

struct Inner {
    tiers: Vec<Tier>,
    write_behind: bool,
    /// Versions are random: every process writes the shared tiers, so a
    /// per-process counter would hand two processes' writes one version.
    versions: std::hash::RandomState,
    written: AtomicU64,
}

/// Builder of a [`CascadeStore`].
#[must_use]
#[derive(Default)]
pub struct CascadeStoreBuilder {
    tiers: Vec<Tier>,
    write_behind: bool,
}

/// A cascade that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeConfigError {
    /// No tier was given.
    #[error("a cascade needs at least one tier")]
    NoTiers,
    /// Write-behind needs a tier before the slowest to be authoritative.
    #[error("write-behind needs at least two tiers")]
    WriteBehindNeedsTwoTiers,
    /// With write-behind, the tier before the slowest decides
    /// compare-and-swap and deletes for every process, so it cannot be a
    /// cache tier or a memory store (private to one process).
    #[error(
        "write-behind needs a shared tier before the slowest, not a cache tier or a memory store"
    )]
    WriteBehindNeedsSharedAuthority,
}

impl CascadeStoreBuilder {
    /// Adds the next (slower) tier (a store by value, or in an `Arc`).
    pub fn tier(mut self, store: impl IntoStore) -> Self {
        self.tiers.push(Tier {
            store: Observed::wrap(store),
            max_ttl: None,
        });
        self
    }

    /// Adds the next tier, keeping records there at most `max_ttl` (a
    /// short-lived cache in front of shared tiers).
    pub fn cache_tier(mut self, store: impl IntoStore, max_ttl: Duration) -> Self {
        self.tiers.push(Tier {
            store: Observed::wrap(store),
            max_ttl: Some(max_ttl),
        });
        self
    }

    /// Writes the slowest tier in the background after the response (off by
    /// default; see the type's documentation for what it risks).
    pub fn write_behind(mut self, enabled: bool) -> Self {
        self.write_behind = enabled;
        self
    }

    /// Builds the cascade.
    ///
    /// # Errors
    ///
    /// No tier, or write-behind with fewer than two tiers
    /// ([`CascadeConfigError`]).
    pub fn build(self) -> Result<CascadeStore, CascadeConfigError> {
        if self.tiers.is_empty() {
            return Err(CascadeConfigError::NoTiers);
        }
        if self.write_behind && self.tiers.len() < 2 {
            return Err(CascadeConfigError::WriteBehindNeedsTwoTiers);
        }
        if self.write_behind {
            let authority = &self.tiers[self.tiers.len() - 2];
            if authority.max_ttl.is_some() || authority.store.kind() == "memory" {
                return Err(CascadeConfigError::WriteBehindNeedsSharedAuthority);
            }
        }
        Ok(CascadeStore {
            inner: Arc::new(Inner {
                tiers: self.tiers,
                write_behind: self.write_behind,
                versions: std::hash::RandomState::new(),
                written: AtomicU64::new(0),
            }),
        })
    }
}

impl std::fmt::Debug for CascadeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tiers: Vec<&Arc<dyn Store>> = self.inner.tiers.iter().map(|t| &t.store).collect();
        f.debug_struct("CascadeStore")
            .field("tiers", &tiers)
            .field("write_behind", &self.inner.write_behind)
            .finish()
    }
}

fn frame(version: u64, deadline: OffsetDateTime, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FRAME_LEN + body.len());
    bytes.extend_from_slice(&version.to_be_bytes());
    let ms = (deadline.unix_timestamp_nanos() / 1_000_000) as i64;
    bytes.extend_from_slice(&ms.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn unframe(bytes: &[u8]) -> Option<(Version, OffsetDateTime, &[u8])> {
    let version = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let ms = i64::from_be_bytes(bytes.get(8..FRAME_LEN)?.try_into().ok()?);
    let deadline = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some((Version(version), deadline, &bytes[FRAME_LEN..]))
}

impl CascadeStore {
    /// A builder; add tiers fastest first.
    pub fn builder() -> CascadeStoreBuilder {
        CascadeStoreBuilder::default()
    }

    /// Index of the tier that decides compare-and-swap.
    fn authoritative(&self) -> usize {
        self.inner.tiers.len() - 1 - usize::from(self.inner.write_behind)
    }

    /// A version no other write is expected to have: 64 random bits
    /// (this process's random keys hashing a count and the time).
    fn new_version(&self) -> u64 {
        use std::hash::BuildHasher;
        let n = self.inner.written.fetch_add(1, Ordering::Relaxed);
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        self.inner.versions.hash_one((n, now)).max(1)
    }

    /// Copies written to `tiers` after tier `source` (the authoritative
    /// one, or the one a read found the record in) held `version` are taken
    /// back unless it still does: a delete or a newer write that reached
    /// `source` meanwhile may have reached their tiers before them.
    async fn recheck_copies(
        &self,
        source: usize,
        tiers: &[Tier],
        key: &StoreKey,
        version: Version,
    ) {
        match Self::recheck(&self.inner.tiers[source], key).await {
            Ok(Some((current, _))) if current == version => {}
            Ok(_) => {
                for tier in tiers {
                    if let Err(e) = tier.store.delete(key).await {
                        tracing::warn!(error = %e, "cascade: could not take back a copy the authoritative tier no longer backs");
                    }
                }
            }
            Err(e) => {
                // Unknown: the copies are dropped (they are only caches).
                tracing::error!(error = %e, "cascade: could not re-check the authoritative tier; dropping the copies");
                for tier in tiers {
                    let _ = tier.store.delete(key).await;
                }
            }
        }
    }

    /// [`authority_record`](Self::authority_record), retried a few times
    /// when the tier fails (a failed re-check is not a delete).
    async fn recheck(
        authority: &Tier,
        key: &StoreKey,
    ) -> Result<Option<(Version, StoredRecord)>, StoreError> {
        let mut wait = Duration::from_millis(25);
        let mut attempt = 0;
        loop {
            match Self::authority_record(authority, key).await {
                Err(e) if attempt < 3 => {
                    tracing::debug!(error = %e, attempt, "cascade: re-check of the authoritative tier failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The authoritative tier's record under `key` and the cascade version
    /// framed in it.
    async fn authority_record(
        authority: &Tier,
        key: &StoreKey,
    ) -> Result<Option<(Version, StoredRecord)>, StoreError> {
        Ok(authority.store.load(key).await?.and_then(|record| {
            let (version, _, _) = unframe(&record.bytes)?;
            Some((version, record))
        }))
    }

    fn tier_deadline(tier: &Tier, expires_at: OffsetDateTime) -> OffsetDateTime {
        match tier.max_ttl {
            Some(ttl) => expires_at.min(OffsetDateTime::now_utc() + ttl),
            None => expires_at,
        }
    }

    fn fits(tier: &Tier, len: usize) -> bool {
        tier.store
            .max_record_size()
            .is_none_or(|limit| len <= limit)
    }

    /// Writes a non-authoritative tier; failures are logged, and a tier that
    /// cannot take the record loses its stale copy.
    async fn write_copy(tier: &Tier, key: &StoreKey, bytes: &[u8], expires_at: OffsetDateTime) {
        let result = if Self::fits(tier, bytes.len()) {
            let deadline = Self::tier_deadline(tier, expires_at);
            tier.store
                .save(key, bytes, deadline, SaveCondition::Always)
                .await
                .map(|_| ())
        } else {
            tier.store.delete(key).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cascade tier write failed; dropping its copy");
            let _ = tier.store.delete(key).await;
        }
    }
}

#[async_trait]
impl Store for CascadeStore {
    fn kind(&self) -> &'static str {
        "cascade"
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let tiers = &self.inner.tiers;
        let last = tiers.len() - 1;
        for (i, tier) in tiers.iter().enumerate() {
            let found = match tier.store.load(key).await {
                Ok(found) => found,
                // A faster tier failing is a miss; the last one failing is an error.
                Err(e) if i < last => {
                    tracing::warn!(error = %e, tier = i, "cascade tier unavailable; reading the next");
                    None
                }
                Err(e) => return Err(e),
            };
            let Some(record) = found else { continue };
            let Some((version, framed_deadline, body)) = unframe(&record.bytes) else {
                tracing::warn!(tier = i, "cascade record without its frame; ignoring it");
                continue;
            };
            // A capped tier's own expiry is the cap; the frame has the real one.
            let expires_at = match (tier.max_ttl, record.expires_at) {
                (None, Some(real)) => real,
                _ => framed_deadline,
            };
            // Fill back only when a faster tier missed (not on the common hit
            // in the fastest tier, which would copy the record for nothing).
            if i > 0 {
                let refreshed = frame(version.0, expires_at, body);
                let authority = self.authoritative();
                let faster = &tiers[..i];
                for (j, tier) in faster.iter().enumerate() {
                    if j == authority {
                        // Behind the authoritative tier (write-behind): a
                        // save that reached it meanwhile must not be
                        // overwritten by this older copy.
                        let deadline = Self::tier_deadline(tier, expires_at);
                        if let Err(e) = tier
                            .store
                            .save(key, &refreshed, deadline, SaveCondition::IfAbsent)
                            .await
                        {
                            tracing::warn!(error = %e, "cascade: could not fill the authoritative tier");
                        }
                    } else {
                        Self::write_copy(tier, key, &refreshed, expires_at).await;
                    }
                }
                // A logout since the read must not leave these copies
                // behind: the authoritative tier is read again (or, for a
                // copy from behind it, the tier it came from; see `delete`
                // for the order that makes this enough).
                let source = if i <= authority { authority } else { i };
                self.recheck_copies(source, faster, key, version).await;
            }
            let expires_at = Some(expires_at);
            return Ok(Some(StoredRecord::new(body.to_vec(), version, expires_at)));
        }
        Ok(None)
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        let authority_index = self.authoritative();
        let authority = &self.inner.tiers[authority_index];
        let version = self.new_version();
        let bytes = frame(version, expires_at, record);
        if let Some(limit) = authority.store.max_record_size() {
            if bytes.len() > limit {
                let limit = limit.saturating_sub(FRAME_LEN);
                return Err(StoreError::TooLarge {
                    size: record.len(),
                    limit,
                });
            }
        }
        // The authoritative tier decides, on its own version of the record.
        let tier_condition = match condition {
            SaveCondition::IfVersion(wanted) => match authority.store.load(key).await? {
                Some(current) if unframe(&current.bytes).map(|(v, _, _)| v) == Some(wanted) => {
                    Some(SaveCondition::IfVersion(current.version))
                }
                _ => None,
            },
            other => Some(other),
        };
        let outcome = match tier_condition {
            None => SaveOutcome::Conflict,
            Some(condition) => {
                let deadline = Self::tier_deadline(authority, expires_at);
                authority
                    .store
                    .save(key, &bytes, deadline, condition)
                    .await?
            }
        };
        if outcome == SaveOutcome::Conflict {
            // Our view was stale: drop the faster copies so the retry reads fresh.
            for tier in &self.inner.tiers[..authority_index] {
                let _ = tier.store.delete(key).await;
            }
            return Ok(SaveOutcome::Conflict);
        }
        let faster = &self.inner.tiers[..authority_index];
        for tier in faster {
            Self::write_copy(tier, key, &bytes, expires_at).await;
        }
        if !faster.is_empty() {
            self.recheck_copies(authority_index, faster, key, Version(version))
                .await;
        }
        if self.inner.write_behind {
            let inner = self.inner.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let authority = &inner.tiers[authority_index];
                let slowest = inner.tiers.last().expect("tiers");
                // A delete (logout, renewal) or a newer write since makes
                // this copy moot: writing it would bring a revoked session
                // back, or an older one over a newer.
                match Self::recheck(authority, &key).await {
                    Ok(Some((current, _))) if current == Version(version) => {}
                    Ok(_) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "cascade: write-behind could not check the authoritative tier; the slowest tier misses this write");
                        return;
                    }
                }
                let (mut bytes, mut deadline, mut written) = (bytes, expires_at, Version(version));
                // Write, then leave the slowest tier as the authority now is:
                // a delete or write that ran while this copy was on its way
                // may have been overtaken by it. Each fix-up is checked the
                // same way, a few times at most (every later write has a
                // write-behind task of its own).
                for _ in 0..4 {
                    Self::write_copy(slowest, &key, &bytes, deadline).await;
                    match Self::recheck(authority, &key).await {
                        Ok(Some((current, _))) if current == written => return,
                        Ok(Some((current, record))) => {
                            deadline = record.expires_at.unwrap_or(deadline);
                            bytes = record.bytes;
                            written = current;
                        }
                        Ok(None) => {
                            if let Err(e) = slowest.store.delete(&key).await {
                                tracing::error!(error = %e, "cascade: could not take back a write-behind copy of a deleted session");
                            }
                            return;
                        }
                        Err(e) => {
                            // The copy was acknowledged: it stays.
                            tracing::error!(error = %e, "cascade: write-behind could not re-check the authoritative tier after writing");
                            return;
                        }
                    }
                }
            });
        }
        Ok(SaveOutcome::Saved(Version(version)))
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let authority = self.authoritative();
        // The authoritative tier first: a session it no longer has (revoked
        // elsewhere) must not live on through a faster tier's copy.
        if !self.inner.tiers[authority]
            .store
            .touch(key, expires_at)
            .await?
        {
            for tier in &self.inner.tiers {
                let _ = tier.store.delete(key).await;
            }
            return Ok(false);
        }
        for (i, tier) in self.inner.tiers.iter().enumerate() {
            if i == authority {
                continue;
            }
            let result = if tier.max_ttl.is_some() {
                // A capped tier keeps the real deadline in the frame: rewrite
                // its (local, cheap) copy rather than touch it.
                match tier.store.load(key).await {
                    Ok(Some(copy)) => match unframe(&copy.bytes) {
                        Some((version, _, body)) => {
                            let bytes = frame(version.0, expires_at, body);
                            Self::write_copy(tier, key, &bytes, expires_at).await;
                            Ok(true)
                        }
                        None => Ok(false),
                    },
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                }
            } else {
                tier.store.touch(key, expires_at).await
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, tier = i, "cascade tier touch failed");
            }
        }
        Ok(true)
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        // The authoritative tier first: every copy is re-checked against it
        // after it is written. With write-behind, the slowest tier next
        // (copies filled back from it are re-checked against it), then the
        // authoritative tier again (a fill-back from the slowest tier may
        // have landed there meanwhile), then the others.
        let tiers = &self.inner.tiers;
        let authority = self.authoritative();
        let mut order = vec![authority];
        if self.inner.write_behind {
            order.extend([tiers.len() - 1, authority]);
        }
        order.extend((0..authority).rev());
        let mut first_error = None;
        for i in order {
            if let Err(e) = tiers[i].store.delete(key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn max_record_size(&self) -> Option<usize> {
        self.inner.tiers[self.authoritative()]
            .store
            .max_record_size()
            .map(|limit| limit.saturating_sub(FRAME_LEN))
    }

    fn seals_at_rest(&self) -> bool {
        self.inner.tiers.iter().any(|t| t.store.seals_at_rest())
    }

    fn user_index(&self) -> UserIndexSupport<'_> {
        // The index lives in the authoritative tier alone: the cache tiers
        // would only delay an end.
        self.inner.tiers[self.authoritative()].store.user_index()
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// A memory store whose saves take `delay` (a slow remote tier), and
    /// whose loads can be made to fail a number of times.
    #[derive(Debug)]
    struct Slow {
        inner: MemoryStore,
        delay: Duration,
        /// Loads that fail before they start working again.
        failing_loads: std::sync::atomic::AtomicUsize,
    }

    impl Slow {
        fn new(delay: Duration) -> Self {
            Slow {
                inner: MemoryStore::new(),
                delay,
                failing_loads: Default::default(),
            }
        }
    }

    #[async_trait]
    impl Store for Slow {
        fn user_index(&self) -> session_core::UserIndexSupport<'_> {
            session_core::UserIndexSupport::Records(self)
        }
        async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
            let failing = &self.failing_loads;
            if failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Unavailable("flaky".into()));
            }
            self.inner.load(key).await
        }
        async fn save(
            &self,
            key: &StoreKey,
            record: &[u8],
            expires_at: OffsetDateTime,
            condition: SaveCondition,
        ) -> Result<SaveOutcome, StoreError> {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.inner.save(key, record, expires_at, condition).await
        }
        async fn touch(&self, key: &StoreKey, at: OffsetDateTime) -> Result<bool, StoreError> {
            self.inner.touch(key, at).await
        }
        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
    }

    fn later() -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::from_secs(600)
    }

    fn key() -> StoreKey {
        crate::conformance::unique_key("revocation")
    }

    /// Memory, then a slow tier written behind; the slow tier for checks.
    fn write_behind_over_slow_tier(delay: Duration) -> (CascadeStore, Arc<Slow>) {
        let slow = Arc::new(Slow::new(delay));
        // A memory store standing in for a shared one (memcached).
        let shared = Slow::new(Duration::ZERO);
        let cascade = CascadeStore::builder()
            .tier(shared)
            .tier(slow.clone())
            .write_behind(true)
            .build()
            .unwrap();
        (cascade, slow)
    }

    #[tokio::test]
    async fn a_write_behind_copy_on_its_way_during_a_logout_does_not_bring_the_session_back() {
        let (cascade, slow) = write_behind_over_slow_tier(Duration::from_millis(100));
        let key = key();
        cascade
            .save(&key, b"logged in", later(), SaveCondition::IfAbsent)
            .await
            .unwrap();
        // Logout while the slow tier's copy is still on its way.
        cascade.delete(&key).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            slow.inner.load(&key).await.unwrap().is_none(),
            "revoked session written back"
        );
        assert!(cascade.load(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn write_behind_leaves_the_slowest_tier_as_the_authority_is() {
        let (cascade, slow) = write_behind_over_slow_tier(Duration::from_millis(50));
        let key = key();
        let SaveOutcome::Saved(v1) = cascade
            .save(&key, b"one", later(), SaveCondition::IfAbsent)
            .await
            .unwrap()
        else {
            panic!("saved")
        };
        cascade
            .save(&key, b"two", later(), SaveCondition::IfVersion(v1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let copy = slow.inner.load(&key).await.unwrap().expect("copied");
        assert_eq!(unframe(&copy.bytes).unwrap().2, b"two");
    }

    /// Two processes: each with its own memory cache in front of one
    /// shared authoritative store.
    fn two_processes(ttl: Duration) -> (CascadeStore, CascadeStore) {
        let shared = Arc::new(MemoryStore::new());
        let process = || {
            CascadeStore::builder()
                .cache_tier(MemoryStore::new(), ttl)
                .tier(shared.clone())
                .build()
                .unwrap()
        };
        (process(), process())
    }

    #[tokio::test]
    async fn a_touch_does_not_extend_a_session_the_authority_no_longer_has() {
        let (a, b) = two_processes(Duration::from_secs(60));
        let key = key();
        a.save(&key, b"x", later(), SaveCondition::IfAbsent)
            .await
            .unwrap();
        assert!(b.load(&key).await.unwrap().is_some());
        b.delete(&key).await.unwrap(); // logout on B
        assert!(!a.touch(&key, later()).await.unwrap());
        assert!(
            a.load(&key).await.unwrap().is_none(),
            "A's cached copy dropped"
        );
    }

    #[tokio::test]
    async fn a_revoked_session_lives_on_in_another_process_cache_at_most_its_ttl() {
        let ttl = Duration::from_millis(300);
        let (a, b) = two_processes(ttl);
        let key = key();
        a.save(&key, b"x", later(), SaveCondition::IfAbsent)
            .await
            .unwrap();
        assert!(a.load(&key).await.unwrap().is_some(), "cached on A");
        b.delete(&key).await.unwrap();
        // Within the TTL, A may still read its copy...
        assert!(
            a.load(&key).await.unwrap().is_some(),
            "documented stale read"
        );
        // ...and past it, the copy is gone.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert!(a.load(&key).await.unwrap().is_none());

        // A write through a stale copy fails: the authority decides.
        let key = super::tests::key();
        a.save(&key, b"x", later(), SaveCondition::IfAbsent)
            .await
            .unwrap();
        let loaded = a.load(&key).await.unwrap().expect("cached on A");
        b.delete(&key).await.unwrap();
        assert_eq!(
            a.save(
                &key,
                b"y",
                later(),
                SaveCondition::IfVersion(loaded.version)
            )
            .await
            .unwrap(),
            SaveOutcome::Conflict
        );
        assert!(
            a.load(&key).await.unwrap().is_none(),
            "the conflict dropped the stale copy"
        );
    }

    /// A read of `key` whose copies are on their way while a delete (a
    /// logout) runs.
    async fn read_racing_a_delete(cascade: &CascadeStore, key: &StoreKey) {
        let read = {
            let (cascade, key) = (cascade.clone(), key.clone());
            tokio::spawn(async move { cascade.load(&key).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        cascade.delete(key).await.unwrap();
        read.await.unwrap();
    }

    /// Three tiers: a shared cache (its saves slowed by `delay`, so a copy
    /// is on its way while something else happens) in front of the
    /// authoritative tier; both handed back for checks.
    fn slow_copies(delay: Duration) -> (CascadeStore, Arc<Slow>, Arc<MemoryStore>) {
        let copies = Arc::new(Slow::new(delay));
        let authority = Arc::new(MemoryStore::new());
        let cascade = CascadeStore::builder()
            .tier(copies.clone())
            .tier(authority.clone())
            .build()
            .unwrap();
        (cascade, copies, authority)
    }

    /// A read that found the session in the authoritative tier copies it
    /// into the faster one; a logout that ran meanwhile must not leave that
    /// copy readable.
    #[tokio::test]
    async fn a_fill_back_on_its_way_during_a_logout_is_taken_back() {
        let (cascade, copies, authority) = slow_copies(Duration::from_millis(60));
        let key = key();
        let bytes = frame(7, later(), b"logged in");
        authority
            .save(&key, &bytes, later(), SaveCondition::Always)
            .await
            .unwrap();
        read_racing_a_delete(&cascade, &key).await;
        assert!(
            copies.inner.load(&key).await.unwrap().is_none(),
            "a copy outlived its authority's record"
        );
        assert!(cascade.load(&key).await.unwrap().is_none());
    }

    /// The copies a save writes after the authoritative tier took it are
    /// taken back when a logout reached the authoritative tier meanwhile.
    #[tokio::test]
    async fn the_copies_of_a_save_on_their_way_during_a_logout_are_taken_back() {
        let (cascade, copies, _) = slow_copies(Duration::from_millis(60));
        let key = key();
        let save = {
            let (cascade, key) = (cascade.clone(), key.clone());
            tokio::spawn(async move {
                cascade
                    .save(&key, b"logged in", later(), SaveCondition::IfAbsent)
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        cascade.delete(&key).await.unwrap();
        save.await.unwrap();
        assert!(
            copies.inner.load(&key).await.unwrap().is_none(),
            "a copy outlived its authority's record"
        );
    }

    #[test]
    fn write_behind_behind_a_private_tier_is_refused() {
        for first in [
            CascadeStore::builder().tier(MemoryStore::new()),
            CascadeStore::builder().cache_tier(MemoryStore::new(), Duration::from_secs(1)),
        ] {
            let refused = first
                .tier(MemoryStore::new())
                .write_behind(true)
                .build()
                .unwrap_err();
            assert!(
                matches!(refused, CascadeConfigError::WriteBehindNeedsSharedAuthority),
                "{refused}"
            );
        }
    }

    /// A write-behind whose first re-check of the authoritative tier fails
    /// retries it: the acknowledged write reaches the slowest tier.
    #[tokio::test]
    async fn a_failed_recheck_is_retried_not_taken_for_a_delete() {
        let authority = Arc::new(Slow::new(Duration::ZERO));
        let slowest = Arc::new(MemoryStore::new());
        let cascade = CascadeStore::builder()
            .tier(authority.clone())
            .tier(slowest.clone())
            .write_behind(true)
            .build()
            .unwrap();
        let key = key();
        authority.failing_loads.store(1, Ordering::SeqCst);
        cascade
            .save(&key, b"acknowledged", later(), SaveCondition::Always)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let copy = slowest.load(&key).await.unwrap().expect("written behind");
        assert_eq!(unframe(&copy.bytes).unwrap().2, b"acknowledged");
    }

    /// With write-behind, a read that finds the session only in the slowest
    /// tier fills the authoritative one; a logout during that fill must not
    /// leave the session alive there.
    #[tokio::test]
    async fn a_fill_back_from_the_slowest_tier_during_a_logout_is_taken_back() {
        let authority = Arc::new(Slow::new(Duration::from_millis(60)));
        let slowest = Arc::new(MemoryStore::new());
        let cascade = CascadeStore::builder()
            .tier(authority.clone())
            .tier(slowest.clone())
            .write_behind(true)
            .build()
            .unwrap();
        let key = key();
        slowest
            .save(
                &key,
                &frame(7, later(), b"x"),
                later(),
                SaveCondition::Always,
            )
            .await
            .unwrap();
        read_racing_a_delete(&cascade, &key).await;
        assert!(
            authority.inner.load(&key).await.unwrap().is_none(),
            "the logged-out session lives on in the authoritative tier"
        );
        assert!(cascade.load(&key).await.unwrap().is_none());
    }
}
