//! Errors, one enum per layer.
//!
//! Bad input from clients (tampered, expired or garbage tokens) is never an
//! error: it yields a fresh session and a `tracing` warning. The errors here
//! are for the application (a value of the wrong type, a constant attribute
//! changed), for configuration, and for stores that fail.

use std::borrow::Cow;

/// A secret or key ring could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than the 32 bytes required.
    #[error("secret too short: {len} bytes, at least {min} required")]
    TooShort {
        /// Length of the rejected secret.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The secret is long enough but guessable: a short pattern repeated
    /// (all bytes equal included) or fewer than 8 distinct byte values.
    #[error(
        "secret is too weak: {0}; use 32 or more random bytes (e.g. `openssl rand -base64 32`)"
    )]
    Weak(&'static str),
    /// The secret is not valid base64.
    #[error("secret is not valid base64")]
    Base64,
    /// Two secrets of the ring derive the same key id (practically only when
    /// the same secret is listed twice).
    #[error("the same secret is listed twice in the key ring")]
    DuplicateKey,
    /// The operating system's random generator failed.
    #[error("the OS random generator failed")]
    Random,
}

/// A value could not be encoded or decoded by a codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value cannot be represented faithfully by the codec; it would come
    /// back as another type or value. The message says what and where.
    #[error("{codec} cannot represent this value faithfully: {reason}")]
    Unrepresentable {
        /// Codec name (`"json"`, `"cbor"`).
        codec: &'static str,
        /// What cannot be represented.
        reason: Cow<'static, str>,
    },
    /// Serializing a value into the session's value model failed.
    #[error("could not serialize value: {0}")]
    Serialize(String),
    /// A stored value does not deserialize as the requested type.
    #[error("could not deserialize value as the requested type: {0}")]
    Deserialize(String),
    /// Stored bytes are malformed (bad header, unknown codec or version, or a
    /// body the codec rejects).
    #[error("malformed stored session: {0}")]
    Malformed(Cow<'static, str>),
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached (connection refused, server marked
    /// down, pool closed).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within its timeout.
    #[error("session store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The record is larger than the store accepts. Nothing was written and
    /// the previous value is intact.
    #[error("session record of {size} bytes exceeds the store limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected record.
        size: usize,
        /// The store's limit.
        limit: usize,
    },
    /// Concurrent requests kept changing the session for the whole
    /// compare-and-swap budget ([`crate::CAS_BUDGET`]); nothing was written.
    /// Answered with 503: a retry later succeeds.
    #[error("session changed by concurrent requests {attempts} times in a row; gave up saving")]
    Contended {
        /// Conflicting attempts made.
        attempts: u32,
    },
    /// Any other backend failure.
    #[error("session store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// The same failure again, for each save that rode in a write that
    /// failed (see the save lanes).
    pub(crate) fn retold(&self) -> StoreError {
        match self {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Timeout(d) => StoreError::Timeout(*d),
            StoreError::TooLarge { size, limit } => StoreError::TooLarge {
                size: *size,
                limit: *limit,
            },
            StoreError::Contended { attempts } => StoreError::Contended {
                attempts: *attempts,
            },
            StoreError::Backend(m) => StoreError::Backend(m.clone()),
        }
    }

    /// Whether the failure means the store is (temporarily) out of reach, as
    /// opposed to a refused request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// The size check every store makes before writing anything
    /// ([`crate::Store::save`]): `TooLarge` when `size` exceeds `limit`.
    ///
    /// ```
    /// use session_core::StoreError;
    /// assert!(StoreError::check_size(100, 100).is_ok());
    /// assert!(matches!(
    ///     StoreError::check_size(101, 100),
    ///     Err(StoreError::TooLarge { size: 101, limit: 100 })
    /// ));
    /// ```
    ///
    /// # Errors
    ///
    /// `StoreError::TooLarge` when `size` exceeds `limit`.
    pub fn check_size(size: usize, limit: usize) -> Result<(), StoreError> {
        if size > limit {
            return Err(StoreError::TooLarge { size, limit });
        }
        Ok(())
    }
}

/// An error of the session API, as seen by handlers and adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A constant attribute was changed after the request that created it.
    #[error("`{0}` is a constant attribute of this session and cannot be changed")]
    ConstantAttribute(String),
    /// A constant attribute can only be set on a new or renewed session.
    #[error("constant attribute `{0}` can only be set on a new or renewed session")]
    ConstantNotAllowed(String),
    /// The `Set-Cookie` (or token header) would exceed the browser limit.
    #[error("session cookie of {size} bytes exceeds the {limit}-byte limit; store less in the session or use a server-side store")]
    CookieTooLarge {
        /// Size of the refused header.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No session with this name is configured.
    #[error("no session named `{0}` is configured")]
    UnknownSession(String),
    /// A sign-in or a user-sessions call on a session whose store keeps no
    /// user index (the message says which setting is missing).
    #[error("no user index: {0}")]
    NoUserIndex(&'static str),
    /// The OS random generator failed while creating a session id or nonce.
    #[error("the OS random generator failed")]
    Random,
}

impl SessionError {
    /// The HTTP status an adapter should answer with when this error ends a
    /// request: 503 when the store is out of reach or the session too
    /// contended to save (worth a retry: send `Retry-After`), 413 when the
    /// session is too large for its store or cookie, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            SessionError::Store(e) if e.is_unavailable() => 503,
            SessionError::Store(StoreError::Contended { .. }) => 503,
            SessionError::Store(StoreError::TooLarge { .. })
            | SessionError::CookieTooLarge { .. } => 413,
            _ => 500,
        }
    }

    /// The `Retry-After` seconds to send with the error response: 1 for a
    /// 503 (the store is probed and back within a second of recovering; a
    /// contended session frees up as fast), none otherwise.
    pub fn retry_after_secs(&self) -> Option<u32> {
        (self.http_status() == 503).then_some(1)
    }

    /// The JSON body adapters answer with: `{"error": <public message>}`.
    pub fn public_json(&self) -> String {
        serde_json::json!({ "error": self.public_message() }).to_string()
    }

    /// A message safe to show to clients: it never contains tokens, keys,
    /// store addresses or values.
    pub fn public_message(&self) -> &'static str {
        match self {
            SessionError::Store(e) if e.is_unavailable() => "session store unavailable",
            SessionError::Store(StoreError::Contended { .. }) => {
                "session busy with concurrent requests; retry"
            }
            SessionError::Store(StoreError::TooLarge { .. }) => "session too large to store",
            SessionError::CookieTooLarge { .. } => "session too large for a cookie",
            SessionError::ConstantAttribute(_) | SessionError::ConstantNotAllowed(_) => {
                "session attribute is constant"
            }
            _ => "session error",
        }
    }
}

/// A session configuration is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Invalid session or cookie name.
    #[error("invalid session name `{0}`: use 1 to 64 characters of [A-Za-z0-9_.-]")]
    InvalidName(String),
    /// Invalid header name for header transport.
    #[error("invalid header name `{0}`")]
    InvalidHeader(String),
    /// Two sessions share a name.
    #[error("two sessions are named `{0}`")]
    DuplicateName(String),
    /// Cookie attributes a browser would reject or that would break the
    /// `Set-Cookie` header: a `__Host-` cookie with a Domain, a Path other
    /// than `/` or without Secure; a `__Secure-` cookie or `SameSite=None`
    /// without Secure; `;`, a control character or whitespace in Path or
    /// Domain. The message says which.
    #[error("invalid cookie settings: {0}")]
    InvalidCookie(&'static str),
    /// A duration is zero or out of range.
    #[error("invalid duration for `{0}`")]
    InvalidDuration(&'static str),
}
