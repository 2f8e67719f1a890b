//! A custom store in about sixty lines, checked against the conformance
//! suite: `cargo run -p session-backends --example custom_store`.
//!
//! The walkthrough is `docs/custom-store.md`; this file is the code it
//! describes, and `tests/custom_store.rs` runs the suite against it as
//! separate tests in `cargo xtask ci`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord, Version,
};

/// Bytes, version and deadline of one session.
type Entry = (Vec<u8>, u64, OffsetDateTime);

/// Sessions in a map behind one lock.
#[derive(Debug, Default)]
pub struct MapStore {
    records: Mutex<HashMap<StoreKey, Entry>>,
    versions: AtomicU64,
}

/// Records above this are refused with `StoreError::TooLarge`.
const MAX_RECORD: usize = 64 * 1024;

impl MapStore {
    fn records(&self) -> MutexGuard<'_, HashMap<StoreKey, Entry>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MapStore {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let records = self.records();
        // An expired record is absent, whether or not it was removed yet.
        let live = records.get(key).filter(|(_, _, expires)| *expires > now);
        Ok(live.map(|(bytes, version, expires)| {
            StoredRecord::new(bytes.clone(), Version(*version), Some(*expires))
        }))
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        // Refuse before touching anything: the old record must survive.
        StoreError::check_size(record.len(), MAX_RECORD)?;
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        let current = records
            .get(key)
            .filter(|(_, _, expires)| *expires > now)
            .map(|(_, version, _)| *version);
        let allowed = match condition {
            SaveCondition::IfAbsent => current.is_none(),
            SaveCondition::IfVersion(Version(v)) => current == Some(v),
            _ => true,
        };
        if !allowed {
            return Ok(SaveOutcome::Conflict);
        }
        // Versions only need to differ from every earlier one of the key.
        let version = 1 + self.versions.fetch_add(1, Ordering::Relaxed);
        records.insert(key.clone(), (record.to_vec(), version, expires_at));
        Ok(SaveOutcome::Saved(Version(version)))
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        match records
            .get_mut(key)
            .filter(|(_, _, expires)| *expires > now)
        {
            Some(entry) => {
                entry.2 = expires_at;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.records().remove(key);
        Ok(())
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(MAX_RECORD)
    }
}

#[tokio::main]
async fn main() {
    let store: Arc<dyn Store> = Arc::new(MapStore::default());
    session_backends::conformance::run_all(store).await;
    println!("MapStore passes every conformance rule");
}
