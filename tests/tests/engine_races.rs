//! The save path's races, each on a store wrapper that delays or fails one
//! call at the moment that matters: a logout that must stay a logout, an
//! acknowledged write that must stay written, a change that must not count
//! twice.

#[path = "engine_common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use session_backends::MemoryStore;
use session_core::adapter::Outcome;
use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, CookieAttributes, KeyRing, SaveCondition, SaveOutcome, SessionConfig,
    SessionManager, Store, StoreError, StoreKey, StoredRecord,
};

/// The memory store, with hooks: saves of a given condition wait, and one
/// compare-and-swap save can be made to write and then report a timeout
/// (a reply lost after the command was sent).
#[derive(Debug, Default)]
struct Scripted {
    inner: MemoryStore,
    /// Saves with `IfAbsent` wait this long first.
    if_absent_delay: std::sync::Mutex<Duration>,
    /// Compare-and-swap saves wait this long first.
    cas_delay: std::sync::Mutex<Duration>,
    /// The compare-and-swap save of this number (from 1) writes, then
    /// answers a timeout; 0: none.
    lose_cas_reply: AtomicUsize,
    cas_saves: AtomicUsize,
}

impl Scripted {
    fn delay_if_absent(&self, ms: u64) {
        *self.if_absent_delay.lock().unwrap() = Duration::from_millis(ms);
    }
    fn delay_cas(&self, ms: u64) {
        *self.cas_delay.lock().unwrap() = Duration::from_millis(ms);
    }
}

#[async_trait]
impl Store for Scripted {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        let delay = match condition {
            SaveCondition::IfAbsent => *self.if_absent_delay.lock().unwrap(),
            SaveCondition::IfVersion(_) => *self.cas_delay.lock().unwrap(),
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let saved = self.inner.save(key, record, expires_at, condition).await;
        if matches!(condition, SaveCondition::IfVersion(_)) {
            let n = self.cas_saves.fetch_add(1, Ordering::SeqCst) + 1;
            if matches!(saved, Ok(SaveOutcome::Saved(_)))
                && self.lose_cas_reply.load(Ordering::SeqCst) == n
            {
                return Err(StoreError::Timeout(Duration::from_millis(500)));
            }
        }
        saved
    }
    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

fn manager(store: &Arc<Scripted>, ring: KeyRing) -> SessionManager {
    SessionManager::new(
        SessionConfig::server(store.clone(), ring)
            .cookie_attributes(CookieAttributes::default().secure(false)),
    )
    .unwrap()
}

/// Managers of one store before and after a key rotation: the secret of
/// `keys(1)`, then `keys(2)` with the first kept as an old secret.
fn rotation(store: &Arc<Scripted>) -> (SessionManager, SessionManager) {
    let old = manager(store, keys(1));
    let rotated = manager(store, keys(2).with_old_secret(&secret(1)).unwrap());
    (old, rotated)
}

/// A session made with the old secret is moved to the primary key's token
/// by its next request; a logout of the old token while that move is under
/// way must end the session for good: neither token opens it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_key_rotation_move_stays_a_logout() {
    for round in 0..10 {
        let store = Arc::new(Scripted::default());
        let (old, rotated) = rotation(&store);
        let mut jar = Jar::default();
        bump_on(&old, &mut jar).await;
        // The move's write of the new key waits; the logout runs meanwhile.
        store.delay_if_absent(50);
        let mover = {
            let (rotated, jar) = (rotated.clone(), jar.clone());
            tokio::spawn(async move {
                let req = jar.start(&rotated);
                req.primary().get(&COUNTER).await.unwrap();
                let mut moved = jar.clone();
                let f = finish(&mut moved, &req).await;
                (f.outcome, moved)
            })
        };
        tokio::time::sleep(Duration::from_millis(5 * (round % 3))).await;
        let req = jar.start(&old);
        req.primary().purge().await.unwrap();
        let mut logged_out = jar.clone();
        assert_eq!(finish(&mut logged_out, &req).await.outcome, Outcome::Purge);
        let (_, moved) = mover.await.unwrap();
        store.delay_if_absent(0);
        for (name, jar, manager) in [("old", &jar, &old), ("moved", &moved, &rotated)] {
            let req = jar.start(manager);
            assert_eq!(
                req.primary().get(&COUNTER).await.unwrap(),
                None,
                "round {round}: the {name} token still opens the logged-out session"
            );
        }
    }
}

/// Login renews the id; a save of the same session that was acknowledged
/// while the login was under way is carried into the renewed session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_acknowledged_during_a_renew_is_kept() {
    let store = Arc::new(Scripted::default());
    let manager = manager(&store, keys(1));
    let (jar, _) = login_while_another_request_counts(&manager, &manager).await;
    // The old token is done.
    let req = jar.start(&manager);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), None);
}

/// A session made through `first`: one request through `then` logs in
/// (renews) after loading it, while another counts and saves first; the
/// login must keep the count. Returns the client's jars from before the
/// login and of the counting request.
async fn login_while_another_request_counts(
    first: &SessionManager,
    then: &SessionManager,
) -> (Jar, Jar) {
    let mut jar = Jar::default();
    bump_on(first, &mut jar).await;
    let login = jar.start(then);
    login
        .primary()
        .insert(&USER, &"ada".to_owned())
        .await
        .unwrap();
    login.primary().renew().await.unwrap();
    let mut other = jar.clone();
    assert_eq!(bump_on(then, &mut other).await, (2, Outcome::Save));
    let mut renewed = jar.clone();
    assert_eq!(finish(&mut renewed, &login).await.outcome, Outcome::Renew);
    let req = renewed.start(then);
    assert_eq!(
        req.primary().get(&USER).await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(
        req.primary().get(&COUNTER).await.unwrap(),
        Some(2),
        "the save acknowledged before the renew finished was lost"
    );
    (jar, other)
}

/// Saves queued behind a leader ride in its write; when that write's reply
/// is lost (it may or may not have landed), no rider replays its change
/// on its own: every change counts at most once, and every request that
/// was answered with success counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_of_a_combined_write_counts_no_change_twice() {
    let store = Arc::new(Scripted::default());
    let manager = manager(&store, keys(1));
    let mut jar = Jar::default();
    {
        let req = jar.start(&manager);
        req.primary().insert(&COUNTER, &0u64).await.unwrap();
        finish(&mut jar, &req).await;
    }
    // The first write goes alone; the saves queued behind it ride in the
    // second, whose reply is lost.
    store.delay_cas(30);
    store.lose_cas_reply.store(2, Ordering::SeqCst);
    let mut ok = 0;
    for task in concurrent_counts(&manager, &jar, 8) {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.http_status(), 503, "{e}"),
        }
    }
    store.delay_cas(0);
    let req = jar.start(&manager);
    let n = req.primary().get(&COUNTER).await.unwrap().unwrap();
    assert!(
        n as usize >= ok && n <= 8,
        "{ok} requests answered success, 8 sent, the count is {n}"
    );
}

/// A key-rotation move whose request went away after it wrote the primary
/// key's record, but before it retired the old one, after a logout: a
/// second move of the same session (loaded before the logout) must not
/// take that leftover for a finished move and bring the session back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_short_after_a_logout_leaves_nothing_to_revive() {
    let store = Arc::new(Scripted::default());
    let (old, rotated) = rotation(&store);
    let mut jar = Jar::default();
    bump_on(&old, &mut jar).await;
    // Two requests of the session load it through the old key.
    let first = jar.start(&rotated);
    first.primary().get(&COUNTER).await.unwrap();
    let second = jar.start(&rotated);
    second.primary().get(&COUNTER).await.unwrap();
    // The user logs out.
    let logout = jar.start(&rotated);
    logout.primary().purge().await.unwrap();
    assert_eq!(
        logout.finish_primary().await.unwrap().outcome,
        Outcome::Purge
    );
    // The first request moves: its retirement of the old record waits, and
    // the request goes away meanwhile.
    store.delay_cas(200);
    let cut_short = tokio::spawn(async move { first.finish_primary().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cut_short.abort();
    store.delay_cas(0);
    // The second request's move finds the primary key's record taken.
    let mut moved = jar.clone();
    let f = finish(&mut moved, &second).await;
    assert_eq!(f.outcome, Outcome::Vanished);
    assert_eq!(
        store.inner.len(),
        0,
        "a record of the logged-out session is left in the store"
    );
}

/// A login (renew) of a session found through an old key, racing a
/// key-rotation move of the same session that finished first: the login
/// carries on from the moved record, keeping what it holds, and the moved
/// token no longer opens the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_key_rotation_move_follows_the_move() {
    let store = Arc::new(Scripted::default());
    let (old, rotated) = rotation(&store);
    // The counting request moves the session first.
    let (_, moved) = login_while_another_request_counts(&old, &rotated).await;
    let req = moved.start(&rotated);
    assert_eq!(
        req.primary().get(&COUNTER).await.unwrap(),
        None,
        "the moved token"
    );
}
