//! Helpers shared by the engine tests: a movable clock, a call-counting
//! wrapper around the real memory store, and a one-cookie client jar.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use session_backends::MemoryStore;
use session_core::adapter::{Outcome, PendingRequest};
use session_core::time::OffsetDateTime;
use session_core::{
    CookieAttributes, KeyRing, SaveCondition, SaveOutcome, SessionConfig, SessionKey,
    SessionManager, Store, StoreError, StoreKey, StoredRecord,
};

pub const COUNTER: SessionKey<u64> = SessionKey::new("n");
pub const USER: SessionKey<String> = SessionKey::new("user");

/// A clock the tests move by hand.
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + session_core::time::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

/// The memory store, counting calls so tests can see laziness and touches.
#[derive(Debug, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    /// Ask the engine for records sealed at rest.
    pub seal_at_rest: bool,
    /// The last record written, so tests can look at stored bytes.
    pub last_saved: std::sync::Mutex<Option<(StoreKey, Vec<u8>)>>,
    pub loads: AtomicUsize,
    pub saves: AtomicUsize,
    pub touches: AtomicUsize,
    pub deletes: AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.last_saved.lock().unwrap() = Some((key.clone(), record.to_vec()));
        self.inner.save(key, record, expires_at, condition).await
    }
    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    fn max_record_size(&self) -> Option<usize> {
        self.inner.max_record_size()
    }
    fn seals_at_rest(&self) -> bool {
        self.seal_at_rest
    }
}

/// A ring from a 32-byte secret made of `byte` plus multiples of 7 (every
/// byte distinct, so it passes the weak-secret check).
pub fn keys(byte: u8) -> KeyRing {
    KeyRing::from_secret(&secret(byte)).unwrap()
}

pub fn secret(byte: u8) -> [u8; 32] {
    std::array::from_fn(|i| byte.wrapping_add(7 * i as u8))
}

pub struct Env {
    pub manager: SessionManager,
    pub store: Arc<CountingStore>,
    pub clock: TestClock,
}

pub fn server_env_with(configure: impl FnOnce(SessionConfig) -> SessionConfig) -> Env {
    let store = Arc::new(CountingStore::default());
    let clock = TestClock::default();
    let c = clock.clone();
    let config = SessionConfig::server(store.clone(), keys(1))
        .cookie_attributes(CookieAttributes::default().secure(false));
    Env {
        manager: SessionManager::new(configure(config))
            .unwrap()
            .with_clock(move || c.now()),
        store,
        clock,
    }
}

pub fn server_env() -> Env {
    server_env_with(|c| c)
}

pub fn cookie_env_with(configure: impl FnOnce(SessionConfig) -> SessionConfig) -> Env {
    let clock = TestClock::default();
    let c = clock.clone();
    let config =
        SessionConfig::cookie(keys(1)).cookie_attributes(CookieAttributes::default().secure(false));
    Env {
        manager: SessionManager::new(configure(config))
            .unwrap()
            .with_clock(move || c.now()),
        store: Arc::new(CountingStore::default()),
        clock,
    }
}

/// Starts a request carrying `headers` (name, value pairs), as an adapter
/// does.
pub fn start<'a>(
    manager: &SessionManager,
    headers: impl AsRef<[(&'a str, &'a [u8])]>,
) -> PendingRequest {
    let headers = headers.as_ref();
    manager.start_by_name(|name| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    })
}

/// A cookie jar of one client: the `name=value` of the last Set-Cookie.
#[derive(Default, Clone, Debug)]
pub struct Jar(pub Option<String>);

impl Jar {
    pub fn start(&self, manager: &SessionManager) -> PendingRequest {
        match &self.0 {
            Some(c) => start(manager, [("cookie", c.as_bytes())]),
            None => start(manager, []),
        }
    }

    /// Applies a finished session's header as a browser would.
    pub fn apply(&mut self, header: Option<&session_core::ResponseHeader>) {
        let Some(h) = header else { return };
        assert_eq!(h.name(), "set-cookie");
        let pair = h.value().split(';').next().unwrap().to_string();
        if h.value().contains("Max-Age=0") {
            self.0 = None;
        } else {
            self.0 = Some(pair);
        }
    }
}

pub async fn finish(jar: &mut Jar, req: &PendingRequest) -> session_core::adapter::Finished {
    let finished = req.finish_primary().await.unwrap();
    jar.apply(finished.header.as_ref());
    finished
}

pub async fn bump(env: &Env, jar: &mut Jar) -> (u64, Outcome) {
    bump_on(&env.manager, jar).await
}

/// One counter increment through `manager`, as a request of `jar`'s client.
pub async fn bump_on(manager: &SessionManager, jar: &mut Jar) -> (u64, Outcome) {
    let req = jar.start(manager);
    let s = req.primary();
    let n = s.get(&COUNTER).await.unwrap().unwrap_or(0) + 1;
    s.insert(&COUNTER, &n).await.unwrap();
    (n, finish(jar, &req).await.outcome)
}

pub async fn peek(env: &Env, jar: &mut Jar) -> (Option<u64>, session_core::adapter::Finished) {
    let req = jar.start(&env.manager);
    let n = req.primary().get(&COUNTER).await.unwrap();
    let finished = req.finish_primary().await.unwrap();
    jar.apply(finished.header.as_ref());
    (n, finished)
}

/// `n` requests of `jar`'s session, each counting once with
/// `Session::update` and finishing together (a barrier between), so their
/// saves queue in one lane: each task's result is its finish.
pub fn concurrent_counts(
    manager: &SessionManager,
    jar: &Jar,
    n: usize,
) -> Vec<
    tokio::task::JoinHandle<Result<Vec<session_core::ResponseHeader>, session_core::SessionError>>,
> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    (0..n)
        .map(|_| {
            let (manager, jar, barrier) = (manager.clone(), jar.clone(), barrier.clone());
            tokio::spawn(async move {
                let req = jar.start(&manager);
                req.primary()
                    .update(&COUNTER, |n| n.unwrap_or(0) + 1)
                    .await
                    .unwrap();
                barrier.wait().await;
                req.finish().await
            })
        })
        .collect()
}
