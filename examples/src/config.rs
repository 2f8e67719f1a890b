//! The demo's configuration, read from the environment (DEMO_CONTRACT.md).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use session_backends::{
    CascadeStore, FileStore, MemcacheStore, MemoryStore, PostgresStore, RedisStore,
};
use session_core::{
    CookieAttributes, KeyRing, Lifetime, SessionConfig, SessionManager, Store, Transport,
};

/// Where the demo keeps sessions (`SESSION_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Sealed cookies, no server state.
    Cookie,
    /// Server-side tiers, fastest first: one store alone, or a cascade
    /// (`memory+memcache+postgres`; `cascade` is `memory+memcache+file`).
    Tiers(Vec<Tier>),
}

/// One server-side store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The embedded memory store.
    Memory,
    /// Memcached (`MEMCACHE_SERVERS`).
    Memcache,
    /// Files under `SESSION_DIR`.
    File,
    /// Redis (`REDIS_URL`).
    Redis,
    /// PostgreSQL (`DATABASE_URL`).
    Postgres,
}

impl Tier {
    fn parse(name: &str) -> Option<Tier> {
        Some(match name {
            "memory" => Tier::Memory,
            "memcache" => Tier::Memcache,
            "file" => Tier::File,
            "redis" => Tier::Redis,
            "postgres" => Tier::Postgres,
            _ => return None,
        })
    }
}

impl StoreKind {
    /// `SESSION_STORE`'s value: `cookie`, a store, `cascade`, or tiers
    /// joined by `+`.
    fn parse(value: &str) -> Result<StoreKind, String> {
        match value {
            "cookie" => return Ok(StoreKind::Cookie),
            "cascade" => {
                return Ok(StoreKind::Tiers(vec![
                    Tier::Memory,
                    Tier::Memcache,
                    Tier::File,
                ]))
            }
            _ => {}
        }
        let mut tiers = Vec::new();
        for name in value.split('+').map(str::trim) {
            let tier = Tier::parse(name).ok_or_else(|| {
                format!(
                    "unknown store `{name}` (expected memory, cookie, memcache, file, redis, \
                     postgres, cascade, or server stores joined by +, fastest first)"
                )
            })?;
            if tiers.contains(&tier) {
                return Err(format!("`{name}` is listed twice"));
            }
            tiers.push(tier);
        }
        Ok(StoreKind::Tiers(tiers))
    }

    /// Whether sessions live on a server (not in the cookie).
    pub fn server_side(&self) -> bool {
        matches!(self, StoreKind::Tiers(_))
    }
}

/// How the token travels (`SESSION_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The `sid` cookie.
    Cookie,
    /// The `X-Session-Token` header.
    Header,
}

/// How long the cascade's per-process memory tier may serve a copy that
/// another process has since changed (the bound on stale reads).
pub const CASCADE_CACHE_TTL: Duration = Duration::from_secs(1);

/// The token header of header transport.
pub const TOKEN_HEADER: &str = "X-Session-Token";

/// The demo's settings.
#[derive(Clone)]
pub struct DemoConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The store.
    pub store: StoreKind,
    /// Directory of the file store.
    pub session_dir: PathBuf,
    /// Memcached servers.
    pub memcache_servers: Vec<String>,
    /// Redis URL.
    pub redis_url: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Token transport.
    pub transport: TransportKind,
    /// The key ring from `SESSION_SECRET` and `SESSION_OLD_SECRETS`.
    pub keys: KeyRing,
    /// Whether `SESSION_SECRET` was absent and a random secret generated.
    pub generated_secret: bool,
    /// Idle timeout.
    pub idle: Duration,
    /// The cookie's Secure flag.
    pub cookie_secure: bool,
    /// Whether `GET /metrics` serves the session metrics (`METRICS=1`).
    pub metrics: bool,
    /// Most sessions per user (`SESSION_MAX_PER_USER`; 0: no limit).
    pub max_per_user: usize,
    /// Where a cookie session's user index lives (`SESSION_USER_INDEX`).
    pub user_index: Tier,
}

impl fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoConfig")
            .field("port", &self.port)
            .field("store", &self.store)
            .field("transport", &self.transport)
            .field("keys", &self.keys)
            .field("idle", &self.idle)
            .field("cookie_secure", &self.cookie_secure)
            .finish_non_exhaustive()
    }
}

/// A configuration variable with a bad value; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong with it (never the secret itself).
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

impl DemoConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    ///
    /// A variable with a value the demo cannot use; the error names it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (tests pass a map).
    ///
    /// # Errors
    ///
    /// A variable with a value the demo cannot use; the error names it.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let port = match var("PORT") {
            None => 3000,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| bad("PORT", format!("`{v}` is not a port number (0-65535)")))?,
        };
        let store = StoreKind::parse(var("SESSION_STORE").as_deref().unwrap_or("memory").trim())
            .map_err(|e| bad("SESSION_STORE", e))?;
        let redis_url = var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        // Checked here, so a malformed URL stops start-up naming its variable.
        RedisStore::builder(redis_url.trim())
            .build()
            .map_err(|e| bad("REDIS_URL", e.to_string()))?;
        let database_url = var("DATABASE_URL")
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        PostgresStore::builder(database_url.trim())
            .build()
            .map_err(|e| bad("DATABASE_URL", e.to_string()))?;
        let session_dir = var("SESSION_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_session_dir);
        let memcache_servers: Vec<String> = var("MEMCACHE_SERVERS")
            .unwrap_or_else(|| "127.0.0.1:11211".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        for server in &memcache_servers {
            let valid = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(bad(
                    "MEMCACHE_SERVERS",
                    format!("`{server}` is not host:port"),
                ));
            }
        }
        let transport = match var("SESSION_TRANSPORT").as_deref().map(str::trim) {
            None | Some("cookie") => TransportKind::Cookie,
            Some("header") => TransportKind::Header,
            Some(other) => {
                return Err(bad(
                    "SESSION_TRANSPORT",
                    format!("unknown transport `{other}` (expected cookie or header)"),
                ))
            }
        };
        let (mut keys, generated_secret) = match var("SESSION_SECRET") {
            Some(secret) => (
                KeyRing::from_base64(&secret).map_err(|e| bad("SESSION_SECRET", e.to_string()))?,
                false,
            ),
            None => (
                KeyRing::generate().map_err(|e| bad("SESSION_SECRET", e.to_string()))?,
                true,
            ),
        };
        if let Some(old) = var("SESSION_OLD_SECRETS") {
            for secret in old.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                keys = keys
                    .with_old_base64(secret)
                    .map_err(|e| bad("SESSION_OLD_SECRETS", e.to_string()))?;
            }
        }
        let idle = match var("SESSION_IDLE_SECS") {
            None => Duration::from_secs(1800),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(secs) if (1..=100 * 365 * 86_400).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    return Err(bad(
                        "SESSION_IDLE_SECS",
                        format!("`{v}` is not a whole number of seconds above 0"),
                    ))
                }
            },
        };
        let cookie_secure = match var("SESSION_COOKIE_SECURE").as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad(
                    "SESSION_COOKIE_SECURE",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
        let metrics = match var("METRICS").as_deref().map(str::trim) {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => return Err(bad("METRICS", format!("`{other}` is not 1 or 0"))),
        };
        let max_per_user = match var("SESSION_MAX_PER_USER") {
            None => 0,
            Some(v) => v.trim().parse().map_err(|_| {
                bad(
                    "SESSION_MAX_PER_USER",
                    format!("`{v}` is not a whole number (0 for no limit)"),
                )
            })?,
        };
        let user_index = match var("SESSION_USER_INDEX").as_deref().map(str::trim) {
            None => Tier::Memory,
            Some(name) => match Tier::parse(name) {
                Some(Tier::File) | None => {
                    return Err(bad(
                        "SESSION_USER_INDEX",
                        format!("unknown index store `{name}` (expected memory, memcache, redis or postgres)"),
                    ))
                }
                Some(tier) => tier,
            },
        };
        Ok(DemoConfig {
            metrics,
            max_per_user,
            user_index,
            port,
            store,
            session_dir,
            memcache_servers,
            redis_url: redis_url.trim().to_owned(),
            database_url: database_url.trim().to_owned(),
            transport,
            keys,
            generated_secret,
            idle,
            cookie_secure,
        })
    }

    fn memcache_store(&self) -> Result<MemcacheStore, ConfigError> {
        // Short timeouts: an unreachable store answers 503 well within two seconds.
        MemcacheStore::builder(self.memcache_servers.clone())
            .connect_timeout(Duration::from_millis(400))
            .op_timeout(Duration::from_millis(400))
            .build()
            .map_err(|e| bad("MEMCACHE_SERVERS", e.to_string()))
    }

    fn file_store(&self) -> Result<FileStore, ConfigError> {
        FileStore::builder(&self.session_dir).build().map_err(|e| {
            bad(
                "SESSION_DIR",
                format!("cannot use {}: {e}", self.session_dir.display()),
            )
        })
    }

    fn store(&self, tier: Tier) -> Result<Arc<dyn Store>, ConfigError> {
        // Short timeouts: an unreachable store answers 503 well within two seconds.
        let timeout = Duration::from_millis(400);
        Ok(match tier {
            Tier::Memory => Arc::new(MemoryStore::new()),
            Tier::Memcache => Arc::new(self.memcache_store()?),
            Tier::File => Arc::new(self.file_store()?),
            Tier::Redis => Arc::new(
                RedisStore::builder(self.redis_url.as_str())
                    .connect_timeout(timeout)
                    .op_timeout(timeout)
                    .build()
                    .map_err(|e| bad("REDIS_URL", e.to_string()))?,
            ),
            Tier::Postgres => Arc::new(
                PostgresStore::builder(self.database_url.as_str())
                    .connect_timeout(timeout)
                    .op_timeout(Duration::from_millis(800))
                    .create_table(true)
                    .build()
                    .map_err(|e| bad("DATABASE_URL", e.to_string()))?,
            ),
        })
    }

    /// The session manager this configuration describes.
    ///
    /// # Errors
    ///
    /// A store that cannot be built from the configuration (a bad URL, a directory that cannot be used); the error names its variable.
    pub fn session_manager(&self) -> Result<SessionManager, ConfigError> {
        let keys = self.keys.clone();
        let config = match &self.store {
            StoreKind::Cookie => {
                SessionConfig::cookie(keys).user_index(self.store(self.user_index)?)
            }
            StoreKind::Tiers(tiers) if tiers.len() == 1 => {
                SessionConfig::server(self.store(tiers[0])?, keys)
            }
            StoreKind::Tiers(tiers) => {
                let mut cascade = CascadeStore::builder();
                for (i, tier) in tiers.iter().enumerate() {
                    // A memory tier in front is a per-process cache: its copies
                    // may lag other servers' writes by at most the cache TTL.
                    cascade = if i == 0 && *tier == Tier::Memory {
                        cascade.cache_tier(self.store(*tier)?, CASCADE_CACHE_TTL)
                    } else {
                        cascade.tier(self.store(*tier)?)
                    };
                }
                let cascade = cascade
                    .build()
                    .map_err(|e| bad("SESSION_STORE", e.to_string()))?;
                SessionConfig::server(Arc::new(cascade), keys)
            }
        };
        let mut config = config
            .name("sid")
            .lifetime(Lifetime::default().idle_timeout(self.idle))
            .cookie_attributes(CookieAttributes::default().secure(self.cookie_secure))
            .max_sessions_per_user(self.max_per_user);
        if self.transport == TransportKind::Header {
            config = config.transport(Transport::header(TOKEN_HEADER));
        }
        SessionManager::new(config).map_err(|e| bad("SESSION_STORE", e.to_string()))
    }
}

/// The file store's default directory: under the user's state directory
/// (`$XDG_STATE_HOME`, else `~/.local/state`), else `./sessions`. Never a
/// fixed path under `/tmp`, which another local user could create first.
fn default_session_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        });
    match state {
        Some(state) => state.join("session-demo/sessions"),
        None => PathBuf::from("sessions"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<DemoConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DemoConfig::from_vars(|k| map.get(k).cloned())
    }

    const SECRET: &str = "RGVtbyBzZWNyZXQgQTogMzIgYnl0ZXMsIHVuaXF1ZSE=";

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.port, c.store, c.transport, c.cookie_secure),
            (
                3000,
                StoreKind::Tiers(vec![Tier::Memory]),
                TransportKind::Cookie,
                false
            )
        );
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(
            c.database_url,
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(c.idle, Duration::from_secs(1800));
        assert!(c.generated_secret);
        assert_eq!(c.memcache_servers, ["127.0.0.1:11211"]);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("PORT", "70000"),
            ("SESSION_STORE", "mongo"),
            ("SESSION_STORE", "memory+memory"),
            ("SESSION_STORE", "memory+"),
            ("REDIS_URL", "http://nope"),
            ("DATABASE_URL", "postgres://u@h:port/d"),
            ("SESSION_TRANSPORT", "carrier-pigeon"),
            ("SESSION_SECRET", "c2hvcnQ="),
            ("SESSION_SECRET", "%%%"),
            ("SESSION_OLD_SECRETS", "c2hvcnQ="),
            ("SESSION_IDLE_SECS", "0"),
            ("SESSION_IDLE_SECS", "soon"),
            ("SESSION_COOKIE_SECURE", "yes"),
            ("SESSION_MAX_PER_USER", "-1"),
            ("SESSION_MAX_PER_USER", "many"),
            ("SESSION_USER_INDEX", "file"),
            ("SESSION_USER_INDEX", "mongo"),
            ("METRICS", "yes"),
            ("MEMCACHE_SERVERS", "localhost"),
        ];
        for (var, value) in cases {
            let err = parse(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, *var, "{var}={value}: {err}");
        }
    }

    #[test]
    fn secrets_and_rotation() {
        let c = parse(&[
            ("SESSION_SECRET", SECRET),
            (
                "SESSION_OLD_SECRETS",
                "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=, ",
            ),
        ])
        .unwrap();
        assert!(!c.generated_secret);
        assert_eq!(c.keys.key_count(), 2);
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn every_store_builds_without_reaching_its_server() {
        let dir = std::env::temp_dir().join(format!("demo-config-test-{}", std::process::id()));
        let dir = dir.to_str().unwrap();
        for store in [
            "memory",
            "cookie",
            "memcache",
            "file",
            "cascade",
            "redis",
            "postgres",
            "memory+memcache+postgres",
            "memcache+redis",
        ] {
            let config = parse(&[("SESSION_STORE", store), ("SESSION_DIR", dir)]).unwrap();
            config.session_manager().unwrap();
        }
    }

    #[test]
    fn unusable_session_dir_names_its_variable() {
        let file = std::env::temp_dir().join(format!("demo-config-file-{}", std::process::id()));
        std::fs::write(&file, b"not a directory").unwrap();
        let config = parse(&[
            ("SESSION_STORE", "file"),
            ("SESSION_DIR", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(
            config.session_manager().unwrap_err().variable,
            "SESSION_DIR"
        );
    }
}
