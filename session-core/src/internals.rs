//! Entry points into the sealing and codec layers for benchmarks and fuzz
//! targets, behind the `internals` feature (off by default, so no adapter
//! or application reaches them). Not a stable API: applications use
//! [`SessionManager`](crate::SessionManager).

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
pub fn encode_value<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Vec<u8>, CodecError> {
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
pub fn read_tokens<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<Vec<String>> {
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
                    .transport(crate::Transport::header("x-session-token")),
            ),
        ]
    });
    crate::transport::read_tokens(configs, headers)
}

/// Decodes stored bytes; returns the number of values.
pub fn decode(bytes: &[u8]) -> Result<usize, CodecError> {
    Codec::decode(bytes).map(|r| r.values.len() + r.flashes.len())
}

/// A cookie session's sealing: the ring, the mode and the session name.
#[derive(Clone, Copy)]
pub struct CookieSeal<'a> {
    /// The key ring.
    pub ring: &'a KeyRing,
    /// Private or signed.
    pub mode: SealMode,
    /// The session (cookie) name bound into the seal.
    pub name: &'a str,
}

impl CookieSeal<'_> {
    fn sealer(&self) -> seal::Sealer<'_> {
        seal::Sealer::new(self.ring, self.mode, Purpose::SessionData, self.name)
    }

    /// Seals a cookie-session payload valid for an hour from `now`.
    pub fn seal(&self, now: i64, payload: &[u8]) -> String {
        self.sealer().seal(now, now + 3600, payload)
    }

    /// Opens a cookie-session token; the refusal reason on failure.
    ///
    /// # Errors
    ///
    /// The reason the token was refused.
    pub fn open(&self, now: i64, token: &str) -> Result<Vec<u8>, &'static str> {
        self.sealer()
            .open(token, now, crate::BROWSER_COOKIE_LIMIT)
            .map(|o| o.payload)
            .map_err(|e| e.reason())
    }
}
