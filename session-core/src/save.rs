//! The save path: after the handler, decide what a session needs (nothing,
//! touch, save, renew, purge, or a move to the primary key) and do it.
//!
//! Server-side saves are compare-and-swap. A save that loses the race
//! reloads the record, replays this request's change list on it and tries
//! again, with full-jitter backoff, for at most [`CAS_BUDGET`]; a budget
//! spent is [`StoreError::Contended`] (503), never a lost write. Saves of
//! one session from concurrent requests of this process go through one
//! lane in turn, each chaining on the version the previous one got back
//! from the store, so they do not conflict with each other at all.
//!
//! A session's record leaves its store key in two ways. A logout deletes
//! it (and every key the ring gives its id, the primary key's last, so a
//! key-rotation move racing the logout is deleted too). A renew (login)
//! or a key-rotation move *retires* it instead: a compare-and-swap from the
//! version it merged to an empty record, which reads as absent. The
//! retirement fails if any other request wrote the record meanwhile; the
//! renew or move then merges that write and tries again, so an
//! acknowledged save is never lost, and one that ended the session
//! (logout) ends the renewed or moved copy as well.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::codec::Record;
use crate::engine::Engine;
use crate::error::{SessionError, StoreError};
use crate::id::{SessionId, StoreKey};
use crate::lanes::RiderReply;
use crate::load::{debug_timer, elapsed_us};
use crate::observe::{self, Observing};
use crate::retry::{backoff, CAS_BUDGET};
use crate::seal::{self, Purpose, SealMode, NO_EXPIRY};
use crate::state::{Action, Change, Context, Loaded, Origin, PendingSignIn, ServerOrigin};
use crate::store::{SaveCondition, SaveOutcome, Store, StoredRecord, Version};
use crate::transport::ResponseHeader;

/// Attempts to find an unused id (a collision of 256-bit ids is not expected).
const MAX_ID_ATTEMPTS: usize = 3;
/// How long a renew's retired record stays at least (it only has to
/// outlive the requests that loaded the session before it was retired; a
/// move's stays as long as the session could).
const RETIRED_TTL: Duration = Duration::from_secs(60);

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
    /// Another request ended or renewed the session after this one loaded
    /// it: this request's changes are dropped and no header is sent (a
    /// removal cookie could reach the browser after the other request's new
    /// cookie and delete it).
    Vanished,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Nothing => "nothing",
            Outcome::Touch => "touch",
            Outcome::Save => "save",
            Outcome::Renew => "renew",
            Outcome::Purge => "purge",
            Outcome::Vanished => "vanished",
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
    pub(crate) fn new(outcome: Outcome, header: Option<ResponseHeader>) -> Self {
        Finished { outcome, header }
    }
}

impl Engine {
    /// Performs what the request asked of a loaded session, logging the
    /// result.
    pub(crate) async fn finish(
        &self,
        ctx: &Context,
        loaded: Loaded,
        action: Action,
        sign_in: Option<PendingSignIn>,
    ) -> Result<Finished, SessionError> {
        let started = debug_timer();
        let config = &self.config;
        let now = self.now();
        let was_new = matches!(loaded.origin, Origin::New);
        let users = self.users_work(&loaded, sign_in, action, now);
        let result = match self.store() {
            None => self.finish_cookie(ctx, loaded, action, now),
            Some(store) => {
                let saving = Saving {
                    engine: self,
                    ctx,
                    store: Observing(store),
                    now,
                };
                saving.finish(loaded, action).await
            }
        };
        let result = match result {
            Ok(finished) => match users {
                Some(users) => {
                    self.finish_users(ctx, users, finished, now.unix_timestamp())
                        .await
                }
                None => Ok(finished),
            },
            error => error,
        };
        if let Ok(f) = &result {
            ctx.span.record("outcome", f.outcome.as_str());
            if f.outcome != Outcome::Nothing {
                observe::outcome(f.outcome.as_str());
            }
            if was_new && f.outcome == Outcome::Save {
                observe::new_session();
            }
        }
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

    pub(crate) fn removal(&self, ctx: &Context, outcome: Outcome) -> Finished {
        let had_token = !ctx.candidates.is_empty();
        let header = had_token.then(|| ResponseHeader::removal(&self.config));
        Finished::new(outcome, header)
    }

    fn finish_cookie(
        &self,
        ctx: &Context,
        loaded: Loaded,
        action: Action,
        now: OffsetDateTime,
    ) -> Result<Finished, SessionError> {
        let config = &self.config;
        let now_s = now.unix_timestamp();
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
            return Ok(self.removal(ctx, outcome));
        }
        let refresh = config.refresh_interval_for(record.persistent).as_secs() as i64;
        let outcome = match action {
            Action::Renew => Outcome::Renew,
            Action::Purge => Outcome::Purge,
            Action::Keep if is_new || changed || !primary => Outcome::Save,
            Action::Keep if config.rolling() && now_s - issued_at >= refresh => Outcome::Touch,
            Action::Keep => return Ok(Finished::new(Outcome::Nothing, None)),
        };
        if action == Action::Renew {
            record.created_at = now_s;
        }
        let deadline = config.deadline(&record, now);
        let payload = config.codec.encode(&record)?;
        let token = seal::Sealer::new(
            &config.keys,
            config.seal_mode,
            Purpose::SessionData,
            &config.name,
        )
        .seal(now_s, deadline.unix_timestamp(), &payload);
        let header = ResponseHeader::token(config, &token, record.persistent, deadline - now)?;
        Ok(Finished::new(outcome, Some(header)))
    }

    /// Encodes a record for `store`, sealed at rest when the store asks.
    fn encode_stored(
        &self,
        store: &dyn Store,
        key: &StoreKey,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, SessionError> {
        let config = &self.config;
        let bytes = config.codec.encode(record)?;
        if !store.seals_at_rest() {
            return Ok(bytes);
        }
        Ok(seal::Sealer::new(
            &config.keys,
            SealMode::Private,
            Purpose::AtRest,
            key.as_str(),
        )
        .seal_raw(now.unix_timestamp(), NO_EXPIRY, &bytes))
    }

    /// Replays a request's changes on a fresher record. A change the
    /// fresher record refuses (a key that became constant meanwhile) is
    /// skipped.
    fn replay(&self, changes: &[Change], record: &mut Record) {
        for change in changes {
            if let Err(e) = change.apply(record) {
                tracing::warn!(session = %self.config.name, error = %e, "change not replayed on merge");
            }
        }
    }
}

/// The record that replaces a retired one (a renewed session, or one moved
/// to the primary key): its key, its version, and what it holds.
struct Replacement<'a> {
    key: &'a StoreKey,
    version: Version,
    record: Record,
}

/// One server-side session being finished: the engine, the request, the
/// store (every call observed) and the time the request finishes at.
struct Saving<'a> {
    engine: &'a Engine,
    ctx: &'a Context,
    store: Observing<'a>,
    now: OffsetDateTime,
}

impl Saving<'_> {
    fn deadline(&self, record: &Record) -> OffsetDateTime {
        self.engine.config.deadline(record, self.now)
    }

    fn removal(&self, outcome: Outcome) -> Finished {
        self.engine.removal(self.ctx, outcome)
    }

    fn encode(&self, key: &StoreKey, record: &Record) -> Result<Vec<u8>, SessionError> {
        self.engine
            .encode_stored(self.store.0, key, record, self.now)
    }

    fn decode(&self, key: &StoreKey, bytes: Vec<u8>) -> Result<Record, SessionError> {
        Ok(self
            .engine
            .decode_stored(self.store.0, key, bytes, self.now.unix_timestamp())?)
    }

    async fn finish(&self, loaded: Loaded, action: Action) -> Result<Finished, SessionError> {
        let persistence_changed = loaded.persistence_changed();
        let Loaded {
            mut record,
            origin,
            changes,
            ..
        } = loaded;
        let Origin::Server(origin) = origin else {
            if record.is_empty() {
                let outcome = match action {
                    Action::Purge => Outcome::Purge,
                    _ => Outcome::Nothing,
                };
                return Ok(self.removal(outcome));
            }
            let header = self.create(&record).await?;
            return Ok(Finished::new(Outcome::Save, Some(header)));
        };
        match action {
            Action::Purge => self.purge(&origin, &record).await,
            Action::Renew => {
                record.created_at = self.now.unix_timestamp();
                self.renew(&origin, record, &changes).await
            }
            Action::Keep if record.is_empty() && !changes.is_empty() => {
                self.end_id(&origin).await?;
                Ok(self.removal(Outcome::Purge))
            }
            Action::Keep if !origin.primary => {
                self.move_to_primary(&origin, record, &changes).await
            }
            Action::Keep if !changes.is_empty() => {
                let base = (record, origin.version);
                let Some(record) = self.cas_save(&origin.store_key, base, &changes).await? else {
                    return Ok(Finished::new(Outcome::Vanished, None));
                };
                let header = if persistence_changed || record.persistent {
                    self.resend(&origin, &record)?
                } else {
                    None
                };
                Ok(Finished::new(Outcome::Save, header))
            }
            Action::Keep => self.touch(&origin, &record).await,
        }
    }

    /// The request's own token sent again (for a new `Max-Age`).
    fn resend(
        &self,
        origin: &ServerOrigin,
        record: &Record,
    ) -> Result<Option<ResponseHeader>, SessionError> {
        let deadline = self.deadline(record);
        let token = self.ctx.candidates[origin.token_index].as_str();
        ResponseHeader::resend(
            &self.engine.config,
            token,
            record.persistent,
            deadline - self.now,
        )
    }

    /// Ends the session; values set after the purge start a new one.
    async fn purge(
        &self,
        origin: &ServerOrigin,
        record: &Record,
    ) -> Result<Finished, SessionError> {
        if record.is_empty() {
            self.end_id(origin).await?;
            return Ok(self.removal(Outcome::Purge));
        }
        let (ended, created) = tokio::join!(self.end_id(origin), self.create(record));
        ended?;
        Ok(Finished::new(Outcome::Purge, Some(created?)))
    }

    /// Deletes the session's record under every key the ring gives its id:
    /// the old keys' first, one after the other, the primary key's last. A
    /// key-rotation move writes the primary key's record before it retires
    /// the old one, so either it finds the old record deleted (and undoes
    /// its write) or its write came before this last delete.
    async fn end_id(&self, origin: &ServerOrigin) -> Result<(), SessionError> {
        let keys = &self.engine.config.keys;
        for old in keys.old_keys() {
            self.store.delete(&origin.id.store_key(old)).await?;
        }
        self.store
            .delete(&origin.id.store_key(keys.primary()))
            .await?;
        Ok(())
    }

    /// Retires the record under `key` if it still has `version`: replaces
    /// it with an empty record (absent to every reader) by
    /// compare-and-swap.
    async fn retire(&self, key: &StoreKey, version: Version) -> Result<SaveOutcome, SessionError> {
        self.retire_until(key, version, self.now + RETIRED_TTL)
            .await
    }

    /// [`retire`](Self::retire), the retired record kept until `until`.
    async fn retire_until(
        &self,
        key: &StoreKey,
        version: Version,
        until: OffsetDateTime,
    ) -> Result<SaveOutcome, SessionError> {
        Ok(self
            .store
            .save(key, &[], until, SaveCondition::IfVersion(version))
            .await?)
    }

    /// Retires the record this request loaded, carrying every write that
    /// landed on it since into `target`, the record that replaces it: the
    /// renewed session, or the session moved to the primary key. `None`
    /// when the session was ended meanwhile; `target` is then deleted.
    async fn retire_into(
        &self,
        origin: &ServerOrigin,
        mut target: Replacement<'_>,
        changes: &[Change],
    ) -> Result<Option<Record>, SessionError> {
        let mut version = origin.version;
        let started = Instant::now();
        let mut attempt = 0u32;
        let primary_key = origin.id.store_key(self.engine.config.keys.primary());
        // A move's retired record says "moved" to every request that
        // loaded the session before: it stays as long as the session could
        // (a renew's goes at once, below).
        let until = if primary_key == *target.key {
            self.deadline(&target.record).max(self.now + RETIRED_TTL)
        } else {
            self.now + RETIRED_TTL
        };
        loop {
            if let SaveOutcome::Saved(_) =
                self.retire_until(&origin.store_key, version, until).await?
            {
                // A session found through an old key may have been moved
                // to the primary key's record meanwhile: what was written
                // there comes along too.
                self.absorb_moved(origin, &mut target, changes).await?;
                // Retired by a renew: no write of a loaded record can land on
                // it any more (they are conditional on its version), so the
                // empty record can go now rather than after its TTL (if this
                // fails, it expires). A move's retired record stays: it
                // tells a concurrent move that the session moved, where its
                // absence says it was ended (see `move_to_primary`).
                if primary_key != *target.key {
                    if let Err(e) = self.store.delete(&origin.store_key).await {
                        tracing::debug!(error = %e, "a retired record stays until its TTL");
                    }
                }
                return Ok(Some(target.record));
            }
            let Some(latest) = self.store.load_live(&origin.store_key).await? else {
                // Moved to the primary key by another request (a retired
                // record is left under the old key; nothing there means a
                // logout): carry on from there (a renew of a session found
                // through an old key); a move of our own is that request's
                // to finish.
                let retired = primary_key != origin.store_key
                    && primary_key != *target.key
                    && self.store.load(&origin.store_key).await?.is_some();
                if retired {
                    if let Some(moved) = self.store.load_live(&primary_key).await? {
                        let moved_origin = ServerOrigin {
                            store_key: primary_key,
                            version: moved.version,
                            primary: true,
                            ..origin.clone()
                        };
                        self.rebuild(&mut target, (&moved_origin.store_key, moved), changes)
                            .await?;
                        return Box::pin(self.retire_into(&moved_origin, target, changes)).await;
                    }
                }
                // Ended (logout), renewed or moved by another request:
                // so is this copy.
                self.store.delete(target.key).await?;
                return Ok(None);
            };
            attempt += 1;
            if started.elapsed() >= CAS_BUDGET {
                observe::cas_exhausted();
                return Err(StoreError::Contended { attempts: attempt }.into());
            }
            // A save landed after this request loaded the session: build on
            // it.
            version = latest.version;
            self.rebuild(&mut target, (&origin.store_key, latest), changes)
                .await?;
        }
    }

    /// Rebuilds `target` on `source` (a fresher record of the session under
    /// its key) with this request's changes replayed and the target's
    /// creation time kept, and writes it over the target by
    /// compare-and-swap.
    async fn rebuild(
        &self,
        target: &mut Replacement<'_>,
        source: (&StoreKey, StoredRecord),
        changes: &[Change],
    ) -> Result<(), SessionError> {
        let (source_key, stored) = source;
        let mut merged = self.decode(source_key, stored.bytes)?;
        self.engine.replay(changes, &mut merged);
        merged.created_at = target.record.created_at;
        let bytes = self.encode(target.key, &merged)?;
        let deadline = self.deadline(&merged);
        let condition = SaveCondition::IfVersion(target.version);
        match self
            .store
            .save(target.key, &bytes, deadline, condition)
            .await?
        {
            SaveOutcome::Saved(version) => {
                target.version = version;
                target.record = merged;
                Ok(())
            }
            // Another request wrote the replacement too (a second
            // key-rotation move merging into it): the writes cannot be
            // combined here.
            SaveOutcome::Conflict => {
                observe::cas_exhausted();
                Err(StoreError::Contended { attempts: 1 }.into())
            }
        }
    }

    /// After a session found through an old key was retired there: a
    /// request that moved it to the primary key's record meanwhile (and
    /// any that merged into that) must not be lost, so that record is
    /// merged into `target` and retired as well. Nothing to do for a
    /// session found through the primary key, or when `target` is that
    /// record (the move itself).
    async fn absorb_moved(
        &self,
        origin: &ServerOrigin,
        target: &mut Replacement<'_>,
        changes: &[Change],
    ) -> Result<(), SessionError> {
        let primary_key = origin.id.store_key(self.engine.config.keys.primary());
        if primary_key == origin.store_key || primary_key == *target.key {
            return Ok(());
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        while let Some(moved) = self.store.load_live(&primary_key).await? {
            let version = moved.version;
            self.rebuild(target, (&primary_key, moved), changes).await?;
            if let SaveOutcome::Saved(_) = self.retire(&primary_key, version).await? {
                break;
            }
            attempt += 1;
            if started.elapsed() >= CAS_BUDGET {
                observe::cas_exhausted();
                return Err(StoreError::Contended { attempts: attempt }.into());
            }
        }
        Ok(())
    }

    /// Renews the session's id (login): the record under a new id, then the
    /// old record retired, with every save that landed on it meanwhile
    /// carried across.
    async fn renew(
        &self,
        origin: &ServerOrigin,
        record: Record,
        changes: &[Change],
    ) -> Result<Finished, SessionError> {
        // The new record first: a failure before the retirement leaves the
        // old session as it was.
        let (id, key, version) = self.create_record(&record).await?;
        let target = Replacement {
            key: &key,
            version,
            record,
        };
        let Some(record) = self.retire_into(origin, target, changes).await? else {
            return Ok(Finished::new(Outcome::Vanished, None));
        };
        let header = self.seal_id(&id, &record, self.deadline(&record))?;
        Ok(Finished::new(Outcome::Renew, Some(header)))
    }

    /// Moves the deadline of an unchanged session when rolling expiry is due.
    async fn touch(
        &self,
        origin: &ServerOrigin,
        record: &Record,
    ) -> Result<Finished, SessionError> {
        let config = &self.engine.config;
        let deadline = self.deadline(record);
        let refresh = config.refresh_interval_for(record.persistent);
        let due = config.rolling()
            && origin
                .store_expires
                .is_none_or(|e| (deadline - e).unsigned_abs() >= refresh);
        if !due {
            return Ok(Finished::new(Outcome::Nothing, None));
        }
        if !self.store.touch(&origin.store_key, deadline).await? {
            return Ok(Finished::new(Outcome::Vanished, None));
        }
        let header = if record.persistent {
            // The touch also finds a retired record (renewed or ended
            // meanwhile): its token must not be sent again, where it could
            // overwrite the renewed one in the browser.
            if self.store.load_live(&origin.store_key).await?.is_none() {
                return Ok(Finished::new(Outcome::Vanished, None));
            }
            self.resend(origin, record)?
        } else {
            None
        };
        Ok(Finished::new(Outcome::Touch, header))
    }

    /// A session found through an old key moves to the primary key's store
    /// key and token, so the old secret can be retired: the record is
    /// written under the new key if absent, then the old record retired
    /// (see [`retire_into`](Self::retire_into)). When a concurrent request
    /// of the same session moved it first, this one's changes are merged
    /// into that record instead of overwriting it.
    async fn move_to_primary(
        &self,
        origin: &ServerOrigin,
        record: Record,
        changes: &[Change],
    ) -> Result<Finished, SessionError> {
        let new_key = origin.id.store_key(self.engine.config.keys.primary());
        let bytes = self.encode(&new_key, &record)?;
        let deadline = self.deadline(&record);
        let saved = self
            .store
            .save(&new_key, &bytes, deadline, SaveCondition::IfAbsent)
            .await?;
        let record = match saved {
            SaveOutcome::Saved(version) => {
                let target = Replacement {
                    key: &new_key,
                    version,
                    record,
                };
                match self.retire_into(origin, target, changes).await? {
                    Some(record) => record,
                    None => return Ok(Finished::new(Outcome::Vanished, None)),
                }
            }
            SaveOutcome::Conflict => {
                // Moved first by another request, whose retired record is
                // left under the old key; no record at all there means the
                // session was ended (logout) since this request loaded it,
                // and the primary key's record is what a move cut short
                // (its request went away) left: it goes.
                if self.store.load(&origin.store_key).await?.is_none() {
                    self.store.delete(&new_key).await?;
                    return Ok(Finished::new(Outcome::Vanished, None));
                }
                let Some(current) = self.store.load_live(&new_key).await? else {
                    return Ok(Finished::new(Outcome::Vanished, None));
                };
                let mut merged = self.decode(&new_key, current.bytes)?;
                self.engine.replay(changes, &mut merged);
                match self
                    .cas_save(&new_key, (merged, current.version), changes)
                    .await?
                {
                    Some(record) => record,
                    None => return Ok(Finished::new(Outcome::Vanished, None)),
                }
            }
        };
        let header = self.seal_id(&origin.id, &record, self.deadline(&record))?;
        Ok(Finished::new(Outcome::Save, Some(header)))
    }

    /// Stores `record` under a new id and returns the header carrying its
    /// token.
    async fn create(&self, record: &Record) -> Result<ResponseHeader, SessionError> {
        let (id, _, _) = self.create_record(record).await?;
        self.seal_id(&id, record, self.deadline(record))
    }

    /// Stores `record` under a new id: the id, its store key and the
    /// record's version.
    async fn create_record(
        &self,
        record: &Record,
    ) -> Result<(SessionId, StoreKey, Version), SessionError> {
        let deadline = self.deadline(record);
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = SessionId::generate();
            let key = id.store_key(self.engine.config.keys.primary());
            let bytes = self.encode(&key, record)?;
            match self
                .store
                .save(&key, &bytes, deadline, SaveCondition::IfAbsent)
                .await?
            {
                SaveOutcome::Saved(version) => return Ok((id, key, version)),
                SaveOutcome::Conflict => continue,
            }
        }
        Err(StoreError::Backend("could not allocate an unused session id".into()).into())
    }

    fn seal_id(
        &self,
        id: &SessionId,
        record: &Record,
        deadline: OffsetDateTime,
    ) -> Result<ResponseHeader, SessionError> {
        let config = &self.engine.config;
        // The idle deadline moves with every touch, so the token carries the
        // absolute one; the store enforces the idle one.
        let expires = match config.absolute_timeout() {
            Some(t) => record.created_at.saturating_add(t.as_secs() as i64),
            None => NO_EXPIRY,
        };
        let token = seal::Sealer::new(
            &config.keys,
            config.seal_mode,
            Purpose::SessionId,
            &config.name,
        )
        .seal(self.now.unix_timestamp(), expires, id.as_bytes());
        ResponseHeader::token(config, &token, record.persistent, deadline - self.now)
    }

    /// Saves with compare-and-swap, from `base` (the record with this
    /// request's changes applied, and the version they apply to); on
    /// conflict reloads, replays this request's changes on the fresher
    /// record and tries again until [`CAS_BUDGET`] is spent. `None` when the
    /// session was ended by another request meanwhile.
    async fn cas_save(
        &self,
        key: &StoreKey,
        base: (Record, Version),
        changes: &[Change],
    ) -> Result<Option<Record>, SessionError> {
        let (mut record, mut version) = base;
        let engine = self.engine;
        let config = &engine.config;
        let started = Instant::now();
        let lane = engine.lanes.enter(key);
        let mut last = match lane.last_saved().try_lock() {
            Ok(last) => last,
            Err(_) => {
                // Another save of this session leads the lane: queue our
                // changes so it can write them with its own, and wait for the
                // lead.
                let (ticket, mut result) = lane.enqueue(changes);
                let last = lane.last_saved().lock().await;
                match result.try_recv() {
                    Ok(RiderReply::Written(record)) => return Ok(Some(record)),
                    Ok(RiderReply::Ended) => return Ok(None),
                    Ok(RiderReply::Failed(e)) => return Err(e.into()),
                    // Not written: our own attempt follows.
                    Ok(RiderReply::SaveAlone) => {}
                    // Still queued: lead.
                    Err(_) if lane.dequeue(ticket) => {}
                    // Taken by a leader that was dropped mid-write (its
                    // request went away): the change may have landed, so
                    // it is not replayed.
                    Err(_) => {
                        return Err(StoreError::Unavailable(
                            "a concurrent save of this session was abandoned mid-write".into(),
                        )
                        .into())
                    }
                }
                last
            }
        };
        if let Some((saved_version, saved)) = last.as_ref() {
            // A request of this process saved the session after this one
            // loaded it: build on that write rather than on a version known
            // to be stale.
            if *saved_version != version {
                let mut merged = saved.clone();
                engine.replay(changes, &mut merged);
                record = merged;
                version = *saved_version;
            }
        }
        // Saves queued behind this one ride along in its write. `record`
        // keeps this request's changes only, so the riders can be dropped
        // (they then save on their own) if their changes make the record
        // unwritable.
        let mut riders = lane.take_queue();
        let mut attempt = 0u32;
        let result = loop {
            let combined = (!riders.is_empty()).then(|| {
                let mut all = record.clone();
                for rider in &riders {
                    engine.replay(&rider.changes, &mut all);
                }
                all
            });
            let to_write = combined.as_ref().unwrap_or(&record);
            let bytes = match self.encode(key, to_write) {
                Err(e) if !riders.is_empty() => {
                    tracing::debug!(session = %config.name, error = %e, "queued saves make the record unwritable; each saves on its own");
                    tell(std::mem::take(&mut riders), || RiderReply::SaveAlone);
                    continue;
                }
                Err(e) => break Err(e),
                Ok(bytes) => bytes,
            };
            let deadline = self.deadline(to_write);
            let saved = self
                .store
                .save(key, &bytes, deadline, SaveCondition::IfVersion(version))
                .await;
            match saved {
                Ok(SaveOutcome::Saved(new_version)) => {
                    let written = combined.unwrap_or(record);
                    let reply = written.clone();
                    tell(riders, || RiderReply::Written(reply.clone()));
                    // Keep the write for the requests queued behind this one.
                    *last = lane.has_waiters().then(|| (new_version, written.clone()));
                    return Ok(Some(written));
                }
                Ok(SaveOutcome::Conflict) => observe::cas_conflict(),
                // Nothing was written: the riders that made the record too
                // large save on their own, this request's change alone is
                // tried again.
                Err(StoreError::TooLarge { .. }) if !riders.is_empty() => {
                    tell(std::mem::take(&mut riders), || RiderReply::SaveAlone);
                    continue;
                }
                Err(e) => break Err(e.into()),
            }
            attempt += 1;
            if started.elapsed() >= CAS_BUDGET {
                observe::cas_exhausted();
                break Err(StoreError::Contended { attempts: attempt }.into());
            }
            tracing::debug!(session = %config.name, attempt, "concurrent update; merging changes");
            if attempt > 1 {
                // The first conflict is usually one other writer: reload at
                // once.
                tokio::time::sleep(backoff(attempt)).await;
            }
            let fresh = match self.store.load_live(key).await {
                Ok(Some(fresh)) => fresh,
                Ok(None) => {
                    tracing::debug!(session = %config.name, "session ended by a concurrent request; this request's changes are dropped");
                    tell(riders, || RiderReply::Ended);
                    *last = None;
                    return Ok(None);
                }
                Err(e) => break Err(e.into()),
            };
            match self.decode(key, fresh.bytes) {
                Ok(mut merged) => {
                    engine.replay(changes, &mut merged);
                    record = merged;
                    version = fresh.version;
                }
                Err(e) => break Err(e),
            }
        };
        // The write failed: the riders get the same answer. A store error
        // may have left the write applied (a reply lost after the command
        // went out), so no rider replays its change; any other error is
        // this request's own (its record), and the riders save alone.
        let error = match result {
            Ok(never) => return Ok(never),
            Err(e) => e,
        };
        match &error {
            SessionError::Store(store_error) => {
                tell(riders, || RiderReply::Failed(store_error.retold()));
            }
            _ => tell(riders, || RiderReply::SaveAlone),
        }
        Err(error)
    }
}

/// Tells each rider of a lane what became of its save.
fn tell(riders: Vec<crate::lanes::Queued>, reply: impl Fn() -> RiderReply) {
    for rider in riders {
        let _ = rider.reply.send(reply());
    }
}
