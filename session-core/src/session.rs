//! The handle handlers use: typed values, flashes, constants, lifecycle.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::codec::{from_value, to_value};
use crate::config::SessionConfig;
use crate::engine::Engine;
use crate::error::{CodecError, SessionError, StoreError};
use crate::index::{Binding, SessionHandle, MAX_SIGN_IN_METADATA};
use crate::save::{Finished, Outcome};
use crate::state::{Action, Change, Context, Loaded, Origin, PendingSignIn, State, UpdateFn};
use crate::users::UserSession;

/// A key that carries the type of its value, so a mismatched insert or get
/// does not compile.
///
/// ```
/// use session_core::SessionKey;
/// const COUNTER: SessionKey<u64> = SessionKey::new("n");
/// assert_eq!(COUNTER.name(), "n");
/// ```
///
/// ```compile_fail
/// # use session_core::{Session, SessionKey};
/// const COUNTER: SessionKey<u64> = SessionKey::new("n");
/// async fn wrong(session: &Session) {
///     session.insert(&COUNTER, "not a number").await.unwrap();
/// }
/// ```
pub struct SessionKey<T: ?Sized> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: ?Sized> SessionKey<T> {
    /// A key named `name` holding values of type `T`.
    pub const fn new(name: &'static str) -> Self {
        SessionKey {
            name,
            _type: PhantomData,
        }
    }

    /// The key's name in the session.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: ?Sized> Clone for SessionKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for SessionKey<T> {}

impl<T: ?Sized> fmt::Debug for SessionKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionKey({:?}: {})",
            self.name,
            std::any::type_name::<T>()
        )
    }
}

/// What can name a session value holding a `T`: any string (untyped), or a
/// [`SessionKey<T>`] (typed).
pub trait Key<T: ?Sized> {
    /// The name of the value in the session.
    fn key_name(&self) -> &str;
}

impl<T: ?Sized> Key<T> for str {
    fn key_name(&self) -> &str {
        self
    }
}

impl<T: ?Sized> Key<T> for String {
    fn key_name(&self) -> &str {
        self
    }
}

impl<T: ?Sized> Key<T> for SessionKey<T> {
    fn key_name(&self) -> &str {
        self.name
    }
}

/// One session of a request: a cheap, cloneable handle.
///
/// The session is loaded lazily on first use (no store call for handlers
/// that never touch it), so every accessor is `async`. Changes are saved
/// by the adapter after the handler returns.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

pub(crate) struct SessionInner {
    engine: Arc<Engine>,
    ctx: Context,
    /// Never held across an await: a plain lock costs a fraction of an
    /// async one, and every access takes it. `State::loading` marks the
    /// one load under way; others wait for `load_ended`.
    state: std::sync::Mutex<State>,
    load_ended: tokio::sync::Notify,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.engine.config.name)
            .field("tokens", &self.inner.ctx.candidates.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        engine: Arc<Engine>,
        candidates: Vec<String>,
        span: tracing::Span,
        user_agent: Option<Arc<str>>,
    ) -> Self {
        Session {
            inner: Arc::new(SessionInner {
                engine,
                ctx: Context {
                    candidates,
                    span,
                    user_agent,
                },
                state: std::sync::Mutex::new(State::default()),
                load_ended: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The session's configured name.
    pub fn name(&self) -> &str {
        &self.inner.engine.config.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state once the session is loaded, loading it first
    /// if needed. Concurrent first uses load once.
    async fn with_state<R>(
        &self,
        f: impl FnOnce(&mut State, &SessionConfig) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let (engine, ctx) = (&*self.inner.engine, &self.inner.ctx);
        loop {
            let load_ended = {
                let mut state = self.state();
                if state.loaded.is_some() {
                    return f(&mut state, &engine.config);
                }
                if !state.loading {
                    state.loading = true;
                    break;
                }
                self.load_ended()
            };
            load_ended.await;
        }
        // Clears `loading` and wakes the waiters however the load ends,
        // even if this future is dropped; after `f`, which runs on the
        // freshly loaded state before anyone else can take it.
        let _loading = LoadingFlag(self);
        let loaded = engine.load(ctx).instrument(ctx.span.clone()).await?;
        let mut state = self.state();
        state.loaded = Some(loaded);
        f(&mut state, &engine.config)
    }

    /// A future that completes when the load under way ends; made while the
    /// state is locked, so that end cannot be missed.
    fn load_ended(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.inner.load_ended.notified());
        notified.as_mut().enable();
        notified
    }

    /// Runs `f` on the loaded session, loading it first if needed.
    async fn with<R>(
        &self,
        f: impl FnOnce(&mut Loaded, &SessionConfig) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        self.with_state(|state, config| {
            f(
                state.loaded.as_mut().expect("with_state loads first"),
                config,
            )
        })
        .await
    }

    /// The value under `key`, or `None`. A value of another type is an error.
    ///
    /// ```no_run
    /// # async fn f(session: session_core::Session) -> Result<(), session_core::SessionError> {
    /// let n: Option<u64> = session.get("n").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), or a
    /// stored value that is not a `T`.
    pub async fn get<T, K>(&self, key: &K) -> Result<Option<T>, SessionError>
    where
        T: DeserializeOwned,
        K: Key<T> + ?Sized,
    {
        self.with(|l, _| {
            l.record
                .values
                .get(key.key_name())
                .map(|v| from_value(v).map_err(Into::into))
                .transpose()
        })
        .await
    }

    /// Stores `value` under `key`. Refused when the key is a constant
    /// attribute, or when the configured codec cannot keep the value exactly.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), a key
    /// that is a constant attribute, or a value the codec cannot keep exactly.
    pub async fn insert<T, K>(&self, key: &K, value: &T) -> Result<(), SessionError>
    where
        T: Serialize + ?Sized,
        K: Key<T> + ?Sized,
    {
        let value = to_value(value)?;
        let name = key.key_name().to_owned();
        self.with(|l, config| {
            config.codec.check(&value)?;
            l.change(Change::Insert(name, value))
        })
        .await
    }

    /// Replaces the value under `key` with `f(old)` and returns the new
    /// value: an atomic read-modify-write. When another request saved the
    /// session meanwhile, `f` runs again on the value that request wrote, so
    /// N concurrent `update`s of a counter count exactly N, on every store.
    ///
    /// A plain [`get`](Self::get) then [`insert`](Self::insert) is
    /// last-writer-wins per key instead: the merge replays the inserted
    /// value, not the computation. `f` may run more than once, so it should
    /// have no side effects; `old` is `None` when the key is absent (or, on
    /// a replay, holds a value that is not a `T`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::SessionError> {
    /// use session_core::{KeyRing, SessionConfig, SessionKey, SessionManager};
    /// const COUNTER: SessionKey<u64> = SessionKey::new("n");
    /// # let manager = SessionManager::new(SessionConfig::cookie(KeyRing::generate().unwrap())).unwrap();
    /// # let request = manager.start_by_name(|_| None);
    /// # let session = request.primary();
    /// let n = session.update(&COUNTER, |n| n.unwrap_or(0) + 1).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The key is a constant attribute, the stored value is not a `T`, the
    /// codec cannot keep the new value exactly, or the store failed to load.
    pub async fn update<T, K, F>(&self, key: &K, f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned,
        K: Key<T> + ?Sized,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let name = key.key_name().to_owned();
        self.with(|l, config| {
            let old = l
                .record
                .values
                .get(&name)
                .map(from_value::<T>)
                .transpose()?;
            let new = f(old);
            let value = to_value(&new)?;
            config.codec.check(&value)?;
            let replayable: UpdateFn = Arc::new(move |old: Option<&Value>| {
                let old = old.and_then(|v| from_value::<T>(v).ok());
                Ok(to_value(&f(old))?)
            });
            l.update(name, replayable, value)?;
            Ok(new)
        })
        .await
    }

    /// Removes the value under `key`; returns whether there was one.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), a key
    /// that is a constant attribute, or a removed value that is not a `T`.
    pub async fn remove<T, K>(&self, key: &K) -> Result<bool, SessionError>
    where
        T: ?Sized,
        K: Key<T> + ?Sized,
    {
        let name = key.key_name();
        self.with(|l, _| {
            let existed = l.record.values.contains_key(name);
            if existed {
                l.change(Change::Remove(name.to_owned()))?;
            }
            Ok(existed)
        })
        .await
    }

    /// Whether a value is stored under `key`.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.record.values.contains_key(key)))
            .await
    }

    /// The names of all values.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        self.with(|l, _| Ok(l.record.values.keys().cloned().collect()))
            .await
    }

    /// Removes every value except constant attributes, and every flash.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.with(|l, _| l.change(Change::Clear)).await
    }

    /// Sets a constant attribute: readable like any value, fixed for the
    /// session's life. Allowed only while the session is new or renewed in
    /// this request (at login, say); later requests get
    /// [`SessionError::ConstantAttribute`] when they try to change it.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), a key
    /// that is already a constant attribute, or a value the codec cannot keep
    /// exactly.
    pub async fn insert_constant<T, K>(&self, key: &K, value: &T) -> Result<(), SessionError>
    where
        T: Serialize + ?Sized,
        K: Key<T> + ?Sized,
    {
        let value = to_value(value)?;
        let name = key.key_name().to_owned();
        self.with(|l, config| {
            config.codec.check(&value)?;
            if !l.constants_open {
                return Err(SessionError::ConstantNotAllowed(name));
            }
            l.change(Change::Constant(name, value))
        })
        .await
    }

    /// Adds a flash of `kind`: a value that lasts until read.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), or a
    /// message the codec cannot keep exactly.
    pub async fn flash<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        let value = to_value(value)?;
        self.with(|l, config| {
            config.codec.check(&value)?;
            l.change(Change::FlashAdd(kind.to_owned(), value))
        })
        .await
    }

    /// Takes every pending flash of `kind`, oldest first. If one does not
    /// deserialize as `T`, nothing is taken.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), or a
    /// pending message that is not a `T` (nothing is taken then).
    pub async fn take_flashes<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>, SessionError> {
        self.with(|l, _| {
            let taken = l
                .record
                .flashes
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, v)| from_value(v))
                .collect::<Result<Vec<T>, _>>()?;
            if !taken.is_empty() {
                let count = taken.len();
                l.change(Change::FlashTake {
                    kind: Some(kind.to_owned()),
                    count,
                })?;
            }
            Ok(taken)
        })
        .await
    }

    /// Takes every pending flash of every kind, as `(kind, value)` in the
    /// order they were added. If one does not deserialize as `T`, nothing is
    /// taken.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), or a
    /// pending message that is not a `T` (nothing is taken then).
    pub async fn take_all_flashes<T: DeserializeOwned>(
        &self,
    ) -> Result<Vec<(String, T)>, SessionError> {
        self.with(|l, _| {
            let taken = l
                .record
                .flashes
                .iter()
                .map(|(k, v)| from_value(v).map(|v| (k.clone(), v)))
                .collect::<Result<Vec<(String, T)>, _>>()?;
            if !taken.is_empty() {
                l.change(Change::FlashTake {
                    kind: None,
                    count: taken.len(),
                })?;
            }
            Ok(taken)
        })
        .await
    }

    /// Pending flashes of `kind`, without taking them.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503), or a
    /// pending message that is not a `T`.
    pub async fn peek_flashes<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>, SessionError> {
        self.with(|l, _| {
            l.record
                .flashes
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, v)| from_value(v).map_err(Into::into))
                .collect()
        })
        .await
    }

    /// Persistent ("remember me": the cookie outlives the browser, with
    /// `Max-Age`) or browser-session lifetime for this session.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), SessionError> {
        self.with(|l, _| {
            if l.record.persistent != persistent {
                l.change(Change::Persistent(persistent))?;
            }
            Ok(())
        })
        .await
    }

    /// Whether the session is persistent.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn is_persistent(&self) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.record.persistent)).await
    }

    /// Whether the request came without a valid session.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn is_new(&self) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.is_new())).await
    }

    /// Gives the session a new id (and token) while keeping its data, and
    /// deletes the old id: call it on login and privilege changes against
    /// session fixation. Constant attributes may be set again afterwards.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn renew(&self) -> Result<(), SessionError> {
        self.with_state(|state, _| {
            state.renew();
            Ok(())
        })
        .await
    }

    /// Ends the session: its stored record is deleted and the client gets a
    /// removal cookie. Values set after `purge` in the same request start a
    /// new session.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session (answered with 503).
    pub async fn purge(&self) -> Result<(), SessionError> {
        let now = self.inner.engine.now().unix_timestamp();
        self.with_state(|state, config| {
            state.purge(now, config.persistent_by_default());
            Ok(())
        })
        .await
    }

    /// Signs the session in as `user_id` (any string the application
    /// chooses; stores only ever see a keyed hash of it) and renews its id,
    /// as a login must. The session is entered in the user's index with
    /// this request's `User-Agent` when the request finishes; signing in as
    /// another user moves it from that user's list to this one's. With
    /// [`SessionConfig::max_sessions_per_user`], the user's least recently
    /// seen sessions past the limit are ended.
    ///
    /// ```
    /// # use session_core::{KeyRing, SessionConfig, SessionManager};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keys = KeyRing::generate()?;
    /// // Cookie sessions need a store for the index alone; server stores keep it themselves.
    /// let manager = SessionManager::new(SessionConfig::cookie(keys))?;
    /// let request = manager.start_by_name(|_| None);
    /// let err = request.sessions().primary().sign_in("ada").await.unwrap_err();
    /// assert!(err.to_string().contains("no user index"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NoUserIndex`] when the session's store keeps no user
    /// index, or a store that fails while loading the session.
    pub async fn sign_in(&self, user_id: &str) -> Result<(), SessionError> {
        self.sign_in_with(user_id, BTreeMap::new()).await
    }

    /// [`sign_in`](Self::sign_in) with small metadata kept in the user's
    /// list beside the session (a device name, the sign-in method): at most
    /// [`MAX_SIGN_IN_METADATA`] bytes of keys and values.
    ///
    /// # Errors
    ///
    /// As [`sign_in`](Self::sign_in), and [`CodecError::Serialize`] for
    /// metadata over the limit.
    pub async fn sign_in_with(
        &self,
        user_id: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), SessionError> {
        let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_SIGN_IN_METADATA {
            return Err(CodecError::Serialize(format!(
                "sign-in metadata of {size} bytes is over the {MAX_SIGN_IN_METADATA}-byte limit"
            ))
            .into());
        }
        let binding = self.inner.engine.bind(user_id)?;
        self.with_state(|state, _| {
            let loaded = state.loaded.as_mut().expect("with_state loads first");
            loaded.change(Change::Bind(Some(binding.clone())))?;
            state.sign_in = Some(PendingSignIn { binding, metadata });
            state.renew();
            Ok(())
        })
        .await
    }

    /// Signs the session out: it leaves its user's list and gets a new id;
    /// its values stay, including any the application keeps about the user
    /// (remove those, or call [`purge`](Self::purge) to end the session
    /// whole, which also takes it off the list).
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session.
    pub async fn sign_out(&self) -> Result<(), SessionError> {
        self.with_state(|state, _| {
            let loaded = state.loaded.as_mut().expect("with_state loads first");
            if loaded.record.user.is_some() {
                loaded.change(Change::Bind(None))?;
                state.renew();
            }
            state.sign_in = None;
            Ok(())
        })
        .await
    }

    /// This session's handle in its user's list, when signed in.
    ///
    /// # Errors
    ///
    /// A store that fails while loading the session.
    pub async fn user_handle(&self) -> Result<Option<SessionHandle>, SessionError> {
        self.with(|loaded, _| Ok(loaded.record.user.as_ref().map(|b| b.handle.clone())))
            .await
    }

    async fn binding(&self) -> Result<Option<Binding>, SessionError> {
        self.with(|loaded, _| Ok(loaded.record.user.clone())).await
    }

    /// The live sessions of the user this session is signed in as, most
    /// recently seen first, this one marked [`current`](UserSession::current);
    /// empty when it is not signed in. Sessions signed in before a key
    /// rotation are listed by [`SessionManager::user_sessions`](crate::SessionManager::user_sessions),
    /// which knows the user id.
    ///
    /// # Errors
    ///
    /// The store or its user index failed.
    pub async fn user_sessions(&self) -> Result<Vec<UserSession>, SessionError> {
        let Some(binding) = self.binding().await? else {
            return Ok(Vec::new());
        };
        self.inner
            .engine
            .list_user(&binding.user, Some(&binding.handle))
            .await
    }

    /// Ends one session of this session's user, by handle; whether it was
    /// live. Ending this very session purges it.
    ///
    /// # Errors
    ///
    /// The store or its user index failed.
    pub async fn end_user_session(&self, handle: &SessionHandle) -> Result<bool, SessionError> {
        let Some(binding) = self.binding().await? else {
            return Ok(false);
        };
        let ended = self
            .inner
            .engine
            .end_user_session(&binding.user, handle)
            .await?;
        if *handle == binding.handle {
            self.purge().await?;
        }
        Ok(ended)
    }

    /// Ends every session of this session's user but this one ("sign out
    /// my other devices"); how many were live. During a key rotation,
    /// sessions the user signed in before it are indexed under the older
    /// key: [`SessionManager::end_user_sessions`](crate::SessionManager::end_user_sessions)
    /// with the user id reaches those too.
    ///
    /// # Errors
    ///
    /// The store or its user index failed.
    pub async fn end_other_user_sessions(&self) -> Result<usize, SessionError> {
        let Some(binding) = self.binding().await? else {
            return Ok(0);
        };
        self.inner
            .engine
            .end_user_sessions(&binding.user, Some(&binding.handle))
            .await
    }

    /// Ends every session of this session's user, this one included (it is
    /// purged); how many were live. (During a key rotation, see
    /// [`end_other_user_sessions`](Self::end_other_user_sessions).)
    ///
    /// # Errors
    ///
    /// The store or its user index failed.
    pub async fn end_all_user_sessions(&self) -> Result<usize, SessionError> {
        let Some(binding) = self.binding().await? else {
            return Ok(0);
        };
        let ended = self
            .inner
            .engine
            .end_user_sessions(&binding.user, None)
            .await?;
        self.purge().await?;
        Ok(ended)
    }

    /// Whether this request loaded the session (its response then depends
    /// on the token). A session in use elsewhere counts as loaded.
    pub(crate) fn was_loaded(&self) -> bool {
        let state = self.state();
        state.loaded.is_some() || state.loading
    }

    /// The session's configuration.
    pub(crate) fn config(&self) -> &SessionConfig {
        &self.inner.engine.config
    }

    /// Decides and performs what this request does with the session; call
    /// once, after the handler. Adapters add the returned header to the
    /// response. A second call does nothing.
    ///
    /// # Errors
    ///
    /// A store that fails or stays contended past the compare-and-swap
    /// budget, a record too large for its store, or a cookie over the
    /// browser limit. The stored session is then left as it was.
    pub(crate) async fn finish_now(&self) -> Result<Finished, SessionError> {
        let (engine, ctx) = (&*self.inner.engine, &self.inner.ctx);
        let (loaded, action, sign_in) = loop {
            let load_ended = {
                let mut state = self.state();
                if !state.loading {
                    if state.finished {
                        return Ok(Finished::new(Outcome::Nothing, None));
                    }
                    state.finished = true;
                    // Most requests never use the session: nothing to do,
                    // no span, no clock.
                    let Some(loaded) = state.loaded.take() else {
                        return Ok(Finished::new(Outcome::Nothing, None));
                    };
                    break (loaded, state.action, state.sign_in.take());
                }
                // A load is under way (in a task the handler started): its
                // result is this request's session.
                self.load_ended()
            };
            load_ended.await;
        };
        // A renew, a purge and a key-rotation move are several store calls
        // whose order keeps a logout a logout and no write lost: they run
        // in a task of their own, so a request that goes away (its future
        // dropped: the client disconnected) cannot stop them half-way.
        let detached = action != Action::Keep
            || matches!(&loaded.origin, Origin::Server(origin) if !origin.primary);
        if detached {
            let inner = self.inner.clone();
            let task = tokio::spawn(async move {
                let (engine, ctx) = (&*inner.engine, &inner.ctx);
                engine
                    .finish(ctx, loaded, action, sign_in)
                    .instrument(ctx.span.clone())
                    .await
            });
            return task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a session's save task failed");
                Err(StoreError::Backend("the session's save task failed".into()).into())
            });
        }
        engine
            .finish(ctx, loaded, action, sign_in)
            .instrument(ctx.span.clone())
            .await
    }
}

/// Marks the end of a load: clears `State::loading` and wakes the waiters.
struct LoadingFlag<'a>(&'a Session);

impl Drop for LoadingFlag<'_> {
    fn drop(&mut self) {
        self.0.state().loading = false;
        self.0.inner.load_ended.notify_waiters();
    }
}
