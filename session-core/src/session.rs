//! The handle handlers use: typed values, flashes, constants, lifecycle.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{from_value, to_value, Record};
use crate::config::SessionConfig;
use crate::error::SessionError;
use crate::lifecycle::{Loaded, State};

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

/// A change made by a request, replayed on a fresher record when a
/// compare-and-swap save finds that another request saved first.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Insert(String, Value),
    Remove(String),
    Clear,
    Constant(String, Value),
    FlashAdd(String, Value),
    /// Took the first `count` flashes of `kind` (all kinds when `None`).
    FlashTake {
        kind: Option<String>,
        count: usize,
    },
    Persistent(bool),
}

impl Change {
    /// Applies the change; refuses to change a constant attribute.
    pub(crate) fn apply(&self, record: &mut Record) -> Result<(), SessionError> {
        match self {
            Change::Insert(k, v) => {
                refuse_constant(record, k)?;
                record.values.insert(k.clone(), v.clone());
            }
            Change::Remove(k) => {
                refuse_constant(record, k)?;
                record.values.remove(k);
            }
            Change::Clear => {
                let constants = &record.constants;
                record.values.retain(|k, _| constants.contains(k));
                record.flashes.clear();
            }
            Change::Constant(k, v) => {
                record.values.insert(k.clone(), v.clone());
                record.constants.insert(k.clone());
            }
            Change::FlashAdd(kind, v) => record.flashes.push((kind.clone(), v.clone())),
            Change::FlashTake { kind, count } => {
                let mut left = *count;
                record.flashes.retain(|(k, _)| {
                    let matches = kind.as_ref().is_none_or(|want| want == k);
                    if matches && left > 0 {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            Change::Persistent(p) => record.persistent = *p,
        }
        Ok(())
    }
}

fn refuse_constant(record: &Record, key: &str) -> Result<(), SessionError> {
    if record.constants.contains(key) {
        Err(SessionError::ConstantAttribute(key.to_owned()))
    } else {
        Ok(())
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
    pub(crate) config: Arc<SessionConfig>,
    /// Tokens the request carried for this session, in order of appearance.
    pub(crate) candidates: Vec<String>,
    pub(crate) state: tokio::sync::Mutex<State>,
    pub(crate) span: tracing::Span,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.config.name)
            .field("tokens", &self.inner.candidates.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        config: Arc<SessionConfig>,
        candidates: Vec<String>,
        span: tracing::Span,
    ) -> Self {
        Session {
            inner: Arc::new(SessionInner {
                config,
                candidates,
                state: tokio::sync::Mutex::new(State::default()),
                span,
            }),
        }
    }

    /// The session's configured name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Runs `f` on the loaded session, loading it first if needed.
    async fn with<R>(
        &self,
        f: impl FnOnce(&mut Loaded, &SessionConfig) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let mut state = self.inner.state.lock().await;
        let loaded = self.ensure_loaded(&mut state).await?;
        f(loaded, &self.inner.config)
    }

    /// The value under `key`, or `None`. A value of another type is an error.
    ///
    /// ```no_run
    /// # async fn f(session: session_core::Session) -> Result<(), session_core::SessionError> {
    /// let n: Option<u64> = session.get("n").await?;
    /// # Ok(()) }
    /// ```
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

    /// Removes the value under `key`; returns whether there was one.
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
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.record.values.contains_key(key)))
            .await
    }

    /// The names of all values.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        self.with(|l, _| Ok(l.record.values.keys().cloned().collect()))
            .await
    }

    /// Removes every value except constant attributes, and every flash.
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.with(|l, _| l.change(Change::Clear)).await
    }

    /// Sets a constant attribute: readable like any value, fixed for the
    /// session's life. Allowed only while the session is new or renewed in
    /// this request (at login, say); later requests get
    /// [`SessionError::ConstantAttribute`] when they try to change it.
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
    pub async fn is_persistent(&self) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.record.persistent)).await
    }

    /// Whether the request came without a valid session.
    pub async fn is_new(&self) -> Result<bool, SessionError> {
        self.with(|l, _| Ok(l.is_new())).await
    }

    /// Gives the session a new id (and token) while keeping its data, and
    /// deletes the old id: call it on login and privilege changes against
    /// session fixation. Constant attributes may be set again afterwards.
    pub async fn renew(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        state.renew();
        Ok(())
    }

    /// Ends the session: its stored record is deleted and the client gets a
    /// removal cookie. Values set after `purge` in the same request start a
    /// new session.
    pub async fn purge(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let now = self.inner.config.clock.now().unix_timestamp();
        state.purge(now, self.inner.config.persistent_by_default);
        Ok(())
    }
}
