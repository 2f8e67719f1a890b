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
//! - the per-request engine ([`SessionManager::start_by_name`] before the
//!   handler, `PendingRequest::finish` after it) that the adapters for
//!   actix-web, Rocket and axum call around the handler; a handler gets
//!   the request's [`Session`]s, which cannot finish.
//!
//! Applications use their framework's adapter (`session-axum`,
//! `session-actix`, `session-rocket`), which does the two engine calls
//! below around every handler:
//!
//! ```
//! use session_core::{KeyRing, SessionConfig, SessionKey, SessionManager};
//!
//! const COUNTER: SessionKey<u64> = SessionKey::new("n");
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::new(SessionConfig::cookie(KeyRing::generate()?))?;
//!
//! // First request: no cookie.
//! let request = manager.start_by_name(|_| None);
//! let session = request.sessions().primary();
//! let n = session.get(&COUNTER).await?.unwrap_or(0);
//! session.insert(&COUNTER, &(n + 1)).await?;
//! let headers = request.finish().await?;
//! let set_cookie = headers[0].value();
//!
//! // Second request sends the cookie back.
//! let cookie = set_cookie.split(';').next().unwrap();
//! let request = manager.start_by_name(|name| (name == "cookie").then_some(cookie.as_bytes()));
//! assert_eq!(request.sessions().primary().get(&COUNTER).await?, Some(1));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(hidden)]
pub mod adapter;
mod codec;
mod config;
mod engine;
mod error;
mod id;
mod index;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod keys;
mod lanes;
mod load;
mod manager;
mod members;
mod observe;
mod record_index;
mod retry;
mod save;
mod seal;
mod session;
mod state;
mod store;
mod transport;
mod users;

pub use codec::Codec;
pub use config::{
    CookieAttributes, Lifetime, SameSite, SessionConfig, Storage, Transport, BROWSER_COOKIE_LIMIT,
};
pub use error::{CodecError, ConfigError, KeyError, SessionError, StoreError};
pub use id::StoreKey;
pub use index::{
    IndexEntry, SessionHandle, UserIndex, UserKey, MAX_RECORD_INDEX_ENTRIES, MAX_SIGN_IN_METADATA,
    MAX_USER_AGENT_CHARS,
};
pub use keys::{KeyRing, MIN_SECRET_LEN};
pub use manager::{RequestSessions, SessionManager};
pub use members::MEMBER_CACHE;
pub use retry::CAS_BUDGET;
pub use seal::SealMode;
pub use session::{Key, Session, SessionKey};
pub use store::{
    IntoStore, SaveCondition, SaveOutcome, Store, StoredRecord, UserIndexSupport, Version,
};
pub use transport::ResponseHeader;
pub use users::UserSession;

/// Re-exported so stores and adapters use the same version.
pub use async_trait::async_trait;
pub use time;
