//! The per-request engine: from request headers to sessions, and back to
//! response headers after the handler.

use std::fmt;
use std::sync::Arc;

use crate::config::{SessionConfig, Transport};
use crate::error::{ConfigError, SessionError};
use crate::keys::KeyRing;
use crate::session::Session;
use crate::store::IntoStore;
use crate::transport::{read_tokens, ResponseHeader};

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
    configs: Arc<[Arc<SessionConfig>]>,
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
        Ok(SessionManager {
            configs: Arc::from(vec![Arc::new(config)]),
        })
    }

    /// One sealed-cookie session named `sid` with the default settings
    /// (the common case; [`new`](Self::new) takes any configuration).
    pub fn cookie(keys: KeyRing) -> Self {
        Self::new(SessionConfig::cookie(keys)).expect("the default cookie configuration is valid")
    }

    /// One session named `sid` kept in `store`, with the default settings.
    pub fn server(store: impl IntoStore, keys: KeyRing) -> Self {
        Self::new(SessionConfig::server(store, keys))
            .expect("the default server configuration is valid")
    }

    /// Adds another named session.
    ///
    /// # Errors
    ///
    /// The configuration is invalid, or another session has its name.
    pub fn with_session(self, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if self.configs.iter().any(|c| c.name == config.name) {
            return Err(ConfigError::DuplicateName(config.name));
        }
        let mut configs = self.configs.to_vec();
        configs.push(Arc::new(config));
        Ok(SessionManager {
            configs: Arc::from(configs),
        })
    }

    /// The names of the configured sessions, primary first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.configs.iter().map(|c| c.name.as_str())
    }

    /// The request headers that can carry a token, each named once: `cookie`
    /// when a session uses the cookie transport, then the header transports'
    /// names. For adapters whose framework hands out headers by value, so
    /// they can pass [`start`](Self::start) just these.
    ///
    /// ```
    /// use session_core::{KeyRing, SessionConfig, SessionManager};
    ///
    /// let keys = KeyRing::generate().unwrap();
    /// let manager = SessionManager::new(SessionConfig::cookie(keys.clone()))?
    ///     .with_session(SessionConfig::cookie(keys.clone()).name("prefs"))?
    ///     .with_session(SessionConfig::cookie(keys).name("api").header_transport("X-Api-Session"))?;
    /// assert_eq!(manager.token_headers().collect::<Vec<_>>(), ["cookie", "X-Api-Session"]);
    /// # Ok::<(), session_core::ConfigError>(())
    /// ```
    pub fn token_headers(&self) -> impl Iterator<Item = &str> {
        let configs = &self.configs;
        let cookie = configs
            .iter()
            .any(|c| c.transport == Transport::Cookie)
            .then_some("cookie");
        let headers = configs.iter().enumerate().filter_map(move |(i, c)| {
            let Transport::Header(name) = &c.transport else {
                return None;
            };
            let seen = name.eq_ignore_ascii_case("cookie")
                || configs[..i].iter().any(
                    |e| matches!(&e.transport, Transport::Header(n) if n.eq_ignore_ascii_case(name)),
                );
            (!seen).then_some(name.as_str())
        });
        cookie.into_iter().chain(headers)
    }

    /// Starts a request whose headers the framework looks up by name:
    /// `values(name)` gives the values of one header (the name in any case),
    /// and only the headers that can carry a token
    /// ([`token_headers`](Self::token_headers)) are asked for, not the dozen
    /// others a browser sends. Otherwise as [`start`](Self::start).
    ///
    /// ```
    /// use session_core::{KeyRing, SessionManager};
    ///
    /// let manager = SessionManager::cookie(KeyRing::generate().unwrap());
    /// let headers = [("cookie", "theme=dark"), ("user-agent", "curl")];
    /// let request = manager.start_by_name(|name| {
    ///     headers
    ///         .iter()
    ///         .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
    ///         .map(|(_, value)| value.as_bytes())
    /// });
    /// assert_eq!(request.primary().name(), "sid");
    /// ```
    pub fn start_by_name<'m, 'a, V>(
        &'m self,
        mut values: impl FnMut(&'m str) -> V,
    ) -> RequestSessions
    where
        V: IntoIterator<Item = &'a [u8]>,
    {
        self.start(
            self.token_headers()
                .flat_map(|name| values(name).into_iter().map(move |value| (name, value))),
        )
    }

    /// Starts a request: reads its tokens from `headers` (name, value pairs)
    /// and returns the request's sessions, not yet loaded.
    pub fn start<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> RequestSessions {
        let tokens = read_tokens(&self.configs, headers);
        let sessions = self
            .configs
            .iter()
            .zip(tokens)
            .map(|(config, tokens)| {
                // The session's span: its name, then what loading found and
                // what the request did with it (recorded as they happen).
                let span = tracing::debug_span!(
                    "session",
                    name = %config.name,
                    load = tracing::field::Empty,
                    outcome = tracing::field::Empty
                );
                Session::new(config.clone(), tokens, span)
            })
            .collect();
        RequestSessions { sessions }
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.configs.iter()).finish()
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

    /// Finishes every session (see [`Session::finish`]) and returns the
    /// headers to add to the response: tokens, and when a session was read,
    /// `Vary` on what its token travels in and `Cache-Control: private`
    /// (as Django and Rails do), so a shared cache never serves one user's
    /// session to another. All sessions are attempted; the first error is
    /// returned.
    ///
    /// # Errors
    ///
    /// The first session that could not be saved (see
    /// [`SessionError::http_status`] for the answer to give).
    pub(crate) async fn finish_now(&self) -> Result<Vec<ResponseHeader>, SessionError> {
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
