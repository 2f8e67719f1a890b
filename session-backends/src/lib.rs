//! Session stores for `session-core`, and the conformance suite every
//! store passes. Each store is behind a feature of its name; `memory` is
//! on by default, `full` turns on all of them.
//!
//! - `MemoryStore` (`memory`): the embedded default; sharded, bounded, expiring
//!   entries swept in the background.
//! - `MemcacheStore` (`memcache`): memcached over multiplexed connections,
//!   sharded over several servers by consistent hashing, compare-and-swap
//!   through the meta protocol.
//! - `RedisStore` (`redis`) and `PostgresStore` (`postgres`).
//! - `FileStore` (`file`): one file per session, written atomically, swept.
//! - `CascadeStore` (`cascade`): tiers read fastest first, written through.
//! - [`conformance`]: the rules of the [`Store`](session_core::Store) trait as
//!   async functions, and [`store_conformance_tests!`] to run them all as
//!   separate tests against any store.
//!
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "cascade")]
mod cascade;
pub mod conformance;
#[cfg(feature = "file")]
mod file;
#[cfg(feature = "memcache")]
pub(crate) mod memcache;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod sweeper;
#[cfg(feature = "redis")]
mod thread_slots;
#[cfg(any(feature = "file", feature = "redis", feature = "postgres"))]
mod versions;

#[cfg(feature = "cascade")]
pub use cascade::{CascadeConfigError, CascadeStore, CascadeStoreBuilder};
#[cfg(feature = "file")]
pub use file::{FileStore, FileStoreBuilder};
#[cfg(feature = "memcache")]
pub use memcache::{
    MemcacheConfigError, MemcacheStore, MemcacheStoreBuilder, DEFAULT_MAX_MEMCACHE_RECORD,
    MAX_ABSOLUTE_TTL, MAX_RELATIVE_TTL,
};
#[cfg(feature = "memory")]
pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresConfigError, PostgresStore, PostgresStoreBuilder, DEFAULT_MAX_POSTGRES_RECORD,
};
#[cfg(feature = "redis")]
pub use redis::{RedisConfigError, RedisStore, RedisStoreBuilder, DEFAULT_MAX_REDIS_RECORD};

/// Entry points for fuzz targets and benchmarks. Not a stable API.
#[cfg(feature = "memcache")]
#[doc(hidden)]
pub mod internals {
    /// Parses a stream of memcached meta replies as the connection task
    /// does; returns how many whole replies it held before it ended, was
    /// incomplete, or was refused. Panics if the parser claims more bytes
    /// than it was given or makes no progress.
    pub fn parse_memcached_replies(mut buf: &[u8]) -> usize {
        use crate::memcache::proto::{parse, Parsed};
        let mut replies = 0;
        loop {
            let used = match parse(buf) {
                Ok(Parsed::Reply(_, used)) | Ok(Parsed::ServerError(_, used)) => used,
                Ok(Parsed::Incomplete) | Err(_) => return replies,
            };
            assert!(
                used > 0 && used <= buf.len(),
                "parser claimed {used} of {} bytes",
                buf.len()
            );
            buf = &buf[used..];
            replies += 1;
        }
    }
}
