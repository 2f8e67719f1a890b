//! Framework-agnostic HTTP sessions.
//!
//! `session-core` holds everything a session library does except speaking a
//! web framework's types or a store's protocol:
//!
//! - typed values ([`Session::get`], [`Session::insert`], typed
//!   [`SessionKey`]s), flashes, constant attributes;
//! - [`Codec`]s (CBOR, JSON) that refuse what they cannot keep exactly;
//! - sealed tokens, private (AES-256-GCM) or signed (HMAC-SHA256), with a
//!   rotating [`KeyRing`];
//! - lifetimes: browser-session or persistent, idle and absolute timeouts,
//!   rolling expiry by touch;
//! - the [`Store`] trait with compare-and-swap saves, and the engine that
//!   merges concurrent requests' changes;
//! - the per-request engine ([`SessionManager::start`], then
//!   `adapter::Finish::finish` after the handler) that the adapters for
//!   actix-web, Rocket and axum call around the handler; a handler never
//!   sees `finish`.
//!
//! ```
//! use session_core::adapter::Finish as _;
//! use session_core::{KeyRing, SessionConfig, SessionKey, SessionManager};
//!
//! const COUNTER: SessionKey<u64> = SessionKey::new("n");
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::new(SessionConfig::cookie(KeyRing::generate()?))?;
//!
//! // First request: no cookie.
//! let request = manager.start([]);
//! let session = request.primary();
//! let n = session.get(&COUNTER).await?.unwrap_or(0);
//! session.insert(&COUNTER, &(n + 1)).await?;
//! let headers = request.finish().await?;
//! let set_cookie = headers[0].value();
//!
//! // Second request sends the cookie back.
//! let cookie = set_cookie.split(';').next().unwrap();
//! let request = manager.start([("cookie", cookie.as_bytes())]);
//! assert_eq!(request.primary().get(&COUNTER).await?, Some(1));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod config;
mod engine;
mod error;
mod id;
mod keys;
mod lanes;
mod load;
mod observe;
mod save;
mod seal;
mod session;
mod state;
mod store;
mod transport;

pub use codec::Codec;
pub use config::{SameSite, SessionConfig, Storage, Transport, BROWSER_COOKIE_LIMIT};
pub use engine::{RequestSessions, SessionManager};
pub use error::{CodecError, ConfigError, KeyError, SessionError, StoreError};
pub use id::StoreKey;
pub use keys::{KeyRing, MIN_SECRET_LEN};
pub use save::{Finished, Outcome, CAS_BUDGET};
pub use seal::SealMode;
pub use session::{Key, Session, SessionKey};
pub use store::{IntoStore, SaveCondition, SaveOutcome, Store, StoredRecord, Version};
pub use transport::ResponseHeader;

/// Re-exported so stores and adapters use the same version.
pub use async_trait::async_trait;
pub use time;

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
        pub struct SessionError(pub $crate::SessionError);

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
/// framework's adapter alone: what handlers and setup use from the core,
/// the core itself as `session_core`, and each store its features turn on
/// (`memory` by default; `memcache`, `file`, `cascade`, `redis`,
/// `redis-tls`, `postgres`). The `#[cfg(feature = ...)]` attributes are read
/// in the adapter, where the macro expands.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_exports {
    () => {
        pub use ::session_core;
        pub use ::session_core::{
            Codec, CodecError, ConfigError, IntoStore, KeyError, KeyRing, SameSite, SealMode,
            SessionConfig, SessionKey, SessionManager, Storage, Store, StoreError, Transport,
        };

        /// The stores this crate's features turn on, from `session-backends`
        /// (also reachable as [`session_backends`](::session_backends)).
        pub mod stores {
            #[cfg(feature = "cascade")]
            pub use ::session_backends::{CascadeConfigError, CascadeStore, CascadeStoreBuilder};
            #[cfg(feature = "file")]
            pub use ::session_backends::{FileStore, FileStoreBuilder};
            #[cfg(feature = "memcache")]
            pub use ::session_backends::{
                MemcacheConfigError, MemcacheStore, MemcacheStoreBuilder,
            };
            #[cfg(feature = "memory")]
            pub use ::session_backends::{MemoryStore, MemoryStoreBuilder};
            #[cfg(feature = "postgres")]
            pub use ::session_backends::{
                PostgresConfigError, PostgresStore, PostgresStoreBuilder,
            };
            #[cfg(feature = "redis")]
            pub use ::session_backends::{RedisConfigError, RedisStore, RedisStoreBuilder};
        }
        pub use ::session_backends;
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
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("A ", $what, " serving the sessions of `manager` (any configuration,")]
            /// several named sessions); the shortcuts below cover one session
            /// with the default settings.
            pub fn new(manager: $crate::SessionManager) -> Self {
                $ty { manager }
            }

            /// One sealed-cookie session, `sid`, with the default settings
            /// ([`SessionManager::cookie`](crate::SessionManager::cookie)).
            pub fn cookie(keys: $crate::KeyRing) -> Self {
                Self::new($crate::SessionManager::cookie(keys))
            }

            /// One session, `sid`, kept in `store` (by value or in an `Arc`),
            /// with the default settings
            /// ([`SessionManager::server`](crate::SessionManager::server)).
            pub fn server(store: impl $crate::IntoStore, keys: $crate::KeyRing) -> Self {
                Self::new($crate::SessionManager::server(store, keys))
            }

            /// One session, `sid`, in a new
            /// [`MemoryStore`](crate::MemoryStore) with its default limits:
            /// sessions end when the process does.
            #[cfg(feature = "memory")]
            pub fn memory(keys: $crate::KeyRing) -> Self {
                Self::server(::session_backends::MemoryStore::new(), keys)
            }
        }

        impl ::std::convert::From<$crate::SessionManager> for $ty {
            fn from(manager: $crate::SessionManager) -> Self {
                Self::new(manager)
            }
        }
    };
}

/// What adapters (and stores made of stores) call, kept out of a handler's way: the
/// handles' `Deref` does not lead here, and `finish` resolves only where
/// [`adapter::Finish`] is imported.
#[doc(hidden)]
pub mod adapter {
    use std::future::Future;

    use crate::{Finished, RequestSessions, ResponseHeader, Session, SessionError};

    pub use crate::observe::Observed;

    /// Ends what a request did with its sessions, after the handler.
    pub trait Finish {
        /// What the adapter gets back.
        type Output;

        /// Decides and performs what the request does with the session(s):
        /// save, touch, renew, purge or nothing; call once, after the
        /// handler (a second call does nothing). For [`RequestSessions`],
        /// the headers to add to the response: tokens, and when a session
        /// was read, `Vary` on what its token travels in and
        /// `Cache-Control: private` (added only when the handler set none),
        /// so a shared cache never serves one user's session to another.
        /// All sessions are attempted; the first error is returned.
        ///
        /// # Errors
        ///
        /// A store that fails or stays contended past the compare-and-swap
        /// budget, a record too large for its store, or a cookie over the
        /// browser limit (see [`SessionError::http_status`] for the answer
        /// to give). The stored session is then left as it was.
        fn finish(&self) -> impl Future<Output = Result<Self::Output, SessionError>> + Send;
    }

    impl Finish for Session {
        type Output = Finished;

        fn finish(&self) -> impl Future<Output = Result<Finished, SessionError>> + Send {
            self.finish_now()
        }
    }

    impl Finish for RequestSessions {
        type Output = Vec<ResponseHeader>;

        fn finish(&self) -> impl Future<Output = Result<Vec<ResponseHeader>, SessionError>> + Send {
            self.finish_now()
        }
    }
}

/// Entry points into the sealing and codec layers for benchmarks and fuzz
/// targets. Not a stable API: applications use [`SessionManager`].
#[doc(hidden)]
pub mod internals {
    use serde::Serialize;

    use crate::codec::{to_value, Record};
    use crate::seal::{self, Purpose};
    use crate::{Codec, CodecError, KeyRing, SealMode};

    /// Encodes a record holding `values` with `codec`.
    pub fn encode_values<T: Serialize>(
        codec: Codec,
        values: &[(&str, T)],
    ) -> Result<Vec<u8>, CodecError> {
        let mut record = Record {
            created_at: 1_800_000_000,
            ..Record::default()
        };
        for (key, value) in values {
            let value = to_value(value)?;
            codec.check(&value)?;
            record.values.insert((*key).to_owned(), value);
        }
        codec.encode(&record)
    }

    /// Encodes a record holding one value, `value`, under the key `v`.
    pub fn encode_value<T: Serialize + ?Sized>(
        codec: Codec,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let value = to_value(value)?;
        codec.check(&value)?;
        let mut record = Record {
            created_at: 1_800_000_000,
            ..Record::default()
        };
        record.values.insert("v".to_owned(), value);
        codec.encode(&record)
    }

    /// Decodes bytes from [`encode_value`] back into a `T`.
    pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let record = Codec::decode(bytes)?;
        let value = record
            .values
            .get("v")
            .ok_or(CodecError::Malformed("no value".into()))?;
        crate::codec::from_value(value)
    }

    /// Reads session tokens from request headers as the engine does: the
    /// tokens found for a cookie-transport session named `sid` and a
    /// header-transport session reading `x-session-token`.
    pub fn read_tokens<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Vec<Vec<String>> {
        use std::sync::{Arc, OnceLock};
        static CONFIGS: OnceLock<Vec<Arc<crate::SessionConfig>>> = OnceLock::new();
        let configs = CONFIGS.get_or_init(|| {
            let keys =
                KeyRing::from_secret(b"test secret number 00, 32 bytes!").expect("32-byte secret");
            vec![
                Arc::new(crate::SessionConfig::cookie(keys.clone())),
                Arc::new(
                    crate::SessionConfig::cookie(keys)
                        .name("api")
                        .header_transport("x-session-token"),
                ),
            ]
        });
        crate::transport::read_tokens(configs, headers)
    }

    /// Decodes stored bytes; returns the number of values.
    pub fn decode(bytes: &[u8]) -> Result<usize, CodecError> {
        Codec::decode(bytes).map(|r| r.values.len() + r.flashes.len())
    }

    /// Seals a cookie-session payload valid for an hour from `now`.
    pub fn seal(ring: &KeyRing, mode: SealMode, name: &str, now: i64, payload: &[u8]) -> String {
        seal::seal(
            ring,
            mode,
            Purpose::SessionData,
            name,
            now,
            now + 3600,
            payload,
        )
    }

    /// Opens a cookie-session token; the refusal reason on failure.
    pub fn open(
        ring: &KeyRing,
        mode: SealMode,
        name: &str,
        now: i64,
        token: &str,
    ) -> Result<Vec<u8>, &'static str> {
        seal::open(
            ring,
            mode,
            Purpose::SessionData,
            name,
            token,
            now,
            crate::BROWSER_COOKIE_LIMIT,
        )
        .map(|o| o.payload)
        .map_err(|e| e.reason())
    }
}
