//! Loading a session from its token, and deciding after the handler what
//! to do with it: nothing, touch, save, renew or purge.

use std::time::Instant;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::codec::{Codec, Record};
use crate::config::{SessionConfig, Storage};
use crate::error::{CodecError, SessionError, StoreError};
use crate::id::{SessionId, StoreKey};
use crate::seal::{self, Opened, Purpose, SealMode, NO_EXPIRY};
use crate::session::{Change, Session};
use crate::store::{SaveCondition, SaveOutcome, Store, Version};
use crate::transport::ResponseHeader;

/// Compare-and-swap attempts before a save gives up. Each conflict means
/// another request saved, so N concurrent writers need at most N attempts.
const MAX_CAS_ATTEMPTS: usize = 64;
/// Attempts to find an unused id (a collision of 256-bit ids is not expected).
const MAX_ID_ATTEMPTS: usize = 3;

/// What a request did with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing stored, no header sent.
    Nothing,
    /// The deadline moved without rewriting the record (store touch, or a
    /// re-sealed cookie for cookie sessions).
    Touch,
    /// The record was written (created, changed, or moved to the primary key).
    Save,
    /// A new id replaced the old one, whose record was deleted.
    Renew,
    /// The session ended: record deleted, removal cookie sent.
    Purge,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Nothing => "nothing",
            Outcome::Touch => "touch",
            Outcome::Save => "save",
            Outcome::Renew => "renew",
            Outcome::Purge => "purge",
        }
    }
}

/// The result of finishing one session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// What was done.
    pub outcome: Outcome,
    /// The header to add to the response, if any.
    pub header: Option<ResponseHeader>,
}

impl Finished {
    fn new(outcome: Outcome, header: Option<ResponseHeader>) -> Self {
        Finished { outcome, header }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    #[default]
    Keep,
    Renew,
    Purge,
}

/// Per-request state of one session.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) loaded: Option<Loaded>,
    pub(crate) action: Action,
    pub(crate) finished: bool,
}

impl State {
    pub(crate) fn renew(&mut self) {
        if self.action != Action::Purge {
            self.action = Action::Renew;
        }
        if let Some(l) = &mut self.loaded {
            l.constants_open = true;
        }
    }

    pub(crate) fn purge(&mut self, now: i64, persistent: bool) {
        self.action = Action::Purge;
        if let Some(l) = &mut self.loaded {
            l.record = Record {
                created_at: now,
                persistent,
                ..Record::default()
            };
            l.changes.clear();
            l.constants_open = true;
        }
    }
}

/// Where a loaded session came from.
pub(crate) enum Origin {
    /// No valid session came with the request.
    New,
    /// A sealed cookie session.
    Cookie { issued_at: i64, primary: bool },
    /// A server-side session.
    Server {
        id: SessionId,
        store_key: StoreKey,
        version: Version,
        store_expires: Option<OffsetDateTime>,
        primary: bool,
        /// Which of the request's candidate tokens named it.
        token_index: usize,
    },
}

/// A loaded session and this request's changes to it.
pub(crate) struct Loaded {
    pub(crate) record: Record,
    pub(crate) origin: Origin,
    pub(crate) changes: Vec<Change>,
    /// Constant attributes may be set (new or renewed session).
    pub(crate) constants_open: bool,
}

impl Loaded {
    fn fresh(now: i64, persistent: bool) -> Self {
        Loaded {
            record: Record {
                created_at: now,
                persistent,
                ..Record::default()
            },
            origin: Origin::New,
            changes: Vec::new(),
            constants_open: true,
        }
    }

    /// Applies a change and remembers it for a merge.
    pub(crate) fn change(&mut self, change: Change) -> Result<(), SessionError> {
        change.apply(&mut self.record)?;
        self.changes.push(change);
        Ok(())
    }

    pub(crate) fn is_new(&self) -> bool {
        matches!(self.origin, Origin::New)
    }

    fn persistence_changed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::Persistent(_)))
    }
}

/// When the record should expire if saved or touched now.
fn deadline(config: &SessionConfig, record: &Record, now: OffsetDateTime) -> OffsetDateTime {
    let window = config.window(record.persistent);
    let created = OffsetDateTime::from_unix_timestamp(record.created_at).unwrap_or(now);
    let base = if config.rolling { now } else { created };
    let mut deadline = base + window;
    if let Some(absolute) = config.absolute_timeout {
        deadline = deadline.min(created + absolute);
    }
    deadline
}

fn absolute_expired(config: &SessionConfig, record: &Record, now: i64) -> bool {
    config
        .absolute_timeout
        .is_some_and(|t| now >= record.created_at.saturating_add(t.as_secs() as i64))
}

/// A start time for the debug log's durations; `None` (no clock read)
/// when debug logging is off.
fn debug_timer() -> Option<Instant> {
    tracing::enabled!(tracing::Level::DEBUG).then(Instant::now)
}

fn elapsed_us(started: Option<Instant>) -> u64 {
    started.map_or(0, |s| s.elapsed().as_micros() as u64)
}

impl Session {
    pub(crate) async fn ensure_loaded<'s>(
        &self,
        state: &'s mut crate::lifecycle::State,
    ) -> Result<&'s mut Loaded, SessionError> {
        if state.loaded.is_none() {
            let loaded = self.load().instrument(self.inner.span.clone()).await?;
            state.loaded = Some(loaded);
        }
        Ok(state.loaded.as_mut().expect("loaded above"))
    }

    async fn load(&self) -> Result<Loaded, SessionError> {
        let started = debug_timer();
        let config = &self.inner.config;
        let now = config.clock.now();
        let now_s = now.unix_timestamp();
        let purpose = match config.storage {
            Storage::Cookie => Purpose::SessionData,
            Storage::Server(_) => Purpose::SessionId,
        };
        let mut refused = None;
        for (index, token) in self.inner.candidates.iter().enumerate() {
            let opened = seal::open(
                &config.keys,
                config.seal_mode,
                purpose,
                &config.name,
                token,
                now_s,
                config.max_header_len,
            );
            match opened {
                Ok(opened) => {
                    let found = self.load_opened(opened, index, now).await;
                    let outcome = match &found {
                        Ok(Some(_)) => "loaded",
                        Ok(None) => "not found or expired",
                        Err(_) => "store error",
                    };
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
                Err(e) => refused = Some(e.reason()),
            }
        }
        if let Some(reason) = refused {
            tracing::warn!(session = %config.name, reason, "session token refused; starting a fresh session");
        }
        Ok(Loaded::fresh(now_s, config.persistent_by_default))
    }

    /// Finds the session an opened token names; `None` when it is gone.
    async fn load_opened(
        &self,
        opened: Opened,
        token_index: usize,
        now: OffsetDateTime,
    ) -> Result<Option<Loaded>, SessionError> {
        let config = &self.inner.config;
        let now_s = now.unix_timestamp();
        let check = |decoded: Result<Record, CodecError>| match decoded {
            Ok(record) if absolute_expired(config, &record, now_s) => None,
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(session = %config.name, error = %e, "stored session undecodable; starting a fresh session");
                None
            }
        };
        match &config.storage {
            Storage::Cookie => Ok(check(Codec::decode(&opened.payload)).map(|record| Loaded {
                record,
                origin: Origin::Cookie {
                    issued_at: opened.issued_at,
                    primary: opened.primary,
                },
                changes: Vec::new(),
                constants_open: false,
            })),
            Storage::Server(store) => {
                let Some(id) = SessionId::from_bytes(&opened.payload) else {
                    tracing::warn!(session = %config.name, "session token holds no valid id");
                    return Ok(None);
                };
                let (key, _) = config
                    .keys
                    .find(&opened.key_id)
                    .expect("the key that opened it");
                let store_key = id.store_key(key);
                let Some(stored) = store.load(&store_key).await? else {
                    return Ok(None);
                };
                let decoded = self.decode_stored(store.as_ref(), &store_key, stored.bytes, now_s);
                Ok(check(decoded).map(|record| Loaded {
                    record,
                    origin: Origin::Server {
                        id,
                        store_key,
                        version: stored.version,
                        store_expires: stored.expires_at,
                        primary: opened.primary,
                        token_index,
                    },
                    changes: Vec::new(),
                    constants_open: false,
                }))
            }
        }
    }

    /// Decides and performs what this request does with the session; call
    /// once, after the handler. Adapters add the returned header to the
    /// response. A second call does nothing.
    pub async fn finish(&self) -> Result<Finished, SessionError> {
        // Most requests never use the session: finish those without the
        // span, the clock or an awaited lock.
        if let Ok(mut state) = self.inner.state.try_lock() {
            if state.loaded.is_none() {
                state.finished = true;
                return Ok(Finished::new(Outcome::Nothing, None));
            }
        }
        let span = self.inner.span.clone();
        async {
            let started = debug_timer();
            let mut state = self.inner.state.lock().await;
            if state.finished {
                return Ok(Finished::new(Outcome::Nothing, None));
            }
            state.finished = true;
            let action = state.action;
            let loaded = match state.loaded.take() {
                Some(loaded) => loaded,
                None => return Ok(Finished::new(Outcome::Nothing, None)),
            };
            drop(state);
            let config = &self.inner.config;
            let now = config.clock.now();
            let result = match &config.storage {
                Storage::Cookie => self.finish_cookie(loaded, action, now),
                Storage::Server(store) => {
                    self.finish_server(store.as_ref(), loaded, action, now)
                        .await
                }
            };
            match &result {
                Ok(f) => tracing::debug!(
                    session = %config.name,
                    outcome = f.outcome.as_str(),
                    save_us = elapsed_us(started),
                    "session finished"
                ),
                Err(e) => tracing::warn!(
                    session = %config.name,
                    error = %e,
                    save_us = elapsed_us(started),
                    "session could not be saved"
                ),
            }
            result
        }
        .instrument(span)
        .await
    }

    fn removal(&self, had_token: bool, outcome: Outcome) -> Finished {
        let header = had_token.then(|| ResponseHeader::removal(&self.inner.config));
        Finished::new(outcome, header)
    }

    fn finish_cookie(
        &self,
        loaded: Loaded,
        action: Action,
        now: OffsetDateTime,
    ) -> Result<Finished, SessionError> {
        let config = &self.inner.config;
        let now_s = now.unix_timestamp();
        let had_token = !self.inner.candidates.is_empty();
        let changed = !loaded.changes.is_empty();
        let (is_new, issued_at, primary) = match loaded.origin {
            Origin::Cookie { issued_at, primary } => (false, issued_at, primary),
            _ => (true, now_s, true),
        };
        let mut record = loaded.record;
        if record.is_empty() {
            let outcome = if is_new && action != Action::Purge {
                Outcome::Nothing
            } else {
                Outcome::Purge
            };
            return Ok(self.removal(had_token, outcome));
        }
        let refresh = config.refresh_interval_for(record.persistent).as_secs() as i64;
        let outcome = match action {
            Action::Renew => Outcome::Renew,
            Action::Purge => Outcome::Purge,
            Action::Keep if is_new || changed || !primary => Outcome::Save,
            Action::Keep if config.rolling && now_s - issued_at >= refresh => Outcome::Touch,
            Action::Keep => return Ok(Finished::new(Outcome::Nothing, None)),
        };
        if action == Action::Renew {
            record.created_at = now_s;
        }
        let deadline = deadline(config, &record, now);
        let payload = config.codec.encode(&record)?;
        let token = seal::seal(
            &config.keys,
            config.seal_mode,
            Purpose::SessionData,
            &config.name,
            now_s,
            deadline.unix_timestamp(),
            &payload,
        );
        let header = ResponseHeader::token(config, &token, record.persistent, deadline - now)?;
        Ok(Finished::new(outcome, Some(header)))
    }

    async fn finish_server(
        &self,
        store: &dyn Store,
        loaded: Loaded,
        action: Action,
        now: OffsetDateTime,
    ) -> Result<Finished, SessionError> {
        let config = &self.inner.config;
        let persistence_changed = loaded.persistence_changed();
        let Loaded {
            mut record,
            origin,
            changes,
            ..
        } = loaded;
        let Origin::Server {
            id,
            store_key,
            version,
            store_expires,
            primary,
            token_index,
        } = origin
        else {
            let had_token = !self.inner.candidates.is_empty();
            if record.is_empty() {
                let outcome = if action == Action::Purge {
                    Outcome::Purge
                } else {
                    Outcome::Nothing
                };
                return Ok(self.removal(had_token, outcome));
            }
            let header = self.create(store, &record, now).await?;
            return Ok(Finished::new(Outcome::Save, Some(header)));
        };
        let token = self.inner.candidates[token_index].as_str();
        match action {
            Action::Purge => {
                store.delete(&store_key).await?;
                if record.is_empty() {
                    return Ok(self.removal(true, Outcome::Purge));
                }
                let header = self.create(store, &record, now).await?;
                Ok(Finished::new(Outcome::Purge, Some(header)))
            }
            Action::Renew => {
                record.created_at = now.unix_timestamp();
                let header = self.create(store, &record, now).await?;
                store.delete(&store_key).await?;
                Ok(Finished::new(Outcome::Renew, Some(header)))
            }
            Action::Keep if record.is_empty() && !changes.is_empty() => {
                store.delete(&store_key).await?;
                Ok(self.removal(true, Outcome::Purge))
            }
            Action::Keep if !primary => {
                // Found through an old key: move to the primary key's store
                // key and token, so the old secret can be retired.
                let new_key = id.store_key(config.keys.primary());
                let deadline = deadline(config, &record, now);
                let bytes = self.encode_stored(store, &new_key, &record, now)?;
                store
                    .save(&new_key, &bytes, deadline, SaveCondition::Always)
                    .await?;
                store.delete(&store_key).await?;
                let header = self.seal_id(&id, &record, now, deadline)?;
                Ok(Finished::new(Outcome::Save, Some(header)))
            }
            Action::Keep if !changes.is_empty() => {
                let Some(record) = self
                    .cas_save(store, &store_key, record, version, &changes, now)
                    .await?
                else {
                    return Ok(self.removal(true, Outcome::Purge));
                };
                let deadline = deadline(config, &record, now);
                let header = if persistence_changed || record.persistent {
                    ResponseHeader::resend(config, token, record.persistent, deadline - now)?
                } else {
                    None
                };
                Ok(Finished::new(Outcome::Save, header))
            }
            Action::Keep => {
                let deadline = deadline(config, &record, now);
                let refresh = config.refresh_interval_for(record.persistent);
                let due = config.rolling
                    && store_expires.is_none_or(|e| (deadline - e).unsigned_abs() >= refresh);
                if !due {
                    return Ok(Finished::new(Outcome::Nothing, None));
                }
                if !store.touch(&store_key, deadline).await? {
                    return Ok(self.removal(true, Outcome::Purge));
                }
                let header = if record.persistent {
                    ResponseHeader::resend(config, token, true, deadline - now)?
                } else {
                    None
                };
                Ok(Finished::new(Outcome::Touch, header))
            }
        }
    }

    /// Stores `record` under a new id and returns the header carrying its token.
    async fn create(
        &self,
        store: &dyn Store,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<ResponseHeader, SessionError> {
        let config = &self.inner.config;
        let deadline = deadline(config, record, now);
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = SessionId::generate();
            let key = id.store_key(config.keys.primary());
            let bytes = self.encode_stored(store, &key, record, now)?;
            match store
                .save(&key, &bytes, deadline, SaveCondition::IfAbsent)
                .await?
            {
                SaveOutcome::Saved(_) => return self.seal_id(&id, record, now, deadline),
                SaveOutcome::Conflict => continue,
            }
        }
        Err(StoreError::Backend("could not allocate an unused session id".into()).into())
    }

    fn seal_id(
        &self,
        id: &SessionId,
        record: &Record,
        now: OffsetDateTime,
        deadline: OffsetDateTime,
    ) -> Result<ResponseHeader, SessionError> {
        let config = &self.inner.config;
        // The idle deadline moves with every touch, so the token carries the
        // absolute one; the store enforces the idle one.
        let expires = match config.absolute_timeout {
            Some(t) => record.created_at.saturating_add(t.as_secs() as i64),
            None => NO_EXPIRY,
        };
        let token = seal::seal(
            &config.keys,
            config.seal_mode,
            Purpose::SessionId,
            &config.name,
            now.unix_timestamp(),
            expires,
            id.as_bytes(),
        );
        ResponseHeader::token(config, &token, record.persistent, deadline - now)
    }

    /// Encodes a record for `store`, sealed at rest when the store asks.
    fn encode_stored(
        &self,
        store: &dyn Store,
        key: &StoreKey,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, SessionError> {
        let config = &self.inner.config;
        let bytes = config.codec.encode(record)?;
        if !store.seals_at_rest() {
            return Ok(bytes);
        }
        Ok(seal::seal_raw(
            &config.keys,
            SealMode::Private,
            Purpose::AtRest,
            key.as_str(),
            now.unix_timestamp(),
            NO_EXPIRY,
            &bytes,
        ))
    }

    /// Decodes a stored record, opening it if sealed. A store that seals at
    /// rest must not hand back unsealed records (they could be forged by
    /// anyone who can write to the store).
    fn decode_stored(
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
        let config = &self.inner.config;
        let opened = seal::open_raw(
            &config.keys,
            SealMode::Private,
            Purpose::AtRest,
            key.as_str(),
            bytes,
            now,
        )
        .map_err(|e| CodecError::Malformed(e.reason().into()))?;
        Codec::decode(&opened.payload)
    }

    /// Saves with compare-and-swap; on conflict reloads, replays this
    /// request's changes on the fresher record and tries again. `None` when
    /// the session was ended by another request meanwhile.
    async fn cas_save(
        &self,
        store: &dyn Store,
        key: &StoreKey,
        mut record: Record,
        mut version: Version,
        changes: &[Change],
        now: OffsetDateTime,
    ) -> Result<Option<Record>, SessionError> {
        let config = &self.inner.config;
        for attempt in 1..=MAX_CAS_ATTEMPTS {
            let bytes = self.encode_stored(store, key, &record, now)?;
            let deadline = deadline(config, &record, now);
            match store
                .save(key, &bytes, deadline, SaveCondition::IfVersion(version))
                .await?
            {
                SaveOutcome::Saved(_) => return Ok(Some(record)),
                SaveOutcome::Conflict => {}
            }
            tracing::debug!(session = %config.name, attempt, "concurrent update; merging changes");
            let Some(fresh) = store.load(key).await? else {
                tracing::warn!(session = %config.name, "session ended by a concurrent request; this request's changes are dropped");
                return Ok(None);
            };
            let mut merged = self.decode_stored(store, key, fresh.bytes, now.unix_timestamp())?;
            for change in changes {
                if let Err(e) = change.apply(&mut merged) {
                    tracing::warn!(session = %config.name, error = %e, "change not replayed on merge");
                }
            }
            record = merged;
            version = fresh.version;
        }
        Err(StoreError::Backend(format!(
            "gave up saving after {MAX_CAS_ATTEMPTS} conflicting concurrent updates"
        ))
        .into())
    }
}
