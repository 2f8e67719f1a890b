//! Session stores for `session-core`, and the conformance suite every
//! store passes.
//!
//! - [`MemoryStore`]: the embedded default; sharded, bounded, expiring
//!   entries swept in the background.
//! - [`MemcacheStore`]: memcached, pooled, sharded over several servers by
//!   consistent hashing, compare-and-swap through the meta protocol.
//! - [`FileStore`]: one file per session, written atomically, swept.
//! - [`CascadeStore`]: tiers read fastest first, written through.
//! - [`conformance`]: the rules of the [`Store`](session_core::Store) trait as
//!   async functions, and [`store_conformance_tests!`] to run them all as
//!   separate tests against any store.
//!
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cascade;
pub mod conformance;
mod file;
mod memcache;
mod memory;
mod ring;
mod sweeper;

pub use cascade::{CascadeConfigError, CascadeStore, CascadeStoreBuilder};
pub use file::{FileStore, FileStoreBuilder};
pub use memcache::{
    MemcacheConfigError, MemcacheStore, MemcacheStoreBuilder, DEFAULT_MAX_ITEM_SIZE,
    MAX_RELATIVE_TTL,
};
pub use memory::{MemoryStore, MemoryStoreBuilder};
