//! The store conformance suite against the file store.

use std::sync::Arc;

use session_backends::FileStore;

fn dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "session-file-conformance-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

session_backends::store_conformance_tests!(
    file,
    Arc::new(
        FileStore::builder(dir())
            .max_record_size(64 * 1024)
            .build()
            .unwrap()
    )
);
