//! What the engine reports about itself: a span per store operation
//! (operation, store, latency, result; never a key or a token), and with the
//! `metrics` feature, counters and histograms through the `metrics` facade,
//! for whichever recorder the application installs (Prometheus, StatsD...):
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `session_loads_total` | counter | `result`: `loaded`, `missing` (a valid token whose session is gone or expired), `refused` (a token that did not open), `store_error` |
//! | `session_new_total` | counter | |
//! | `session_refused_tokens_total` | counter | `reason` |
//! | `session_outcomes_total` | counter | `outcome`: `save`, `touch`, `renew`, `purge`, `vanished` |
//! | `session_user_events_total` | counter | `event`: `sign_in`, `sign_out`, `end`, `end_all`, `evicted` (past `max_sessions_per_user`), `revoked` (a signed-in session refused because its entry is gone), `ended_in_flight` |
//! | `session_cas_conflicts_total` | counter | |
//! | `session_cas_exhausted_total` | counter | (saves given up after the compare-and-swap budget: 503) |
//! | `session_store_errors_total` | counter | `op`, `store`, `kind`: `unavailable`, `timeout`, `too_large`, `contended`, `backend` |
//! | `session_store_seconds` | histogram | `op`, `store` |
//!
//! Without the feature the counting functions are empty and compile away.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::Instrument as _;

use crate::error::StoreError;
use crate::id::StoreKey;
use crate::store::{IntoStore, SaveCondition, SaveOutcome, Store, StoredRecord};

/// Runs one store operation inside a `store` span, timing it and counting
/// its errors.
async fn store_call<T>(
    store: &dyn Store,
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    store_call_of(store.kind(), op, call).await
}

/// [`store_call`] for a store known by its kind (a user index).
pub(crate) async fn store_call_of<T>(
    kind: &'static str,
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let span = tracing::debug_span!(
        "store",
        op,
        store = kind,
        latency_us = tracing::field::Empty,
        result = tracing::field::Empty
    );
    let timed = cfg!(feature = "metrics") || !span.is_disabled();
    let started = timed.then(Instant::now);
    let result = call.instrument(span.clone()).await;
    if let Some(started) = started {
        let elapsed = started.elapsed();
        span.record("latency_us", elapsed.as_micros() as u64);
        span.record(
            "result",
            match &result {
                Ok(_) => "ok",
                Err(e) => error_kind(e),
            },
        );
        #[cfg(feature = "metrics")]
        {
            static SECONDS: recorded::Keys = recorded::Keys::new("session_store_seconds");
            recorded::histogram(&SECONDS, &[("op", op), ("store", kind)])
                .record(elapsed.as_secs_f64());
            if let Err(e) = &result {
                metrics::counter!("session_store_errors_total", "op" => op, "store" => kind, "kind" => error_kind(e))
                    .increment(1);
            }
        }
    }
    result
}

fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Timeout(_) => "timeout",
        StoreError::TooLarge { .. } => "too_large",
        StoreError::Contended { .. } => "contended",
        _ => "backend",
    }
}

/// A load's result (`session_loads_total`).
pub(crate) fn load(result: &'static str) {
    #[cfg(feature = "metrics")]
    {
        static LOADS: recorded::Keys = recorded::Keys::new("session_loads_total");
        recorded::counter(&LOADS, &[("result", result)]).increment(1);
    }
    let _ = result;
}

/// A refused token (`session_refused_tokens_total`).
pub(crate) fn refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_refused_tokens_total", "reason" => reason).increment(1);
    let _ = reason;
}

/// A session stored for the first time (`session_new_total`).
pub(crate) fn new_session() {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_new_total").increment(1);
}

/// What a request did with its session (`session_outcomes_total`).
pub(crate) fn outcome(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        static OUTCOMES: recorded::Keys = recorded::Keys::new("session_outcomes_total");
        recorded::counter(&OUTCOMES, &[("outcome", outcome)]).increment(1);
    }
    let _ = outcome;
}

/// A sign-in, sign-out, end, end-all or limit eviction of a user's sessions
/// (`session_user_events_total`); never a user id or handle.
pub(crate) fn user_event(event: &'static str, count: usize) {
    #[cfg(feature = "metrics")]
    {
        static EVENTS: recorded::Keys = recorded::Keys::new("session_user_events_total");
        recorded::counter(&EVENTS, &[("event", event)]).increment(count as u64);
    }
    tracing::debug!(event, count, "user sessions");
}

/// A compare-and-swap that found the record changed.
pub(crate) fn cas_conflict() {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_cas_conflicts_total").increment(1);
}

/// A save given up after the compare-and-swap budget.
pub(crate) fn cas_exhausted() {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_cas_exhausted_total").increment(1);
}

/// Metric keys made once per label set and kept for the process's life.
///
/// The `metrics` macros build and hash a key, and allocate its labels, on
/// every call whose label values are not literals; our values are
/// `&'static str` from small sets (operations × store kinds, load results,
/// outcomes), so each call site keeps the few keys it has seen and a
/// sample costs a read lock and a short scan.
#[cfg(feature = "metrics")]
mod recorded {
    use std::sync::RwLock;

    use metrics::{Key, Label, Level, Metadata};

    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// The keys of one metric seen so far, one per set of label values.
    pub(super) struct Keys {
        name: &'static str,
        seen: RwLock<Vec<&'static Key>>,
    }

    impl Keys {
        pub(super) const fn new(name: &'static str) -> Self {
            Keys {
                name,
                seen: RwLock::new(Vec::new()),
            }
        }

        pub(super) fn get(&self, labels: &[(&'static str, &'static str)]) -> &'static Key {
            // Values are `&'static str` literals: the same pointer is the
            // usual match, text equality the rule.
            let same = |key: &&'static Key| -> bool {
                key.labels().len() == labels.len()
                    && key.labels().zip(labels).all(|(held, &(_, value))| {
                        std::ptr::eq(held.value(), value) || held.value() == value
                    })
            };
            let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
            if let Some(key) = seen.iter().copied().find(same) {
                return key;
            }
            drop(seen);
            let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
            if let Some(key) = seen.iter().copied().find(same) {
                return key;
            }
            let labels: Vec<Label> = labels
                .iter()
                .map(|&(name, value)| Label::from_static_parts(name, value))
                .collect();
            let key: &'static Key = Box::leak(Box::new(Key::from_static_parts(
                self.name,
                Box::leak(labels.into_boxed_slice()),
            )));
            seen.push(key);
            key
        }
    }

    pub(super) fn counter(
        keys: &Keys,
        labels: &[(&'static str, &'static str)],
    ) -> metrics::Counter {
        let key = keys.get(labels);
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA))
    }

    pub(super) fn histogram(
        keys: &Keys,
        labels: &[(&'static str, &'static str)],
    ) -> metrics::Histogram {
        let key = keys.get(labels);
        metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
    }
}

/// A store whose calls go through [`store_call`]: the engine's every store
/// operation is made through this, so each has its span and metrics, and
/// the rules the engine enforces for every store (the record size limit)
/// live here once.
#[derive(Clone, Copy)]
pub(crate) struct Observing<'a>(pub(crate) &'a dyn Store);

impl Observing<'_> {
    /// [`Store::load`].
    pub(crate) async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        store_call(self.0, "load", self.0.load(key)).await
    }

    /// [`Store::load`], with a retired record (see
    /// [`crate::save`]: the empty record a renew or a key-rotation move
    /// leaves under the key it left) as absent.
    pub(crate) async fn load_live(
        &self,
        key: &StoreKey,
    ) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.load(key).await?.filter(|r| !r.bytes.is_empty()))
    }

    /// [`Store::save`]; a record over the store's
    /// [`max_record_size`](Store::max_record_size) is refused here, before
    /// the store is called (memcached, for one, deletes the old value when
    /// an oversized `set` fails), so the stored session stays as it was.
    pub(crate) async fn save(
        &self,
        key: &StoreKey,
        bytes: &[u8],
        expires_at: time::OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        let store = self.0;
        let call = async {
            if let Some(limit) = store.max_record_size() {
                StoreError::check_size(bytes.len(), limit)?;
            }
            store.save(key, bytes, expires_at, condition).await
        };
        store_call(store, "save", call).await
    }

    /// [`Store::touch`].
    pub(crate) async fn touch(
        &self,
        key: &StoreKey,
        expires_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        store_call(self.0, "touch", self.0.touch(key, expires_at)).await
    }

    /// [`Store::delete`].
    pub(crate) async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        store_call(self.0, "delete", self.0.delete(key)).await
    }
}

/// A store whose every operation runs in a `store` span, timed and
/// counted, as the engine's own calls do: for stores made of stores (the cascade's tiers),
/// so each inner operation has its span and metrics inside the outer one.
#[derive(Debug)]
pub struct Observed(Arc<dyn Store>);

impl Observed {
    /// `store`, observed.
    pub fn wrap(store: impl IntoStore) -> Arc<dyn Store> {
        Arc::new(Observed(store.into_store()))
    }
}

#[async_trait]
impl Store for Observed {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        Observing(&*self.0).load(key).await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: time::OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        Observing(&*self.0)
            .save(key, record, expires_at, condition)
            .await
    }

    async fn touch(
        &self,
        key: &StoreKey,
        expires_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Observing(&*self.0).touch(key, expires_at).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        Observing(&*self.0).delete(key).await
    }

    fn max_record_size(&self) -> Option<usize> {
        self.0.max_record_size()
    }

    fn seals_at_rest(&self) -> bool {
        self.0.seals_at_rest()
    }

    fn user_index(&self) -> crate::UserIndexSupport<'_> {
        self.0.user_index()
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::recorded::Keys;

    #[test]
    fn each_set_of_label_values_has_one_key() {
        static KEYS: Keys = Keys::new("session_test_total");
        let load = KEYS.get(&[("op", "load"), ("store", "memory")]);
        let again = KEYS.get(&[("op", "load"), ("store", "memory")]);
        let save = KEYS.get(&[("op", "save"), ("store", "memory")]);
        assert!(std::ptr::eq(load, again));
        assert!(!std::ptr::eq(load, save));
        assert_eq!(save.name(), "session_test_total");
        let labels: Vec<_> = save.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels, [("op", "save"), ("store", "memory")]);
    }
}
