//! The manager of an application's sessions: from request headers to the
//! request's sessions, and (through [`PendingRequest`], which only the
//! adapter holds) back to response headers after the handler.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::{SessionConfig, Transport};
use crate::engine::{Clock, Engine};
use crate::error::{ConfigError, SessionError};
use crate::index::SessionHandle;
use crate::save::Finished;
use crate::session::Session;
use crate::transport::{read_tokens, ResponseHeader};
use crate::users::UserSession;

/// The sessions an application uses, each with its own name, store and
/// options. Built once at start-up and shared (cloning is cheap).
///
/// ```
/// use session_core::{KeyRing, SessionConfig, SessionManager};
///
/// let keys = KeyRing::generate().unwrap();
/// let manager = SessionManager::new(SessionConfig::cookie(keys.clone()))?
///     .with_session(SessionConfig::cookie(keys).name("prefs"))?;
/// assert_eq!(manager.names().collect::<Vec<_>>(), ["sid", "prefs"]);
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SessionManager {
    engines: Arc<[Arc<Engine>]>,
    clock: Clock,
}

impl SessionManager {
    /// A manager with one (primary) session.
    ///
    /// # Errors
    ///
    /// The configuration is invalid ([`SessionConfig`]'s settings say
    /// which checks apply).
    pub fn new(config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let clock = Clock::default();
        Ok(SessionManager {
            engines: Arc::from(vec![Arc::new(Engine::new(config, clock.clone()))]),
            clock,
        })
    }

    /// Replaces the clock of every session (configured so far and added
    /// later), so tests can move time; sessions otherwise use the system
    /// clock. Call it while building the manager: requests started before
    /// keep the old clock.
    #[must_use]
    pub fn with_clock(self, now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        let clock = Clock::new(now);
        let engines = self
            .engines
            .iter()
            .map(|e| Arc::new(Engine::new(e.config.clone(), clock.clone())))
            .collect();
        SessionManager { engines, clock }
    }

    /// Adds another named session.
    ///
    /// # Errors
    ///
    /// The configuration is invalid, or another session has its name.
    pub fn with_session(self, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if self.engines.iter().any(|e| e.config.name == config.name) {
            return Err(ConfigError::DuplicateName(config.name));
        }
        let mut engines = self.engines.to_vec();
        engines.push(Arc::new(Engine::new(config, self.clock.clone())));
        Ok(SessionManager {
            engines: Arc::from(engines),
            clock: self.clock,
        })
    }

    /// The names of the configured sessions, primary first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.configs().map(|c| c.name.as_str())
    }

    /// The request headers that can carry a token, each named once: `cookie`
    /// when a session uses the cookie transport, then the header transports'
    /// names: the headers [`start_by_name`](Self::start_by_name) asks for.
    ///
    /// ```
    /// use session_core::{KeyRing, SessionConfig, SessionManager, Transport};
    ///
    /// let keys = KeyRing::generate().unwrap();
    /// let manager = SessionManager::new(SessionConfig::cookie(keys.clone()))?
    ///     .with_session(SessionConfig::cookie(keys.clone()).name("prefs"))?
    ///     .with_session(SessionConfig::cookie(keys).name("api").transport(Transport::header("X-Api-Session")))?;
    /// assert_eq!(manager.token_headers().collect::<Vec<_>>(), ["cookie", "X-Api-Session"]);
    /// # Ok::<(), session_core::ConfigError>(())
    /// ```
    pub fn token_headers(&self) -> impl Iterator<Item = &str> {
        let engines = &self.engines;
        let cookie = self
            .configs()
            .any(|c| c.transport == Transport::Cookie)
            .then_some("cookie");
        let headers = self.configs().enumerate().filter_map(move |(i, c)| {
            let Transport::Header(name) = &c.transport else {
                return None;
            };
            let seen = name.eq_ignore_ascii_case("cookie")
                || engines[..i].iter().any(
                    |e| matches!(&e.config.transport, Transport::Header(n) if n.eq_ignore_ascii_case(name)),
                );
            (!seen).then_some(name.as_str())
        });
        cookie.into_iter().chain(headers)
    }

    fn configs(&self) -> impl Iterator<Item = &SessionConfig> {
        self.engines.iter().map(|e| &e.config)
    }

    /// Starts a request: reads its tokens from the headers and returns the
    /// request's sessions, not yet loaded (a session loads on first use).
    /// The framework looks its headers up by name: `values(name)` gives the
    /// values of one header (the name in any case), and only the headers
    /// that can carry a token ([`token_headers`](Self::token_headers)) are
    /// asked for, not the dozen others a browser sends.
    ///
    /// What comes back is for the adapter alone: handlers get
    /// [`PendingRequest::sessions`], and the adapter finishes the request
    /// after the handler.
    ///
    /// ```
    /// use session_core::{KeyRing, SessionConfig, SessionManager};
    ///
    /// let manager = SessionManager::new(SessionConfig::cookie(KeyRing::generate().unwrap()))?;
    /// let headers = [("cookie", "theme=dark"), ("user-agent", "curl")];
    /// let request = manager.start_by_name(|name| {
    ///     headers
    ///         .iter()
    ///         .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
    ///         .map(|(_, value)| value.as_bytes())
    /// });
    /// assert_eq!(request.sessions().primary().name(), "sid");
    /// # Ok::<(), session_core::ConfigError>(())
    /// ```
    pub fn start_by_name<'m, 'a, V>(
        &'m self,
        mut values: impl FnMut(&'m str) -> V,
    ) -> PendingRequest
    where
        V: IntoIterator<Item = &'a [u8]>,
    {
        // Kept for a sign-in; not read at all when no session can sign in.
        let user_agent = self
            .engines
            .iter()
            .any(|e| e.keeps_users)
            .then(|| values("user-agent").into_iter().next())
            .flatten()
            .map(|raw| Arc::<str>::from(crate::users::user_agent(raw)));
        self.start(
            self.token_headers()
                .flat_map(|name| values(name).into_iter().map(move |value| (name, value))),
            user_agent,
        )
    }

    fn primary_engine(&self) -> &Engine {
        &self.engines[0]
    }

    /// The live sessions of the user `user_id` in the primary session's
    /// index, most recently seen first (none is
    /// [`current`](UserSession::current)): for an admin tool or a
    /// background job, with no request at hand. Sessions indexed under an
    /// older key of the ring (signed in before a rotation) are included.
    ///
    /// # Errors
    ///
    /// The store keeps no user index, or it failed.
    pub async fn user_sessions(&self, user_id: &str) -> Result<Vec<UserSession>, SessionError> {
        let engine = self.primary_engine();
        let mut all = Vec::new();
        for user in engine.user_keys(user_id) {
            all.extend(engine.list_user(&user, None).await?);
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        Ok(all)
    }

    /// Ends one session of the user `user_id` by its handle; whether it
    /// was live. It is refused from its next request on (within
    /// [`MEMBER_CACHE`](crate::MEMBER_CACHE) on other servers).
    ///
    /// # Errors
    ///
    /// The store keeps no user index, or it failed.
    pub async fn end_user_session(
        &self,
        user_id: &str,
        handle: &SessionHandle,
    ) -> Result<bool, SessionError> {
        let engine = self.primary_engine();
        let mut ended = false;
        for user in engine.user_keys(user_id) {
            ended |= engine.end_user_session(&user, handle).await?;
        }
        Ok(ended)
    }

    /// Ends every session of the user `user_id` (after a password change,
    /// say); how many were live.
    ///
    /// # Errors
    ///
    /// The store keeps no user index, or it failed.
    pub async fn end_user_sessions(&self, user_id: &str) -> Result<usize, SessionError> {
        let engine = self.primary_engine();
        let mut ended = 0;
        for user in engine.user_keys(user_id) {
            ended += engine.end_user_sessions(&user, None).await?;
        }
        Ok(ended)
    }

    /// [`start_by_name`](Self::start_by_name) from (name, value) pairs.
    pub(crate) fn start<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        user_agent: Option<Arc<str>>,
    ) -> PendingRequest {
        let tokens = read_tokens(&self.engines, headers);
        let sessions = self
            .engines
            .iter()
            .zip(tokens)
            .map(|(engine, tokens)| {
                // The session's span: its name, then what loading found and
                // what the request did with it (recorded as they happen).
                let span = tracing::debug_span!(
                    "session",
                    name = %engine.config.name,
                    load = tracing::field::Empty,
                    outcome = tracing::field::Empty
                );
                Session::new(engine.clone(), tokens, span, user_agent.clone())
            })
            .collect();
        PendingRequest {
            sessions: RequestSessions { sessions },
        }
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.configs()).finish()
    }
}

/// The sessions of one request. Cloning is cheap; clones share state.
#[derive(Clone, Debug)]
pub struct RequestSessions {
    sessions: Arc<[Session]>,
}

impl RequestSessions {
    /// The primary (first configured) session.
    pub fn primary(&self) -> &Session {
        &self.sessions[0]
    }

    /// The session named `name`.
    ///
    /// # Errors
    ///
    /// No session of that name is configured.
    pub fn named(&self, name: &str) -> Result<&Session, SessionError> {
        self.sessions
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| SessionError::UnknownSession(name.to_owned()))
    }

    /// Every session, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter()
    }

    async fn finish_all(&self) -> Result<Vec<ResponseHeader>, SessionError> {
        // One allocation: at most a token and a `Vary` per session, and
        // `Cache-Control`. Tokens first, then the `Vary`s.
        let mut headers = Vec::with_capacity(self.sessions.len() * 2 + 1);
        let mut tokens = 0;
        let mut first_error = None;
        let mut any_loaded = false;
        for session in self.sessions.iter() {
            if session.was_loaded() {
                any_loaded = true;
                let vary = ResponseHeader::vary(session.config());
                if !headers[tokens..].contains(&vary) {
                    headers.push(vary);
                }
            }
            match session.finish_now().await {
                Ok(finished) => {
                    if let Some(token) = finished.header {
                        headers.insert(tokens, token);
                        tokens += 1;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if any_loaded {
            headers.push(ResponseHeader::private_cache());
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(headers),
        }
    }
}

/// A started request as its adapter holds it: the sessions handed to the
/// handler, and the one way to finish them after it. Handlers never get
/// this type (the adapters' handles lead to [`RequestSessions`] and
/// [`Session`], which cannot finish), so no handler can end a request's
/// sessions early and have a later change silently dropped.
#[derive(Debug)]
pub struct PendingRequest {
    sessions: RequestSessions,
}

impl std::ops::Deref for PendingRequest {
    type Target = RequestSessions;

    fn deref(&self) -> &RequestSessions {
        &self.sessions
    }
}

impl PendingRequest {
    /// The request's sessions, for the handler (cloning is cheap; clones
    /// share state).
    pub fn sessions(&self) -> &RequestSessions {
        &self.sessions
    }

    /// Decides and performs what the request does with its sessions, after
    /// the handler: save, touch, renew, purge or nothing. Returns the
    /// headers to add to the response: tokens, and when a session was read,
    /// `Vary` on what its token travels in and `Cache-Control: private`
    /// (to add only when the handler set none: see
    /// [`ResponseHeader::only_if_absent`]), as Django and Rails do, so a
    /// shared cache never serves one user's session to another. Every
    /// session is attempted; the first error is returned.
    ///
    /// # Errors
    ///
    /// A store that fails or stays contended past the compare-and-swap
    /// budget, a record too large for its store, or a cookie over the
    /// browser limit (see [`SessionError::http_status`] for the answer to
    /// give). The stored session is then left as it was.
    pub async fn finish(&self) -> Result<Vec<ResponseHeader>, SessionError> {
        self.sessions.finish_all().await
    }

    /// Finishes the primary session alone and says what was done: for
    /// single-session setups that want the outcome (tests, tools), where
    /// [`finish`](Self::finish) gives only headers. No `Vary` or
    /// `Cache-Control` is added.
    ///
    /// # Errors
    ///
    /// As [`finish`](Self::finish).
    pub async fn finish_primary(&self) -> Result<Finished, SessionError> {
        self.sessions.primary().finish_now().await
    }
}
