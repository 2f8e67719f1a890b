//! Signed-in sessions: a session bound to a user (its record, or its
//! cookie, carries the user's key and the session's handle), the check on
//! every load that its entry in the user's index is still there, the entry
//! kept up to date by the finish that happens anyway, and the list and end
//! operations on a user's sessions.
//!
//! The entry is the truth of a signed-in session being live. Ending a
//! session removes its entry, and a session without one is refused, so a
//! write that was in flight when it ended (a save, a renew, a cookie
//! re-sealed) cannot revive it: entries are created only by a sign-in,
//! under a fresh handle, and otherwise only updated if present. Each engine
//! remembers answers of the index for at most [`MEMBER_CACHE`](crate::MEMBER_CACHE), and forgets
//! them all when it ends a session itself; another server sharing the
//! store sees an end within that time.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::codec::Record;
use crate::engine::Engine;
use crate::error::{SessionError, StoreError};
use crate::index::{Binding, IndexEntry, SessionHandle, UserIndex, UserKey, MAX_USER_AGENT_CHARS};
use crate::observe;
use crate::record_index::RecordIndex;
use crate::save::{Finished, Outcome};
use crate::state::{Context, PendingSignIn};
use crate::store::UserIndexSupport;
/// `last_seen` is written at most this often; an entry lapses this long
/// after its session's deadline unless updated.
const LAST_SEEN_STEP: i64 = 60;

/// One of a user's live sessions, as [`crate::Session::user_sessions`] and
/// [`crate::SessionManager::user_sessions`] list them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// Its opaque handle, to end it with.
    pub handle: SessionHandle,
    /// Whether it is the session of the request that asked.
    pub current: bool,
    /// When it signed in.
    pub created: OffsetDateTime,
    /// Its last request (at most a minute behind).
    pub last_seen: OffsetDateTime,
    /// The `User-Agent` it signed in with (at most 256 characters).
    pub user_agent: Option<String>,
    /// What the application added at sign-in.
    pub metadata: BTreeMap<String, String>,
}

impl UserSession {
    fn from_entry(entry: IndexEntry, current: Option<&SessionHandle>) -> Self {
        let at = crate::index::unix_time;
        UserSession {
            current: current == Some(&entry.handle),
            created: at(entry.created),
            last_seen: at(entry.last_seen),
            handle: entry.handle,
            user_agent: entry.user_agent,
            metadata: entry.metadata,
        }
    }
}

/// The index an engine uses, its calls observed.
pub(crate) struct Users<'a> {
    index: IndexRef<'a>,
    kind: &'static str,
}

enum IndexRef<'a> {
    Native(&'a dyn UserIndex),
    Records(RecordIndex<'a>),
}

impl Users<'_> {
    fn index(&self) -> &dyn UserIndex {
        match &self.index {
            IndexRef::Native(index) => *index,
            IndexRef::Records(index) => index,
        }
    }

    async fn put(&self, user: &UserKey, entry: &IndexEntry, now: i64) -> Result<(), StoreError> {
        observe::store_call_of(self.kind, "index_put", self.index().put(user, entry, now)).await
    }

    async fn update(
        &self,
        user: &UserKey,
        entry: &IndexEntry,
        now: i64,
    ) -> Result<bool, StoreError> {
        observe::store_call_of(
            self.kind,
            "index_update",
            self.index().update(user, entry, now),
        )
        .await
    }

    async fn get(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        observe::store_call_of(self.kind, "index_get", self.index().get(user, handle, now)).await
    }

    async fn list(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError> {
        observe::store_call_of(self.kind, "index_list", self.index().list(user, now)).await
    }

    async fn remove(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<bool, StoreError> {
        observe::store_call_of(
            self.kind,
            "index_remove",
            self.index().remove(user, handle, now),
        )
        .await
    }

    async fn remove_all(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let call = self.index().remove_all(user, keep, now);
        observe::store_call_of(self.kind, "index_remove_all", call).await
    }
}

/// What finishing a request does to the index, gathered before the
/// session's record goes to the save path.
pub(crate) struct UsersWork {
    /// The binding the session was loaded with, and its entry then.
    pub(crate) loaded: Option<(Binding, IndexEntry)>,
    /// The binding the request leaves it with.
    pub(crate) last: Option<Binding>,
    pub(crate) sign_in: Option<PendingSignIn>,
    pub(crate) purged: bool,
    /// When the session expires if this request saves or touches it.
    pub(crate) deadline: i64,
    /// This request switched remember-me: its view of the deadline may
    /// lower the entry's expiry (no other request's may).
    pub(crate) persistence_changed: bool,
    /// The request's time in Unix microseconds.
    pub(crate) now_micros: i64,
}

impl Engine {
    /// The index this session's users are kept in.
    ///
    /// # Errors
    ///
    /// [`SessionError::NoUserIndex`] when the store keeps none (or a cookie
    /// session was configured without one).
    pub(crate) fn users(&self) -> Result<Users<'_>, SessionError> {
        let config = &self.config;
        let store =
            config
                .user_index
                .as_deref()
                .or(self.store())
                .ok_or(SessionError::NoUserIndex(
                    "a cookie session without a user index store (SessionConfig::user_index)",
                ))?;
        let index = match store.user_index() {
            UserIndexSupport::Native(index) => IndexRef::Native(index),
            UserIndexSupport::Records(store) => IndexRef::Records(RecordIndex {
                store,
                keys: &config.keys,
            }),
            UserIndexSupport::Unsupported => {
                return Err(SessionError::NoUserIndex(
                    "the session store keeps no user index (Store::user_index)",
                ))
            }
        };
        Ok(Users {
            index,
            kind: store.kind(),
        })
    }

    /// The entry of a signed-in session, or `None` when it was ended (or
    /// lapsed): the session is then refused.
    ///
    /// # Errors
    ///
    /// The index cannot be reached.
    pub(crate) async fn member(
        &self,
        binding: &Binding,
        now: i64,
    ) -> Result<Option<IndexEntry>, SessionError> {
        // Signed in under a key the ring no longer has: its index key can
        // no longer be derived from the user id, so no "end all of this
        // user's sessions" could reach it. It signs in again.
        if self.config.keys.find(&binding.key_id).is_none() {
            tracing::debug!(session = %self.config.name, "signed in under a retired key; refused");
            return Ok(None);
        }
        if let Some(known) = self.members.lookup(&binding.handle) {
            return Ok(known);
        }
        let asked_in = self.members.generation();
        let entry = self
            .users()?
            .get(&binding.user, &binding.handle, now)
            .await?;
        if entry.is_none() {
            observe::user_event("revoked", 1);
        }
        self.members
            .remember(&binding.handle, asked_in, entry.clone());
        Ok(entry)
    }

    /// The index work of a finishing request (see [`UsersWork`]); `None`
    /// for an anonymous session that stays anonymous (most requests), which
    /// costs nothing here.
    pub(crate) fn users_work(
        &self,
        loaded: &crate::state::Loaded,
        sign_in: Option<PendingSignIn>,
        action: crate::state::Action,
        now: OffsetDateTime,
    ) -> Option<UsersWork> {
        use crate::state::Action;
        if loaded.member.is_none() && sign_in.is_none() {
            return None;
        }
        let record = &loaded.record;
        // A renew (a sign-in is one) and a purge start the session's
        // lifetime again, as the save path does.
        let created_at = if action != Action::Keep {
            now.unix_timestamp()
        } else {
            record.created_at
        };
        let timing = Record {
            created_at,
            persistent: record.persistent,
            ..Record::default()
        };
        Some(UsersWork {
            loaded: loaded.member.clone(),
            last: record.user.clone(),
            sign_in,
            purged: action == Action::Purge,
            deadline: self.config.deadline(&timing, now).unix_timestamp(),
            persistence_changed: loaded.persistence_changed(),
            now_micros: i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
        })
    }

    /// Brings the index up to date after the session itself was finished:
    /// a sign-in's entry written (and the user's limit applied), a signed-out
    /// or purged session's entry removed, a live one's `last_seen` and
    /// expiry moved when due. A session whose entry vanished meanwhile
    /// (ended by another request) gets a removal header instead of the one
    /// it was about to get.
    ///
    /// # Errors
    ///
    /// The index failed: a sign-in that could not be recorded, or a
    /// sign-out that could not be (the session would stay live).
    pub(crate) async fn finish_users(
        &self,
        ctx: &Context,
        work: UsersWork,
        finished: Finished,
        now: i64,
    ) -> Result<Finished, SessionError> {
        // Vanished: another request ended or renewed the session first. A
        // sign-in then has nothing to enter, but a sign-out (or a move to
        // another user) must still take the old entry off: the renewed
        // copy carries the old binding.
        let vanished = finished.outcome == Outcome::Vanished;
        let users = self.users()?;
        let expires = work.deadline.saturating_add(LAST_SEEN_STEP);
        if let Some(sign_in) = work.sign_in.as_ref().filter(|_| !vanished) {
            // A purge before the sign-in in the same request is fine: the
            // purge dropped any earlier sign-in, so this one is the last.
            if work.last.as_ref() == Some(&sign_in.binding) {
                let entry = IndexEntry {
                    handle: sign_in.binding.handle.clone(),
                    created: now,
                    signed_in_micros: work.now_micros,
                    last_seen: now,
                    expires,
                    user_agent: ctx.user_agent.as_deref().map(str::to_owned),
                    metadata: sign_in.metadata.clone(),
                };
                users.put(&sign_in.binding.user, &entry, now).await?;
                // A capped index may have dropped an entry to make room.
                self.members.forget();
                observe::user_event("sign_in", 1);
                self.enforce_limit(&users, &entry, &sign_in.binding.user, now)
                    .await?;
            }
        }
        let Some((binding, entry)) = &work.loaded else {
            return Ok(finished);
        };
        // A sign-in that vanished recorded nothing, and the request that
        // renewed the session first still holds it under its old binding:
        // that stays. A sign-out (or purge) that vanished still ends it.
        let signed_in_vanished = vanished && work.sign_in.is_some();
        if (work.purged || work.last.as_ref() != Some(binding)) && !signed_in_vanished {
            users.remove(&binding.user, &binding.handle, now).await?;
            self.members.forget();
            observe::user_event("sign_out", 1);
            return Ok(finished);
        }
        if vanished || finished.outcome == Outcome::Purge {
            return Ok(finished);
        }
        // Only this request's own remember-me switch may lower the
        // expiry: another request's view of the record may be older.
        let lowered = work.persistence_changed && expires + 2 * LAST_SEEN_STEP < entry.expires;
        let due = now.saturating_sub(entry.last_seen) >= LAST_SEEN_STEP
            || expires.saturating_sub(LAST_SEEN_STEP) > entry.expires
            || lowered;
        if !due {
            return Ok(finished);
        }
        let updated = IndexEntry {
            last_seen: now,
            expires: if lowered {
                expires
            } else {
                expires.max(entry.expires)
            },
            ..entry.clone()
        };
        let asked_in = self.members.generation();
        if users.update(&binding.user, &updated, now).await? {
            self.members
                .remember(&binding.handle, asked_in, Some(updated));
            return Ok(finished);
        }
        // Ended while this request ran: whatever it just wrote is refused
        // from now on; the client is told to drop its token.
        observe::user_event("ended_in_flight", 1);
        self.members.forget();
        Ok(self.removal(ctx, Outcome::Purge))
    }

    /// Ends the user's least recently seen sessions past the configured
    /// limit, never the one just signed in. Only sessions that come before
    /// it in (last seen, sign-in time to the microsecond, handle) order are
    /// candidates, so two sign-ins racing past the limit cannot end each
    /// other (the later one ends the earlier).
    async fn enforce_limit(
        &self,
        users: &Users<'_>,
        signed_in: &IndexEntry,
        user: &UserKey,
        now: i64,
    ) -> Result<(), SessionError> {
        let Some(max) = self.config.max_sessions_per_user else {
            return Ok(());
        };
        let mut entries = users.list(user, now).await?;
        if entries.len() <= max {
            return Ok(());
        }
        let order = |e: &IndexEntry| (e.last_seen, e.signed_in_micros, e.handle.clone());
        let mine = order(signed_in);
        let excess = entries.len() - max;
        entries.retain(|e| order(e) < mine);
        entries.sort_by_key(order);
        let mut evicted = 0;
        for entry in entries.iter().take(excess) {
            if users.remove(user, &entry.handle, now).await? {
                evicted += 1;
            }
        }
        self.members.forget();
        observe::user_event("evicted", evicted);
        Ok(())
    }

    /// The live sessions of the user under `user`, most recently seen first.
    pub(crate) async fn list_user(
        &self,
        user: &UserKey,
        current: Option<&SessionHandle>,
    ) -> Result<Vec<UserSession>, SessionError> {
        let now = self.now().unix_timestamp();
        let entries = self.users()?.list(user, now).await?;
        let mut sessions: Vec<_> = entries
            .into_iter()
            .map(|e| UserSession::from_entry(e, current))
            .collect();
        sessions.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(b.created.cmp(&a.created))
        });
        Ok(sessions)
    }

    /// Ends one session of the user; whether it was live.
    pub(crate) async fn end_user_session(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
    ) -> Result<bool, SessionError> {
        let now = self.now().unix_timestamp();
        let removed = self.users()?.remove(user, handle, now).await?;
        self.members.forget();
        observe::user_event("end", usize::from(removed));
        Ok(removed)
    }

    /// Ends every session of the user but `keep`; how many were live.
    pub(crate) async fn end_user_sessions(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, SessionError> {
        let now = self.now().unix_timestamp();
        let removed = self.users()?.remove_all(user, keep, now).await?;
        self.members.forget();
        observe::user_event("end_all", removed);
        Ok(removed)
    }

    /// A binding for `user_id` under a fresh handle.
    pub(crate) fn bind(&self, user_id: &str) -> Result<Binding, SessionError> {
        // Fails early, in the handler, rather than when the request ends.
        self.users()?;
        let key = self.config.keys.primary();
        Ok(Binding {
            user: UserKey::derive(key, user_id),
            key_id: key.id,
            handle: SessionHandle::generate(),
        })
    }

    /// The user's keys under every key of the ring (sessions signed in
    /// before a key rotation are indexed under the older ones).
    pub(crate) fn user_keys(&self, user_id: &str) -> Vec<UserKey> {
        UserKey::all(&self.config.keys, user_id)
    }
}

/// A `User-Agent` as an entry keeps it: valid UTF-8 (lossy), at most
/// [`MAX_USER_AGENT_CHARS`] characters, control characters dropped.
pub(crate) fn user_agent(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect()
}
