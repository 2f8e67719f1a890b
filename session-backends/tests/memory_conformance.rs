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

session_backends::store_conformance_tests!(
    cascade_of_memory,
    Arc::new(
        session_backends::CascadeStore::builder()
            .cache_tier(
                Arc::new(MemoryStore::new()),
                std::time::Duration::from_secs(30)
            )
            .tier(Arc::new(
                MemoryStore::builder().max_record_size(8192).build()
            ))
            .build()
            .unwrap()
    )
);
