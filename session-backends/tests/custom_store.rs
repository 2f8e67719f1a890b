//! The custom store of `examples/custom_store.rs` (the one
//! `docs/custom-store.md` walks through) against the conformance suite, one
//! test per rule.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/custom_store.rs"]
mod custom_store;

session_backends::store_conformance_tests!(map_store, {
    std::sync::Arc::new(super::custom_store::MapStore::default())
});
