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

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::codec::Record;
use crate::config::{SessionConfig, Storage};
use crate::error::{SessionError, StoreError};
use crate::id::{SessionId, StoreKey};
use crate::load::{debug_timer, decode_stored, elapsed_us};
use crate::observe;
use crate::seal::{self, Purpose, SealMode, NO_EXPIRY};
use crate::state::{deadline, Action, Change, Context, Loaded, Origin};
use crate::store::{SaveCondition, SaveOutcome, Store, Version};
use crate::transport::ResponseHeader;

/// How long a save keeps retrying compare-and-swap conflicts.
pub const CAS_BUDGET: Duration = Duration::from_millis(1500);
/// First and largest backoff ceiling between conflicting attempts.
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
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

/// Performs what the request asked of a loaded session, logging the result.
pub(crate) async fn finish(
    ctx: &Context,
    loaded: Loaded,
    action: Action,
) -> Result<Finished, SessionError> {
    let started = debug_timer();
    let config = &ctx.config;
    let now = config.clock.now();
    let was_new = matches!(loaded.origin, Origin::New);
    let result = match &config.storage {
        Storage::Cookie => finish_cookie(ctx, loaded, action, now),
        Storage::Server(store) => finish_server(ctx, store.as_ref(), loaded, action, now).await,
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

fn removal(ctx: &Context, outcome: Outcome) -> Finished {
    let had_token = !ctx.candidates.is_empty();
    let header = had_token.then(|| ResponseHeader::removal(&ctx.config));
    Finished::new(outcome, header)
}

fn finish_cookie(
    ctx: &Context,
    loaded: Loaded,
    action: Action,
    now: OffsetDateTime,
) -> Result<Finished, SessionError> {
    let config = &ctx.config;
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
        return Ok(removal(ctx, outcome));
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

/// A server-side session as loaded: everything the save path needs.
struct Existing {
    id: SessionId,
    store_key: StoreKey,
    version: Version,
    store_expires: Option<OffsetDateTime>,
    primary: bool,
    token_index: usize,
}

async fn finish_server(
    ctx: &Context,
    store: &dyn Store,
    loaded: Loaded,
    action: Action,
    now: OffsetDateTime,
) -> Result<Finished, SessionError> {
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
        if record.is_empty() {
            let outcome = match action {
                Action::Purge => Outcome::Purge,
                _ => Outcome::Nothing,
            };
            return Ok(removal(ctx, outcome));
        }
        let header = create(ctx, store, &record, now).await?;
        return Ok(Finished::new(Outcome::Save, Some(header)));
    };
    let existing = Existing {
        id,
        store_key,
        version,
        store_expires,
        primary,
        token_index,
    };
    match action {
        Action::Purge => purge(ctx, store, &existing.store_key, &record, now).await,
        Action::Renew => {
            record.created_at = now.unix_timestamp();
            // The new record and the old one's deletion go out together.
            let (created, deleted) = tokio::join!(
                create(ctx, store, &record, now),
                observe::delete(store, &existing.store_key)
            );
            let header = created?;
            deleted?;
            Ok(Finished::new(Outcome::Renew, Some(header)))
        }
        Action::Keep if record.is_empty() && !changes.is_empty() => {
            observe::delete(store, &existing.store_key).await?;
            Ok(removal(ctx, Outcome::Purge))
        }
        Action::Keep if !existing.primary => {
            move_to_primary(ctx, store, &existing, record, &changes, now).await
        }
        Action::Keep if !changes.is_empty() => {
            let saved = cas_save(
                ctx,
                store,
                &existing.store_key,
                record,
                existing.version,
                &changes,
                now,
            )
            .await?;
            let Some(record) = saved else {
                return Ok(Finished::new(Outcome::Vanished, None));
            };
            let config = &ctx.config;
            let deadline = deadline(config, &record, now);
            let header = if persistence_changed || record.persistent {
                let token = ctx.candidates[existing.token_index].as_str();
                ResponseHeader::resend(config, token, record.persistent, deadline - now)?
            } else {
                None
            };
            Ok(Finished::new(Outcome::Save, header))
        }
        Action::Keep => touch(ctx, store, &existing, &record, now).await,
    }
}

/// Ends the session; values set after the purge start a new one.
async fn purge(
    ctx: &Context,
    store: &dyn Store,
    old: &StoreKey,
    record: &Record,
    now: OffsetDateTime,
) -> Result<Finished, SessionError> {
    if record.is_empty() {
        observe::delete(store, old).await?;
        return Ok(removal(ctx, Outcome::Purge));
    }
    let (deleted, created) =
        tokio::join!(observe::delete(store, old), create(ctx, store, record, now));
    deleted?;
    Ok(Finished::new(Outcome::Purge, Some(created?)))
}

/// Moves the deadline of an unchanged session when rolling expiry is due.
async fn touch(
    ctx: &Context,
    store: &dyn Store,
    existing: &Existing,
    record: &Record,
    now: OffsetDateTime,
) -> Result<Finished, SessionError> {
    let config = &ctx.config;
    let deadline = deadline(config, record, now);
    let refresh = config.refresh_interval_for(record.persistent);
    let due = config.rolling
        && existing
            .store_expires
            .is_none_or(|e| (deadline - e).unsigned_abs() >= refresh);
    if !due {
        return Ok(Finished::new(Outcome::Nothing, None));
    }
    if !observe::touch(store, &existing.store_key, deadline).await? {
        return Ok(Finished::new(Outcome::Vanished, None));
    }
    let header = if record.persistent {
        let token = ctx.candidates[existing.token_index].as_str();
        ResponseHeader::resend(config, token, true, deadline - now)?
    } else {
        None
    };
    Ok(Finished::new(Outcome::Touch, header))
}

/// A session found through an old key moves to the primary key's store key
/// and token, so the old secret can be retired. The write is conditional:
/// when a concurrent request of the same session moved it first, this one's
/// changes are merged into that record instead of overwriting it.
async fn move_to_primary(
    ctx: &Context,
    store: &dyn Store,
    existing: &Existing,
    record: Record,
    changes: &[Change],
    now: OffsetDateTime,
) -> Result<Finished, SessionError> {
    let config = &ctx.config;
    let new_key = existing.id.store_key(config.keys.primary());
    let bytes = encode_stored(config, store, &new_key, &record, now)?;
    let deadline = deadline(config, &record, now);
    let (saved, deleted) = tokio::join!(
        observe::save(store, &new_key, &bytes, deadline, SaveCondition::IfAbsent),
        observe::delete(store, &existing.store_key)
    );
    deleted?;
    let record = match saved? {
        SaveOutcome::Saved(_) => record,
        SaveOutcome::Conflict => {
            let Some(current) = observe::load_record(store, &new_key).await? else {
                return Ok(Finished::new(Outcome::Vanished, None));
            };
            let mut merged =
                decode_stored(config, store, &new_key, current.bytes, now.unix_timestamp())?;
            replay(config, changes, &mut merged);
            match cas_save(ctx, store, &new_key, merged, current.version, changes, now).await? {
                Some(record) => record,
                None => return Ok(Finished::new(Outcome::Vanished, None)),
            }
        }
    };
    let header = seal_id(config, &existing.id, &record, now, deadline)?;
    Ok(Finished::new(Outcome::Save, Some(header)))
}

/// Stores `record` under a new id and returns the header carrying its token.
async fn create(
    ctx: &Context,
    store: &dyn Store,
    record: &Record,
    now: OffsetDateTime,
) -> Result<ResponseHeader, SessionError> {
    let config = &ctx.config;
    let deadline = deadline(config, record, now);
    for _ in 0..MAX_ID_ATTEMPTS {
        let id = SessionId::generate();
        let key = id.store_key(config.keys.primary());
        let bytes = encode_stored(config, store, &key, record, now)?;
        match observe::save(store, &key, &bytes, deadline, SaveCondition::IfAbsent).await? {
            SaveOutcome::Saved(_) => return seal_id(config, &id, record, now, deadline),
            SaveOutcome::Conflict => continue,
        }
    }
    Err(StoreError::Backend("could not allocate an unused session id".into()).into())
}

fn seal_id(
    config: &SessionConfig,
    id: &SessionId,
    record: &Record,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
) -> Result<ResponseHeader, SessionError> {
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
    config: &SessionConfig,
    store: &dyn Store,
    key: &StoreKey,
    record: &Record,
    now: OffsetDateTime,
) -> Result<Vec<u8>, SessionError> {
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

/// Replays a request's changes on a fresher record. A change the fresher
/// record refuses (a key that became constant meanwhile) is skipped.
fn replay(config: &SessionConfig, changes: &[Change], record: &mut Record) {
    for change in changes {
        if let Err(e) = change.apply(record) {
            tracing::warn!(session = %config.name, error = %e, "change not replayed on merge");
        }
    }
}

/// A random wait in `[0, min(BACKOFF_MAX, BACKOFF_BASE * 2^attempt))`
/// ("full jitter"), so conflicting writers spread out instead of retrying
/// in step.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let mut random = [0u8; 8];
    seal::random(&mut random);
    let fraction = u64::from_le_bytes(random) as f64 / u64::MAX as f64;
    ceiling.mul_f64(fraction)
}

/// Saves with compare-and-swap; on conflict reloads, replays this request's
/// changes on the fresher record and tries again until [`CAS_BUDGET`] is
/// spent. `None` when the session was ended by another request meanwhile.
async fn cas_save(
    ctx: &Context,
    store: &dyn Store,
    key: &StoreKey,
    mut record: Record,
    mut version: Version,
    changes: &[Change],
    now: OffsetDateTime,
) -> Result<Option<Record>, SessionError> {
    let config = &ctx.config;
    let started = Instant::now();
    let lane = config.save_lanes.enter(key);
    let mut last = match lane.last_saved().try_lock() {
        Ok(last) => last,
        Err(_) => {
            // Another save of this session leads the lane: queue our changes
            // so it can write them with its own, and wait for the lead.
            let (ticket, mut result) = lane.enqueue(changes);
            let last = lane.last_saved().lock().await;
            match result.try_recv() {
                Ok(written) => return Ok(written),
                // Still queued: lead. Or taken by a leader that failed: our
                // own attempt follows.
                Err(_) => lane.dequeue(ticket),
            }
            last
        }
    };
    if let Some((saved_version, saved)) = last.as_ref() {
        // A request of this process saved the session after this one loaded
        // it: build on that write rather than on a version known to be stale.
        if *saved_version != version {
            let mut merged = saved.clone();
            replay(config, changes, &mut merged);
            record = merged;
            version = *saved_version;
        }
    }
    // Saves queued behind this one ride along in its write. `record` keeps
    // this request's changes only, so the riders can be dropped (they then
    // save on their own) if their changes make the record unwritable.
    let mut riders = lane.take_queue();
    let mut attempt = 0u32;
    loop {
        let combined = (!riders.is_empty()).then(|| {
            let mut all = record.clone();
            for rider in &riders {
                replay(config, &rider.changes, &mut all);
            }
            all
        });
        let to_write = combined.as_ref().unwrap_or(&record);
        let bytes = match encode_stored(config, store, key, to_write, now) {
            Err(e) if !riders.is_empty() => {
                tracing::debug!(session = %config.name, error = %e, "queued saves make the record unwritable; each saves on its own");
                riders.clear();
                continue;
            }
            other => other?,
        };
        let deadline = deadline(config, to_write, now);
        match observe::save(
            store,
            key,
            &bytes,
            deadline,
            SaveCondition::IfVersion(version),
        )
        .await?
        {
            SaveOutcome::Saved(new_version) => {
                let written = combined.unwrap_or(record);
                for rider in riders {
                    let _ = rider.reply.send(Some(written.clone()));
                }
                // Keep the write for the requests queued behind this one.
                *last = lane.has_waiters().then(|| (new_version, written.clone()));
                return Ok(Some(written));
            }
            SaveOutcome::Conflict => observe::cas_conflict(),
        }
        attempt += 1;
        if started.elapsed() >= CAS_BUDGET {
            observe::cas_exhausted();
            return Err(StoreError::Contended { attempts: attempt }.into());
        }
        tracing::debug!(session = %config.name, attempt, "concurrent update; merging changes");
        if attempt > 1 {
            // The first conflict is usually one other writer: reload at once.
            tokio::time::sleep(backoff(attempt)).await;
        }
        let Some(fresh) = observe::load_record(store, key).await? else {
            tracing::debug!(session = %config.name, "session ended by a concurrent request; this request's changes are dropped");
            for rider in riders {
                let _ = rider.reply.send(None);
            }
            *last = None;
            return Ok(None);
        };
        let mut merged = decode_stored(config, store, key, fresh.bytes, now.unix_timestamp())?;
        replay(config, changes, &mut merged);
        record = merged;
        version = fresh.version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_growing_ceiling() {
        for attempt in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_MAX);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(10)).collect();
        assert!(spread.len() > 40, "waits are random, not in step");
    }
}
