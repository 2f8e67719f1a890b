//! Session ids and the store keys derived from them.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;

use crate::keys::DerivedKeys;

/// Length of a session id in bytes (256 bits, well above the 128 required).
pub(crate) const ID_LEN: usize = 32;

/// A server-side session's id: 256 random bits from the OS generator.
///
/// It never leaves the process in clear: clients get it sealed in a token,
/// stores see only a keyed hash of it ([`StoreKey`]). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// A fresh id from the thread's CSPRNG (see [`crate::seal::random`]).
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; ID_LEN];
        crate::seal::random(&mut bytes);
        SessionId(bytes)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(SessionId)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The store key of this id under the given key (the primary, or the old
    /// key a rotated session was found with).
    pub(crate) fn store_key(&self, keys: &DerivedKeys) -> StoreKey {
        let mut mac = keys.store.clone();
        mac.update(&self.0);
        // One allocation of the final size; `encode` would zero a buffer
        // and check it as UTF-8 first (every request makes a store key).
        let mut text = String::with_capacity(43);
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut text);
        StoreKey(text)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// The key a store files a session under: base64url of HMAC-SHA256 of the
/// session id with a key derived from the master secret, 43 characters of
/// `[A-Za-z0-9_-]`. A dump of the store yields no usable token, and the key
/// is valid for memcached, file names and URLs as is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey(String);

impl StoreKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A store key from text, for stores' own tests and tools. Keys made by the
    /// engine always come from random session ids.
    ///
    /// ```
    /// use session_core::StoreKey;
    /// let k = StoreKey::from_raw("abc");
    /// assert_eq!(k.as_str(), "abc");
    /// ```
    pub fn from_raw(key: impl Into<String>) -> Self {
        StoreKey(key.into())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A store key is not a credential, but a prefix is enough to correlate logs.
        let shown = self.0.get(..8).unwrap_or(&self.0);
        write!(f, "StoreKey({shown}..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyRing;

    #[test]
    fn ids_are_random_and_hidden() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "SessionId(..)");
    }

    #[test]
    fn store_key_is_keyed_and_valid() {
        let id = SessionId::generate();
        let r1 = KeyRing::from_secret(&crate::keys::test_secret(1)).unwrap();
        let r2 = KeyRing::from_secret(&crate::keys::test_secret(2)).unwrap();
        let k1 = id.store_key(r1.primary());
        assert_eq!(k1, id.store_key(r1.primary()));
        assert_ne!(k1, id.store_key(r2.primary()));
        assert_eq!(k1.as_str().len(), 43);
        assert!(k1
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(!k1.as_str().contains(&URL_SAFE_NO_PAD.encode(id.as_bytes())));
    }
}
