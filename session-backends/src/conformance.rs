//! The rules every [`Store`] must follow, as async functions that panic on a
//! violation, and [`store_conformance_tests!`](crate::store_conformance_tests)
//! to run each as its own test.
//!
//! Each rule uses keys of its own (a random prefix), so the suite can run
//! against a shared server with other tests at the same time. Rules that
//! wait for expiry take a few seconds: memcached counts TTLs in whole
//! seconds.
//!
//! ```
//! use std::sync::Arc;
//! use session_backends::{conformance, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! conformance::round_trip(&store).await;
//! conformance::compare_and_swap(&store).await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use session_core::time::OffsetDateTime;
use session_core::{
    KeyRing, Lifetime, SaveCondition, SaveOutcome, Session, SessionConfig, SessionError,
    SessionHandle, SessionManager, Store, StoreError, StoreKey, UserSession, Version,
};

/// A key no other test uses.
pub fn unique_key(rule: &str) -> StoreKey {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    StoreKey::from_raw(format!(
        "conformance-{rule}-{}-{nanos:x}-{n}",
        std::process::id()
    ))
}

fn in_secs(secs: u64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(secs)
}

fn saved(outcome: SaveOutcome) -> Version {
    match outcome {
        SaveOutcome::Saved(v) => v,
        other => panic!("expected a save, got {other:?}"),
    }
}

/// Save then load returns the bytes and the version of the save; a missing
/// key loads as `None`; `Always` overwrites.
pub async fn round_trip(store: &dyn Store) {
    let key = unique_key("round-trip");
    assert!(
        store.load(&key).await.expect("load").is_none(),
        "a fresh key is absent"
    );
    let v1 = saved(
        store
            .save(&key, b"first", in_secs(60), SaveCondition::IfAbsent)
            .await
            .expect("save"),
    );
    let got = store.load(&key).await.expect("load").expect("present");
    assert_eq!(got.bytes, b"first");
    assert_eq!(got.version, v1);
    if let Some(expires) = got.expires_at {
        let left = expires - OffsetDateTime::now_utc();
        assert!(
            left > time_secs(50) && left <= time_secs(61),
            "reported expiry {left}"
        );
    }
    let binary: Vec<u8> = (0..=255u8).chain([b'\r', b'\n', 0, b' ']).collect();
    let v2 = saved(
        store
            .save(&key, &binary, in_secs(60), SaveCondition::Always)
            .await
            .expect("save"),
    );
    assert_ne!(v1, v2, "a save changes the version");
    assert_eq!(
        store
            .load(&key)
            .await
            .expect("load")
            .expect("present")
            .bytes,
        binary
    );
    store.delete(&key).await.expect("delete");
}

fn time_secs(secs: i64) -> session_core::time::Duration {
    session_core::time::Duration::seconds(secs)
}

/// A record is gone after its deadline.
pub async fn expiry(store: &dyn Store) {
    let key = unique_key("expiry");
    saved(
        store
            .save(&key, b"short", in_secs(1), SaveCondition::Always)
            .await
            .expect("save"),
    );
    assert!(store.load(&key).await.expect("load").is_some());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        store.load(&key).await.expect("load").is_none(),
        "expired record still loads"
    );
    assert!(
        !store.touch(&key, in_secs(60)).await.expect("touch"),
        "touch revived an expired record"
    );
}

/// Deadlines more than 30 days away (memcached's relative-TTL limit) work.
pub async fn long_deadline(store: &dyn Store) {
    let key = unique_key("long-deadline");
    let far = in_secs(60 * 86_400);
    saved(
        store
            .save(&key, b"far", far, SaveCondition::Always)
            .await
            .expect("save"),
    );
    let got = store
        .load(&key)
        .await
        .expect("load")
        .expect("a 60-day record is present");
    if let Some(expires) = got.expires_at {
        let diff = (expires - far).whole_seconds().abs();
        assert!(diff <= 2, "60-day deadline reported {diff} s off");
    }
    store.delete(&key).await.expect("delete");
}

/// A deadline twelve years away (a long idle timeout; past 2038 for
/// memcached's 32-bit absolute times) is kept, and touched, not refused or
/// silently dropped. A store may hold it for less time than asked (memcached
/// until 2038-01-19), never for less than 60 days.
pub async fn twelve_year_deadline(store: &dyn Store) {
    let key = unique_key("twelve-years");
    let far = in_secs(12 * 365 * 86_400);
    saved(
        store
            .save(&key, b"far", far, SaveCondition::IfAbsent)
            .await
            .expect("a 12-year save"),
    );
    let got = store
        .load(&key)
        .await
        .expect("load")
        .expect("a 12-year record is kept");
    assert_eq!(got.bytes, b"far");
    if let Some(expires) = got.expires_at {
        assert!(
            expires - OffsetDateTime::now_utc() > time_secs(60 * 86_400),
            "a 12-year record expires at {expires}"
        );
    }
    assert!(store.touch(&key, far).await.expect("touch"));
    let v = saved(
        store
            .save(&key, b"again", far, SaveCondition::IfVersion(got.version))
            .await
            .expect("a 12-year compare-and-swap"),
    );
    let got = store.load(&key).await.expect("load").expect("still kept");
    assert_eq!((got.bytes.as_slice(), got.version), (&b"again"[..], v));
    store.delete(&key).await.expect("delete");
}

/// A key deleted and created again never gets back a version one of its
/// earlier records had, so a request still holding that version (one that
/// loaded the session before a logout) cannot write over the new record.
pub async fn versions_never_reused(store: &dyn Store) {
    let key = unique_key("versions");
    let mut seen = Vec::new();
    for round in 0..3 {
        let created = saved(
            store
                .save(&key, b"new", in_secs(60), SaveCondition::IfAbsent)
                .await
                .expect("save"),
        );
        let changed = saved(
            store
                .save(
                    &key,
                    b"changed",
                    in_secs(60),
                    SaveCondition::IfVersion(created),
                )
                .await
                .expect("save"),
        );
        for old in &seen {
            assert!(
                ![created, changed].contains(old),
                "round {round}: version {old:?} given again after a delete"
            );
            assert_eq!(
                store
                    .save(&key, b"stale", in_secs(60), SaveCondition::IfVersion(*old))
                    .await
                    .expect("save"),
                SaveOutcome::Conflict,
                "a version of a deleted record wrote over the new one"
            );
        }
        seen.extend([created, changed]);
        store.delete(&key).await.expect("delete");
    }
}

/// Touch moves the deadline without changing bytes or version; touching a
/// missing key says so.
pub async fn touch(store: &dyn Store) {
    let key = unique_key("touch");
    let v = saved(
        store
            .save(&key, b"kept", in_secs(1), SaveCondition::Always)
            .await
            .expect("save"),
    );
    assert!(store.touch(&key, in_secs(60)).await.expect("touch"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = store
        .load(&key)
        .await
        .expect("load")
        .expect("touched record outlives its first deadline");
    assert_eq!(got.bytes, b"kept");
    assert_eq!(got.version, v, "touch does not rewrite");
    if let Some(expires) = got.expires_at {
        assert!(expires - OffsetDateTime::now_utc() > time_secs(50));
    }
    assert!(!store
        .touch(&unique_key("touch-missing"), in_secs(60))
        .await
        .expect("touch"));
    store.delete(&key).await.expect("delete");
}

/// Delete removes; deleting a missing key is not an error.
pub async fn delete(store: &dyn Store) {
    let key = unique_key("delete");
    saved(
        store
            .save(&key, b"x", in_secs(60), SaveCondition::Always)
            .await
            .expect("save"),
    );
    store.delete(&key).await.expect("delete");
    assert!(store.load(&key).await.expect("load").is_none());
    store.delete(&key).await.expect("deleting a missing key");
}

/// `IfAbsent` and `IfVersion` conditions hold.
pub async fn compare_and_swap(store: &dyn Store) {
    let key = unique_key("cas");
    let v1 = saved(
        store
            .save(&key, b"one", in_secs(60), SaveCondition::IfAbsent)
            .await
            .expect("save"),
    );
    let again = store
        .save(&key, b"dup", in_secs(60), SaveCondition::IfAbsent)
        .await
        .expect("save");
    assert_eq!(
        again,
        SaveOutcome::Conflict,
        "IfAbsent over an existing record"
    );
    let v2 = saved(
        store
            .save(&key, b"two", in_secs(60), SaveCondition::IfVersion(v1))
            .await
            .expect("save"),
    );
    let stale = store
        .save(&key, b"stale", in_secs(60), SaveCondition::IfVersion(v1))
        .await
        .expect("save");
    assert_eq!(
        stale,
        SaveOutcome::Conflict,
        "IfVersion with a stale version"
    );
    assert_eq!(
        store
            .load(&key)
            .await
            .expect("load")
            .expect("present")
            .bytes,
        b"two"
    );
    assert_eq!(
        store
            .load(&key)
            .await
            .expect("load")
            .expect("present")
            .version,
        v2
    );
    store.delete(&key).await.expect("delete");
    let gone = store
        .save(&key, b"gone", in_secs(60), SaveCondition::IfVersion(v2))
        .await
        .expect("save");
    assert_eq!(gone, SaveOutcome::Conflict, "IfVersion on a deleted record");
}

/// Many writers each add their own part to one record through
/// load + compare-and-swap retries: no part is lost.
pub async fn concurrent_disjoint_updates(store: Arc<dyn Store>) {
    const WRITERS: usize = 24;
    let key = unique_key("concurrent");
    saved(
        store
            .save(&key, b"", in_secs(60), SaveCondition::IfAbsent)
            .await
            .expect("save"),
    );
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for _attempt in 0..1000 {
                let current = store.load(&key).await.expect("load").expect("present");
                let mut bytes = current.bytes.clone();
                bytes.extend_from_slice(format!("[{writer}]").as_bytes());
                match store
                    .save(
                        &key,
                        &bytes,
                        in_secs(60),
                        SaveCondition::IfVersion(current.version),
                    )
                    .await
                    .expect("save")
                {
                    SaveOutcome::Saved(_) => return,
                    _ => tokio::task::yield_now().await,
                }
            }
            panic!("writer {writer} never got its update in");
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let text = String::from_utf8(
        store
            .load(&key)
            .await
            .expect("load")
            .expect("present")
            .bytes,
    )
    .expect("utf8");
    for writer in 0..WRITERS {
        assert!(
            text.contains(&format!("[{writer}]")),
            "writer {writer} lost: {text}"
        );
    }
    store.delete(&key).await.expect("delete");
}

/// Many sessions saved at once under different keys all land.
pub async fn concurrent_distinct_keys(store: Arc<dyn Store>) {
    let keys: Vec<StoreKey> = (0..64).map(|_| unique_key("distinct")).collect();
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().cloned().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            saved(
                store
                    .save(
                        &key,
                        format!("value {i}").as_bytes(),
                        in_secs(60),
                        SaveCondition::IfAbsent,
                    )
                    .await
                    .expect("save"),
            );
        }));
    }
    for task in tasks {
        task.await.expect("save task");
    }
    for (i, key) in keys.iter().enumerate() {
        let got = store.load(key).await.expect("load").expect("present");
        assert_eq!(got.bytes, format!("value {i}").as_bytes());
        store.delete(key).await.expect("delete");
    }
}

/// A record over the store's declared limit is refused with
/// [`StoreError::TooLarge`] and the previous record stays intact.
pub async fn size_limit(store: &dyn Store) {
    let limit = store
        .max_record_size()
        .expect("every store declares its size limit");
    let key = unique_key("size");
    saved(
        store
            .save(&key, b"small", in_secs(60), SaveCondition::Always)
            .await
            .expect("save"),
    );
    let big = vec![7u8; limit + 1];
    match store
        .save(&key, &big, in_secs(60), SaveCondition::Always)
        .await
    {
        Err(StoreError::TooLarge { size, limit: l }) => {
            assert_eq!(size, limit + 1);
            assert_eq!(l, limit);
        }
        other => panic!("oversized save gave {other:?}"),
    }
    let kept = store
        .load(&key)
        .await
        .expect("load")
        .expect("previous record kept");
    assert_eq!(kept.bytes, b"small");
    let at_limit = vec![8u8; limit];
    saved(
        store
            .save(&key, &at_limit, in_secs(60), SaveCondition::Always)
            .await
            .expect("a record at the limit is accepted"),
    );
    store.delete(&key).await.expect("delete");
}

/// A browser of the index rules: one cookie jar, requests made straight on
/// a manager (no HTTP).
struct Browser {
    manager: SessionManager,
    cookie: Option<String>,
    user_agent: &'static str,
}

impl Browser {
    fn new(manager: &SessionManager, user_agent: &'static str) -> Self {
        Browser {
            manager: manager.clone(),
            cookie: None,
            user_agent,
        }
    }

    /// One request: `handler` runs on its primary session, then the
    /// request finishes and the cookie jar takes the response's cookie.
    async fn request<T>(
        &mut self,
        handler: impl AsyncFnOnce(&Session) -> T,
    ) -> Result<T, SessionError> {
        let cookie = self.cookie.clone();
        let user_agent = self.user_agent;
        let request = self.manager.start_by_name(|name| match name {
            "cookie" => cookie.as_deref().map(str::as_bytes),
            "user-agent" => Some(user_agent.as_bytes()),
            _ => None,
        });
        let out = handler(request.sessions().primary()).await;
        for header in request.finish().await? {
            if header.name().eq_ignore_ascii_case("set-cookie") {
                let pair = header.value().split(';').next().unwrap_or_default();
                let removed = header.value().contains("Max-Age=0");
                self.cookie = (!removed).then(|| pair.to_owned());
            }
        }
        Ok(out)
    }

    async fn sign_in(&mut self, user: &str) -> SessionHandle {
        self.request(async |s| {
            s.sign_in(user).await.expect("sign in");
            s.user_handle().await.expect("handle").expect("signed in")
        })
        .await
        .expect("sign-in request")
    }

    /// The handle the browser's session is signed in with, if any.
    async fn handle(&mut self) -> Option<SessionHandle> {
        self.request(async |s| s.user_handle().await.expect("load"))
            .await
            .expect("request")
    }

    async fn list(&mut self) -> Vec<UserSession> {
        self.request(async |s| s.user_sessions().await.expect("list"))
            .await
            .expect("request")
    }
}

fn users_manager(store: Arc<dyn Store>, keys: &KeyRing) -> SessionManager {
    SessionManager::new(SessionConfig::server(store, keys.clone())).expect("config")
}

fn test_user(rule: &str) -> String {
    format!("{}@conformance", unique_key(rule).as_str())
}

/// A user's sessions: two sign-ins on two managers sharing the store see
/// each other (with their user agents, this one marked current); ending
/// one by handle refuses it on its next request; ending the others keeps
/// only the caller; a sign-in as another user moves the session.
pub async fn user_index(store: Arc<dyn Store>) {
    let keys = KeyRing::generate().expect("keys");
    let (a, b) = (
        users_manager(store.clone(), &keys),
        users_manager(store.clone(), &keys),
    );
    let user = test_user("users");
    let (mut laptop, mut phone, mut tablet) = (
        Browser::new(&a, "laptop"),
        Browser::new(&b, "phone"),
        Browser::new(&b, "tablet"),
    );
    let laptop_handle = laptop.sign_in(&user).await;
    let phone_handle = phone.sign_in(&user).await;
    let tablet_handle = tablet.sign_in(&user).await;
    let listed = laptop.list().await;
    assert_eq!(listed.len(), 3, "every sign-in is listed: {listed:?}");
    let me = listed
        .iter()
        .find(|s| s.current)
        .expect("the caller is marked");
    assert_eq!(me.handle, laptop_handle);
    assert_eq!(me.user_agent.as_deref(), Some("laptop"));
    assert!(listed
        .iter()
        .any(|s| s.handle == phone_handle && s.user_agent.as_deref() == Some("phone")));
    assert_eq!(
        a.user_sessions(&user).await.expect("list by user id").len(),
        3
    );

    // One ended from the other manager: refused at once there, and on the
    // manager that did not end it within the member cache's time.
    assert!(a.end_user_session(&user, &phone_handle).await.expect("end"));
    tokio::time::sleep(session_core::MEMBER_CACHE + Duration::from_millis(100)).await;
    assert_eq!(phone.handle().await, None, "an ended session is refused");
    assert!(!a
        .end_user_session(&user, &phone_handle)
        .await
        .expect("end again"));

    // The others ended from the laptop: only it stays.
    let ended = laptop
        .request(async |s| s.end_other_user_sessions().await.expect("end others"))
        .await
        .expect("request");
    assert_eq!(ended, 1);
    assert_eq!(tablet.handle().await, None);
    let left = laptop.list().await;
    assert_eq!(
        left.iter().map(|s| &s.handle).collect::<Vec<_>>(),
        [&laptop_handle]
    );
    let _ = tablet_handle;

    // Signing in as another user moves the session.
    let other = test_user("users-other");
    let moved = laptop.sign_in(&other).await;
    assert!(a.user_sessions(&user).await.expect("list").is_empty());
    assert_eq!(
        a.user_sessions(&other)
            .await
            .expect("list")
            .iter()
            .map(|s| &s.handle)
            .collect::<Vec<_>>(),
        [&moved]
    );
    // Signing out takes it off.
    laptop
        .request(async |s| s.sign_out().await.expect("sign out"))
        .await
        .expect("request");
    assert!(a.user_sessions(&other).await.expect("list").is_empty());
    assert_eq!(laptop.handle().await, None);
}

/// Ending all of a user's sessions while 16 tasks keep saving them: none
/// survives, and no save brings one back.
pub async fn user_index_end_all_races_saves(store: Arc<dyn Store>) {
    let keys = KeyRing::generate().expect("keys");
    let manager = users_manager(store.clone(), &keys);
    let user = test_user("users-race");
    let mut browsers = Vec::new();
    for _ in 0..4 {
        let mut browser = Browser::new(&manager, "racer");
        browser.sign_in(&user).await;
        browsers.push(browser);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, browser) in browsers.iter().enumerate() {
        for _ in 0..4 {
            let mut browser = Browser {
                manager: users_manager(store.clone(), &keys),
                cookie: browser.cookie.clone(),
                user_agent: "racer",
            };
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = browser.request(async |s| s.insert("n", &i).await).await;
                    // An in-process store never makes a task wait.
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ended = manager.end_user_sessions(&user).await.expect("end all");
    assert_eq!(ended, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("task");
    }
    tokio::time::sleep(session_core::MEMBER_CACHE).await;
    assert!(manager.user_sessions(&user).await.expect("list").is_empty());
    for browser in &mut browsers {
        assert_eq!(browser.handle().await, None, "an ended session stays ended");
    }
}

/// Concurrent sign-ins of one user all land in the index (its updates are
/// atomic), and a user id of 10 kB or with control characters is only
/// ever a hashed key.
pub async fn user_index_concurrent_sign_ins(store: Arc<dyn Store>) {
    let keys = KeyRing::generate().expect("keys");
    let manager = users_manager(store, &keys);
    let user = format!("{}\u{0}\n\r{}", test_user("users-many"), "x".repeat(10_000));
    let handles = futures_join_all((0..8).map(|_| {
        let manager = manager.clone();
        let user = user.clone();
        async move { Browser::new(&manager, "many").sign_in(&user).await }
    }))
    .await;
    let listed = manager.user_sessions(&user).await.expect("list");
    for handle in &handles {
        assert!(
            listed.iter().any(|s| s.handle == *handle),
            "every concurrent sign-in is listed"
        );
    }
    assert_eq!(listed.len(), 8);
    assert_eq!(manager.end_user_sessions(&user).await.expect("end all"), 8);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

/// The index of a user whose sessions all expired lists nothing.
pub async fn user_index_expiry(store: Arc<dyn Store>) {
    let keys = KeyRing::generate().expect("keys");
    let config = SessionConfig::server(store, keys)
        .lifetime(Lifetime::default().idle_timeout(Duration::from_secs(2)));
    let manager = SessionManager::new(config).expect("config");
    let user = test_user("users-expiry");
    let mut browser = Browser::new(&manager, "brief");
    browser.sign_in(&user).await;
    assert_eq!(manager.user_sessions(&user).await.expect("list").len(), 1);
    // The entry lapses a minute after its session: move the clock.
    let later = manager
        .clone()
        .with_clock(|| OffsetDateTime::now_utc() + Duration::from_secs(120));
    assert!(later.user_sessions(&user).await.expect("list").is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(browser.handle().await, None, "the session itself expired");
}

/// Runs every rule against `store`, one after the other.
pub async fn run_all(store: Arc<dyn Store>) {
    round_trip(&*store).await;
    compare_and_swap(&*store).await;
    delete(&*store).await;
    size_limit(&*store).await;
    long_deadline(&*store).await;
    twelve_year_deadline(&*store).await;
    versions_never_reused(&*store).await;
    touch(&*store).await;
    expiry(&*store).await;
    concurrent_disjoint_updates(store.clone()).await;
    concurrent_distinct_keys(store.clone()).await;
    user_index(store.clone()).await;
    user_index_end_all_races_saves(store.clone()).await;
    user_index_concurrent_sign_ins(store.clone()).await;
    user_index_expiry(store).await;
}

/// Defines one `#[tokio::test]` per conformance rule for the store that
/// `$make` evaluates to (an `Arc<dyn Store>`; `$make` may `.await`). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
///
/// ```ignore
/// session_backends::store_conformance_tests!(memory, {
///     std::sync::Arc::new(session_backends::MemoryStore::new())
/// });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;

            async fn make() -> ::std::sync::Arc<dyn ::session_core::Store> {
                $make
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip() {
                $crate::conformance::round_trip(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compare_and_swap() {
                $crate::conformance::compare_and_swap(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete() {
                $crate::conformance::delete(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn size_limit() {
                $crate::conformance::size_limit(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn long_deadline() {
                $crate::conformance::long_deadline(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn twelve_year_deadline() {
                $crate::conformance::twelve_year_deadline(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn versions_never_reused() {
                $crate::conformance::versions_never_reused(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn touch() {
                $crate::conformance::touch(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expiry() {
                $crate::conformance::expiry(&*make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_disjoint_updates() {
                $crate::conformance::concurrent_disjoint_updates(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_distinct_keys() {
                $crate::conformance::concurrent_distinct_keys(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn user_index() {
                $crate::conformance::user_index(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn user_index_end_all_races_saves() {
                $crate::conformance::user_index_end_all_races_saves(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn user_index_concurrent_sign_ins() {
                $crate::conformance::user_index_concurrent_sign_ins(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn user_index_expiry() {
                $crate::conformance::user_index_expiry(make().await).await;
            }
        }
    };
}
