//! Loading a session from the request's tokens: open a token, then (for
//! server storage) fetch and open the stored record.

use std::time::Instant;

use time::OffsetDateTime;

use crate::codec::{Codec, Record};
use crate::config::Storage;
use crate::engine::Engine;
use crate::error::{CodecError, SessionError};
use crate::id::{SessionId, StoreKey};
use crate::index::Binding;
use crate::index::IndexEntry;
use crate::observe::{self, Observing};
use crate::seal::{self, Opened, Purpose, SealMode};
use crate::state::{Context, Loaded, Origin, ServerOrigin};
use crate::store::Store;

/// A start time for the debug log's durations; `None` (no clock read)
/// when debug logging is off.
pub(crate) fn debug_timer() -> Option<Instant> {
    tracing::enabled!(tracing::Level::DEBUG).then(Instant::now)
}

pub(crate) fn elapsed_us(started: Option<Instant>) -> u64 {
    started.map_or(0, |s| s.elapsed().as_micros() as u64)
}

impl Engine {
    /// The session the request's tokens name, or a fresh one when none is
    /// valid. Only a failing store is an error.
    pub(crate) async fn load(&self, ctx: &Context) -> Result<Loaded, SessionError> {
        let started = debug_timer();
        let config = &self.config;
        let now = self.now();
        let now_s = now.unix_timestamp();
        let purpose = match config.storage {
            Storage::Cookie => Purpose::SessionData,
            Storage::Server(_) => Purpose::SessionId,
        };
        let mut refused = None;
        let mut buf = seal::TokenBuf::default();
        for (index, token) in ctx.candidates.iter().enumerate() {
            let opened = seal::Sealer::new(&config.keys, config.seal_mode, purpose, &config.name)
                .open_in(token, now_s, config.max_header_len, &mut buf);
            match opened {
                Ok(opened) => {
                    let found = self.load_opened(opened, index, now).await;
                    let outcome = match &found {
                        Ok(Some(_)) => "loaded",
                        Ok(None) => "missing",
                        Err(_) => "store_error",
                    };
                    observe::load(outcome);
                    ctx.span.record("load", outcome);
                    tracing::debug!(
                        session = %config.name,
                        load = outcome,
                        load_us = elapsed_us(started),
                        "session load"
                    );
                    if let Some(loaded) = found? {
                        return Ok(loaded);
                    }
                    break;
                }
                Err(e) => {
                    observe::refused(e.reason());
                    refused = Some(e.reason());
                }
            }
        }
        if let Some(reason) = refused {
            observe::load("refused");
            ctx.span.record("load", "refused token");
            log_refused(&config.name, reason);
        } else {
            ctx.span.record("load", "new");
        }
        Ok(Loaded::fresh(now_s, config.persistent_by_default()))
    }

    /// Finds the session an opened token names; `None` when it is gone.
    async fn load_opened(
        &self,
        opened: Opened<&[u8]>,
        token_index: usize,
        now: OffsetDateTime,
    ) -> Result<Option<Loaded>, SessionError> {
        let config = &self.config;
        let now_s = now.unix_timestamp();
        let check = |decoded: Result<Record, CodecError>| match decoded {
            Ok(record) if config.absolute_expired(&record, now_s) => None,
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(session = %config.name, error = %e, "stored session undecodable; starting a fresh session");
                None
            }
        };
        match &config.storage {
            Storage::Cookie => {
                let Some(record) = check(Codec::decode(opened.payload)) else {
                    return Ok(None);
                };
                let Membership::Live(member) = self.signed_in(&record, now_s).await? else {
                    return Ok(None);
                };
                Ok(Some(Loaded {
                    record,
                    origin: Origin::Cookie {
                        issued_at: opened.issued_at,
                        primary: opened.primary,
                    },
                    changes: Vec::new(),
                    constants_open: false,
                    member,
                }))
            }
            Storage::Server(store) => {
                let Some(id) = SessionId::from_bytes(opened.payload) else {
                    tracing::warn!(session = %config.name, "session token holds no valid id");
                    return Ok(None);
                };
                // The key that opened the token is in the ring.
                let Some((key, _)) = config.keys.find(&opened.key_id) else {
                    return Ok(None);
                };
                let store_key = id.store_key(key);
                let Some(stored) = Observing(store.as_ref()).load_live(&store_key).await? else {
                    return Ok(None);
                };
                let decoded = self.decode_stored(store.as_ref(), &store_key, stored.bytes, now_s);
                let Some(record) = check(decoded) else {
                    return Ok(None);
                };
                let member = match self.signed_in(&record, now_s).await? {
                    Membership::Live(member) => member,
                    Membership::Ended => {
                        // Its record goes too (it can never be opened
                        // again; if this fails it expires).
                        if let Err(e) = Observing(store.as_ref()).delete(&store_key).await {
                            tracing::debug!(session = %config.name, error = %e, "an ended session's record stays until it expires");
                        }
                        return Ok(None);
                    }
                    // Kept: the index may be configured again.
                    Membership::NoIndex => return Ok(None),
                };
                Ok(Some(Loaded {
                    record,
                    origin: Origin::Server(ServerOrigin {
                        id,
                        store_key,
                        version: stored.version,
                        store_expires: stored.expires_at,
                        primary: opened.primary,
                        token_index,
                    }),
                    changes: Vec::new(),
                    constants_open: false,
                    member,
                }))
            }
        }
    }

    /// Whether a loaded record may be used: anonymous, or signed in with
    /// its entry still in the index.
    async fn signed_in(&self, record: &Record, now: i64) -> Result<Membership, SessionError> {
        let Some(binding) = &record.user else {
            return Ok(Membership::Live(None));
        };
        match self.member(binding, now).await {
            Ok(Some(entry)) => Ok(Membership::Live(Some((binding.clone(), entry)))),
            Ok(None) => {
                tracing::debug!(session = %self.config.name, "signed-in session ended; starting a fresh session");
                Ok(Membership::Ended)
            }
            // Signed in where an index used to be configured: nothing says
            // the session is live, so it is refused (at most one warning a
            // second).
            Err(SessionError::NoUserIndex(_)) => {
                log_refused(
                    &self.config.name,
                    "signed in, but no user index is configured",
                );
                Ok(Membership::NoIndex)
            }
            Err(e) => Err(e),
        }
    }

    /// Decodes a stored record, opening it if sealed. A store that seals at
    /// rest must not hand back unsealed records (they could be forged by anyone
    /// who can write to the store).
    pub(crate) fn decode_stored(
        &self,
        store: &dyn Store,
        key: &StoreKey,
        bytes: Vec<u8>,
        now: i64,
    ) -> Result<Record, CodecError> {
        if !seal::is_sealed(&bytes) {
            if store.seals_at_rest() {
                return Err(CodecError::Malformed(
                    "unsealed record in a store that seals at rest".into(),
                ));
            }
            return Codec::decode(&bytes);
        }
        let opened = seal::Sealer::new(
            &self.config.keys,
            SealMode::Private,
            Purpose::AtRest,
            key.as_str(),
        )
        .open_raw(bytes, now)
        .map_err(|e| CodecError::Malformed(e.reason().into()))?;
        Codec::decode(&opened.payload)
    }
}

/// What the user index says of a loaded record.
enum Membership {
    /// Usable: anonymous (`None`), or signed in with this entry.
    Live(Option<(Binding, IndexEntry)>),
    /// Signed in, and its entry is gone: ended.
    Ended,
    /// Signed in, and no index to ask.
    NoIndex,
}

/// Logs a refused token. Clients choose how many they send, so a flood of
/// bad tokens must not choose the log's volume: one warning a second at
/// most, the rest at debug level.
fn log_refused(name: &str, reason: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if second > last
        && LAST_WARNING
            .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(session = %name, reason, "session token refused; starting a fresh session (further refusals this second are logged at debug level)");
    } else {
        tracing::debug!(session = %name, reason, "session token refused; starting a fresh session");
    }
}
