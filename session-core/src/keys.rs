//! Secrets and the rotating key ring.
//!
//! A master secret (at least 32 bytes) is never used directly: HKDF-SHA256
//! derives from it an AES-256-GCM key, an HMAC-SHA256 signing key, a key for
//! hashing session ids into store keys, and a 4-byte key id that travels in
//! every sealed token so opening picks the right key without trial
//! decryption.

use std::fmt;
use std::sync::Arc;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _};
use sha2::Sha256;

use zeroize::Zeroizing;

use crate::error::KeyError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Minimum length of a master secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const HKDF_SALT: &[u8] = b"session-core/v1";

/// Keys derived from one master secret.
#[derive(Clone)]
pub(crate) struct DerivedKeys {
    pub(crate) id: [u8; 4],
    pub(crate) aead: Aes256Gcm,
    /// Pre-keyed HMAC for signing; cloned per use to skip the key schedule.
    pub(crate) mac: HmacSha256,
    /// Pre-keyed HMAC for hashing session ids into store keys.
    pub(crate) store: HmacSha256,
    /// Pre-keyed HMAC for hashing user ids into user index keys.
    pub(crate) user: HmacSha256,
}

impl DerivedKeys {
    fn derive(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        check_strength(secret)?;
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
        let mut okm = [0u8; 32];
        let expand = |info: &[u8], out: &mut [u8]| {
            hk.expand(info, out)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
        };
        let mut id = [0u8; 4];
        expand(b"key-id", &mut id);
        expand(b"aead", &mut okm);
        let aead = Aes256Gcm::new_from_slice(&okm).expect("32-byte AES key");
        expand(b"mac", &mut okm);
        let mac = HmacSha256::new_from_slice(&okm).expect("HMAC takes any key length");
        expand(b"store-key", &mut okm);
        let store = HmacSha256::new_from_slice(&okm).expect("HMAC takes any key length");
        expand(b"user-key", &mut okm);
        let user = HmacSha256::new_from_slice(&okm).expect("HMAC takes any key length");
        zeroize::Zeroize::zeroize(&mut okm);
        Ok(DerivedKeys {
            id,
            aead,
            mac,
            store,
            user,
        })
    }
}

/// The keys a deployment seals with (the primary) and still opens with (older
/// keys, during rotation).
///
/// A value opened with an older key is re-sealed with the primary at its next
/// save, so rotating is: add the new secret as primary, keep the old one
/// listed for as long as sessions may live, then drop it.
///
/// `Debug` never prints key material:
///
/// ```
/// use session_core::KeyRing;
/// let ring = KeyRing::from_secret(b"an example secret, 32 bytes long").unwrap();
/// assert!(!format!("{ring:?}").contains("example"));
/// ```
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<Vec<DerivedKeys>>,
}

impl KeyRing {
    /// A ring whose primary key is derived from `secret` (at least 32 bytes).
    ///
    /// ```
    /// use session_core::KeyRing;
    /// assert!(KeyRing::from_secret(b"short").is_err());
    /// assert!(KeyRing::from_secret(&[0u8; 32]).is_err(), "weak");
    /// let ring = KeyRing::from_secret(b"an example secret, 32 bytes long").unwrap();
    /// assert_eq!(ring.key_count(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::TooShort`] under 32 bytes; [`KeyError::Weak`] for a
    /// short repeated pattern or fewer than 8 distinct byte values.
    pub fn from_secret(secret: &[u8]) -> Result<Self, KeyError> {
        Ok(KeyRing {
            keys: Arc::new(vec![DerivedKeys::derive(secret)?]),
        })
    }

    /// A ring from a base64 secret (standard or URL-safe alphabet, padding
    /// optional), as read from an environment variable.
    ///
    /// # Errors
    ///
    /// `KeyError::Base64` for text that is not base64; then as
    /// [`from_secret`](Self::from_secret).
    pub fn from_base64(secret: &str) -> Result<Self, KeyError> {
        Self::from_secret(&decode_secret(secret)?)
    }

    /// A ring with a fresh random 64-byte secret: sessions will not survive a
    /// restart and are not shared between processes.
    ///
    /// # Errors
    ///
    /// `KeyError::Random` when the operating system's random generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = Zeroizing::new([0u8; 64]);
        // Long-lived secrets come straight from the operating system.
        rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut *secret)
            .map_err(|_| KeyError::Random)?;
        Self::from_secret(&*secret)
    }

    /// Adds an older secret that still opens tokens but no longer seals.
    ///
    /// # Errors
    ///
    /// As [`from_secret`](Self::from_secret), and `KeyError::DuplicateKey` for
    /// a secret the ring already holds.
    #[must_use = "with_old_secret returns a new ring"]
    pub fn with_old_secret(self, secret: &[u8]) -> Result<Self, KeyError> {
        let derived = DerivedKeys::derive(secret)?;
        if self.keys.iter().any(|k| k.id == derived.id) {
            return Err(KeyError::DuplicateKey);
        }
        let mut keys = Arc::unwrap_or_clone(self.keys);
        keys.push(derived);
        Ok(KeyRing {
            keys: Arc::new(keys),
        })
    }

    /// [`with_old_secret`](Self::with_old_secret) from base64.
    ///
    /// # Errors
    ///
    /// As [`from_base64`](Self::from_base64) and
    /// [`with_old_secret`](Self::with_old_secret).
    pub fn with_old_base64(self, secret: &str) -> Result<Self, KeyError> {
        self.with_old_secret(&decode_secret(secret)?)
    }

    /// Number of keys (primary included).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn primary(&self) -> &DerivedKeys {
        &self.keys[0]
    }

    /// The key with this id and whether it is the primary.
    /// The old keys, newest first (the primary excluded).
    pub(crate) fn old_keys(&self) -> impl Iterator<Item = &DerivedKeys> {
        self.keys[1..].iter()
    }

    pub(crate) fn find(&self, id: &[u8]) -> Option<(&DerivedKeys, bool)> {
        self.keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.id == id)
            .map(|(i, k)| (k, i == 0))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Refuses secrets nobody drew at random, judged on the decoded bytes:
///
/// - a pattern repeated: any period up to half the length (`[0; 32]`,
///   `abab…`, `passwordpassword…`, the base64 text `secret` eight times,
///   which decodes to a 9-byte period);
/// - too few distinct byte values for the length (fewer than half of it,
///   or than 16): random bytes have nearly as many as their length;
/// - words repeated with changes (`password1password2…`): fewer distinct
///   4-byte windows than half their number, where random bytes have all of
///   them distinct.
///
/// 32 random bytes pass with overwhelming probability.
fn check_strength(secret: &[u8]) -> Result<(), KeyError> {
    let n = secret.len();
    let repeats = |period: usize| secret.iter().skip(period).zip(secret).all(|(a, b)| a == b);
    if (1..=n / 2).any(repeats) {
        return Err(KeyError::Weak("a pattern repeated"));
    }
    let mut seen = [false; 256];
    let distinct = secret
        .iter()
        .filter(|&&b| !std::mem::replace(&mut seen[usize::from(b)], true))
        .count();
    if distinct < (n / 2).min(16) {
        return Err(KeyError::Weak("too few distinct byte values"));
    }
    let windows: std::collections::HashSet<&[u8]> = secret.windows(4).collect();
    if windows.len() < n.saturating_sub(3) / 2 {
        return Err(KeyError::Weak("words repeated"));
    }
    Ok(())
}

/// A 32-byte secret for tests and examples: `seed` plus multiples of 7, so
/// every byte differs and different seeds give different secrets.
#[cfg(test)]
pub(crate) fn test_secret(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_add(7 * i as u8))
}

fn decode_secret(secret: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = secret.trim().trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secret_refused() {
        let err = KeyRing::from_secret(&[0u8; 31]).unwrap_err();
        assert!(matches!(err, KeyError::TooShort { len: 31, min: 32 }));
    }

    #[test]
    fn base64_both_alphabets() {
        // Bytes chosen so the two alphabets differ (`+/` against `-_`).
        let raw: [u8; 33] = std::array::from_fn(|i| 0xfb ^ (i as u8 * 5));
        let std = base64::engine::general_purpose::STANDARD.encode(raw);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let a = KeyRing::from_base64(&std).unwrap();
        let b = KeyRing::from_base64(&url).unwrap();
        assert_eq!(a.primary().id, b.primary().id);
        assert!(matches!(
            KeyRing::from_base64("not base64!!"),
            Err(KeyError::Base64)
        ));
    }

    #[test]
    fn distinct_secrets_distinct_ids_and_duplicates_refused() {
        let ring = KeyRing::from_secret(&test_secret(1)).unwrap();
        let ring = ring.with_old_secret(&test_secret(2)).unwrap();
        assert_eq!(ring.key_count(), 2);
        assert_ne!(ring.keys[0].id, ring.keys[1].id);
        assert!(matches!(
            ring.with_old_secret(&test_secret(1)),
            Err(KeyError::DuplicateKey)
        ));
    }

    #[test]
    fn debug_prints_no_key_material() {
        let ring = KeyRing::from_secret(&test_secret(0x41)).unwrap();
        let shown = format!("{ring:?}");
        assert_eq!(shown, "KeyRing { keys: 1, .. }");
    }

    #[test]
    fn weak_secrets_are_refused_with_a_reason() {
        use base64::Engine as _;
        let secret_eight_times = base64::engine::general_purpose::STANDARD
            .decode("secret".repeat(8))
            .unwrap();
        let weak: [&[u8]; 9] = [
            &[0x41; 32],
            b"abababababababababababababababab",
            b"passwordpasswordpasswordpassword",
            b"aaaabbbbccccddddaaaabbbbccccdddd",
            &[
                1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 1, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6,
                7, 1, 2, 3,
            ],
            // A 9-byte period, decoded from text that looks random enough.
            &secret_eight_times,
            // A 10-byte period, and 10 distinct bytes.
            b"01234567890123456789012345678901",
            // Words repeated, each time changed a little.
            b"password1password2password3passw",
            b"letmein!letmein?letmein.letmein-",
        ];
        for secret in weak {
            let err = KeyRing::from_secret(secret).unwrap_err();
            assert!(matches!(err, KeyError::Weak(_)), "{secret:?}: {err}");
            assert!(err.to_string().contains("too weak"));
        }
        assert_eq!(secret_eight_times.len(), 36);
        // The old-secret path checks too.
        let ring = KeyRing::from_secret(&test_secret(3)).unwrap();
        assert!(matches!(
            ring.with_old_secret(&[9; 48]),
            Err(KeyError::Weak(_))
        ));
        // Text is not weak in itself: a sentence with no repeats passes.
        assert!(KeyRing::from_secret(b"Demo secret A: 32 bytes, unique!").is_ok());
        for _ in 0..1000 {
            assert!(KeyRing::generate().is_ok());
        }
    }

    #[test]
    fn generate_is_random() {
        let a = KeyRing::generate().unwrap();
        let b = KeyRing::generate().unwrap();
        assert_ne!(a.primary().id, b.primary().id);
    }
}
