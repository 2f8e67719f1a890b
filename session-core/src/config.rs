//! Configuration of one named session: where it lives, how it travels, how
//! long it lasts, and the cookie it uses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::codec::{Codec, Record};
use crate::error::ConfigError;
use crate::keys::KeyRing;
use crate::seal::SealMode;
use crate::store::{IntoStore, Store};

/// Where session data lives.
#[derive(Clone)]
#[non_exhaustive]
pub enum Storage {
    /// In the cookie (or header) itself, sealed: no server state. A sealed
    /// cookie cannot be revoked before its expiry; renew and purge replace or
    /// remove it on the client only.
    Cookie,
    /// In a server-side store; the client holds only the sealed session id.
    Server(Arc<dyn Store>),
}

impl Storage {
    fn server(store: impl IntoStore) -> Self {
        Storage::Server(store.into_store())
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Cookie => f.write_str("Cookie"),
            Storage::Server(store) => f.debug_tuple("Server").field(store).finish(),
        }
    }
}

/// How the session token travels between client and server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A cookie named after the session.
    Cookie,
    /// A request and response header (for clients that keep no cookies).
    /// The response carries it whenever the token is created or changes, and
    /// with an empty value when the session is purged.
    Header(String),
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    Lax,
    /// Sent everywhere; browsers require `Secure` with it.
    None,
}

impl Transport {
    /// The token in the request and response header `name` (for clients
    /// that keep no cookies), e.g. `Transport::header("x-session-token")`.
    pub fn header(name: impl Into<String>) -> Self {
        Transport::Header(name.into())
    }
}

/// How long a session lasts, the way browsers and users see it: a
/// browser-session lifetime that ends after [`idle_timeout`](Self::idle_timeout)
/// without a request, or a persistent ("remember me") one that lasts
/// [`persistent_max_age`](Self::persistent_max_age) (switched per session
/// with [`Session::set_persistent`](crate::Session::set_persistent)); an
/// optional absolute timeout whatever the activity; and rolling expiry.
///
/// ```
/// use std::time::Duration;
/// use session_core::Lifetime;
///
/// let lifetime = Lifetime::default()
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Some(Duration::from_secs(12 * 3600)))
///     .persistent_by_default(true);
/// # drop(lifetime);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Lifetime {
    idle_timeout: Duration,
    persistent_max_age: Duration,
    absolute_timeout: Option<Duration>,
    rolling: bool,
    refresh_interval: Option<Duration>,
    persistent_by_default: bool,
}

impl Default for Lifetime {
    /// Browser-session sessions that end after 30 minutes idle; persistent
    /// ones after 30 days idle; no absolute timeout; rolling expiry
    /// refreshed after a thirtieth of the timeout.
    fn default() -> Self {
        Lifetime {
            idle_timeout: Duration::from_secs(30 * 60),
            persistent_max_age: Duration::from_secs(30 * 24 * 3600),
            absolute_timeout: None,
            rolling: true,
            refresh_interval: None,
            persistent_by_default: false,
        }
    }
}

impl Lifetime {
    /// Browser-session sessions end after this long without a request.
    /// Default 30 minutes.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Persistent ("remember me") sessions end after this long without a
    /// request; also the cookie's `Max-Age`. Default 30 days.
    pub fn persistent_max_age(mut self, max_age: Duration) -> Self {
        self.persistent_max_age = max_age;
        self
    }

    /// Every session ends this long after it was created (or renewed),
    /// whatever its activity. Default none.
    pub fn absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// Rolling expiry (default on): each request pushes the idle deadline
    /// back, by touching the store (not rewriting it) or re-sealing the
    /// cookie. Off: a session's deadline is its timeout after it was
    /// created (or renewed), however it is used.
    pub fn rolling(mut self, rolling: bool) -> Self {
        self.rolling = rolling;
        self
    }

    /// How far the deadline must move before a read-only request refreshes
    /// it; bounds the touches and `Set-Cookie`s of rolling expiry. Default
    /// one thirtieth of the timeout (one minute for 30 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval);
        self
    }

    /// Whether new sessions start persistent. Default false.
    pub fn persistent_by_default(mut self, persistent: bool) -> Self {
        self.persistent_by_default = persistent;
        self
    }
}

/// The session cookie's attributes. Secure by default: `Path=/`,
/// host-only (no `Domain`), `Secure`, `HttpOnly`, `SameSite=Lax`.
///
/// ```
/// use session_core::{CookieAttributes, SameSite};
///
/// // Plain-HTTP development only: production keeps `Secure`.
/// let attributes = CookieAttributes::default()
///     .secure(false)
///     .same_site(SameSite::Strict);
/// # drop(attributes);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CookieAttributes {
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
}

impl Default for CookieAttributes {
    fn default() -> Self {
        CookieAttributes {
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

impl CookieAttributes {
    /// `Path`. Default `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// `Domain`. Default none (host-only).
    pub fn domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// `Secure`. Default true; turn off only for plain-HTTP development.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// `HttpOnly`. Default true.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// `SameSite`. Default `Lax`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    pub(crate) fn path_value(&self) -> &str {
        &self.path
    }

    pub(crate) fn domain_value(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    pub(crate) fn is_secure(&self) -> bool {
        self.secure
    }

    pub(crate) fn is_http_only(&self) -> bool {
        self.http_only
    }

    pub(crate) fn same_site_value(&self) -> SameSite {
        self.same_site
    }
}

/// Configuration of one session: a plain value, built once and handed to
/// [`SessionManager::new`](crate::SessionManager::new) (or
/// [`with_session`](crate::SessionManager::with_session)).
///
/// Start from where sessions live, [`cookie`](Self::cookie) (sealed in the
/// cookie) or [`server`](Self::server) (a store), with a [`KeyRing`]; then
/// refine, in the groups users think in:
///
/// - what the session is called and how its token travels:
///   [`name`](Self::name), [`transport`](Self::transport);
/// - how long it lasts: [`lifetime`](Self::lifetime) ([`Lifetime`]:
///   browser-session or persistent, idle, absolute, rolling);
/// - the cookie: [`cookie_attributes`](Self::cookie_attributes)
///   ([`CookieAttributes`]);
/// - how it is protected and encoded: [`seal_mode`](Self::seal_mode),
///   [`codec`](Self::codec).
///
/// ```
/// use std::time::Duration;
/// use session_core::{CookieAttributes, KeyRing, Lifetime, SessionConfig};
///
/// let keys = KeyRing::generate().unwrap();
/// let config = SessionConfig::cookie(keys)
///     .name("sid")
///     .lifetime(Lifetime::default().idle_timeout(Duration::from_secs(1800)))
///     .cookie_attributes(CookieAttributes::default().secure(false));
/// # let manager = session_core::SessionManager::new(config).unwrap();
/// # assert_eq!(manager.names().collect::<Vec<_>>(), ["sid"]);
/// ```
#[derive(Clone)]
pub struct SessionConfig {
    pub(crate) name: String,
    pub(crate) transport: Transport,
    pub(crate) storage: Storage,
    pub(crate) keys: KeyRing,
    pub(crate) seal_mode: SealMode,
    pub(crate) codec: Codec,
    pub(crate) lifetime: Lifetime,
    pub(crate) cookie: CookieAttributes,
    pub(crate) max_header_len: usize,
    /// Where a cookie session's user index lives.
    pub(crate) user_index: Option<Arc<dyn Store>>,
    pub(crate) max_sessions_per_user: Option<usize>,
}

impl AsRef<SessionConfig> for SessionConfig {
    fn as_ref(&self) -> &SessionConfig {
        self
    }
}

/// Browsers' limit on one cookie: name, value and attributes.
pub const BROWSER_COOKIE_LIMIT: usize = 4096;

impl SessionConfig {
    fn with_storage(storage: Storage, keys: KeyRing) -> Self {
        SessionConfig {
            name: "sid".to_owned(),
            transport: Transport::Cookie,
            storage,
            keys,
            seal_mode: SealMode::Private,
            codec: Codec::Cbor,
            lifetime: Lifetime::default(),
            cookie: CookieAttributes::default(),
            max_header_len: BROWSER_COOKIE_LIMIT,
            user_index: None,
            max_sessions_per_user: None,
        }
    }

    /// Sessions kept whole in a sealed cookie (no server state).
    pub fn cookie(keys: KeyRing) -> Self {
        Self::with_storage(Storage::Cookie, keys)
    }

    /// Sessions kept in `store` (by value, or already in an `Arc`); the
    /// client holds the sealed id.
    pub fn server(store: impl IntoStore, keys: KeyRing) -> Self {
        Self::with_storage(Storage::server(store), keys)
    }

    /// The session's name: the cookie name, and the name bound into its
    /// tokens. Default `sid`.
    ///
    /// A `__Host-` prefix is the strongest choice for a cookie: browsers
    /// then keep it only if it is Secure, host-only and `Path=/`, so a
    /// sibling subdomain can neither set nor overwrite it. Names with the
    /// `__Host-` or `__Secure-` prefix are checked against those rules when
    /// the manager is built ([`ConfigError::InvalidCookie`]).
    ///
    /// When a request carries several cookies of this name (a sibling
    /// subdomain may set one with a longer `Path`, which browsers send
    /// first), up to 4 are tried in the order sent and the first that opens
    /// and names a live session wins; ones that do not open are skipped. A
    /// tossed cookie holding the attacker's own valid session would
    /// therefore win: the `__Host-` prefix rules that out.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How the token travels: in a cookie named after the session (the
    /// default), or in a header for clients that keep no cookies
    /// ([`Transport::header`]).
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Private (encrypted, default) or signed (readable) tokens.
    #[must_use]
    pub fn seal_mode(mut self, mode: SealMode) -> Self {
        self.seal_mode = mode;
        self
    }

    /// Codec of new records (records are read with the codec that wrote
    /// them). Default CBOR.
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How long sessions last: idle and absolute timeouts, persistent
    /// ("remember me") lifetime, rolling expiry. Default
    /// [`Lifetime::default`].
    #[must_use]
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The session cookie's attributes (with the cookie transport). Default
    /// [`CookieAttributes::default`]: `Path=/`, host-only, `Secure`,
    /// `HttpOnly`, `SameSite=Lax`.
    #[must_use]
    pub fn cookie_attributes(mut self, attributes: CookieAttributes) -> Self {
        self.cookie = attributes;
        self
    }

    /// Where the index of users' signed-in sessions lives (see
    /// [`Session::sign_in`](crate::Session::sign_in)). A server store keeps
    /// it itself, so this is for cookie sessions: they stay whole in their
    /// cookies, and only each signed-in session's small index entry lives
    /// in `store`, which lets a signed-in cookie session be listed and
    /// ended (its cookie is refused once its entry is gone, although still
    /// validly sealed). Anonymous cookie sessions never touch it.
    #[must_use]
    pub fn user_index(mut self, store: impl IntoStore) -> Self {
        self.user_index = Some(store.into_store());
        self
    }

    /// The most sessions one user may have signed in at once (default:
    /// no limit). A sign-in past it ends the user's least recently seen
    /// sessions, as Spring Session's `maximumSessions` does. `0` is no
    /// limit.
    #[must_use]
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = (max > 0).then_some(max);
        self
    }

    /// How the token travels.
    pub fn token_transport(&self) -> &Transport {
        &self.transport
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Checks names and durations.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(ConfigError::InvalidName(self.name.clone()));
        }
        if let Transport::Header(h) = &self.transport {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok || h.eq_ignore_ascii_case("cookie") || h.eq_ignore_ascii_case("set-cookie") {
                return Err(ConfigError::InvalidHeader(h.clone()));
            }
        }
        if self.transport == Transport::Cookie {
            self.validate_cookie()?;
        }
        let valid = |d: Duration| d >= Duration::from_secs(1) && d.as_secs() < 100 * 365 * 86_400;
        let lifetime = &self.lifetime;
        if !valid(lifetime.idle_timeout) {
            return Err(ConfigError::InvalidDuration("idle_timeout"));
        }
        if !valid(lifetime.persistent_max_age) {
            return Err(ConfigError::InvalidDuration("persistent_max_age"));
        }
        if lifetime.absolute_timeout.is_some_and(|d| !valid(d)) {
            return Err(ConfigError::InvalidDuration("absolute_timeout"));
        }
        Ok(())
    }

    /// What browsers enforce on cookie prefixes and `SameSite=None`, and
    /// what would split or end the `Set-Cookie` header early.
    fn validate_cookie(&self) -> Result<(), ConfigError> {
        let bad = ConfigError::InvalidCookie;
        let cookie = &self.cookie;
        let clean = |v: &str| {
            !v.bytes()
                .any(|b| b == b';' || b.is_ascii_control() || b.is_ascii_whitespace())
        };
        if !cookie.path.starts_with('/') || !clean(&cookie.path) {
            return Err(bad(
                "the path must start with `/` and hold no `;`, space or control character",
            ));
        }
        if cookie
            .domain
            .as_deref()
            .is_some_and(|d| d.is_empty() || !clean(d))
        {
            return Err(bad(
                "the domain must be non-empty and hold no `;`, space or control character",
            ));
        }
        // Browsers match the prefixes without regard to case.
        let prefixed = |prefix: &str| {
            self.name
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Host-") {
            if !cookie.secure {
                return Err(bad("a `__Host-` cookie must be Secure"));
            }
            if cookie.domain.is_some() {
                return Err(bad("a `__Host-` cookie must not set a Domain"));
            }
            if cookie.path != "/" {
                return Err(bad("a `__Host-` cookie must have Path=/"));
            }
        }
        if prefixed("__Secure-") && !cookie.secure {
            return Err(bad("a `__Secure-` cookie must be Secure"));
        }
        if cookie.same_site == SameSite::None && !cookie.secure {
            return Err(bad("SameSite=None requires Secure"));
        }
        Ok(())
    }

    /// The idle window of a session with this persistence.
    pub(crate) fn window(&self, persistent: bool) -> Duration {
        if persistent {
            self.lifetime.persistent_max_age
        } else {
            self.lifetime.idle_timeout
        }
    }

    pub(crate) fn refresh_interval_for(&self, persistent: bool) -> Duration {
        self.lifetime
            .refresh_interval
            .unwrap_or_else(|| self.window(persistent) / 30)
    }

    /// Whether rolling expiry is on.
    pub(crate) fn rolling(&self) -> bool {
        self.lifetime.rolling
    }

    pub(crate) fn persistent_by_default(&self) -> bool {
        self.lifetime.persistent_by_default
    }

    pub(crate) fn absolute_timeout(&self) -> Option<Duration> {
        self.lifetime.absolute_timeout
    }

    /// When `record` should expire if saved or touched `now`.
    pub(crate) fn deadline(&self, record: &Record, now: OffsetDateTime) -> OffsetDateTime {
        let window = self.window(record.persistent);
        let created = OffsetDateTime::from_unix_timestamp(record.created_at).unwrap_or(now);
        let base = if self.lifetime.rolling { now } else { created };
        // Saturating: `created_at` comes from the store.
        let mut deadline = base.saturating_add(window.try_into().unwrap_or(time::Duration::MAX));
        if let Some(absolute) = self.lifetime.absolute_timeout {
            let absolute = absolute.try_into().unwrap_or(time::Duration::MAX);
            deadline = deadline.min(created.saturating_add(absolute));
        }
        deadline
    }

    /// Whether `record` is past its absolute timeout.
    pub(crate) fn absolute_expired(&self, record: &Record, now: i64) -> bool {
        self.lifetime
            .absolute_timeout
            .is_some_and(|t| now >= record.created_at.saturating_add(t.as_secs() as i64))
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("storage", &self.storage)
            .field("keys", &self.keys)
            .field("seal_mode", &self.seal_mode)
            .field("codec", &self.codec)
            .field("lifetime", &self.lifetime)
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig::cookie(KeyRing::from_secret(&crate::keys::test_secret(1)).unwrap())
    }

    #[test]
    fn validation() {
        assert!(cfg().validate().is_ok());
        assert!(cfg().name("").validate().is_err());
        assert!(cfg().name("a b").validate().is_err());
        assert!(cfg().name("a;b").validate().is_err());
        assert!(cfg()
            .transport(Transport::header("X-Session-Token"))
            .validate()
            .is_ok());
        assert!(cfg()
            .transport(Transport::header("Cookie"))
            .validate()
            .is_err());
        assert!(cfg()
            .transport(Transport::header("X Bad"))
            .validate()
            .is_err());
        assert!(cfg()
            .lifetime(Lifetime::default().idle_timeout(Duration::ZERO))
            .validate()
            .is_err());
        assert!(cfg()
            .lifetime(Lifetime::default().absolute_timeout(Some(Duration::from_millis(5))))
            .validate()
            .is_err());
    }

    #[test]
    fn cookie_settings_browsers_reject_are_refused() {
        let base =
            || SessionConfig::cookie(KeyRing::from_secret(&crate::keys::test_secret(1)).unwrap());
        let refused = |config: SessionConfig| match config.validate() {
            Err(ConfigError::InvalidCookie(why)) => why,
            other => panic!("accepted: {other:?}"),
        };
        assert!(base().name("__Host-sid").validate().is_ok());
        assert!(base()
            .name("__Secure-sid")
            .cookie_attributes(CookieAttributes::default().domain(Some("example.com".into())))
            .validate()
            .is_ok());
        assert!(refused(
            base()
                .name("__Host-sid")
                .cookie_attributes(CookieAttributes::default().secure(false))
        )
        .contains("Secure"));
        assert!(refused(
            base()
                .name("__host-sid")
                .cookie_attributes(CookieAttributes::default().domain(Some("example.com".into())))
        )
        .contains("Domain"));
        assert!(refused(
            base()
                .name("__Host-sid")
                .cookie_attributes(CookieAttributes::default().path("/app"))
        )
        .contains("Path=/"));
        assert!(refused(
            base()
                .name("__SECURE-sid")
                .cookie_attributes(CookieAttributes::default().secure(false))
        )
        .contains("Secure"));
        assert!(refused(
            base().cookie_attributes(
                CookieAttributes::default()
                    .same_site(SameSite::None)
                    .secure(false)
            )
        )
        .contains("SameSite=None"));
        assert!(base()
            .cookie_attributes(CookieAttributes::default().same_site(SameSite::None))
            .validate()
            .is_ok());
        for path in ["/a;b", "/a\r\nSet-Cookie: x=1", "/a b", "relative", ""] {
            assert!(
                refused(base().cookie_attributes(CookieAttributes::default().path(path)))
                    .contains("path"),
                "{path:?}"
            );
        }
        for domain in ["a.com; Secure", "a.com\n", "", "a .com"] {
            assert!(
                refused(
                    base()
                        .cookie_attributes(CookieAttributes::default().domain(Some(domain.into())))
                )
                .contains("domain"),
                "{domain:?}"
            );
        }
        // Header transport has no cookie to check.
        assert!(base()
            .transport(Transport::header("x-token"))
            .cookie_attributes(CookieAttributes::default().path(""))
            .validate()
            .is_ok());
        // The manager refuses them at build time.
        assert!(crate::SessionManager::new(
            base()
                .name("__Host-sid")
                .cookie_attributes(CookieAttributes::default().path("/x"))
        )
        .is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let shown = format!("{:?}", cfg());
        assert!(shown.contains("KeyRing { keys: 1, .. }"), "{shown}");
    }

    #[test]
    fn refresh_defaults_to_a_thirtieth() {
        let c = cfg();
        assert_eq!(c.refresh_interval_for(false), Duration::from_secs(60));
        assert_eq!(c.refresh_interval_for(true), Duration::from_secs(86_400));
    }
}
