//! The memcached store: pooled connections per server, consistent hashing
//! over several servers, compare-and-swap through the meta protocol, and
//! servers marked down and retried with backoff.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_memcached::{AsciiProtocol, Client, MetaProtocol, MetaValue, Status};
use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleError, RecycleResult, Timeouts};
use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord, Version,
};

use crate::ring::HashRing;

/// memcached reads a TTL above this many seconds (30 days) as a Unix time.
pub const MAX_RELATIVE_TTL: i64 = 2_592_000;
/// Default largest record: memcached's 1 MiB item limit less room for the
/// key and item header.
pub const DEFAULT_MAX_ITEM_SIZE: usize = (1 << 20) - 1024;

/// The `T` flag value for a deadline: seconds from now, or the absolute
/// Unix time past 30 days (memcached's rule). Never below 1, so a deadline
/// in the past still expires at once rather than meaning "never".
pub(crate) fn ttl_for(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let secs = (expires_at - now).as_seconds_f64().ceil() as i64;
    if secs > MAX_RELATIVE_TTL {
        expires_at.unix_timestamp()
    } else {
        secs.max(1)
    }
}

/// Username and password for memcached's ASCII authentication (`-Y`).
#[derive(Clone)]
struct Credentials {
    user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Makes and checks connections to one server for the pool.
struct Connector {
    addr: String,
    credentials: Option<Credentials>,
}

impl managed::Manager for Connector {
    type Type = Client;
    type Error = async_memcached::Error;

    async fn create(&self) -> Result<Client, async_memcached::Error> {
        // async-memcached speaks IPv4 only: resolve to an IPv4 address first.
        let resolved = tokio::net::lookup_host(self.addr.as_str())
            .await
            .map_err(async_memcached::Error::Connect)?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| {
                async_memcached::Error::Connect(std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    "no IPv4 address",
                ))
            })?;
        let mut client = Client::new(format!("tcp://{resolved}")).await?;
        if let Some(c) = &self.credentials {
            // memcached's ASCII auth: the first command of a connection is a
            // set whose value is "user password".
            let token = format!("{} {}", c.user, c.password);
            client.set("auth", token.as_str(), None, None).await?;
        }
        Ok(client)
    }

    async fn recycle(
        &self,
        client: &mut Client,
        _: &Metrics,
    ) -> RecycleResult<async_memcached::Error> {
        // A cancelled call (timeout) leaves the connection closed: discard it.
        if client.is_closed() {
            return Err(RecycleError::message(
                "connection closed by a cancelled call",
            ));
        }
        Ok(())
    }
}

/// Up/down state of one server.
#[derive(Debug, Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

struct Server {
    addr: String,
    pool: Pool<Connector>,
    health: Mutex<Health>,
}

impl Server {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builder of a [`MemcacheStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemcacheStoreBuilder {
    servers: Vec<String>,
    pool_size: usize,
    connect_timeout: Duration,
    op_timeout: Duration,
    pool_wait_timeout: Duration,
    prefix: String,
    max_item_size: usize,
    seal_at_rest: bool,
    credentials: Option<Credentials>,
    backoff_initial: Duration,
    backoff_max: Duration,
}

/// A [`MemcacheStore`] configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcacheConfigError {
    /// No server was given.
    #[error("no memcached server given")]
    NoServers,
    /// A server is not `host:port`.
    #[error("memcached server `{0}` is not host:port")]
    BadServer(String),
    /// The key prefix would make invalid memcached keys.
    #[error("key prefix must be at most 100 printable characters without spaces")]
    BadPrefix,
    /// A size or count is zero.
    #[error("`{0}` must be above zero")]
    Zero(&'static str),
    /// The pool could not be built.
    #[error("connection pool: {0}")]
    Pool(String),
}

impl MemcacheStoreBuilder {
    fn new(servers: Vec<String>) -> Self {
        MemcacheStoreBuilder {
            servers,
            pool_size: 16,
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_millis(500),
            pool_wait_timeout: Duration::from_millis(500),
            prefix: "session:".into(),
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            seal_at_rest: true,
            credentials: None,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Connections per server. Default 16.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Time allowed to open (and authenticate) a connection. Default 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one command. Default 500 ms.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How long a request waits for a free connection when all of a
    /// server's are busy before failing with [`StoreError::Timeout`].
    /// Default 500 ms.
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// Prefix of every memcached key. Default `session:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Largest record sent; larger ones fail with [`StoreError::TooLarge`]
    /// before anything is sent (memcached would delete the old item on an
    /// oversized set). Default 1 MiB less 1 KiB; match memcached's `-I`.
    pub fn max_item_size(mut self, size: usize) -> Self {
        self.max_item_size = size;
        self
    }

    /// Whether records are sealed at rest with the session key ring
    /// (default: true, so memcached holds nothing readable or forgeable
    /// without the key). False stores the plain CBOR or JSON record, which is
    /// readable in a dump: for debugging only.
    pub fn seal_at_rest(mut self, seal: bool) -> Self {
        self.seal_at_rest = seal;
        self
    }

    /// Authenticates every connection (memcached started with `-Y`).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// First and longest wait before a failed server is tried again; the
    /// wait doubles with each failure. Defaults 500 ms and 30 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Builds the store. Connections are opened on first use, so building
    /// succeeds while servers are down.
    pub fn build(self) -> Result<MemcacheStore, MemcacheConfigError> {
        if self.servers.is_empty() {
            return Err(MemcacheConfigError::NoServers);
        }
        if self.pool_size == 0 {
            return Err(MemcacheConfigError::Zero("pool_size"));
        }
        if self.max_item_size == 0 {
            return Err(MemcacheConfigError::Zero("max_item_size"));
        }
        if self.prefix.len() > 100 || !self.prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MemcacheConfigError::BadPrefix);
        }
        let mut servers = Vec::with_capacity(self.servers.len());
        for addr in &self.servers {
            let valid = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(MemcacheConfigError::BadServer(addr.clone()));
            }
            let connector = Connector {
                addr: addr.clone(),
                credentials: self.credentials.clone(),
            };
            let pool = Pool::builder(connector)
                .max_size(self.pool_size)
                .timeouts(Timeouts {
                    wait: Some(self.pool_wait_timeout),
                    create: Some(self.connect_timeout),
                    recycle: Some(self.op_timeout),
                })
                .runtime(deadpool::Runtime::Tokio1)
                .build()
                .map_err(|e| MemcacheConfigError::Pool(e.to_string()))?;
            servers.push(Server {
                addr: addr.clone(),
                pool,
                health: Mutex::default(),
            });
        }
        Ok(MemcacheStore {
            inner: Arc::new(Inner {
                ring: HashRing::new(&self.servers),
                servers,
                prefix: self.prefix,
                op_timeout: self.op_timeout,
                max_item_size: self.max_item_size,
                seal_at_rest: self.seal_at_rest,
                backoff_initial: self.backoff_initial,
                backoff_max: self.backoff_max,
            }),
        })
    }
}

/// Sessions in memcached.
///
/// - one `deadpool` pool of `async-memcached` connections per server, every
///   command bounded by a timeout; a connection whose call was cancelled is
///   discarded, never reused;
/// - sessions spread over servers by consistent hashing; a server that fails
///   is marked down and retried with exponential backoff: its sessions fail
///   fast with [`StoreError::Unavailable`] meanwhile, the other servers'
///   sessions keep working, and it is used again when it answers;
/// - compare-and-swap and touch through the meta protocol (`mg <key> v c t`,
///   `ms <key> <len> C<cas> T<ttl>`, `mg <key> T<ttl>`);
/// - deadlines past 30 days sent as absolute Unix times, as memcached expects;
/// - records over the item limit refused before sending;
/// - keys are the prefix and the keyed hash of the session id;
/// - records sealed at rest by default.
///
/// ```no_run
/// use std::sync::Arc;
/// use session_backends::MemcacheStore;
/// use session_core::{KeyRing, SessionConfig};
///
/// let store = MemcacheStore::builder(["127.0.0.1:11211", "127.0.0.1:11212"])
///     .pool_size(8)
///     .build()
///     .unwrap();
/// let config = SessionConfig::server(Arc::new(store), KeyRing::generate().unwrap());
/// ```
#[derive(Clone)]
pub struct MemcacheStore {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    ring: HashRing,
    prefix: String,
    op_timeout: Duration,
    max_item_size: usize,
    seal_at_rest: bool,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl fmt::Debug for MemcacheStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self.inner.servers.iter().map(|s| s.addr.as_str()).collect();
        f.debug_struct("MemcacheStore")
            .field("servers", &servers)
            .field("prefix", &self.inner.prefix)
            .field("seal_at_rest", &self.inner.seal_at_rest)
            .finish_non_exhaustive()
    }
}

/// One memcached command.
enum Command<'a> {
    Load,
    Save { bytes: &'a [u8], flags: Vec<String> },
    Touch { ttl: i64 },
    Delete,
}

fn is_connection_error(e: &async_memcached::Error) -> bool {
    matches!(
        e,
        async_memcached::Error::Connect(_)
            | async_memcached::Error::Io(_)
            | async_memcached::Error::ConnectionClosed
    )
}

impl MemcacheStore {
    /// A builder for a store over `servers` (`host:port` each).
    pub fn builder<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> MemcacheStoreBuilder {
        MemcacheStoreBuilder::new(servers.into_iter().map(Into::into).collect())
    }

    /// The address of the server that holds `key`.
    pub fn server_for(&self, key: &StoreKey) -> &str {
        &self.inner.servers[self.inner.ring.pick(key.as_str())].addr
    }

    /// Whether `addr` is currently marked down.
    pub fn is_marked_down(&self, addr: &str) -> bool {
        self.inner.servers.iter().any(|s| {
            s.addr == addr
                && s.health()
                    .down_until
                    .is_some_and(|until| until > Instant::now())
        })
    }

    fn mark_failed(&self, server: &Server, error: &str) {
        let mut health = server.health();
        health.failures = health.failures.saturating_add(1);
        let exponent = health.failures.saturating_sub(1).min(16);
        let backoff = (self.inner.backoff_initial * 2u32.pow(exponent)).min(self.inner.backoff_max);
        health.down_until = Some(Instant::now() + backoff);
        tracing::warn!(server = %server.addr, failures = health.failures, ?backoff, error, "memcached server marked down");
    }

    fn mark_ok(&self, server: &Server) {
        let mut health = server.health();
        if health.failures > 0 {
            tracing::info!(server = %server.addr, "memcached server is back");
        }
        *health = Health::default();
    }

    /// Runs one command on the server owning `key`, bounded by the timeouts.
    /// Protocol answers (not found, exists, not stored) come back as the
    /// inner `Err` for the caller to interpret.
    async fn run(
        &self,
        key: &StoreKey,
        command: Command<'_>,
    ) -> Result<Result<Option<MetaValue>, async_memcached::Error>, StoreError> {
        let server = &self.inner.servers[self.inner.ring.pick(key.as_str())];
        if server
            .health()
            .down_until
            .is_some_and(|until| until > Instant::now())
        {
            return Err(StoreError::Unavailable(format!(
                "memcached {} is marked down",
                server.addr
            )));
        }
        let mut conn = match server.pool.get().await {
            Ok(conn) => conn,
            Err(PoolError::Timeout(managed::TimeoutType::Wait)) => {
                // Every connection busy: the server is fine, we are saturated.
                return Err(StoreError::Timeout(self.inner.op_timeout));
            }
            Err(e) => {
                let message = match e {
                    PoolError::Timeout(_) => "connect timed out".to_owned(),
                    PoolError::Backend(e) => e.to_string(),
                    other => other.to_string(),
                };
                self.mark_failed(server, &message);
                return Err(StoreError::Unavailable(format!(
                    "memcached {}: {message}",
                    server.addr
                )));
            }
        };
        let mc_key = format!("{}{}", self.inner.prefix, key.as_str());
        let call = async {
            match command {
                Command::Load => {
                    conn.meta_get(&mc_key, false, None, Some(&["v", "c", "t"]))
                        .await
                }
                Command::Save { bytes, flags } => {
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    conn.meta_set(&mc_key, bytes, false, None, Some(&flags))
                        .await
                }
                Command::Touch { ttl } => {
                    let ttl = format!("T{ttl}");
                    conn.meta_get(&mc_key, false, None, Some(&[ttl.as_str(), "t"]))
                        .await
                }
                Command::Delete => conn.meta_delete(&mc_key, false, None, None).await,
            }
        };
        match tokio::time::timeout(self.inner.op_timeout, call).await {
            Err(_) => {
                self.mark_failed(server, "command timed out");
                Err(StoreError::Timeout(self.inner.op_timeout))
            }
            Ok(Err(e)) if is_connection_error(&e) => {
                self.mark_failed(server, &e.to_string());
                Err(StoreError::Unavailable(format!(
                    "memcached {}: {e}",
                    server.addr
                )))
            }
            Ok(result) => {
                self.mark_ok(server);
                Ok(result)
            }
        }
    }
}

fn protocol_error(e: async_memcached::Error) -> StoreError {
    StoreError::Backend(format!("memcached: {e}"))
}

#[async_trait]
impl Store for MemcacheStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        match self.run(key, Command::Load).await? {
            Ok(Some(value)) => {
                let now = OffsetDateTime::now_utc();
                let expires_at = value
                    .ttl_remaining
                    .filter(|t| *t >= 0)
                    .map(|t| now + session_core::time::Duration::seconds(t));
                let version = Version(value.cas.unwrap_or(0));
                Ok(Some(StoredRecord::new(
                    value.data.unwrap_or_default(),
                    version,
                    expires_at,
                )))
            }
            Ok(None) => Ok(None),
            Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(None),
            Err(e) => Err(protocol_error(e)),
        }
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(record.len(), self.inner.max_item_size)?;
        let ttl = ttl_for(expires_at, OffsetDateTime::now_utc());
        let mut flags = vec![format!("T{ttl}"), "c".to_owned()];
        match condition {
            SaveCondition::IfAbsent => flags.push("ME".to_owned()),
            SaveCondition::IfVersion(Version(cas)) => flags.push(format!("C{cas}")),
            _ => {}
        }
        // With flags in the request, the status comes back inside the value.
        let saved = self
            .run(
                key,
                Command::Save {
                    bytes: record,
                    flags,
                },
            )
            .await?;
        let status = match saved {
            Ok(Some(value)) => match value.status {
                Some(Status::Stored) | None => {
                    return Ok(SaveOutcome::Saved(Version(value.cas.unwrap_or(0))))
                }
                Some(status) => status,
            },
            Ok(None) => return Ok(SaveOutcome::Saved(Version(0))),
            Err(async_memcached::Error::Protocol(status)) => status,
            Err(e) => return Err(protocol_error(e)),
        };
        match status {
            Status::NotStored | Status::Exists | Status::NotFound => Ok(SaveOutcome::Conflict),
            other => Err(StoreError::Backend(format!(
                "memcached refused the save: {other:?}"
            ))),
        }
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let ttl = ttl_for(expires_at, OffsetDateTime::now_utc());
        match self.run(key, Command::Touch { ttl }).await? {
            Ok(Some(_)) | Err(async_memcached::Error::Protocol(Status::Exists)) => Ok(true),
            Ok(None) | Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(false),
            Err(e) => Err(protocol_error(e)),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        match self.run(key, Command::Delete).await? {
            Ok(_) | Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(()),
            Err(e) => Err(protocol_error(e)),
        }
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(self.inner.max_item_size)
    }

    fn seals_at_rest(&self) -> bool {
        self.inner.seal_at_rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_relative_up_to_30_days_and_absolute_beyond() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let secs = |s: i64| now + session_core::time::Duration::seconds(s);
        assert_eq!(ttl_for(secs(60), now), 60);
        assert_eq!(ttl_for(secs(MAX_RELATIVE_TTL), now), MAX_RELATIVE_TTL);
        assert_eq!(
            ttl_for(secs(MAX_RELATIVE_TTL + 1), now),
            1_800_000_000 + MAX_RELATIVE_TTL + 1
        );
        assert_eq!(
            ttl_for(secs(-10), now),
            1,
            "past deadlines expire at once, never 0 (= never)"
        );
        assert_eq!(
            ttl_for(now + Duration::from_millis(1500), now),
            2,
            "rounded up"
        );
    }

    #[test]
    fn builder_validates() {
        assert!(matches!(
            MemcacheStore::builder(Vec::<String>::new()).build(),
            Err(MemcacheConfigError::NoServers)
        ));
        assert!(matches!(
            MemcacheStore::builder(["nohost"]).build(),
            Err(MemcacheConfigError::BadServer(_))
        ));
        assert!(matches!(
            MemcacheStore::builder(["a:1"])
                .key_prefix("has space")
                .build(),
            Err(MemcacheConfigError::BadPrefix)
        ));
        assert!(matches!(
            MemcacheStore::builder(["a:1"]).pool_size(0).build(),
            Err(MemcacheConfigError::Zero(_))
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let store = MemcacheStore::builder(["127.0.0.1:1"])
            .credentials("user", "hunter2")
            .build()
            .unwrap();
        let builder = format!(
            "{:?}",
            MemcacheStore::builder(["a:1"]).credentials("user", "hunter2")
        );
        assert!(!builder.contains("hunter2"), "{builder}");
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
