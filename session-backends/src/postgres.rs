//! The PostgreSQL store, on tokio-postgres with a deadpool pool
//! (statements prepared once per connection and cached).
//!
//! One table holds the sessions:
//!
//! ```sql
//! CREATE SCHEMA IF NOT EXISTS public;
//! CREATE TABLE IF NOT EXISTS public.sessions (
//!     key        bytea PRIMARY KEY,
//!     version    bigint NOT NULL,
//!     expires_at timestamptz NOT NULL,
//!     data       bytea NOT NULL
//! );
//! CREATE INDEX IF NOT EXISTS sessions_expires_at ON public.sessions (expires_at);
//! -- The index of users' signed-in sessions (see `UserIndex for PostgresStore`).
//! CREATE TABLE IF NOT EXISTS public.sessions_users (
//!     user_key   bytea NOT NULL,
//!     handle     text NOT NULL,
//!     expires_at bigint NOT NULL,
//!     entry      bytea NOT NULL,
//!     PRIMARY KEY (user_key, handle)
//! );
//! CREATE INDEX IF NOT EXISTS sessions_users_expires_at ON public.sessions_users (expires_at);
//! ```
//!
//! [`PostgresStore::migrate`] runs exactly that (with the configured schema
//! and table names), idempotently and safely from several servers at once;
//! run it yourself from your migrations if you prefer.
//!
//! Expired rows are never read (every query checks `expires_at > now()`)
//! and a sweeper deletes them in batches of 1000 (`FOR UPDATE SKIP LOCKED`,
//! so several servers sweeping at once share the work instead of waiting on
//! each other) about once a minute: a sessions table that is never swept
//! grows without bound.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, IndexEntry, SaveCondition, SaveOutcome, SessionHandle, Store, StoreError,
    StoreKey, StoredRecord, UserIndex, UserIndexSupport, UserKey, Version,
};
use tokio_postgres::NoTls;

/// Default largest record (PostgreSQL's bytea goes to 1 GiB; sessions
/// should stay far below).
pub const DEFAULT_MAX_POSTGRES_RECORD: usize = 1 << 20;
/// Time allowed for creating the table on first use.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows the sweeper deletes per statement.
const SWEEP_BATCH: i64 = 1000;

/// Builder of a [`PostgresStore`].
#[derive(Clone)]
#[must_use]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    table: String,
    pool_size: usize,
    connect_timeout: Duration,
    op_timeout: Duration,
    max_record_size: usize,
    seal_at_rest: bool,
    sweep_interval: Option<Duration>,
    create_table: bool,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// A [`PostgresStore`] configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresConfigError {
    /// The connection URL does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    BadUrl(String),
    /// A schema or table name that is not a plain identifier.
    #[error("`{0}` is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 46 characters)")]
    BadName(String),
    /// A size or duration is zero.
    #[error("`{0}` must be above zero")]
    Zero(&'static str),
    /// The pool could not be built.
    #[error("connection pool: {0}")]
    Pool(String),
}

/// A name PostgreSQL keeps whole: 1 to 46 characters of `[A-Za-z0-9_]`,
/// not starting with a digit (PostgreSQL cuts names at 63, and the user
/// index's index, `<table>_users_expires_at`, adds 17 to the table's).
fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 46
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PostgresStoreBuilder {
    /// Schema of the table. Default `public`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Name of the table. Default `sessions`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Pooled connections. Default 8.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Time allowed to connect. Default 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one statement, waiting for a connection included.
    /// Default 1 s.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Largest record written; larger ones fail with
    /// [`StoreError::TooLarge`]. Default 1 MiB.
    pub fn max_record_size(mut self, size: usize) -> Self {
        self.max_record_size = size;
        self
    }

    /// Whether records are sealed at rest with the session key ring
    /// (default true).
    pub fn seal_at_rest(mut self, seal: bool) -> Self {
        self.seal_at_rest = seal;
        self
    }

    /// How often expired rows are deleted (± 20 % jitter), by a task started
    /// on the store's first use; `None` never sweeps (sweep yourself with
    /// [`PostgresStore::sweep_expired`]). Default one minute.
    pub fn sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Whether the store runs [`PostgresStore::migrate`] itself before its
    /// first statement (retried until it succeeds). Default false: run the
    /// migration at deployment, or call `migrate` at start-up.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Builds the store. No connection is made until the first statement,
    /// so this succeeds while PostgreSQL is down.
    ///
    /// # Errors
    ///
    /// A URL that does not parse, a schema or table name that is not a plain
    /// identifier, or a zero size or timeout.
    pub fn build(self) -> Result<PostgresStore, PostgresConfigError> {
        for name in [&self.schema, &self.table] {
            if !plain_identifier(name) {
                return Err(PostgresConfigError::BadName(name.clone()));
            }
        }
        if self.pool_size == 0 {
            return Err(PostgresConfigError::Zero("pool_size"));
        }
        if self.max_record_size == 0 {
            return Err(PostgresConfigError::Zero("max_record_size"));
        }
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(PostgresConfigError::Zero("timeout"));
        }
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| PostgresConfigError::BadUrl(e.to_string()))?;
        config.connect_timeout(self.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(self.op_timeout),
                create: Some(self.connect_timeout),
                recycle: Some(self.op_timeout),
            })
            .build()
            .map_err(|e| PostgresConfigError::Pool(e.to_string()))?;
        let table = format!("\"{}\".\"{}\"", self.schema, self.table);
        let sql = Sql::new(&table, &self.schema, &self.table);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                op_timeout: self.op_timeout,
                max_record_size: self.max_record_size,
                seal_at_rest: self.seal_at_rest,
                sweep_interval: self.sweep_interval,
                sweeper_started: OnceLock::new(),
                sweeper_stopped: AtomicBool::new(false),
                create_table: self.create_table,
                migrated: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

/// The statements, with the table's quoted name in them.
struct Sql {
    load: String,
    cas: String,
    add: String,
    set: String,
    touch: String,
    delete: String,
    sweep: String,
    index: IndexSql,
    /// Whether the table is there already (names are checked to be plain
    /// identifiers, so quoting them in a literal is safe).
    exists: String,
    migrate: Vec<String>,
}

/// The user index's statements, on the side table `<table>_users`.
struct IndexSql {
    put: String,
    update: String,
    get: String,
    list: String,
    remove: String,
    remove_all: String,
    sweep: String,
}

impl IndexSql {
    fn new(users: &str) -> IndexSql {
        IndexSql {
            // The index stays within its cap: past it, the entries expiring
            // first go (in the same statement).
            put: format!(
                "WITH put AS (INSERT INTO {users} AS u (user_key, handle, expires_at, entry)                  VALUES ($1, $2, $3, $4) ON CONFLICT (user_key, handle) DO UPDATE                  SET expires_at = EXCLUDED.expires_at, entry = EXCLUDED.entry RETURNING 1)                  DELETE FROM {users} WHERE user_key = $1 AND handle IN (SELECT handle FROM {users}                  WHERE user_key = $1 AND handle <> $2 ORDER BY expires_at DESC OFFSET $5)"
            ),
            update: format!(
                "UPDATE {users} SET expires_at = $3, entry = $4                  WHERE user_key = $1 AND handle = $2 AND expires_at > $5 RETURNING 1"
            ),
            get: format!(
                "SELECT entry FROM {users} WHERE user_key = $1 AND handle = $2 AND expires_at > $3"
            ),
            list: format!("SELECT entry FROM {users} WHERE user_key = $1 AND expires_at > $2"),
            remove: format!(
                "DELETE FROM {users} WHERE user_key = $1 AND handle = $2 RETURNING expires_at > $3"
            ),
            remove_all: format!(
                "DELETE FROM {users} WHERE user_key = $1 AND handle <> $2 RETURNING expires_at > $3"
            ),
            sweep: format!(
                "DELETE FROM {users} WHERE (user_key, handle) IN (SELECT user_key, handle                  FROM {users} WHERE expires_at <= extract(epoch FROM now())::bigint                  LIMIT {SWEEP_BATCH} FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

impl Sql {
    fn new(table: &str, schema: &str, name: &str) -> Sql {
        let users = format!("\"{schema}\".\"{name}_users\"");
        Sql {
            index: IndexSql::new(&users),
            load: format!(
                "SELECT version, CASE WHEN expires_at < '9999-12-31' THEN expires_at END, data \
                 FROM {table} WHERE key = $1 AND expires_at > now()"
            ),
            cas: format!(
                "UPDATE {table} SET version = version + 1, expires_at = $3, data = $4 \
                 WHERE key = $1 AND version = $2 AND expires_at > now() RETURNING version"
            ),
            // An expired row that the sweeper has not removed yet counts as absent.
            add: format!(
                "INSERT INTO {table} AS t (key, version, expires_at, data) VALUES ($1, $4, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET version = GREATEST(t.version + 1, EXCLUDED.version), \
                 expires_at = EXCLUDED.expires_at, data = EXCLUDED.data \
                 WHERE t.expires_at <= now() RETURNING version"
            ),
            set: format!(
                "INSERT INTO {table} AS t (key, version, expires_at, data) VALUES ($1, $4, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET version = t.version + 1, \
                 expires_at = EXCLUDED.expires_at, data = EXCLUDED.data RETURNING version"
            ),
            touch: format!(
                "UPDATE {table} SET expires_at = $2 WHERE key = $1 AND expires_at > now()"
            ),
            delete: format!("DELETE FROM {table} WHERE key = $1"),
            sweep: format!(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
                 WHERE expires_at <= now() LIMIT {SWEEP_BATCH} FOR UPDATE SKIP LOCKED)"
            ),
            exists: format!(
                "SELECT to_regclass('{table}') IS NOT NULL, to_regclass('{users}') IS NOT NULL"
            ),
            migrate: vec![
                format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (key bytea PRIMARY KEY, \
                     version bigint NOT NULL, expires_at timestamptz NOT NULL, data bytea NOT NULL)"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{name}_expires_at\" ON {table} (expires_at)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {users} (user_key bytea NOT NULL, \
                     handle text NOT NULL, expires_at bigint NOT NULL, entry bytea NOT NULL, \
                     PRIMARY KEY (user_key, handle))"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{name}_users_expires_at\" ON {users} (expires_at)"
                ),
            ],
        }
    }
}

/// Whether a failed migration failed for want of rights (SQLSTATE 42501)
/// or on a read-only server (25006), not for a passing reason.
fn cannot_create(e: &StoreError) -> bool {
    // `db_error` ends its message with the SQLSTATE in parentheses.
    let text = e.to_string();
    text.contains("(42501)") || text.contains(&format!("({READ_ONLY})"))
}

/// Sessions in PostgreSQL: durable, shared by every server of a deployment.
///
/// - a deadpool pool of tokio-postgres connections, statements prepared once
///   per connection; every call bounded by a timeout; an unreachable server
///   is [`StoreError::Unavailable`] (503) and the pool replaces broken
///   connections, so requests succeed again as soon as it is back;
/// - compare-and-swap on a version column in one statement; create with
///   `INSERT ... ON CONFLICT`; touch updates `expires_at` only; expired rows
///   are never read and are swept in batches;
/// - records sealed at rest by default.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use session_backends::PostgresStore;
/// let store = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/postgres")
///     .table("sessions")
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Sql,
    op_timeout: Duration,
    max_record_size: usize,
    seal_at_rest: bool,
    sweep_interval: Option<Duration>,
    sweeper_started: OnceLock<()>,
    sweeper_stopped: AtomicBool,
    create_table: bool,
    migrated: tokio::sync::OnceCell<()>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field(
                "table",
                &self.inner.sql.delete.trim_start_matches("DELETE FROM "),
            )
            .field("seal_at_rest", &self.inner.seal_at_rest)
            .finish_non_exhaustive()
    }
}

/// SQLSTATE of a write refused by a read-only server.
const READ_ONLY: &str = "25006";

/// Whether `e` is a write refused by a read-only server: that connection
/// is then not returned to the pool, so the next one is made afresh (to a
/// promoted primary, with several hosts and `target_session_attrs`).
fn is_read_only(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == READ_ONLY)
}

/// A statement's error as a store error; a connection that answered
/// read-only leaves the pool (see [`is_read_only`]).
fn failed(client: deadpool_postgres::Object, e: tokio_postgres::Error) -> StoreError {
    if is_read_only(&e) {
        drop(deadpool_postgres::Object::take(client));
    }
    db_error(e)
}

fn db_error(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: refused, reset, closed, timed out.
        return StoreError::Unavailable(format!("postgres: {e}"));
    };
    let message = format!("postgres: {} ({})", db.message(), db.code().code());
    let code = db.code().code();
    // Class 57: shutting down, starting up, cancelled by the operator
    // (57P01-57P03 among them); class 08: connection exceptions; class 53:
    // insufficient resources (53300, too many connections); 25006: a
    // read-only transaction (a demoted primary after a failover). All
    // pass: a retry later succeeds.
    if code.starts_with("57")
        || code.starts_with("08")
        || code.starts_with("53")
        || code == READ_ONLY
    {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

fn pool_error(e: PoolError, timeout: Duration) -> StoreError {
    match e {
        PoolError::Timeout(_) => StoreError::Timeout(timeout),
        PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(format!("postgres: {other}")),
    }
}

impl PostgresStore {
    /// A builder for a store at `url`
    /// (`postgres://user[:password]@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "public".into(),
            table: "sessions".into(),
            pool_size: 8,
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_secs(1),
            max_record_size: DEFAULT_MAX_POSTGRES_RECORD,
            seal_at_rest: true,
            sweep_interval: Some(Duration::from_secs(60)),
            create_table: false,
        }
    }

    /// Creates the schema, table and index if they do not exist. Safe to run
    /// from several servers at once (serialised by an advisory lock).
    ///
    /// # Errors
    ///
    /// The server is unreachable or refuses the statements (permissions).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(e, self.inner.op_timeout))?;
        // A table that is there needs no DDL: none is sent, so a read-only
        // server (a replica, a demoted primary) or a role without CREATE
        // still serves the store.
        let exists = client
            .query_one(&self.inner.sql.exists, &[])
            .await
            .map_err(db_error)?;
        let table = |i| {
            exists
                .try_get::<_, bool>(i)
                .map_err(|e| StoreError::Backend(format!("postgres: {e}")))
        };
        let (sessions, users) = (table(0)?, table(1)?);
        if sessions && users {
            return Ok(());
        }
        let created = async {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.execute("SELECT pg_advisory_xact_lock(7263592201)", &[])
                .await
                .map_err(db_error)?;
            for statement in &self.inner.sql.migrate {
                tx.batch_execute(statement).await.map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)
        };
        match created.await {
            // A deployment from before the user index, on a read-only
            // server or with a role that may not create tables: sessions
            // are served, and signing in fails until the table is there
            // (run `migrate` with a role that can). Any other failure is
            // the caller's to see.
            Err(e) if sessions && cannot_create(&e) => {
                tracing::warn!(error = %e, "the user index table could not be created; run migrate with a role that can");
                Ok(())
            }
            other => other,
        }
    }

    /// Deletes expired rows now, in batches; returns how many.
    ///
    /// # Errors
    ///
    /// The server is unreachable or the statement fails.
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        sweep(&self.inner).await
    }

    /// Stops the background sweeper (for good; sweep with
    /// [`sweep_expired`](Self::sweep_expired) instead).
    pub fn stop_sweeper(&self) {
        self.inner.sweeper_stopped.store(true, Ordering::Release);
    }

    /// Starts the sweeper task once, on first use (inside the runtime).
    fn ensure_sweeper(&self) {
        let Some(interval) = self.inner.sweep_interval else {
            return;
        };
        self.inner.sweeper_started.get_or_init(|| {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::sweeper::jitter(interval)).await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.sweeper_stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match sweep(&inner).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "expired sessions swept"),
                        Err(e) => tracing::warn!(error = %e, "session sweep failed"),
                    }
                }
            });
        });
    }

    /// Creates the table first when asked to, within its own time limit
    /// (DDL on a server that has just started takes longer than a query).
    async fn ready(&self) -> Result<(), StoreError> {
        self.ensure_sweeper();
        if self.inner.create_table && self.inner.migrated.get().is_none() {
            let limit = MIGRATE_TIMEOUT.max(self.inner.op_timeout);
            tokio::time::timeout(
                limit,
                self.inner.migrated.get_or_try_init(|| self.migrate()),
            )
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        }
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(e, self.inner.op_timeout))
    }

    /// Runs `call` within the store's timeout.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.ready().await?;
        tokio::time::timeout(self.inner.op_timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.inner.op_timeout)))
    }
}

async fn sweep(inner: &Inner) -> Result<u64, StoreError> {
    let client = inner
        .pool
        .get()
        .await
        .map_err(|e| pool_error(e, inner.op_timeout))?;
    let statement = client
        .prepare_cached(&inner.sql.sweep)
        .await
        .map_err(db_error)?;
    let mut total = 0;
    loop {
        let removed = client.execute(&statement, &[]).await.map_err(db_error)?;
        total += removed;
        if removed < SWEEP_BATCH as u64 {
            break;
        }
    }
    // Then the user index's lapsed rows; a deployment without the index
    // table (created by hand without it) still has its sessions swept.
    let swept_index = async {
        let statement = client
            .prepare_cached(&inner.sql.index.sweep)
            .await
            .map_err(db_error)?;
        loop {
            let removed = client.execute(&statement, &[]).await.map_err(db_error)?;
            if removed < SWEEP_BATCH as u64 {
                return Ok::<_, StoreError>(());
            }
        }
    };
    if let Err(e) = swept_index.await {
        tracing::debug!(error = %e, "user index not swept");
    }
    Ok(total)
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.inner.sql.load)
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&key.as_str().as_bytes()])
                .await
                .map_err(db_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            // A row this store did not write (an `expires_at` of
            // 'infinity' or past year 9999, a NULL, another column type):
            // read as absent, never a panic.
            let parsed = (|| {
                let version: i64 = row.try_get(0).ok()?;
                let expires_at: Option<OffsetDateTime> = row.try_get(1).ok()?;
                let data: Vec<u8> = row.try_get(2).ok()?;
                Some(StoredRecord::new(
                    data,
                    Version(version as u64),
                    Some(expires_at?),
                ))
            })();
            if parsed.is_none() {
                tracing::warn!(
                    "postgres row refused (not one this store wrote); starting a fresh session"
                );
            }
            Ok(parsed)
        })
        .await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(record.len(), self.inner.max_record_size)?;
        self.timed(async {
            let client = self.client().await?;
            let key = key.as_str().as_bytes();
            // A new row's version: one no earlier row of this key had.
            let fresh = crate::versions::fresh_version() as i64;
            let row = match condition {
                SaveCondition::IfVersion(Version(v)) => {
                    let statement = client
                        .prepare_cached(&self.inner.sql.cas)
                        .await
                        .map_err(db_error)?;
                    client
                        .query_opt(&statement, &[&key, &(v as i64), &expires_at, &record])
                        .await
                }
                SaveCondition::IfAbsent => {
                    let statement = client
                        .prepare_cached(&self.inner.sql.add)
                        .await
                        .map_err(db_error)?;
                    client
                        .query_opt(&statement, &[&key, &expires_at, &record, &fresh])
                        .await
                }
                _ => {
                    let statement = client
                        .prepare_cached(&self.inner.sql.set)
                        .await
                        .map_err(db_error)?;
                    client
                        .query_opt(&statement, &[&key, &expires_at, &record, &fresh])
                        .await
                }
            };
            let row = match row {
                Ok(row) => row,
                Err(e) => return Err(failed(client, e)),
            };
            Ok(match row {
                Some(row) => match row.try_get::<_, i64>(0) {
                    Ok(version) => SaveOutcome::Saved(Version(version as u64)),
                    Err(e) => return Err(StoreError::Backend(format!("postgres: {e}"))),
                },
                None => SaveOutcome::Conflict,
            })
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.inner.sql.touch)
                .await
                .map_err(db_error)?;
            let updated = client
                .execute(&statement, &[&key.as_str().as_bytes(), &expires_at])
                .await;
            match updated {
                Ok(updated) => Ok(updated == 1),
                Err(e) => Err(failed(client, e)),
            }
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.inner.sql.delete)
                .await
                .map_err(db_error)?;
            let deleted = client
                .execute(&statement, &[&key.as_str().as_bytes()])
                .await;
            match deleted {
                Ok(_) => Ok(()),
                Err(e) => Err(failed(client, e)),
            }
        })
        .await
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

impl PostgresStore {
    /// Runs one of the index's statements; its rows.
    async fn index_query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await.map_err(db_error)?;
            match client.query(&statement, params).await {
                Ok(rows) => Ok(rows),
                Err(e) => Err(failed(client, e)),
            }
        })
        .await
    }
}

/// The entries of rows of `SELECT entry`; rows this store did not write
/// are skipped.
fn entries(rows: Vec<tokio_postgres::Row>) -> Vec<IndexEntry> {
    rows.iter()
        .filter_map(|row| row.try_get::<_, Vec<u8>>(0).ok())
        .filter_map(|bytes| IndexEntry::from_bytes(&bytes))
        .collect()
}

/// How many rows of `RETURNING <live>` were live.
fn live_rows(rows: &[tokio_postgres::Row]) -> usize {
    rows.iter()
        .filter(|row| row.try_get::<_, bool>(0).unwrap_or(false))
        .count()
}

/// The user index in the side table `<table>_users` (one row per signed-in
/// session: the user key, the handle, the entry's expiry in Unix seconds
/// and the entry), its primary key `(user_key, handle)` the index a list
/// reads. Each operation is one statement; the sweeper clears lapsed rows
/// beside expired sessions, and a sign-in past
/// [`MAX_RECORD_INDEX_ENTRIES`](session_core::MAX_RECORD_INDEX_ENTRIES)
/// entries drops the ones expiring first. Entries are kept unsealed (never
/// the user id, which only appears hashed).
#[async_trait]
impl UserIndex for PostgresStore {
    async fn put(&self, user: &UserKey, entry: &IndexEntry, _now: i64) -> Result<(), StoreError> {
        let others = (session_core::MAX_RECORD_INDEX_ENTRIES - 1) as i64;
        self.index_query(
            &self.inner.sql.index.put,
            &[
                &user.as_str().as_bytes(),
                &entry.handle.as_str(),
                &entry.expires,
                &entry.to_bytes(),
                &others,
            ],
        )
        .await?;
        Ok(())
    }

    async fn update(
        &self,
        user: &UserKey,
        entry: &IndexEntry,
        now: i64,
    ) -> Result<bool, StoreError> {
        let rows = self
            .index_query(
                &self.inner.sql.index.update,
                &[
                    &user.as_str().as_bytes(),
                    &entry.handle.as_str(),
                    &entry.expires,
                    &entry.to_bytes(),
                    &now,
                ],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    async fn get(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let rows = self
            .index_query(
                &self.inner.sql.index.get,
                &[&user.as_str().as_bytes(), &handle.as_str(), &now],
            )
            .await?;
        Ok(entries(rows)
            .into_iter()
            .find(|e| e.handle == *handle && e.is_live(now)))
    }

    async fn list(&self, user: &UserKey, now: i64) -> Result<Vec<IndexEntry>, StoreError> {
        let rows = self
            .index_query(
                &self.inner.sql.index.list,
                &[&user.as_str().as_bytes(), &now],
            )
            .await?;
        Ok(entries(rows)
            .into_iter()
            .filter(|e| e.is_live(now))
            .collect())
    }

    async fn remove(
        &self,
        user: &UserKey,
        handle: &SessionHandle,
        now: i64,
    ) -> Result<bool, StoreError> {
        let rows = self
            .index_query(
                &self.inner.sql.index.remove,
                &[&user.as_str().as_bytes(), &handle.as_str(), &now],
            )
            .await?;
        Ok(live_rows(&rows) > 0)
    }

    async fn remove_all(
        &self,
        user: &UserKey,
        keep: Option<&SessionHandle>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let keep = keep.map_or("", |h| h.as_str());
        let rows = self
            .index_query(
                &self.inner.sql.index.remove_all,
                &[&user.as_str().as_bytes(), &keep, &now],
            )
            .await?;
        Ok(live_rows(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_identifiers() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "x; DROP TABLE y",
            &"a".repeat(47),
        ] {
            assert!(
                matches!(
                    PostgresStore::builder("postgres://u@h/d")
                        .table(bad)
                        .build(),
                    Err(PostgresConfigError::BadName(_))
                ),
                "{bad}"
            );
        }
        assert!(PostgresStore::builder("postgres://u@h/d")
            .schema("app_1")
            .table("_sessions")
            .build()
            .is_ok());
    }

    #[test]
    fn bad_urls_are_refused_and_passwords_stay_out_of_debug() {
        assert!(matches!(
            PostgresStore::builder("postgres://u@h:notaport/d").build(),
            Err(PostgresConfigError::BadUrl(_))
        ));
        let builder = PostgresStore::builder("postgres://u:hunter2@h/d");
        assert!(!format!("{builder:?}").contains("hunter2"));
        assert!(!format!("{:?}", builder.build().unwrap()).contains("hunter2"));
    }
}
