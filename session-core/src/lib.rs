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
//! - the per-request engine ([`SessionManager::start`] then
//!   [`RequestSessions::finish`]) that adapters for actix-web, Rocket and axum
//!   call around the handler.
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
mod lifecycle;
mod seal;
mod session;
mod store;
mod transport;

pub use codec::Codec;
pub use config::{SameSite, SessionConfig, Storage, Transport, BROWSER_COOKIE_LIMIT};
pub use engine::{RequestSessions, SessionManager};
pub use error::{CodecError, ConfigError, KeyError, SessionError, StoreError};
pub use id::StoreKey;
pub use keys::{KeyRing, MIN_SECRET_LEN};
pub use lifecycle::{Finished, Outcome};
pub use seal::SealMode;
pub use session::{Key, Session, SessionKey};
pub use store::{SaveCondition, SaveOutcome, Store, StoredRecord, Version};
pub use transport::ResponseHeader;

/// Re-exported so stores and adapters use the same version.
pub use async_trait::async_trait;
pub use time;
