//! Session stores for `session-core`, and the conformance suite every
//! store passes.
//!
//! - [`MemoryStore`]: the embedded default; sharded, bounded, expiring
//!   entries swept in the background.
//! - [`conformance`]: the rules of the [`Store`](session_core::Store) trait as
//!   async functions, and [`store_conformance_tests!`] to run them all as
//!   separate tests against any store.
//!
//! The memcached, file and cascade stores are planned (see the project's
//! issues) and not part of this crate yet.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conformance;
mod memory;

pub use memory::{MemoryStore, MemoryStoreBuilder};
