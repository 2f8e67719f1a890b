//! The store conformance suite against the memory store.

use std::sync::Arc;

use session_backends::MemoryStore;

session_backends::store_conformance_tests!(memory, Arc::new(MemoryStore::new()));

session_backends::store_conformance_tests!(
    memory_small,
    Arc::new(
        MemoryStore::builder()
            .shards(1)
            .max_record_size(4096)
            .build()
    )
);
