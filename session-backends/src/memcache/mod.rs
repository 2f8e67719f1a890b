//! The memcached store: a few multiplexed meta-protocol connections per
//! server, consistent hashing over several servers, compare-and-swap, and
//! health kept by probing.
//!
//! The protocol layer is ours. Every memcached client on crates.io
//! (async-memcached, memcache-async, bb8-memcached, rsmc) serves one caller
//! per connection, so a pool must check a connection out for each command
//! and a busy server needs as many connections as requests in flight, each
//! paying its own system calls and wake-ups. Here any number of tasks share
//! a connection: what they queue meanwhile goes out in one write and the
//! replies, matched in order by opaque tokens, come back in one read
//! ([`conn`]). A session store needs four commands (`mg`, `ms`, `md`, `mn`;
//! [`proto`]), which keeps that layer small.

mod conn;
pub(crate) mod proto;
mod ring;
mod server;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord,
    UserIndexSupport, Version,
};

use self::proto::{Code, SetMode};
use self::ring::HashRing;
use self::server::{Server, Settings};

/// memcached reads a TTL above this many seconds (30 days) as a Unix time.
pub const MAX_RELATIVE_TTL: i64 = 2_592_000;
/// Default largest record: memcached's 1 MiB item limit less room for the
/// key and item header.
pub const DEFAULT_MAX_MEMCACHE_RECORD: usize = (1 << 20) - 1024;

/// The latest deadline memcached can hold: it reads an absolute `T` as a
/// 32-bit Unix time (2038-01-19).
pub const MAX_ABSOLUTE_TTL: i64 = i32::MAX as i64;

/// The `T` flag value for a deadline: seconds from now, or the absolute
/// Unix time past 30 days (memcached's rule), clamped to
/// [`MAX_ABSOLUTE_TTL`] (a later one is not an error memcached reports
/// cleanly, and the session would not be kept). Never below 1, so a
/// deadline in the past still expires at once rather than meaning "never".
pub(crate) fn ttl_for(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let secs = (expires_at - now).as_seconds_f64().ceil() as i64;
    if secs > MAX_RELATIVE_TTL {
        expires_at.unix_timestamp().min(MAX_ABSOLUTE_TTL)
    } else {
        secs.max(1)
    }
}

/// Username and password for memcached's ASCII authentication (`-Y`).
#[derive(Clone)]
pub(crate) struct Credentials {
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

/// Builder of a [`MemcacheStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemcacheStoreBuilder {
    servers: Vec<String>,
    connections: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    op_timeout: Duration,
    prefix: String,
    max_record_size: usize,
    seal_at_rest: bool,
    credentials: Option<Credentials>,
}

/// A [`MemcacheStore`] configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcacheConfigError {
    /// No server was given.
    #[error("no memcached server given")]
    NoServers,
    /// A server is not `host:port` (IPv6 as `[addr]:port`).
    #[error("memcached server `{0}` is not host:port")]
    BadServer(String),
    /// The key prefix would make invalid memcached keys.
    #[error("key prefix must be at most 100 printable characters without spaces")]
    BadPrefix,
    /// A size or count is zero.
    #[error("`{0}` must be above zero")]
    Zero(&'static str),
}

impl MemcacheStoreBuilder {
    fn new(servers: Vec<String>) -> Self {
        MemcacheStoreBuilder {
            servers,
            connections: 2,
            max_in_flight: 1024,
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_millis(500),
            prefix: "session:".into(),
            max_record_size: DEFAULT_MAX_MEMCACHE_RECORD,
            seal_at_rest: true,
            credentials: None,
        }
    }

    /// Connections per server, each carrying many requests at once.
    /// Default 2.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Requests in flight per connection; more wait for room. Default 1024.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Time allowed to open (and authenticate) a connection. Default 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one command, from the moment it is sent. Default
    /// 500 ms. Three timeouts in a row mark the server down.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
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
    pub fn max_record_size(mut self, size: usize) -> Self {
        self.max_record_size = size;
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

    /// Builds the store. Connections are opened on first use, so building
    /// succeeds while servers are down.
    ///
    /// # Errors
    ///
    /// No server, a server that is not `host:port`, a zero count or size,
    /// or a prefix that would make invalid keys.
    pub fn build(self) -> Result<MemcacheStore, MemcacheConfigError> {
        if self.servers.is_empty() {
            return Err(MemcacheConfigError::NoServers);
        }
        for (value, name) in [
            (self.connections, "connections"),
            (self.max_in_flight, "max_in_flight"),
            (self.max_record_size, "max_record_size"),
        ] {
            if value == 0 {
                return Err(MemcacheConfigError::Zero(name));
            }
        }
        if self.prefix.len() > 100 || !self.prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MemcacheConfigError::BadPrefix);
        }
        let settings = Settings {
            connections: self.connections,
            max_in_flight: self.max_in_flight,
            connect_timeout: self.connect_timeout,
            op_timeout: self.op_timeout,
            credentials: self.credentials,
        };
        let mut servers = Vec::with_capacity(self.servers.len());
        for addr in &self.servers {
            if !valid_addr(addr) {
                return Err(MemcacheConfigError::BadServer(addr.clone()));
            }
            servers.push(Server::new(addr.clone(), settings.clone()));
        }
        Ok(MemcacheStore {
            inner: Arc::new(Inner {
                ring: HashRing::new(&self.servers),
                servers,
                prefix: self.prefix,
                max_record_size: self.max_record_size,
                seal_at_rest: self.seal_at_rest,
            }),
        })
    }
}

/// `host:port`, or `[v6 address]:port`.
fn valid_addr(addr: &str) -> bool {
    let port_ok = |port: &str| port.parse::<u16>().is_ok();
    match addr.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").is_some_and(|(host, port)| {
            host.parse::<std::net::Ipv6Addr>().is_ok() && port_ok(port)
        }),
        None => addr
            .split_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port_ok(port)),
    }
}

/// Sessions in memcached.
///
/// - a few connections per server (default 2), each carrying many requests
///   at once: commands queued by concurrent requests go out in one write,
///   replies are matched in order by opaque tokens; a request that gives up
///   leaves the connection usable; one timer per connection bounds every
///   command;
/// - sessions spread over servers by consistent hashing; a server that
///   refuses, resets or closes connections, or times out three times in a
///   row, is marked down: its sessions fail at once with
///   [`StoreError::Unavailable`] (503) while a background prober checks it
///   about every 250 ms and puts it back within a second of it answering;
///   the other servers' sessions keep working;
/// - compare-and-swap and touch through the meta protocol (`mg <key> v c t`,
///   `ms <key> <len> C<cas> T<ttl>`, `mg <key> T<ttl>`);
/// - deadlines past 30 days sent as absolute Unix times, as memcached expects;
/// - records over the item limit refused before sending (an oversized set
///   would delete the stored session);
/// - keys are the prefix and the keyed hash of the session id;
/// - records sealed at rest by default; ASCII authentication; IPv4 and IPv6
///   (`[::1]:11211`) addresses.
///
/// ```no_run
/// use std::sync::Arc;
/// use session_backends::MemcacheStore;
/// use session_core::{KeyRing, SessionConfig};
///
/// let store = MemcacheStore::builder(["127.0.0.1:11211", "[::1]:11212"])
///     .connections(2)
///     .build()
///     .unwrap();
/// let config = SessionConfig::server(Arc::new(store), KeyRing::generate().unwrap());
/// ```
#[derive(Clone)]
pub struct MemcacheStore {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Arc<Server>>,
    ring: HashRing,
    prefix: String,
    max_record_size: usize,
    seal_at_rest: bool,
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

impl MemcacheStore {
    /// A builder for a store over `servers` (`host:port` each, IPv6 as
    /// `[addr]:port`).
    pub fn builder<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> MemcacheStoreBuilder {
        MemcacheStoreBuilder::new(servers.into_iter().map(Into::into).collect())
    }

    fn server(&self, key: &StoreKey) -> &Server {
        &self.inner.servers[self.inner.ring.pick(key.as_str())]
    }

    /// The address of the server that holds `key`.
    pub fn server_for(&self, key: &StoreKey) -> &str {
        &self.server(key).addr
    }

    /// Whether `addr` is currently marked down.
    pub fn is_marked_down(&self, addr: &str) -> bool {
        self.inner
            .servers
            .iter()
            .any(|s| s.addr == addr && s.is_down())
    }
}

fn unexpected(code: Code) -> StoreError {
    StoreError::Backend(format!("memcached: unexpected reply {code:?}"))
}

#[async_trait]
impl Store for MemcacheStore {
    fn kind(&self) -> &'static str {
        "memcache"
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let prefix = &self.inner.prefix;
        let reply = self
            .server(key)
            .call(|out, opaque| proto::get(out, prefix, key.as_str(), opaque))
            .await?;
        match reply.code {
            Code::Value => {
                let expires_at = reply.ttl.filter(|t| *t >= 0).and_then(|t| {
                    OffsetDateTime::now_utc().checked_add(session_core::time::Duration::seconds(t))
                });
                Ok(Some(StoredRecord::new(
                    reply.value.unwrap_or_default(),
                    Version(reply.cas.unwrap_or(0)),
                    expires_at,
                )))
            }
            Code::Miss => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(record.len(), self.inner.max_record_size)?;
        let ttl = ttl_for(expires_at, OffsetDateTime::now_utc());
        let mode = match condition {
            SaveCondition::IfAbsent => SetMode::Add,
            SaveCondition::IfVersion(Version(cas)) => SetMode::Cas(cas),
            _ => SetMode::Set,
        };
        let prefix = &self.inner.prefix;
        let reply = self
            .server(key)
            .call(|out, opaque| proto::set(out, prefix, key.as_str(), record, ttl, mode, opaque))
            .await?;
        match reply.code {
            Code::Done => Ok(SaveOutcome::Saved(Version(reply.cas.unwrap_or(0)))),
            Code::NotStored | Code::Exists | Code::NotFound => Ok(SaveOutcome::Conflict),
            other => Err(unexpected(other)),
        }
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let ttl = ttl_for(expires_at, OffsetDateTime::now_utc());
        let prefix = &self.inner.prefix;
        let reply = self
            .server(key)
            .call(|out, opaque| proto::touch(out, prefix, key.as_str(), ttl, opaque))
            .await?;
        match reply.code {
            Code::Done | Code::Value => Ok(true),
            Code::Miss => Ok(false),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let prefix = &self.inner.prefix;
        let reply = self
            .server(key)
            .call(|out, opaque| proto::delete(out, prefix, key.as_str(), opaque))
            .await?;
        match reply.code {
            Code::Done | Code::NotFound => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(self.inner.max_record_size)
    }

    fn seals_at_rest(&self) -> bool {
        self.inner.seal_at_rest
    }

    fn user_index(&self) -> UserIndexSupport<'_> {
        // Each user's index in one record, by compare-and-swap.
        UserIndexSupport::Records(self)
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
        // A 12-year timeout from 2027 ends after 2038: memcached holds it
        // until the last second it can name.
        assert_eq!(
            ttl_for(secs(12 * 365 * 86_400), now),
            MAX_ABSOLUTE_TTL,
            "clamped to 32 bits"
        );
    }

    #[test]
    fn builder_validates() {
        assert!(matches!(
            MemcacheStore::builder(Vec::<String>::new()).build(),
            Err(MemcacheConfigError::NoServers)
        ));
        for bad in [
            "nohost",
            "::1:11211",
            "[::1]",
            "[nothex]:1",
            "a:b:1",
            "a:99999",
        ] {
            assert!(
                matches!(
                    MemcacheStore::builder([bad]).build(),
                    Err(MemcacheConfigError::BadServer(_))
                ),
                "{bad}"
            );
        }
        for good in ["127.0.0.1:11211", "[::1]:11211", "cache.local:1"] {
            assert!(MemcacheStore::builder([good]).build().is_ok(), "{good}");
        }
        assert!(matches!(
            MemcacheStore::builder(["a:1"])
                .key_prefix("has space")
                .build(),
            Err(MemcacheConfigError::BadPrefix)
        ));
        assert!(matches!(
            MemcacheStore::builder(["a:1"]).connections(0).build(),
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
