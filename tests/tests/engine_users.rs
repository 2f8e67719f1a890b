//! The engine's user sessions beyond the store conformance rules: cookie
//! sessions revoked through their index store, what anonymous traffic
//! costs, `last_seen`, handles across a session's life, and the errors of
//! a session without an index.

#[path = "engine_common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use session_core::{KeyRing, SessionConfig, SessionError, SessionManager};

async fn sign_in(manager: &SessionManager, jar: &mut Jar, user: &str) {
    let req = jar.start(manager);
    req.primary().sign_in(user).await.unwrap();
    finish(jar, &req).await;
}

async fn handle(manager: &SessionManager, jar: &mut Jar) -> Option<session_core::SessionHandle> {
    let req = jar.start(manager);
    let handle = req.primary().user_handle().await.unwrap();
    finish(jar, &req).await;
    handle
}

#[tokio::test]
async fn a_sealed_cookie_is_refused_once_its_entry_is_gone() {
    let index = Arc::new(CountingStore::default());
    let env = cookie_env_with(|c| c.user_index(index.clone()));
    let mut jar = Jar::default();
    for _ in 0..3 {
        bump(&env, &mut jar).await;
    }
    let calls = |s: &CountingStore| s.loads.load(Ordering::SeqCst) + s.saves.load(Ordering::SeqCst);
    assert_eq!(
        calls(&index),
        0,
        "anonymous cookie sessions never touch the index"
    );
    sign_in(&env.manager, &mut jar, "ada").await;
    assert!(calls(&index) > 0);
    let (n, _) = bump(&env, &mut jar).await;
    assert_eq!(n, 4, "the session kept its values through the sign-in");
    let sealed = jar.clone();
    assert_eq!(env.manager.end_user_sessions("ada").await.unwrap(), 1);
    let mut replay = sealed.clone();
    assert_eq!(
        handle(&env.manager, &mut replay).await,
        None,
        "refused although validly sealed"
    );
    let mut replay = sealed;
    let (n, _) = bump(&env, &mut replay).await;
    assert_eq!(n, 1, "a fresh session, not the ended one");
}

#[tokio::test]
async fn last_seen_moves_at_most_once_a_minute_and_the_handle_stays() {
    let env = server_env();
    let mut jar = Jar::default();
    sign_in(&env.manager, &mut jar, "ada").await;
    let listed = env.manager.user_sessions("ada").await.unwrap();
    let (first, signed_in_at) = (listed[0].handle.clone(), listed[0].last_seen);
    env.clock.advance(30);
    bump(&env, &mut jar).await;
    assert_eq!(
        env.manager.user_sessions("ada").await.unwrap()[0].last_seen,
        signed_in_at
    );
    env.clock.advance(31);
    let _ = peek(&env, &mut jar).await;
    let listed = env.manager.user_sessions("ada").await.unwrap();
    assert_eq!(
        (listed[0].last_seen - signed_in_at).whole_seconds(),
        61,
        "a read-only request moves last_seen once a minute is up"
    );
    // Writes and remember-me keep the handle.
    let req = jar.start(&env.manager);
    req.primary().set_persistent(true).await.unwrap();
    finish(&mut jar, &req).await;
    assert_eq!(handle(&env.manager, &mut jar).await, Some(first.clone()));
    // So does a key rotation, across the move to the new key.
    let rotated = SessionManager::new(SessionConfig::server(
        env.store.clone(),
        KeyRing::from_secret(&secret(2))
            .unwrap()
            .with_old_secret(&secret(1))
            .unwrap(),
    ))
    .unwrap();
    bump_on(&rotated, &mut jar).await;
    assert_eq!(handle(&rotated, &mut jar).await, Some(first));
    assert_eq!(rotated.user_sessions("ada").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_session_without_an_index_says_so() {
    let env = cookie_env_with(|c| c);
    let req = start(&env.manager, []);
    let err = req.primary().sign_in("ada").await.unwrap_err();
    assert!(matches!(err, SessionError::NoUserIndex(_)), "{err}");
    assert!(
        err.to_string().contains("SessionConfig::user_index"),
        "{err}"
    );
    assert!(env.manager.user_sessions("ada").await.is_err());
    // Anonymous use is untouched.
    let mut jar = Jar::default();
    assert_eq!(bump(&env, &mut jar).await.0, 1);
}

#[tokio::test]
async fn purge_and_sign_out_take_the_session_off_its_list() {
    let env = server_env();
    let (mut a, mut b) = (Jar::default(), Jar::default());
    sign_in(&env.manager, &mut a, "ada").await;
    sign_in(&env.manager, &mut b, "ada").await;
    let req = a.start(&env.manager);
    req.primary().purge().await.unwrap();
    finish(&mut a, &req).await;
    assert_eq!(env.manager.user_sessions("ada").await.unwrap().len(), 1);
    let req = b.start(&env.manager);
    req.primary().sign_out().await.unwrap();
    req.primary().insert(&COUNTER, &7).await.unwrap();
    finish(&mut b, &req).await;
    assert!(env.manager.user_sessions("ada").await.unwrap().is_empty());
    assert_eq!(handle(&env.manager, &mut b).await, None);
    assert_eq!(
        peek(&env, &mut b).await.0,
        Some(7),
        "sign-out keeps the values"
    );
}

#[tokio::test]
async fn a_purge_then_a_sign_in_in_one_request_is_signed_in() {
    let env = server_env();
    let mut jar = Jar::default();
    sign_in(&env.manager, &mut jar, "old-user").await;
    let req = jar.start(&env.manager);
    req.primary().purge().await.unwrap();
    req.primary().sign_in("ada").await.unwrap();
    finish(&mut jar, &req).await;
    assert!(handle(&env.manager, &mut jar).await.is_some());
    assert_eq!(env.manager.user_sessions("ada").await.unwrap().len(), 1);
    assert!(env
        .manager
        .user_sessions("old-user")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_sign_out_racing_a_renew_still_signs_the_session_out() {
    let env = server_env();
    let mut jar = Jar::default();
    sign_in(&env.manager, &mut jar, "ada").await;
    let signing_out = jar.start(&env.manager);
    signing_out.primary().sign_out().await.unwrap();
    let mut renewed = jar.clone();
    let renewing = renewed.start(&env.manager);
    renewing.primary().renew().await.unwrap();
    finish(&mut renewed, &renewing).await;
    // The sign-out finds the session renewed by the other request...
    let finished = signing_out.finish_primary().await.unwrap();
    assert_eq!(finished.outcome, session_core::adapter::Outcome::Vanished);
    // ...and still takes it off the list: the renewed copy is signed out.
    assert!(env.manager.user_sessions("ada").await.unwrap().is_empty());
    tokio::time::sleep(session_core::MEMBER_CACHE).await;
    assert_eq!(handle(&env.manager, &mut renewed).await, None);
}

#[tokio::test]
async fn a_burst_of_sign_ins_stays_within_the_limit() {
    let env = server_env_with(|c| c.max_sessions_per_user(2));
    let mut jars = vec![
        Jar::default(),
        Jar::default(),
        Jar::default(),
        Jar::default(),
    ];
    for jar in &mut jars {
        sign_in(&env.manager, jar, "ada").await;
    }
    assert_eq!(env.manager.user_sessions("ada").await.unwrap().len(), 2);
    assert_eq!(
        handle(&env.manager, &mut jars[0]).await,
        None,
        "the earliest went first"
    );
    assert_eq!(handle(&env.manager, &mut jars[1]).await, None);
    assert!(handle(&env.manager, &mut jars[3]).await.is_some());
}

#[tokio::test]
async fn a_signed_in_session_without_its_index_is_refused_and_kept() {
    let index = Arc::new(CountingStore::default());
    let with_index = cookie_env_with(|c| c.user_index(index.clone()));
    let mut jar = Jar::default();
    sign_in(&with_index.manager, &mut jar, "ada").await;
    // The same sessions configured without the index: refused, not an error.
    let without = cookie_env_with(|c| c);
    let replay = jar.clone();
    let req = replay.start(&without.manager);
    assert_eq!(req.primary().user_handle().await.unwrap(), None);
    // With the index back, the session is there again.
    assert!(handle(&with_index.manager, &mut jar).await.is_some());
}
