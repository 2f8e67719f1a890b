//! The Redis store, on redis-rs: multiplexed connections that requests
//! share (commands from concurrent tasks are pipelined on one, no
//! per-operation checkout). Three topologies:
//!
//! - one server (`redis://`, `rediss://`): redis-rs's [`ConnectionManager`],
//!   reconnected in the background after a failure; one for tokio's
//!   multi-threaded runtime, and one per worker thread, up to one per core,
//!   under single-threaded runtimes such as actix-web's;
//! - Redis Cluster (several node URLs, comma-separated, or
//!   [`cluster`](RedisStoreBuilder::cluster)): redis-rs's async cluster
//!   connection (one per process), which learns the slots from any reachable
//!   node and learns them again after a `MOVED` or a failover. It resends
//!   nothing (a resent compare-and-swap whose reply was lost could apply
//!   twice), so the command that meets a `MOVED` or a failover answers 503
//!   and the next one goes to the right node; while a slot migrates, its
//!   keys already moved answer `ASK`, 503 each, until the migration ends.
//!   Every command and script here names one key, so nothing is cross-slot;
//! - a Sentinel-managed primary (`redis+sentinel://host:port[,host:port...]/NAME`,
//!   with `user:password@` for the data nodes): the Sentinels are asked for
//!   the primary, and asked again after a failure that says the primary
//!   moved (`READONLY` from a demoted one, a closed or refused connection),
//!   so a failover is followed as soon as the Sentinels name the new one.
//!   (redis-rs's own clients are chosen over fred: the single-server path
//!   was already on it, and its cluster connection pipelines the same way.)
//!
//! A record is one string: a 17-byte head (a layout tag, the version as 8
//! bytes big-endian, the expiry as 8 bytes of big-endian Unix milliseconds)
//! and the bytes. So a load is one `GET` (the expiry is in the head, no
//! `PTTL`), a create is `SET NX PX` and an unconditional write a `SET PX`,
//! each a plain command; only the compare-and-swap is a Lua script (it
//! compares the head's tag and version, then `SET`s: one round trip, atomic
//! on the server), and the touch (the `PEXPIRE` and the head's expiry
//! together). Expiry is milliseconds left (`PX`, `PEXPIRE`: no
//! `PXAT`/`EXAT`, which fail on servers older than 6.2).
//!
//! Records of the earlier layout (a hash of `v`, the version, and `d`, the
//! bytes, with the expiry as the key's TTL) are still read, with a second
//! round trip, and the compare-and-swap that next writes one rewrites it in
//! this layout, so an upgrade signs nobody out. The user index's scripts
//! set several hash fields in one `HSET`, which needs Redis 4.0: the oldest
//! server this store works with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, IndexEntry, SaveCondition, SaveOutcome, SessionHandle, Store, StoreError,
    StoreKey, StoredRecord, UserIndex, UserIndexSupport, UserKey, Version,
};

/// Default largest record (Redis accepts up to 512 MiB; sessions should
/// never come near this).
pub const DEFAULT_MAX_REDIS_RECORD: usize = 1 << 20;

/// The first byte of a record's head: this layout.
const LAYOUT: u8 = 1;
/// The head: the layout tag, the version, the expiry.
const HEAD: usize = 17;

/// Writes the record `ARGV[2]` (head included) with a TTL of `ARGV[3]` ms
/// if the stored head still starts with `ARGV[1]` (the tag and the
/// expected version); returns 1, or 0 when the record changed or is gone.
/// A record of the earlier layout (a hash: `redis.pcall` returns the
/// WRONGTYPE error as a table) is compared by its `v` field against
/// `ARGV[4]`, and rewritten in this layout (`SET` replaces any type); a
/// value of any other type is a conflict.
const CAS: &str = r"
local head = redis.pcall('GETRANGE', KEYS[1], 0, 8)
if type(head) == 'table' then
  if redis.pcall('HGET', KEYS[1], 'v') ~= ARGV[4] then return 0 end
elseif head ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Moves the deadline of `KEYS[1]` to `ARGV[1]` ms from now and writes it
/// into the head (`ARGV[2]`, 8 bytes at offset 9) of a record of this
/// layout (a record of the earlier layout has only its TTL; another
/// program's value is left as it is, and refused by the next load);
/// returns 1, or 0 when the record is gone.
const TOUCH: &str = r"
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.pcall('GETRANGE', KEYS[1], 0, 0) == '\1' and redis.call('STRLEN', KEYS[1]) >= 17 then
  redis.call('SETRANGE', KEYS[1], 9, ARGV[2])
end
return 1
";

/// Builder of a [`RedisStore`].
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    cluster: bool,
    prefix: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    max_record_size: usize,
    seal_at_rest: bool,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced, for logs and `Debug`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A [`RedisStore`] configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL does not parse, or names a scheme this build cannot use
    /// (`rediss://` needs the `redis-tls` feature).
    #[error("invalid Redis URL: {0}")]
    BadUrl(String),
    /// A size or duration is zero.
    #[error("`{0}` must be above zero")]
    Zero(&'static str),
}

impl RedisStoreBuilder {
    /// Treat the URL (or URLs) as seed nodes of a Redis Cluster, also when
    /// there is only one. A comma-separated list is a cluster anyway.
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Prefix of every key. Default `session:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time allowed to connect. Default 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one command. Default 500 ms.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Largest record written; larger ones fail with
    /// [`StoreError::TooLarge`] before anything is sent. Default 1 MiB.
    pub fn max_record_size(mut self, size: usize) -> Self {
        self.max_record_size = size;
        self
    }

    /// Whether records are sealed at rest with the session key ring
    /// (default true: Redis holds nothing readable or forgeable without the
    /// key).
    pub fn seal_at_rest(mut self, seal: bool) -> Self {
        self.seal_at_rest = seal;
        self
    }

    /// Builds the store. No connection is made until the first command, so
    /// this succeeds while Redis is down (requests then answer 503 until it
    /// is reachable).
    ///
    /// # Errors
    ///
    /// A URL that does not parse or needs a feature this build lacks, or a
    /// zero timeout or size.
    pub fn build(self) -> Result<RedisStore, RedisConfigError> {
        if self.max_record_size == 0 {
            return Err(RedisConfigError::Zero("max_record_size"));
        }
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(RedisConfigError::Zero("timeout"));
        }
        let bad = |e: RedisError| RedisConfigError::BadUrl(e.to_string());
        let target = if let Some(rest) = self.url.strip_prefix("redis+sentinel://") {
            let (sentinels, name, node) = sentinel_parts(rest)?;
            let client =
                SentinelClient::build(sentinels, name, Some(node), SentinelServerType::Master)
                    .map_err(bad)?;
            Target::Sentinel {
                client: tokio::sync::Mutex::new(client),
                connection: tokio::sync::RwLock::new(None),
            }
        } else if self.cluster || self.url.contains(',') {
            let nodes: Vec<&str> = self.url.split(',').map(str::trim).collect();
            let client = ClusterClient::builder(nodes)
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.op_timeout)
                // No resend: a script whose reply was lost may have run, and
                // running a compare-and-swap twice reads as a conflict (the
                // engine would replay its change). A MOVED or ASK answered
                // by a node that lost its slots is a 503; the slot map is
                // rebuilt behind it.
                .retries(0)
                .build()
                .map_err(bad)?;
            Target::Cluster {
                client,
                connection: tokio::sync::OnceCell::new(),
            }
        } else {
            let client = Client::open(self.url.as_str()).map_err(bad)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.op_timeout))
                // Reconnect quickly: a request waits for at most one short try.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            let slots = crate::thread_slots::slot_count();
            Target::Single {
                client,
                config,
                connections: (0..slots).map(|_| std::sync::OnceLock::new()).collect(),
            }
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                target,
                url: redact(&self.url),
                prefix: self.prefix,
                op_timeout: self.op_timeout,
                max_record_size: self.max_record_size,
                seal_at_rest: self.seal_at_rest,
                cas: Lua::new(CAS),
                touch: Lua::new(TOUCH),
                index: IndexScripts::new(),
            }),
        })
    }
}

/// Sessions in Redis, shared by every server of a deployment and kept
/// across restarts (as far as Redis persists).
///
/// - multiplexed connections shared by requests (on one server, one per
///   worker thread under single-threaded runtimes), reconnected after
///   failures; every command bounded by a timeout; an unreachable server is
///   [`StoreError::Unavailable`] (503), answered as soon as the connection
///   attempt fails;
/// - a load is one `GET`; compare-and-swap in one round trip (a Lua script
///   comparing the stored version), create-if-absent (`SET NX`), touch,
///   delete;
/// - a key prefix; records sealed at rest by default; `redis://` URLs with
///   user and password, `rediss://` with the `redis-tls` feature;
/// - one server, a Redis Cluster (node URLs, comma-separated: any reachable
///   ones, the rest are discovered), or the primary that Sentinels name
///   (`redis+sentinel://`); a demoted, loading or cluster-less server
///   (`READONLY`, `LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`) is a
///   503, not a 500;
/// - Redis 4.0 or later.
///
/// ```no_run
/// use session_backends::RedisStore;
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .key_prefix("myapp:")
///     .build()
///     .unwrap();
/// let cluster = RedisStore::builder("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
///     .build()
///     .unwrap();
/// let sentinel = RedisStore::builder("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/sessions")
///     .build()
///     .unwrap();
/// # drop((store, cluster, sentinel));
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    url: String,
    prefix: String,
    op_timeout: Duration,
    max_record_size: usize,
    seal_at_rest: bool,
    cas: Lua,
    touch: Lua,
    index: IndexScripts,
}

/// A Lua script, run by its SHA-1 (`EVALSHA`), or by its text on a server
/// that does not have it yet (see [`RedisStore::eval`]).
struct Lua {
    code: String,
    hash: String,
}

impl Lua {
    fn new(code: &str) -> Self {
        Lua {
            hash: Script::new(code).get_hash().to_owned(),
            code: code.to_owned(),
        }
    }
}

/// The user index's scripts (see [`UserIndex for RedisStore`](RedisStore#impl-UserIndex-for-RedisStore)).
struct IndexScripts {
    put: Lua,
    update: Lua,
    list: Lua,
    remove: Lua,
    remove_all: Lua,
}

/// Drops the entries of `KEYS[1]` (sorted set of handles by expiry) and
/// `KEYS[2]` (hash of handle to entry) that lapsed by `ARGV[1]`; shared
/// head of the index scripts.
const INDEX_TRIM: &str = r"
local now = tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('HDEL', KEYS[2], unpack(gone))
end
";

/// Both keys expire with their last entry.
const INDEX_EXPIRE: &str = r"
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 then
  redis.call('EXPIREAT', KEYS[1], last[2])
  redis.call('EXPIREAT', KEYS[2], last[2])
end
";

/// Adds entry `ARGV[4]` under handle `ARGV[2]`, expiring at `ARGV[3]`;
/// past `ARGV[5]` entries the others expiring first go (for rolling
/// sessions, the least recently seen), never the one added.
const INDEX_PUT: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[5])
if n >= cap then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - cap)
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
";

/// Replaces the entry under `ARGV[2]` only if it is there and live: 1, or 0.
const INDEX_UPDATE: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not s or tonumber(s) <= now then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
";

/// The live entries.
const INDEX_LIST: &str = r"
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(live))
";

/// Removes the entry under `ARGV[2]`: 1 if it was live, else 0.
const INDEX_REMOVE: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if s and tonumber(s) > now then return 1 end
return 0
";

/// Removes every entry but `ARGV[2]`'s: how many live ones went.
const INDEX_REMOVE_ALL: &str = r"
local all = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, h in ipairs(all) do
  if h ~= ARGV[2] then
    n = n + 1
    redis.call('ZREM', KEYS[1], h)
    redis.call('HDEL', KEYS[2], h)
  end
end
return n
";

impl IndexScripts {
    fn new() -> Self {
        let script = |body: &str, tail: &str| Lua::new(&format!("{INDEX_TRIM}{body}{tail}"));
        IndexScripts {
            put: script(INDEX_PUT, INDEX_EXPIRE),
            update: script(INDEX_UPDATE, &format!("{INDEX_EXPIRE}return 1")),
            list: script("", INDEX_LIST),
            remove: script(INDEX_REMOVE, ""),
            remove_all: script(INDEX_REMOVE_ALL, ""),
        }
    }
}

/// Where commands go. Connections are made on first use: they spawn tasks,
/// so they need the runtime that serves requests, which a store built
/// before it does not have.
enum Target {
    Single {
        client: Client,
        config: ConnectionManagerConfig,
        /// One multiplexed connection per thread slot (`thread_slots`).
        connections: Box<[std::sync::OnceLock<ConnectionManager>]>,
    },
    Cluster {
        client: ClusterClient,
        connection: tokio::sync::OnceCell<ClusterConnection>,
    },
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        /// The current primary's connection; dropped when it fails in a
        /// way that says the primary moved, so the next command asks the
        /// Sentinels again.
        connection: tokio::sync::RwLock<Option<MultiplexedConnection>>,
    },
}

/// A connection of any topology, for the same commands.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

/// `host:port[,host:port...]/NAME` with an optional `user:password@`: the
/// Sentinels' URLs, the primary's name, and the data nodes' credentials.
fn sentinel_parts(
    rest: &str,
) -> Result<(Vec<String>, String, SentinelNodeConnectionInfo), RedisConfigError> {
    let bad = |why: &str| RedisConfigError::BadUrl(format!("redis+sentinel://: {why}"));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let (hosts, name) = rest
        .split_once('/')
        .ok_or_else(|| bad("no /NAME of the primary"))?;
    // The name ends at a further `/`, or at a query.
    let name = name.split(['/', '?']).next().unwrap_or("");
    if name.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
        return Err(bad("hosts and a primary's name are needed"));
    }
    // A host without a port is a Sentinel on its default port.
    let sentinels = hosts
        .split(',')
        .map(str::trim)
        .map(|h| {
            if h.contains(':') {
                format!("redis://{h}")
            } else {
                format!("redis://{h}:26379")
            }
        })
        .collect();
    let mut info = ::redis::RedisConnectionInfo::default();
    if let Some(credentials) = credentials {
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        if !user.is_empty() {
            info = info.set_username(user);
        }
        if !password.is_empty() {
            info = info.set_password(password);
        }
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    Ok((sentinels, name.to_owned(), node))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .field("seal_at_rest", &self.inner.seal_at_rest)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            cluster: false,
            prefix: "session:".into(),
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_millis(500),
            max_record_size: DEFAULT_MAX_REDIS_RECORD,
            seal_at_rest: true,
        }
    }

    /// The shared connection (made on first use), within the operation
    /// timeout however many requests wait for the one attempt under way.
    async fn connection(&self) -> Result<Conn, StoreError> {
        // Every command asks: the connection made already, without a timer.
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        // The first connection, or a new primary's: rare, so its large
        // future is boxed, and every command's future stays small (it is
        // moved into the `Store` call's box on every request).
        Box::pin(async {
            let limit = self.inner.op_timeout;
            match tokio::time::timeout(limit, self.connect()).await {
                Ok(connected) => connected,
                Err(_) => {
                    self.forget_primary().await;
                    Err(StoreError::Timeout(limit))
                }
            }
        })
        .await
    }

    fn cached(&self) -> Option<Conn> {
        match &self.inner.target {
            Target::Single { connections, .. } => connections
                [crate::thread_slots::thread_slot(connections.len())]
            .get()
            .cloned()
            .map(Conn::Single),
            Target::Cluster { connection, .. } => connection.get().cloned().map(Conn::Cluster),
            Target::Sentinel { connection, .. } => connection
                .try_read()
                .ok()
                .and_then(|c| c.clone())
                .map(Conn::Sentinel),
        }
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let unavailable =
            |e: RedisError| StoreError::Unavailable(format!("redis {}: {e}", self.inner.url));
        match &self.inner.target {
            Target::Single {
                client,
                config,
                connections,
            } => {
                let connection = &connections[crate::thread_slots::thread_slot(connections.len())];
                if let Some(c) = connection.get() {
                    return Ok(Conn::Single(c.clone()));
                }
                let made = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map_err(|e| StoreError::Backend(format!("redis: {e}")))?;
                Ok(Conn::Single(connection.get_or_init(|| made).clone()))
            }
            Target::Cluster { client, connection } => {
                let connect = async {
                    let made =
                        tokio::time::timeout(self.inner.op_timeout, client.get_async_connection())
                            .await
                            .map_err(|_| StoreError::Timeout(self.inner.op_timeout))?;
                    made.map_err(unavailable)
                };
                Ok(Conn::Cluster(
                    connection.get_or_try_init(|| connect).await?.clone(),
                ))
            }
            Target::Sentinel { client, connection } => {
                if let Some(c) = connection.read().await.as_ref() {
                    return Ok(Conn::Sentinel(c.clone()));
                }
                let mut slot = connection.write().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Conn::Sentinel(c.clone()));
                }
                let config = ::redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.inner.op_timeout))
                    .set_response_timeout(Some(self.inner.op_timeout));
                let asked = async {
                    let mut sentinels = client.lock().await;
                    sentinels.get_async_connection_with_config(&config).await
                };
                let made = tokio::time::timeout(self.inner.op_timeout * 2, asked)
                    .await
                    .map_err(|_| StoreError::Timeout(self.inner.op_timeout))?
                    .map_err(unavailable)?;
                *slot = Some(made.clone());
                Ok(Conn::Sentinel(made))
            }
        }
    }

    /// After a failure that says the primary moved (or is out of reach),
    /// a Sentinel-managed store asks the Sentinels again on the next
    /// command.
    async fn forget_primary(&self) {
        if let Target::Sentinel { connection, .. } = &self.inner.target {
            connection.write().await.take();
        }
    }

    fn key(&self, key: &StoreKey) -> String {
        let mut k = String::with_capacity(self.inner.prefix.len() + key.as_str().len());
        k.push_str(&self.inner.prefix);
        k.push_str(key.as_str());
        k
    }

    /// Runs `script` on `keys` with the arguments `args` writes: `EVALSHA`,
    /// and `EVAL` with the text where the server answers `NOSCRIPT` (a
    /// restarted server, a new primary or cluster node), which also caches
    /// it there. One command built directly (redis-rs's `ScriptInvocation`
    /// copies every argument into a vector of its own first).
    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        conn: &mut Conn,
        script: &Lua,
        keys: &[&str],
        args: &(dyn Fn(&mut Cmd) + Sync),
    ) -> Result<T, StoreError> {
        let call = |by_hash: bool| {
            let mut cmd = if by_hash {
                let mut cmd = ::redis::cmd("EVALSHA");
                cmd.arg(&script.hash);
                cmd
            } else {
                let mut cmd = ::redis::cmd("EVAL");
                cmd.arg(&script.code);
                cmd
            };
            cmd.arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
            args(&mut cmd);
            cmd
        };
        self.run(async {
            match call(true).query_async(conn).await {
                Err(e)
                    if e.kind()
                        == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
                {
                    call(false).query_async(conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs a command with the store's timeout, mapping failures.
    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let result = self.map(tokio::time::timeout(self.inner.op_timeout, call).await);
        if matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ) {
            self.forget_primary().await;
        }
        result
    }

    fn map<T>(
        &self,
        result: Result<Result<T, RedisError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Err(_) => Err(StoreError::Timeout(self.inner.op_timeout)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout(self.inner.op_timeout)),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || not_now(&e) =>
            {
                Err(StoreError::Unavailable(format!(
                    "redis {}: {e}",
                    self.inner.url
                )))
            }
            Ok(Err(e)) => Err(StoreError::Backend(format!("redis: {e}"))),
        }
    }
}

/// Replies that mean "not now": a demoted primary (`READONLY`), a server
/// still loading its data (`LOADING`), a replica whose primary is gone
/// (`MASTERDOWN`), a cluster moving slots or without quorum (`TRYAGAIN`,
/// `CLUSTERDOWN`, and `MOVED`/`ASK`, which the cluster connection is not
/// let to follow by resending). A retry later succeeds: 503, not 500.
fn not_now(e: &RedisError) -> bool {
    matches!(
        e.code(),
        Some("READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "MOVED" | "ASK")
    )
}

/// Milliseconds from now until `expires_at`, at least 1.
fn millis_left(expires_at: OffsetDateTime) -> i64 {
    let left = (expires_at - OffsetDateTime::now_utc()).whole_milliseconds();
    left.clamp(1, i64::MAX as i128) as i64
}

/// A record this store did not write: read as absent (the engine starts a
/// fresh session), with a warning.
fn refused(why: &str) -> Option<StoredRecord> {
    tracing::warn!(
        reason = why,
        "redis record refused; starting a fresh session"
    );
    None
}

/// Unix milliseconds of `at`, as the head holds them.
fn unix_millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The head's first 9 bytes, the layout tag and `version`: what a
/// compare-and-swap compares.
fn head_start(version: u64) -> [u8; 9] {
    let mut start = [LAYOUT; 9];
    start[1..].copy_from_slice(&version.to_be_bytes());
    start
}

/// A record in this layout: the head, then `data`.
fn with_head(version: u64, expires_at: OffsetDateTime, data: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(HEAD + data.len());
    stored.extend_from_slice(&head_start(version));
    stored.extend_from_slice(&unix_millis(expires_at).to_be_bytes());
    stored.extend_from_slice(data);
    stored
}

/// The record in a string this store wrote, or refused.
fn open_record(mut stored: Vec<u8>) -> Option<StoredRecord> {
    if stored.len() < HEAD || stored[0] != LAYOUT {
        return refused("a string that is not a session record");
    }
    let field = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&stored[at..at + 8]);
        bytes
    };
    let version = u64::from_be_bytes(field(1));
    let millis = i64::from_be_bytes(field(9));
    let Ok(expires_at) = OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000)
    else {
        return refused("an expiry too far away to be ours");
    };
    stored.drain(..HEAD);
    Some(StoredRecord::new(
        stored,
        Version(version),
        Some(expires_at),
    ))
}

impl RedisStore {
    /// A record of the earlier layout: a hash of `v` and `d`, the expiry
    /// the key's TTL.
    /// `None` when the key holds no hash (any more): another request's
    /// compare-and-swap may have rewritten it as a string since the `GET`.
    async fn load_earlier_layout(
        &self,
        conn: &mut Conn,
        key: &str,
    ) -> Result<Option<Option<StoredRecord>>, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET")
            .arg(key)
            .arg("v")
            .arg("d")
            .cmd("PTTL")
            .arg(key);
        // The fields `v` and `d`, then the TTL.
        type Reply = ((Option<Vec<u8>>, Option<Vec<u8>>), i64);
        let reply: Result<Reply, StoreError> = self.run(pipe.query_async(conn)).await;
        let ((version, data), ttl) = match reply {
            Ok(reply) => reply,
            Err(StoreError::Backend(why)) if why.contains("WRONGTYPE") => return Ok(None),
            Err(e) => return Err(e),
        };
        let (version, data) = match (version, data) {
            (Some(version), Some(data)) => (version, data),
            // Deleted since the `GET` (a logout): gone, not refused.
            (None, None) => return Ok(Some(None)),
            _ => return Ok(Some(refused("a hash without its version or data"))),
        };
        let Some(version) = std::str::from_utf8(&version)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return Ok(Some(refused("a version that is not a number")));
        };
        let expires_at = match ttl {
            // Deleted between the two commands.
            -2 => return Ok(Some(None)),
            ttl if ttl < 0 => None,
            ttl => match OffsetDateTime::now_utc()
                .checked_add(session_core::time::Duration::milliseconds(ttl))
            {
                Some(at) => Some(at),
                None => return Ok(Some(refused("an expiry too far away to be ours"))),
            },
        };
        Ok(Some(Some(StoredRecord::new(
            data,
            Version(version),
            expires_at,
        ))))
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let mut conn = self.connection().await?;
        let key = self.key(key);
        // A second `GET` only when a hash of the earlier layout turned into
        // a string between the first `GET` and the hash's read (a
        // concurrent compare-and-swap rewrote it): read once more, never
        // taken for a missing session.
        for _ in 0..2 {
            let mut cmd = ::redis::cmd("GET");
            cmd.arg(&key);
            let reply: Result<Option<Vec<u8>>, StoreError> =
                self.run(cmd.query_async(&mut conn)).await;
            match reply {
                Ok(Some(record)) => return Ok(open_record(record)),
                Ok(None) => return Ok(None),
                // A hash: a record of the earlier layout, or another program's.
                Err(StoreError::Backend(why)) if why.contains("WRONGTYPE") => {
                    if let Some(found) = self.load_earlier_layout(&mut conn, &key).await? {
                        return Ok(found);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Neither a string nor a hash (another program's value under our
        // key): no session of ours.
        Ok(refused("a value that is not a session record"))
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(record.len(), self.inner.max_record_size)?;
        let mut conn = self.connection().await?;
        let key = self.key(key);
        let ttl = millis_left(expires_at);
        let version = match condition {
            SaveCondition::IfVersion(Version(v)) => v.wrapping_add(1),
            _ => crate::versions::fresh_version(),
        };
        let stored = with_head(version, expires_at, record);
        let written = match condition {
            SaveCondition::IfVersion(Version(v)) => {
                let args = |cmd: &mut Cmd| {
                    cmd.arg(&head_start(v)[..]).arg(&stored).arg(ttl).arg(v);
                };
                let swapped: i64 = self
                    .eval(&mut conn, &self.inner.cas, &[&key], &args)
                    .await?;
                swapped == 1
            }
            SaveCondition::IfAbsent => {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&key).arg(stored).arg("NX").arg("PX").arg(ttl);
                let set: Option<String> = self.run(cmd.query_async(&mut conn)).await?;
                set.is_some()
            }
            _ => {
                // A fresh version, not the old one plus one: a concurrent
                // compare-and-swap still sees the change, and no read is
                // needed.
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&key).arg(stored).arg("PX").arg(ttl);
                let _: String = self.run(cmd.query_async(&mut conn)).await?;
                true
            }
        };
        Ok(if written {
            SaveOutcome::Saved(Version(version))
        } else {
            SaveOutcome::Conflict
        })
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let args = |cmd: &mut Cmd| {
            cmd.arg(millis_left(expires_at))
                .arg(&unix_millis(expires_at).to_be_bytes()[..]);
        };
        let touched: i64 = self
            .eval(&mut conn, &self.inner.touch, &[&self.key(key)], &args)
            .await?;
        Ok(touched == 1)
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(key));
        let _: i64 = self.run(cmd.query_async(&mut conn)).await?;
        Ok(())
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(self.inner.max_record_size)
    }

    fn seals_at_rest(&self) -> bool {
        self.inner.seal_at_rest
    }

    fn user_index(&self) -> UserIndexSupport<'_> {
        UserIndexSupport::Native(self)
    }
}

impl RedisStore {
    /// A user's index keys: the sorted set of handles by expiry and the
    /// hash of entries, on one hash slot (the user key in braces).
    fn index_keys(&self, user: &UserKey) -> [String; 2] {
        let zset = format!("{}u{{{}}}", self.inner.prefix, user.as_str());
        let hash = format!("{zset}:e");
        [zset, hash]
    }

    async fn index_call<T: ::redis::FromRedisValue>(
        &self,
        script: &Lua,
        user: &UserKey,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let [zset, hash] = self.index_keys(user);
        let write = |cmd: &mut Cmd| {
            for arg in args {
                cmd.arg(*arg);
            }
        };
        self.eval(&mut conn, script, &[&zset, &hash], &write).await
    }
}

/// The user index as a sorted set per user (handles scored by their
/// entries' expiry, in Unix seconds) and a hash of the entries, both under
/// one hash tag so Redis Cluster keeps a user's index on one slot. Every
/// operation is one script (atomic, one round trip); each write drops the
/// entries that lapsed, caps the index at
/// [`MAX_RECORD_INDEX_ENTRIES`](session_core::MAX_RECORD_INDEX_ENTRIES),
/// and sets both keys to expire with the last entry. Entries are kept
/// unsealed (handle, times, user agent, the application's metadata; never
/// the user id, which only appears hashed in the key).
#[async_trait]
impl UserIndex for RedisStore {
    async fn put(&self, user: &UserKey, entry: &IndexEntry, now: i64) -> Result<(), StoreError> {
        let (now, expires, cap) = (
            now.to_string(),
            entry.expires.to_string(),
            session_core::MAX_RECORD_INDEX_ENTRIES.to_string(),
        );
        let args: [&[u8]; 5] = [
            now.as_bytes(),
            entry.handle.as_str().as_bytes(),
            expires.as_bytes(),
            &entry.to_bytes(),
            cap.as_bytes(),
        ];
        let _: Value = self.index_call(&self.inner.index.put, user, &args).await?;
        Ok(())
    }

    async fn update(
        &self,
        user: &UserKey,
        entry: &IndexEntry,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (now, expires) = (now.to_string(), entry.expires.to_string());
        let args: [&[u8]; 4] = [
            now.as_bytes(),
            entry.handle.as_str().as_bytes(),
            expires.as_bytes(),
            &entry.to_bytes(),
        ];
        let updated: i64 = self
            .index_call(&self.inner.index.update, user, &args)
            .await?;
        Ok(updated == 1)
    }

    async fn get(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let mut conn = self.connection().await?;
        let [zset, hash] = self.index_keys(user);
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZSCORE")
            .arg(&zset)
            .arg(handle.as_str())
            .cmd("HGET")
            .arg(&hash)
            .arg(handle.as_str());
        let (score, bytes): (Option<f64>, Option<Vec<u8>>) =
            self.run(pipe.query_async(&mut conn)).await?;
        let live = score.is_some_and(|s| s > now as f64);
        Ok(bytes
            .filter(|_| live)
            .and_then(|b| IndexEntry::from_bytes(&b))
            .filter(|e| e.handle == *handle && e.is_live(now)))
    }

    async fn list(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError> {
        let now_arg = now.to_string();
        let found: Vec<Option<Vec<u8>>> = self
            .index_call(&self.inner.index.list, user, &[now_arg.as_bytes()])
            .await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter_map(|b| IndexEntry::from_bytes(&b))
            .filter(|e| e.is_live(now))
            .collect())
    }

    async fn remove(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<bool, StoreError> {
        let now = now.to_string();
        let args: [&[u8]; 2] = [now.as_bytes(), handle.as_str().as_bytes()];
        let removed: i64 = self
            .index_call(&self.inner.index.remove, user, &args)
            .await?;
        Ok(removed == 1)
    }

    async fn remove_all(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let now = now.to_string();
        let keep = keep.map_or("", |h| h.as_str());
        let args: [&[u8]; 2] = [now.as_bytes(), keep.as_bytes()];
        let removed: i64 = self
            .index_call(&self.inner.index.remove_all, user, &args)
            .await?;
        Ok(removed.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_are_read_with_defaults_and_refused_when_incomplete() {
        let (sentinels, name, _) = sentinel_parts("a:26380,b/primary/0?x=1").unwrap();
        assert_eq!(sentinels, ["redis://a:26380", "redis://b:26379"]);
        assert_eq!(name, "primary");
        let (sentinels, name, _) = sentinel_parts("user:p@ss@a:1/n").unwrap();
        assert_eq!(
            (sentinels.as_slice(), name.as_str()),
            (&["redis://a:1".to_owned()][..], "n")
        );
        for bad in ["a:1", "a:1/", "/n", "a:1,,b:2/n", ""] {
            assert!(sentinel_parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_stay_out_of_debug() {
        let builder = RedisStore::builder("redis://user:hunter2@127.0.0.1:6379/0");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let store = builder.build().unwrap();
        let shown = format!("{store:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("user:***@"),
            "{shown}"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in ["", "http://x", "redis://:notaport"] {
            assert!(RedisStore::builder(bad).build().is_err(), "{bad}");
        }
    }
}
