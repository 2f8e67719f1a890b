//! What adapters (and stores made of stores) use, kept out of a handler's
//! way: the macros that give the three adapters the same handles,
//! re-exports and setup, the request an adapter finishes after the
//! handler, what finishing reports, and the observed-store wrapper.

pub use crate::manager::PendingRequest;
pub use crate::observe::Observed;
pub use crate::save::{Finished, Outcome};

use crate::{SessionConfig, SessionManager};

/// The manager of one default configuration (the adapters' `cookie`,
/// `server` and `memory` shortcuts).
///
/// # Panics
///
/// Never for `SessionConfig::cookie` or `SessionConfig::server` with no
/// setter applied: their defaults are valid.
pub fn default_manager(config: SessionConfig) -> SessionManager {
    SessionManager::new(config).expect("the default configurations are valid")
}

/// Defines the handle types every adapter exposes, the same way: `Session`
/// (the primary session; derefs to [`Session`]), `Sessions` (all of them;
/// derefs to [`RequestSessions`]) and `SessionError` (a [`SessionError`]
/// that the adapter turns into a response). Adapters add their framework's
/// extractor and response traits; the orphan rule is why each crate needs
/// types of its own.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_handles {
    () => {
        /// The request's primary session. Derefs to [`session_core::Session`]
        /// for every accessor.
        #[derive(Clone, Debug)]
        pub struct Session($crate::Session);

        impl Session {
            /// The core handle.
            pub fn into_inner(self) -> $crate::Session {
                self.0
            }
        }

        impl ::std::ops::Deref for Session {
            type Target = $crate::Session;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        /// All of the request's sessions (for several named sessions). Derefs
        /// to [`session_core::RequestSessions`].
        #[derive(Clone, Debug)]
        pub struct Sessions($crate::RequestSessions);

        impl ::std::ops::Deref for Sessions {
            type Target = $crate::RequestSessions;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        /// A session error as a response (503 when the store is out of
        /// reach, 500 otherwise, with a JSON body that reveals nothing
        /// secret), so handlers can use `?` on session calls.
        #[derive(Debug)]
        pub struct SessionError($crate::SessionError);

        impl SessionError {
            /// The core's error: what failed, and the answer it is given
            /// ([`http_status`](session_core::SessionError::http_status)).
            pub fn get_ref(&self) -> &$crate::SessionError {
                &self.0
            }

            /// The core's error, by value.
            pub fn into_inner(self) -> $crate::SessionError {
                self.0
            }
        }

        impl ::std::convert::From<$crate::SessionError> for SessionError {
            fn from(e: $crate::SessionError) -> Self {
                SessionError(e)
            }
        }

        impl ::std::fmt::Display for SessionError {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ::std::error::Error for SessionError {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
    };
}

/// Re-exports every adapter makes, so an application depends on its
/// framework's adapter alone: what handlers, setup and custom stores use
/// from the core, and each store its features turn on (`memory` by
/// default; `memcache`, `file`, `cascade`, `redis`, `redis-tls`,
/// `postgres`) from the stores' crate, which the adapter names
/// (`adapter_exports!(session_backends)`): this crate names no crate above
/// it. The `#[cfg(feature = ...)]` attributes are read in the adapter,
/// where the macro expands.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_exports {
    ($stores:ident) => {
        pub use $crate::{
            async_trait, time, Codec, CodecError, ConfigError, CookieAttributes, IntoStore,
            KeyError, KeyRing, Lifetime, RequestSessions, SameSite, SaveCondition, SaveOutcome,
            SealMode, SessionConfig, SessionKey, SessionManager, Storage, Store, StoreError,
            StoreKey, StoredRecord, Transport, Version,
        };

        /// The stores this crate's features turn on.
        pub mod stores {
            #[cfg(feature = "cascade")]
            pub use ::$stores::{CascadeConfigError, CascadeStore, CascadeStoreBuilder};
            #[cfg(feature = "file")]
            pub use ::$stores::{FileStore, FileStoreBuilder};
            #[cfg(feature = "memcache")]
            pub use ::$stores::{MemcacheConfigError, MemcacheStore, MemcacheStoreBuilder};
            #[cfg(feature = "memory")]
            pub use ::$stores::{MemoryStore, MemoryStoreBuilder};
            #[cfg(feature = "postgres")]
            pub use ::$stores::{PostgresConfigError, PostgresStore, PostgresStoreBuilder};
            #[cfg(feature = "redis")]
            pub use ::$stores::{RedisConfigError, RedisStore, RedisStoreBuilder};
        }
        #[cfg(feature = "memory")]
        pub use stores::MemoryStore;
    };
}

/// The setup every adapter's entry type (`SessionLayer`,
/// `SessionMiddleware`, `SessionFairing`: a struct with one field,
/// `manager`) offers, the same way: `new(manager)`, the shortcuts
/// `cookie(keys)`, `server(store, keys)` and (with the adapter's `memory`
/// feature) `memory(keys)`, and `From<SessionManager>`.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_setup {
    ($ty:ident, $what:literal, $stores:ident) => {
        impl $ty {
            #[doc = concat!("A ", $what, " serving the sessions of `manager` (any configuration,")]
            /// several named sessions); the shortcuts below cover one session
            /// with the default settings.
            pub fn new(manager: $crate::SessionManager) -> Self {
                $ty { manager }
            }

            /// One sealed-cookie session, `sid`, with the default settings
            /// ([`SessionConfig::cookie`](crate::SessionConfig::cookie)).
            pub fn cookie(keys: $crate::KeyRing) -> Self {
                Self::new($crate::adapter::default_manager(
                    $crate::SessionConfig::cookie(keys),
                ))
            }

            /// One session, `sid`, kept in `store` (by value or in an `Arc`),
            /// with the default settings
            /// ([`SessionConfig::server`](crate::SessionConfig::server)).
            pub fn server(store: impl $crate::IntoStore, keys: $crate::KeyRing) -> Self {
                Self::new($crate::adapter::default_manager(
                    $crate::SessionConfig::server(store, keys),
                ))
            }

            /// One session, `sid`, in a new
            /// [`MemoryStore`](crate::MemoryStore) with its default limits:
            /// sessions end when the process does.
            #[cfg(feature = "memory")]
            pub fn memory(keys: $crate::KeyRing) -> Self {
                Self::server(::$stores::MemoryStore::new(), keys)
            }
        }

        impl ::std::convert::From<$crate::SessionManager> for $ty {
            fn from(manager: $crate::SessionManager) -> Self {
                Self::new(manager)
            }
        }
    };
}
