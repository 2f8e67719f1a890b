//! Sealed tokens: private (AES-256-GCM) or signed (HMAC-SHA256).
//!
//! Layout before base64url (no padding):
//!
//! ```text
//! version(1) | mode(1) | key id(4) | private: nonce(12) | ciphertext | tag(16)
//!                                  | signed:  plaintext | hmac(32)
//! plaintext = issued at (i64 BE, Unix s) | expires at (i64 BE, Unix s; i64::MAX = none) | payload
//! ```
//!
//! The header, the purpose (session id or session data) and the session name
//! are authenticated data, so a token cannot be replayed under another cookie
//! name, format version, mode or purpose. Opening refuses oversized input
//! before decoding it.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;

use crate::keys::KeyRing;

/// Format version of sealed tokens.
const SEAL_VERSION: u8 = 1;
const HEADER_LEN: usize = 6;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MAC_LEN: usize = 32;
const TIMES_LEN: usize = 16;
/// Marker for "no expiry inside the seal".
pub(crate) const NO_EXPIRY: i64 = i64::MAX;
/// Tokens issued this far in the future are refused (clock skew allowance).
const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// How tokens and cookie sessions are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SealMode {
    /// Encrypted and authenticated (AES-256-GCM): the client can read nothing.
    #[default]
    Private,
    /// Authenticated only (HMAC-SHA256): the client can read but not change
    /// the payload.
    Signed,
}

impl SealMode {
    fn tag(self) -> u8 {
        match self {
            SealMode::Private => 1,
            SealMode::Signed => 2,
        }
    }
}

/// What a sealed value carries; bound into the authenticated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A server-side session's id.
    SessionId = 1,
    /// A whole cookie-stored session.
    SessionData = 2,
    /// A server-side record sealed at rest, bound to its store key.
    AtRest = 3,
}

/// A successfully opened token: its payload owned (`Vec<u8>`) or borrowed
/// from the buffer it was opened in (`&[u8]`).
#[derive(Debug)]
pub(crate) struct Opened<P = Vec<u8>> {
    pub(crate) payload: P,
    pub(crate) issued_at: i64,
    /// Whether the primary key opened it (false: re-seal at next save).
    pub(crate) primary: bool,
    /// Index of the key that opened it (for store keys of rotated sessions).
    pub(crate) key_id: [u8; 4],
}

/// Why a token was refused. Logged as a reason only, never with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    Oversized,
    Malformed,
    Version,
    Mode,
    UnknownKey,
    Forged,
    Expired,
    FromFuture,
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            OpenError::Oversized => "token too large",
            OpenError::Malformed => "token malformed",
            OpenError::Version => "unknown token version",
            OpenError::Mode => "token sealed in another mode",
            OpenError::UnknownKey => "token sealed with an unknown key",
            OpenError::Forged => "token failed authentication",
            OpenError::Expired => "token expired",
            OpenError::FromFuture => "token issued in the future",
        }
    }
}

/// Names up to this long keep the authenticated data on the stack.
const AAD_INLINE_NAME: usize = 64;

/// The authenticated data of a seal: header, purpose, name length, name.
/// Built on every open and seal, so it avoids the heap for usual names.
struct Aad {
    inline: [u8; HEADER_LEN + 2 + AAD_INLINE_NAME],
    len: usize,
    long: Vec<u8>,
}

impl Aad {
    fn as_slice(&self) -> &[u8] {
        if self.long.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.long
        }
    }
}

fn aad(header: &[u8], purpose: Purpose, name: &str) -> Aad {
    let name = name.as_bytes();
    let mut aad = Aad {
        inline: [0; HEADER_LEN + 2 + AAD_INLINE_NAME],
        len: HEADER_LEN + 2 + name.len(),
        long: Vec::new(),
    };
    let prefix = [purpose as u8, name.len().min(255) as u8];
    if name.len() <= AAD_INLINE_NAME {
        aad.inline[..HEADER_LEN].copy_from_slice(header);
        aad.inline[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&prefix);
        aad.inline[HEADER_LEN + 2..aad.len].copy_from_slice(name);
    } else {
        aad.long = [header, &prefix[..], name].concat();
    }
    aad
}

/// What a seal is bound to: the ring that seals and opens, the mode, the
/// purpose and the session name (the last two are authenticated data).
#[derive(Clone, Copy)]
pub(crate) struct Sealer<'a> {
    ring: &'a KeyRing,
    mode: SealMode,
    purpose: Purpose,
    name: &'a str,
}

impl<'a> Sealer<'a> {
    pub(crate) fn new(ring: &'a KeyRing, mode: SealMode, purpose: Purpose, name: &'a str) -> Self {
        Sealer {
            ring,
            mode,
            purpose,
            name,
        }
    }

    /// Seals `payload` with the ring's primary key, as base64url text.
    pub(crate) fn seal(&self, issued_at: i64, expires_at: i64, payload: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.seal_raw(issued_at, expires_at, payload))
    }
    /// Seals `payload` with the ring's primary key, as bytes.
    pub(crate) fn seal_raw(&self, issued_at: i64, expires_at: i64, payload: &[u8]) -> Vec<u8> {
        let Sealer {
            ring,
            mode,
            purpose,
            name,
        } = *self;
        let key = ring.primary();
        let mut buf =
            Vec::with_capacity(HEADER_LEN + NONCE_LEN + TIMES_LEN + payload.len() + MAC_LEN);
        buf.push(SEAL_VERSION);
        buf.push(mode.tag());
        buf.extend_from_slice(&key.id);
        let aad = aad(&buf[..HEADER_LEN], purpose, name);
        match mode {
            SealMode::Private => {
                let mut nonce = [0u8; NONCE_LEN];
                random(&mut nonce);
                buf.extend_from_slice(&nonce);
                let body_start = buf.len();
                buf.extend_from_slice(&issued_at.to_be_bytes());
                buf.extend_from_slice(&expires_at.to_be_bytes());
                buf.extend_from_slice(payload);
                let tag = key
                    .aead
                    .encrypt_in_place_detached(
                        Nonce::from_slice(&nonce),
                        aad.as_slice(),
                        &mut buf[body_start..],
                    )
                    .expect("AES-GCM encryption of a bounded buffer cannot fail");
                buf.extend_from_slice(&tag);
            }
            SealMode::Signed => {
                buf.extend_from_slice(&issued_at.to_be_bytes());
                buf.extend_from_slice(&expires_at.to_be_bytes());
                buf.extend_from_slice(payload);
                let mut mac = key.mac.clone();
                mac.update(aad.as_slice());
                mac.update(&buf[HEADER_LEN..]);
                buf.extend_from_slice(&mac.finalize().into_bytes());
            }
        }
        buf
    }

    /// Opens a token sealed by [`Sealer::seal`], checking mode, key, integrity and times.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn open(&self, token: &str, now: i64, max_len: usize) -> Result<Opened, OpenError> {
        let mut buf = TokenBuf::default();
        let opened = self.open_in(token, now, max_len, &mut buf)?;
        Ok(Opened {
            payload: opened.payload.to_vec(),
            issued_at: opened.issued_at,
            primary: opened.primary,
            key_id: opened.key_id,
        })
    }

    /// [`Sealer::open`], decoding into `buf` and borrowing the payload from it.
    pub(crate) fn open_in<'b>(
        &self,
        token: &str,
        now: i64,
        max_len: usize,
        buf: &'b mut TokenBuf,
    ) -> Result<Opened<&'b [u8]>, OpenError> {
        if token.len() > max_len {
            return Err(OpenError::Oversized);
        }
        let token = token.trim();
        let bytes: &'b mut [u8] = if token.len() / 4 * 3 + 3 <= INLINE_TOKEN {
            let len = URL_SAFE_NO_PAD
                .decode_slice(token, &mut buf.inline)
                .map_err(|_| OpenError::Malformed)?;
            &mut buf.inline[..len]
        } else {
            // decode_vec appends, and a buffer may serve several tokens.
            buf.heap.clear();
            URL_SAFE_NO_PAD
                .decode_vec(token, &mut buf.heap)
                .map_err(|_| OpenError::Malformed)?;
            &mut buf.heap[..]
        };
        let opened = self.open_slice(bytes, now)?;
        Ok(Opened {
            payload: &bytes[opened.payload],
            issued_at: opened.issued_at,
            primary: opened.primary,
            key_id: opened.key_id,
        })
    }

    /// Opens bytes sealed by [`Sealer::seal_raw`].
    pub(crate) fn open_raw(&self, mut buf: Vec<u8>, now: i64) -> Result<Opened, OpenError> {
        let opened = self.open_slice(&mut buf, now)?;
        // The payload was opened in place: keep its bytes, drop the rest.
        buf.truncate(opened.payload.end);
        buf.drain(..opened.payload.start);
        Ok(Opened {
            payload: buf,
            issued_at: opened.issued_at,
            primary: opened.primary,
            key_id: opened.key_id,
        })
    }

    /// Opens sealed bytes in place; the payload is where the range says.
    fn open_slice(
        &self,
        buf: &mut [u8],
        now: i64,
    ) -> Result<Opened<std::ops::Range<usize>>, OpenError> {
        let Sealer {
            ring,
            mode,
            purpose,
            name,
        } = *self;
        if buf.len() < HEADER_LEN {
            return Err(OpenError::Malformed);
        }
        if buf[0] != SEAL_VERSION {
            return Err(OpenError::Version);
        }
        if buf[1] != mode.tag() {
            return Err(OpenError::Mode);
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&buf[2..HEADER_LEN]);
        let (key, primary) = ring.find(&key_id).ok_or(OpenError::UnknownKey)?;
        let aad = aad(&buf[..HEADER_LEN], purpose, name);
        let plain = match mode {
            SealMode::Private => {
                if buf.len() < HEADER_LEN + NONCE_LEN + TIMES_LEN + TAG_LEN {
                    return Err(OpenError::Malformed);
                }
                let tag_at = buf.len() - TAG_LEN;
                let (head, tag) = buf.split_at_mut(tag_at);
                let (header_nonce, body) = head.split_at_mut(HEADER_LEN + NONCE_LEN);
                let nonce = Nonce::from_slice(&header_nonce[HEADER_LEN..]);
                key.aead
                    .decrypt_in_place_detached(nonce, aad.as_slice(), body, Tag::from_slice(tag))
                    .map_err(|_| OpenError::Forged)?;
                HEADER_LEN + NONCE_LEN..tag_at
            }
            SealMode::Signed => {
                if buf.len() < HEADER_LEN + TIMES_LEN + MAC_LEN {
                    return Err(OpenError::Malformed);
                }
                let mac_at = buf.len() - MAC_LEN;
                let mut mac = key.mac.clone();
                mac.update(aad.as_slice());
                mac.update(&buf[HEADER_LEN..mac_at]);
                // verify_slice compares in constant time.
                mac.verify_slice(&buf[mac_at..])
                    .map_err(|_| OpenError::Forged)?;
                HEADER_LEN..mac_at
            }
        };
        let times = &buf[plain.start..plain.start + TIMES_LEN];
        let issued_at = i64::from_be_bytes(times[0..8].try_into().expect("8 bytes"));
        let expires_at = i64::from_be_bytes(times[8..16].try_into().expect("8 bytes"));
        if expires_at != NO_EXPIRY && now >= expires_at {
            return Err(OpenError::Expired);
        }
        if issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(OpenError::FromFuture);
        }
        Ok(Opened {
            payload: plain.start + TIMES_LEN..plain.end,
            issued_at,
            primary,
            key_id,
        })
    }
}

/// Tokens decoding to this many bytes or fewer (a server session's sealed
/// id is 82) are opened on the stack.
const INLINE_TOKEN: usize = 128;

/// Where [`open_in`] decodes a token: on the stack when it is small (every
/// request with a server session opens one), else on the heap.
pub(crate) struct TokenBuf {
    inline: [u8; INLINE_TOKEN],
    heap: Vec<u8>,
}

impl Default for TokenBuf {
    fn default() -> Self {
        TokenBuf {
            inline: [0; INLINE_TOKEN],
            heap: Vec::new(),
        }
    }
}

/// Fills `buf` from the thread's CSPRNG: ChaCha12 seeded from the operating
/// system and reseeded every 64 KiB (`rand::rng()`). Every sealed cookie
/// needs a nonce, and a `getrandom` system call per response was a visible
/// share of a cookie session's cost. The generator is not reseeded on
/// `fork`; a process that forks must not seal in both parent and child
/// before the child has started fresh threads (tokio runtimes do not
/// survive a fork anyway).
pub(crate) fn random(buf: &mut [u8]) {
    rand::Rng::fill_bytes(&mut rand::rng(), buf);
}

/// Whether `bytes` look like a sealed value (rather than an encoded record,
/// whose second byte is a codec tag).
pub(crate) fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() > HEADER_LEN
        && bytes[0] == SEAL_VERSION
        && (bytes[1] == SealMode::Private.tag() || bytes[1] == SealMode::Signed.tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::from_secret(&crate::keys::test_secret(byte)).unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    fn roundtrip(mode: SealMode) {
        let r = ring(1);
        let t = Sealer::new(&r, mode, Purpose::SessionData, "sid").seal(NOW, NOW + 60, b"hello");
        let o = Sealer::new(&r, mode, Purpose::SessionData, "sid")
            .open(&t, NOW, 4096)
            .unwrap();
        assert_eq!(o.payload, b"hello");
        assert_eq!(o.issued_at, NOW);
        assert!(o.primary);
    }

    #[test]
    fn private_and_signed_roundtrip() {
        roundtrip(SealMode::Private);
        roundtrip(SealMode::Signed);
    }

    #[test]
    fn private_hides_payload_signed_does_not() {
        let r = ring(1);
        let payload = b"visible-payload-visible-payload";
        let p = Sealer::new(&r, SealMode::Private, Purpose::SessionData, "sid")
            .seal(NOW, NO_EXPIRY, payload);
        let s = Sealer::new(&r, SealMode::Signed, Purpose::SessionData, "sid")
            .seal(NOW, NO_EXPIRY, payload);
        let contains = |t: &str| {
            let raw = URL_SAFE_NO_PAD.decode(t).unwrap();
            raw.windows(payload.len()).any(|w| w == payload)
        };
        assert!(!contains(&p));
        assert!(contains(&s));
    }

    #[test]
    fn one_buffer_opens_tokens_on_the_stack_and_on_the_heap() {
        let r = ring(3);
        let mut buf = TokenBuf::default();
        // Payload sizes around the inline limit, then large ones twice (the
        // heap part is reused), then small again.
        for len in (0..120).chain([500, 3000, 40, 3000, 0]) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mode in [SealMode::Private, SealMode::Signed] {
                let t = Sealer::new(&r, mode, Purpose::SessionData, "sid").seal(
                    NOW,
                    NOW + 10,
                    &payload,
                );
                let opened = Sealer::new(&r, mode, Purpose::SessionData, "sid")
                    .open_in(&t, NOW, 8192, &mut buf)
                    .unwrap_or_else(|e| panic!("{mode:?} {len}: {e:?}"));
                assert_eq!(opened.payload, &payload[..], "{mode:?} {len}");
            }
        }
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        for mode in [SealMode::Private, SealMode::Signed] {
            let r = ring(3);
            let t = Sealer::new(&r, mode, Purpose::SessionId, "sid").seal(
                NOW,
                NOW + 10,
                b"0123456789abcdef",
            );
            let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            for i in 0..raw.len() {
                for flip in [0x01u8, 0x80] {
                    let mut bad = raw.clone();
                    bad[i] ^= flip;
                    let bad = URL_SAFE_NO_PAD.encode(&bad);
                    assert!(
                        Sealer::new(&r, mode, Purpose::SessionId, "sid")
                            .open(&bad, NOW, 4096)
                            .is_err(),
                        "{mode:?} byte {i} flip {flip:#x} accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_and_garbage_refused() {
        let r = ring(1);
        let t =
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").seal(NOW, NOW + 10, b"x");
        for cut in 0..t.len() {
            assert!(
                Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid")
                    .open(&t[..cut], NOW, 4096)
                    .is_err()
            );
        }
        for garbage in [
            "",
            "!!!!",
            "\u{0}",
            "AAAA",
            "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%",
        ] {
            assert!(
                Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid")
                    .open(garbage, NOW, 4096)
                    .is_err()
            );
        }
    }

    #[test]
    fn bound_data_name_purpose_mode() {
        let r = ring(1);
        let t =
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").seal(NOW, NOW + 10, b"x");
        let o = |p, n: &str, m| {
            Sealer::new(&r, m, p, n)
                .open(&t, NOW, 4096)
                .map(|_| ())
                .unwrap_err()
        };
        assert_eq!(
            o(Purpose::SessionId, "other", SealMode::Private),
            OpenError::Forged
        );
        assert_eq!(
            o(Purpose::SessionData, "sid", SealMode::Private),
            OpenError::Forged
        );
        assert_eq!(
            o(Purpose::SessionId, "sid", SealMode::Signed),
            OpenError::Mode
        );
    }

    #[test]
    fn long_names_are_bound_like_short_ones() {
        // Names past the inline limit take the heap path of the AAD.
        let r = ring(1);
        for len in [AAD_INLINE_NAME, AAD_INLINE_NAME + 1, 300] {
            let name = "n".repeat(len);
            let other = format!("{}m", &name[1..]);
            for mode in [SealMode::Private, SealMode::Signed] {
                let t =
                    Sealer::new(&r, mode, Purpose::SessionData, &name).seal(NOW, NO_EXPIRY, b"p");
                let opened = Sealer::new(&r, mode, Purpose::SessionData, &name)
                    .open(&t, NOW, 4096)
                    .unwrap();
                assert_eq!(opened.payload, b"p");
                assert_eq!(
                    Sealer::new(&r, mode, Purpose::SessionData, &other)
                        .open(&t, NOW, 4096)
                        .map(|_| ()),
                    Err(OpenError::Forged),
                    "name length {len}"
                );
            }
        }
    }

    #[test]
    fn version_is_bound() {
        let r = ring(1);
        let t =
            Sealer::new(&r, SealMode::Signed, Purpose::SessionId, "sid").seal(NOW, NOW + 10, b"x");
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[0] = 2;
        let t = URL_SAFE_NO_PAD.encode(raw);
        let err = Sealer::new(&r, SealMode::Signed, Purpose::SessionId, "sid")
            .open(&t, NOW, 4096)
            .unwrap_err();
        assert_eq!(err, OpenError::Version);
    }

    #[test]
    fn expiry_and_future_issue_checked() {
        let r = ring(1);
        let t =
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").seal(NOW, NOW + 10, b"x");
        assert!(
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid")
                .open(&t, NOW + 9, 4096)
                .is_ok()
        );
        let err =
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").open(&t, NOW + 10, 4096);
        assert_eq!(err.unwrap_err(), OpenError::Expired);
        let err = Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").open(
            &t,
            NOW - 3600,
            4096,
        );
        assert_eq!(err.unwrap_err(), OpenError::FromFuture);
    }

    #[test]
    fn oversized_refused_before_decoding() {
        let r = ring(1);
        let huge = "A".repeat(5000);
        let err =
            Sealer::new(&r, SealMode::Private, Purpose::SessionId, "sid").open(&huge, NOW, 4096);
        assert_eq!(err.unwrap_err(), OpenError::Oversized);
    }

    #[test]
    fn old_key_opens_and_is_reported_foreign_key_refused() {
        let old = ring(1);
        let t = Sealer::new(&old, SealMode::Private, Purpose::SessionId, "sid").seal(
            NOW,
            NOW + 10,
            b"x",
        );
        let rotated = ring(2)
            .with_old_secret(&crate::keys::test_secret(1u8))
            .unwrap();
        let o = Sealer::new(&rotated, SealMode::Private, Purpose::SessionId, "sid")
            .open(&t, NOW, 4096)
            .unwrap();
        assert!(!o.primary);
        let foreign = ring(9);
        let err =
            Sealer::new(&foreign, SealMode::Private, Purpose::SessionId, "sid").open(&t, NOW, 4096);
        assert_eq!(err.unwrap_err(), OpenError::UnknownKey);
    }
}
