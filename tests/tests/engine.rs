//! The engine's rules, request by request, against the real memory store
//! (here, beside the other cross-crate tests: session-core knows no store).

#[path = "engine_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde::{Deserialize, Serialize};
use session_backends::MemoryStore;
use session_core::adapter::Outcome;
use session_core::time::OffsetDateTime;
use session_core::{
    Codec, CookieAttributes, Lifetime, SaveCondition, SaveOutcome, SealMode, Session,
    SessionConfig, SessionError, SessionManager, Store, StoreError, StoreKey, StoredRecord,
    Transport,
};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn untouched_or_read_only_new_session_stores_nothing() {
    let env = server_env();
    let mut jar = Jar::default();
    let req = jar.start(&env.manager);
    assert_eq!(finish(&mut jar, &req).await.outcome, Outcome::Nothing);
    let (n, f) = peek(&env, &mut jar).await;
    assert_eq!((n, f.outcome, f.header), (None, Outcome::Nothing, None));
    assert_eq!(env.store.saves.load(Ordering::SeqCst), 0);
    assert_eq!(
        env.store.loads.load(Ordering::SeqCst),
        0,
        "no token, no store call"
    );
}

#[tokio::test]
async fn lazy_loading_makes_no_store_call_for_untouched_sessions() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let loads = env.store.loads.load(Ordering::SeqCst);
    let req = jar.start(&env.manager);
    assert_eq!(finish(&mut jar, &req).await.outcome, Outcome::Nothing);
    assert_eq!(env.store.loads.load(Ordering::SeqCst), loads);
}

#[tokio::test]
async fn server_sessions_round_trip_and_read_only_requests_write_nothing() {
    let env = server_env();
    let mut jar = Jar::default();
    assert_eq!(bump(&env, &mut jar).await, (1, Outcome::Save));
    let first_cookie = jar.0.clone().unwrap();
    assert_eq!(bump(&env, &mut jar).await, (2, Outcome::Save));
    assert_eq!(
        jar.0.as_ref(),
        Some(&first_cookie),
        "token unchanged by a save"
    );
    let saves = env.store.saves.load(Ordering::SeqCst);
    let (n, f) = peek(&env, &mut jar).await;
    assert_eq!((n, f.outcome, f.header), (Some(2), Outcome::Nothing, None));
    assert_eq!(env.store.saves.load(Ordering::SeqCst), saves);
}

#[tokio::test]
async fn cookie_sessions_round_trip_in_both_seal_modes_and_codecs() {
    for mode in [SealMode::Private, SealMode::Signed] {
        for codec in [Codec::Cbor, Codec::Json] {
            let env = cookie_env_with(|c| c.seal_mode(mode).codec(codec));
            let mut jar = Jar::default();
            assert_eq!(bump(&env, &mut jar).await, (1, Outcome::Save));
            assert_eq!(bump(&env, &mut jar).await, (2, Outcome::Save));
            let (n, f) = peek(&env, &mut jar).await;
            assert_eq!(
                (n, f.outcome),
                (Some(2), Outcome::Nothing),
                "{mode:?} {codec:?}"
            );
        }
    }
}

#[tokio::test]
async fn bad_tokens_give_a_fresh_session_and_a_removal_cookie() {
    for env in [server_env(), cookie_env_with(|c| c)] {
        let mut good = Jar::default();
        bump(&env, &mut good).await;
        let token = good.0.clone().unwrap()["sid=".len()..].to_string();
        let mut flipped = token.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let foreign = {
            let other = SessionManager::new(SessionConfig::cookie(keys(9))).unwrap();
            let req = start(&other, []);
            req.primary().insert(&COUNTER, &1).await.unwrap();
            let f = req.finish_primary().await.unwrap();
            let mut j = Jar::default();
            j.apply(f.header.as_ref());
            j.0.unwrap()["sid=".len()..].to_string()
        };
        let bad = [
            String::from_utf8(flipped).unwrap(),
            token[..token.len() / 2].to_string(),
            "garbage".to_string(),
            "%%%%".to_string(),
            "A".repeat(5000),
            foreign,
        ];
        for bad in bad {
            let mut jar = Jar(Some(format!("sid={bad}")));
            let req = jar.start(&env.manager);
            assert!(req.primary().is_new().await.unwrap());
            assert_eq!(req.primary().get(&COUNTER).await.unwrap(), None);
            let f = finish(&mut jar, &req).await;
            assert_eq!(f.outcome, Outcome::Nothing);
            assert!(
                f.header.unwrap().value().contains("Max-Age=0"),
                "stale cookie removed"
            );
        }
    }
}

#[tokio::test]
async fn idle_timeout_ends_sessions_and_rolling_touch_extends_them() {
    let env = server_env_with(|c| {
        c.lifetime(
            Lifetime::default()
                .idle_timeout(Duration::from_secs(600))
                .refresh_interval(Duration::from_secs(60)),
        )
    });
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    // 100 s later: the deadline would move by 100 s >= 60 s, so a read touches.
    env.clock.advance(100);
    let (n, f) = peek(&env, &mut jar).await;
    assert_eq!((n, f.outcome, f.header), (Some(1), Outcome::Touch, None));
    assert_eq!(env.store.touches.load(Ordering::SeqCst), 1);
    // 30 s later: not worth a touch.
    env.clock.advance(30);
    let (_, f) = peek(&env, &mut jar).await;
    assert_eq!(f.outcome, Outcome::Nothing);
    assert_eq!(env.store.touches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_and_absolute_timeouts_on_cookie_sessions_are_enforced_by_the_server() {
    let env = cookie_env_with(|c| {
        c.lifetime(
            Lifetime::default()
                .idle_timeout(Duration::from_secs(600))
                .refresh_interval(Duration::from_secs(60))
                .absolute_timeout(Some(Duration::from_secs(1000))),
        )
    });
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let stale = jar.clone();
    env.clock.advance(500);
    // Rolling: the read re-seals with a later deadline.
    let (n, f) = peek(&env, &mut jar).await;
    assert_eq!((n, f.outcome), (Some(1), Outcome::Touch));
    env.clock.advance(200);
    // The first cookie's idle deadline (600 s) has passed; the re-sealed one's has not.
    let (n, _) = peek(&env, &mut stale.clone()).await;
    assert_eq!(n, None, "idle deadline inside the seal enforced");
    let (n, _) = peek(&env, &mut jar).await;
    assert_eq!(n, Some(1));
    env.clock.advance(400);
    let (n, _) = peek(&env, &mut jar).await;
    assert_eq!(n, None, "absolute timeout enforced despite activity");
}

#[tokio::test]
async fn absolute_timeout_on_server_sessions() {
    let env = server_env_with(|c| {
        c.lifetime(Lifetime::default().absolute_timeout(Some(Duration::from_secs(100))))
    });
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    env.clock.advance(50);
    assert_eq!(peek(&env, &mut jar).await.0, Some(1));
    env.clock.advance(60);
    let loads = env.store.loads.load(Ordering::SeqCst);
    assert_eq!(peek(&env, &mut jar).await.0, None);
    assert_eq!(
        env.store.loads.load(Ordering::SeqCst),
        loads,
        "expired token refused before any store call"
    );
}

#[tokio::test]
async fn renew_keeps_data_changes_the_token_and_kills_the_old_one() {
    for env in [server_env(), cookie_env_with(|c| c)] {
        let mut jar = Jar::default();
        bump(&env, &mut jar).await;
        let old = jar.clone();
        let req = jar.start(&env.manager);
        req.primary().renew().await.unwrap();
        let f = finish(&mut jar, &req).await;
        assert_eq!(f.outcome, Outcome::Renew);
        assert_ne!(jar.0, old.0);
        assert_eq!(peek(&env, &mut jar).await.0, Some(1), "data kept");
        if env.store.saves.load(Ordering::SeqCst) > 0 {
            assert_eq!(peek(&env, &mut old.clone()).await.0, None, "old id is dead");
        }
    }
}

#[tokio::test]
async fn purge_deletes_and_sends_a_removal_cookie_and_replay_fails() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let old = jar.clone();
    let req = jar.start(&env.manager);
    req.primary().purge().await.unwrap();
    let f = finish(&mut jar, &req).await;
    assert_eq!(f.outcome, Outcome::Purge);
    assert!(f.header.unwrap().value().contains("Max-Age=0"));
    assert_eq!(env.store.inner.len(), 0);
    assert_eq!(
        peek(&env, &mut old.clone()).await.0,
        None,
        "replayed token refused"
    );
}

#[tokio::test]
async fn values_set_after_purge_start_a_new_session() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let old = jar.clone();
    let req = jar.start(&env.manager);
    req.primary().purge().await.unwrap();
    req.primary().flash("info", "bye").await.unwrap();
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), None);
    finish(&mut jar, &req).await;
    assert_ne!(jar.0, old.0);
    let req = jar.start(&env.manager);
    assert_eq!(
        req.primary().take_flashes::<String>("info").await.unwrap(),
        ["bye"]
    );
    assert_eq!(peek(&env, &mut old.clone()).await.0, None);
}

#[tokio::test]
async fn persistence_switch_sets_and_clears_max_age() {
    for env in [server_env(), cookie_env_with(|c| c)] {
        let mut jar = Jar::default();
        bump(&env, &mut jar).await;
        let req = jar.start(&env.manager);
        req.primary().set_persistent(true).await.unwrap();
        let f = finish(&mut jar, &req).await;
        let value = f.header.unwrap().value().to_string();
        assert!(
            value.contains(&format!("Max-Age={}", 30 * 86_400)),
            "{value}"
        );
        let req = jar.start(&env.manager);
        assert!(req.primary().is_persistent().await.unwrap());
        req.primary().set_persistent(false).await.unwrap();
        let f = finish(&mut jar, &req).await;
        let value = f.header.unwrap().value().to_string();
        assert!(!value.contains("Max-Age"), "{value}");
        assert_eq!(peek(&env, &mut jar).await.0, Some(1));
    }
}

#[tokio::test]
async fn persistent_server_session_touch_refreshes_max_age() {
    let env = server_env_with(|c| c.lifetime(Lifetime::default().persistent_by_default(true)));
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    env.clock.advance(2 * 86_400);
    let (_, f) = peek(&env, &mut jar).await;
    assert_eq!(f.outcome, Outcome::Touch);
    assert!(f.header.unwrap().value().contains("Max-Age="));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Notice {
    text: String,
    level: u8,
}

#[tokio::test]
async fn flashes_are_typed_ordered_and_last_until_read() {
    let env = server_env();
    let mut jar = Jar::default();
    let req = jar.start(&env.manager);
    let s = req.primary();
    s.flash("info", "one").await.unwrap();
    s.flash(
        "error",
        &Notice {
            text: "bad".into(),
            level: 3,
        },
    )
    .await
    .unwrap();
    s.flash("info", "two").await.unwrap();
    finish(&mut jar, &req).await;

    let req = jar.start(&env.manager);
    assert_eq!(
        req.primary().peek_flashes::<String>("info").await.unwrap(),
        ["one", "two"]
    );
    assert!(
        req.primary().take_flashes::<u32>("info").await.is_err(),
        "wrong type"
    );
    assert_eq!(
        req.primary().take_flashes::<String>("info").await.unwrap(),
        ["one", "two"]
    );
    finish(&mut jar, &req).await;

    let req = jar.start(&env.manager);
    assert!(req
        .primary()
        .take_flashes::<String>("info")
        .await
        .unwrap()
        .is_empty());
    let all = req.primary().take_all_flashes::<Notice>().await.unwrap();
    assert_eq!(
        all,
        [(
            "error".to_string(),
            Notice {
                text: "bad".into(),
                level: 3
            }
        )]
    );
    let f = finish(&mut jar, &req).await;
    assert_eq!(f.outcome, Outcome::Purge, "a session left empty is removed");
    assert!(jar.0.is_none());
}

#[tokio::test]
async fn constant_attributes_are_fixed_until_renewal() {
    let env = server_env();
    let mut jar = Jar::default();
    let req = jar.start(&env.manager);
    req.primary()
        .insert_constant(&USER, &"ada".to_string())
        .await
        .unwrap();
    finish(&mut jar, &req).await;

    let req = jar.start(&env.manager);
    let s = req.primary();
    assert_eq!(s.get(&USER).await.unwrap().as_deref(), Some("ada"));
    assert!(matches!(
        s.insert(&USER, &"eve".to_string()).await,
        Err(SessionError::ConstantAttribute(_))
    ));
    assert!(matches!(
        s.remove(&USER).await,
        Err(SessionError::ConstantAttribute(_))
    ));
    assert!(matches!(
        s.insert_constant("role", "admin").await,
        Err(SessionError::ConstantNotAllowed(_))
    ));
    s.clear().await.unwrap();
    assert_eq!(
        s.get(&USER).await.unwrap().as_deref(),
        Some("ada"),
        "clear keeps constants"
    );
    s.renew().await.unwrap();
    s.insert_constant(&USER, &"grace".to_string())
        .await
        .unwrap();
    finish(&mut jar, &req).await;
    let req = jar.start(&env.manager);
    assert_eq!(
        req.primary().get(&USER).await.unwrap().as_deref(),
        Some("grace")
    );
}

#[tokio::test]
async fn values_api() {
    let env = server_env();
    let req = start(&env.manager, []);
    let s = req.primary();
    s.insert("a", &1u8).await.unwrap();
    s.insert("b", &vec!["x", "y"]).await.unwrap();
    assert!(s.contains("a").await.unwrap());
    assert_eq!(s.keys().await.unwrap(), ["a", "b"]);
    assert!(
        s.get::<String, _>("a").await.is_err(),
        "type mismatch is an error"
    );
    assert!(s.remove::<u8, _>("a").await.unwrap());
    assert!(!s.remove::<u8, _>("a").await.unwrap());
    s.clear().await.unwrap();
    assert!(s.keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn json_codec_refuses_unrepresentable_values_at_insert() {
    let env = server_env_with(|c| c.codec(Codec::Json));
    let req = start(&env.manager, []);
    let err = req.primary().insert("f", &f64::NAN).await.unwrap_err();
    assert!(err.to_string().contains("json cannot represent"), "{err}");
    req.primary().insert("ok", &u64::MAX).await.unwrap();
}

#[tokio::test]
async fn oversized_cookie_session_is_refused_not_sent() {
    let env = cookie_env_with(|c| c);
    let req = start(&env.manager, []);
    req.primary()
        .insert("big", &"x".repeat(5000))
        .await
        .unwrap();
    let err = req.finish_primary().await.unwrap_err();
    assert!(
        matches!(err, SessionError::CookieTooLarge { limit: 4096, .. }),
        "{err}"
    );
    assert_eq!(
        err.http_status(),
        413,
        "payload too large, not a server fault"
    );
}

#[tokio::test]
async fn oversized_server_session_is_a_store_error() {
    let store = Arc::new(MemoryStore::builder().max_record_size(1000).build());
    let manager = SessionManager::new(SessionConfig::server(store, keys(1))).unwrap();
    let req = start(&manager, []);
    req.primary()
        .insert("big", &"x".repeat(2000))
        .await
        .unwrap();
    let err = req.finish().await.unwrap_err();
    assert!(
        matches!(err, SessionError::Store(StoreError::TooLarge { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn named_sessions_have_their_own_stores_and_options_and_save_together() {
    let store_a = Arc::new(MemoryStore::new());
    let store_b = Arc::new(MemoryStore::new());
    let manager = SessionManager::new(SessionConfig::server(store_a.clone(), keys(1)))
        .unwrap()
        .with_session(SessionConfig::server(store_b.clone(), keys(2)).name("admin"))
        .unwrap()
        .with_session(
            SessionConfig::cookie(keys(3))
                .name("prefs")
                .seal_mode(SealMode::Signed),
        )
        .unwrap();
    let req = start(&manager, []);
    req.primary().insert("a", &1).await.unwrap();
    req.named("admin").unwrap().insert("b", &2).await.unwrap();
    req.named("prefs")
        .unwrap()
        .insert("theme", "dark")
        .await
        .unwrap();
    assert!(req.named("missing").is_err());
    let headers = req.finish().await.unwrap();
    let names: Vec<&str> = headers.iter().map(|h| h.name()).collect();
    assert_eq!(
        names,
        [
            "set-cookie",
            "set-cookie",
            "set-cookie",
            "vary",
            "cache-control"
        ],
        "three cookies, then one Vary: Cookie for all and Cache-Control"
    );
    assert_eq!(
        (headers[3].value(), headers[4].value()),
        ("Cookie", "private")
    );
    assert!(headers[4].only_if_absent() && !headers[3].only_if_absent());
    assert_eq!((store_a.len(), store_b.len()), (1, 1));
    let cookie = headers[..3]
        .iter()
        .map(|h| h.value().split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let req = start(&manager, [("cookie", cookie.as_bytes())]);
    assert_eq!(req.primary().get::<i32, _>("a").await.unwrap(), Some(1));
    assert_eq!(
        req.named("admin")
            .unwrap()
            .get::<i32, _>("b")
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        req.named("prefs")
            .unwrap()
            .get::<String, _>("theme")
            .await
            .unwrap()
            .as_deref(),
        Some("dark")
    );
    assert_eq!(
        req.named("admin")
            .unwrap()
            .get::<i32, _>("a")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn duplicate_session_names_refused() {
    let m = SessionManager::new(SessionConfig::cookie(keys(1))).unwrap();
    assert!(m.with_session(SessionConfig::cookie(keys(1))).is_err());
}

#[tokio::test]
async fn header_transport() {
    let env = server_env_with(|c| c.transport(Transport::header("X-Session-Token")));
    let req = start(&env.manager, []);
    req.primary().insert(&COUNTER, &5).await.unwrap();
    let f = req.finish_primary().await.unwrap();
    let h = f.header.unwrap();
    assert_eq!(h.name(), "X-Session-Token");
    let token = h.value().to_string();
    assert!(!token.contains(';'));
    let req = start(
        &env.manager,
        [
            ("x-session-token", token.as_bytes()),
            ("cookie", b"sid=ignored".as_slice()),
        ],
    );
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(5));
    req.primary().set_persistent(true).await.unwrap();
    let f = req.finish_primary().await.unwrap();
    assert_eq!(f.header, None, "nothing to re-send in header transport");
    let req = start(&env.manager, [("X-SESSION-TOKEN", token.as_bytes())]);
    req.primary().purge().await.unwrap();
    let f = req.finish_primary().await.unwrap();
    assert_eq!(
        f.header.unwrap().value(),
        "",
        "purge clears the header token"
    );
}

#[tokio::test]
async fn key_rotation_keeps_users_and_moves_them_to_the_primary_key() {
    let store = Arc::new(CountingStore::default());
    let old = SessionManager::new(SessionConfig::server(store.clone(), keys(1))).unwrap();
    let rotated = SessionManager::new(SessionConfig::server(
        store.clone(),
        keys(2).with_old_secret(&common::secret(1)).unwrap(),
    ))
    .unwrap();
    let new_only = SessionManager::new(SessionConfig::server(store.clone(), keys(2))).unwrap();

    let mut jar = Jar::default();
    let req = jar.start(&old);
    req.primary().insert(&COUNTER, &7).await.unwrap();
    finish(&mut jar, &req).await;
    let before = jar.clone();

    // Opened with the old key: a read re-seals with the primary and moves
    // the record to the primary's store key.
    let req = jar.start(&rotated);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(7));
    let f = finish(&mut jar, &req).await;
    assert_eq!(f.outcome, Outcome::Save);
    assert_ne!(jar.0, before.0);
    // The old store key holds only the retired (empty) record, absent to
    // every reader, until its short TTL: a concurrent move tells from it
    // that the session moved rather than ended.
    assert_eq!(store.inner.len(), 2);
    let old_key = store.last_saved.lock().unwrap().clone().unwrap().0;
    let retired = store.inner.load(&old_key).await.unwrap().unwrap();
    assert!(retired.bytes.is_empty(), "the old record is retired");
    // The new cookie opens without the old secret.
    let req = jar.start(&new_only);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(7));
    // Dropping the old secret logs out whoever was not moved.
    let req = before.start(&new_only);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), None);
}

#[tokio::test]
async fn key_rotation_for_cookie_sessions() {
    let old = SessionManager::new(SessionConfig::cookie(keys(1))).unwrap();
    let rotated = SessionManager::new(SessionConfig::cookie(
        keys(2).with_old_secret(&common::secret(1)).unwrap(),
    ))
    .unwrap();
    let new_only = SessionManager::new(SessionConfig::cookie(keys(2))).unwrap();
    let mut jar = Jar::default();
    let req = jar.start(&old);
    req.primary().insert(&COUNTER, &3).await.unwrap();
    finish(&mut jar, &req).await;
    let stale = jar.clone();
    let req = jar.start(&rotated);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(3));
    assert_eq!(
        finish(&mut jar, &req).await.outcome,
        Outcome::Save,
        "re-sealed with the primary"
    );
    assert_eq!(
        jar.start(&new_only).primary().get(&COUNTER).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        stale
            .start(&new_only)
            .primary()
            .get(&COUNTER)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_changing_different_keys_all_survive() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let manager = env.manager.clone();
    // Every request loads before any saves, so all but one must merge.
    let barrier = Arc::new(tokio::sync::Barrier::new(24));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let manager = manager.clone();
        let jar = jar.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let req = jar.start(&manager);
            req.primary().get::<u64, _>(&COUNTER).await.unwrap();
            req.primary().insert(&format!("k{i}"), &i).await.unwrap();
            req.primary()
                .flash("info", &format!("from {i}"))
                .await
                .unwrap();
            barrier.wait().await;
            req.finish().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let req = jar.start(&manager);
    for i in 0..24 {
        assert_eq!(
            req.primary().get::<i32, _>(&format!("k{i}")).await.unwrap(),
            Some(i),
            "k{i} lost"
        );
    }
    assert_eq!(
        req.primary()
            .take_flashes::<String>("info")
            .await
            .unwrap()
            .len(),
        24
    );
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(1));
}

#[tokio::test]
async fn merge_replays_flash_takes_and_removals() {
    let env = server_env();
    let mut jar = Jar::default();
    let req = jar.start(&env.manager);
    req.primary().insert("a", &1).await.unwrap();
    req.primary().insert("b", &1).await.unwrap();
    req.primary().flash("info", "first").await.unwrap();
    finish(&mut jar, &req).await;

    let reader = jar.start(&env.manager);
    assert_eq!(
        reader
            .primary()
            .take_flashes::<String>("info")
            .await
            .unwrap(),
        ["first"]
    );
    reader.primary().remove::<i32, _>("a").await.unwrap();
    let writer = jar.start(&env.manager);
    writer.primary().insert("b", &2).await.unwrap();
    writer.primary().flash("info", "second").await.unwrap();
    writer.finish().await.unwrap();
    reader.finish().await.unwrap();

    let req = jar.start(&env.manager);
    assert_eq!(req.primary().get::<i32, _>("a").await.unwrap(), None);
    assert_eq!(req.primary().get::<i32, _>("b").await.unwrap(), Some(2));
    assert_eq!(
        req.primary().take_flashes::<String>("info").await.unwrap(),
        ["second"]
    );
}

#[tokio::test]
async fn concurrent_logout_wins_over_a_later_save() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let writer = jar.start(&env.manager);
    writer.primary().insert("x", &1).await.unwrap();
    let logout = jar.start(&env.manager);
    logout.primary().purge().await.unwrap();
    logout.finish().await.unwrap();
    let f = writer.finish_primary().await.unwrap();
    assert_eq!(f.outcome, Outcome::Vanished);
    assert_eq!(
        f.header, None,
        "no removal cookie: it could delete a cookie a concurrent login just set"
    );
    assert_eq!(
        env.store.inner.len(),
        0,
        "the purged session is not resurrected"
    );
}

/// A store that is down: the error path.
#[derive(Debug)]
struct DownStore;

#[async_trait]
impl Store for DownStore {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, _: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn save(
        &self,
        _: &StoreKey,
        _: &[u8],
        _: OffsetDateTime,
        _: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        Err(StoreError::Timeout(Duration::from_secs(1)))
    }
    async fn touch(&self, _: &StoreKey, _: OffsetDateTime) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &StoreKey) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn store_down_is_a_503_error_not_a_panic() {
    let manager = SessionManager::new(SessionConfig::server(Arc::new(DownStore), keys(1))).unwrap();
    let req = start(&manager, []);
    req.primary().insert("a", &1).await.unwrap();
    let err = req.finish().await.unwrap_err();
    assert_eq!(err.http_status(), 503);
    assert_eq!(err.public_message(), "session store unavailable");

    // With a token, loading fails with the same answer.
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let down = SessionManager::new(SessionConfig::server(Arc::new(DownStore), keys(1))).unwrap();
    let req = jar.start(&down);
    let err = req.primary().get(&COUNTER).await.unwrap_err();
    assert_eq!(err.http_status(), 503);
}

#[tokio::test]
async fn debug_output_hides_tokens() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let req = jar.start(&env.manager);
    let shown = format!("{req:?} {:?}", env.manager);
    let token = &jar.0.unwrap()["sid=".len()..];
    assert!(!shown.contains(token));
    assert!(!shown.contains(&token[..12]));
}

#[tokio::test]
async fn a_session_handle_is_usable_from_spawned_tasks() {
    fn assert_send<T: Send + Sync + 'static>(_: &T) {}
    let env = server_env();
    let req = start(&env.manager, []);
    let session: Session = req.primary().clone();
    assert_send(&session);
    tokio::spawn(async move { session.insert("x", &1).await.unwrap() })
        .await
        .unwrap();
    assert_eq!(req.primary().get::<i32, _>("x").await.unwrap(), Some(1));
}

#[tokio::test]
async fn records_sealed_at_rest_are_unreadable_and_unforgeable_in_the_store() {
    let store = Arc::new(CountingStore {
        seal_at_rest: true,
        ..CountingStore::default()
    });
    let manager =
        SessionManager::new(SessionConfig::server(store.clone(), keys(1)).codec(Codec::Json))
            .unwrap();
    let mut jar = Jar::default();
    let req = jar.start(&manager);
    req.primary()
        .insert("secret", "plain-text-marker")
        .await
        .unwrap();
    finish(&mut jar, &req).await;
    let (key, bytes) = store.last_saved.lock().unwrap().clone().unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("plain-text-marker"));
    // Loaded, changed (a compare-and-swap save), loaded again: sealed every time.
    for n in 1..=2 {
        let req = jar.start(&manager);
        let secret = req.primary().get::<String, _>("secret").await.unwrap();
        assert_eq!(secret.as_deref(), Some("plain-text-marker"));
        req.primary().insert("n", &n).await.unwrap();
        finish(&mut jar, &req).await;
        let (_, bytes) = store.last_saved.lock().unwrap().clone().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("plain-text-marker"));
    }

    // An unsealed record written under the victim's key is refused.
    let forged = br#"{"v":{"secret":"forged"},"c":1800000000}"#;
    let mut plain = vec![1u8, b'J'];
    plain.extend_from_slice(forged);
    store
        .inner
        .save(
            &key,
            &plain,
            OffsetDateTime::now_utc() + Duration::from_secs(60),
            SaveCondition::Always,
        )
        .await
        .unwrap();
    let req = jar.start(&manager);
    assert_eq!(
        req.primary().get::<String, _>("secret").await.unwrap(),
        None
    );
    assert!(req.primary().is_new().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_count_exactly_and_get_then_insert_is_last_writer_wins() {
    let env = server_env();
    let mut jar = Jar::default();
    bump(&env, &mut jar).await;
    let run = |atomic: bool| {
        let manager = env.manager.clone();
        let jar = jar.clone();
        async move {
            // Every request loads before any saves, so all but one merge.
            let barrier = Arc::new(tokio::sync::Barrier::new(32));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (manager, jar, barrier) = (manager.clone(), jar.clone(), barrier.clone());
                    tokio::spawn(async move {
                        let req = jar.start(&manager);
                        let s = req.primary();
                        if atomic {
                            s.update(&COUNTER, |n| n.unwrap_or(0) + 1).await.unwrap();
                        } else {
                            let n = s.get(&COUNTER).await.unwrap().unwrap_or(0);
                            s.insert(&COUNTER, &(n + 1)).await.unwrap();
                        }
                        barrier.wait().await;
                        req.finish().await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let req = jar.start(&manager);
            req.primary().get(&COUNTER).await.unwrap().unwrap()
        }
    };
    assert_eq!(run(true).await, 33, "1 + 32 updates, none lost");
    // Read-then-insert replays the inserted value: the documented
    // last-writer-wins, so some of the 32 increments are lost.
    let after = run(false).await;
    assert!((34..65).contains(&after), "{after}");
}

#[tokio::test]
async fn update_refuses_a_constant_and_a_value_of_another_type() {
    let env = server_env();
    let jar = Jar::default();
    let req = jar.start(&env.manager);
    req.primary().insert_constant("c", &1u64).await.unwrap();
    req.primary().insert("s", "text").await.unwrap();
    let err = req
        .primary()
        .update(&COUNTER_NAMED_C, |n| n.unwrap_or(0) + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::ConstantAttribute(_)), "{err}");
    let err = req
        .primary()
        .update("s", |n: Option<u64>| n.unwrap_or(0))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Codec(_)), "{err}");
}

const COUNTER_NAMED_C: session_core::SessionKey<u64> = session_core::SessionKey::new("c");

/// A store where every compare-and-swap loses: the budget, then a 503.
#[derive(Debug, Default)]
struct AlwaysConflicting(MemoryStore);

#[async_trait]
impl Store for AlwaysConflicting {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        self.0.load(key).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        match condition {
            SaveCondition::IfVersion(_) => Ok(SaveOutcome::Conflict),
            other => self.0.save(key, record, expires_at, other).await,
        }
    }
    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        self.0.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
}

#[tokio::test]
async fn endless_conflicts_end_in_a_503_within_the_budget_with_backoff() {
    let store = Arc::new(AlwaysConflicting::default());
    let manager = SessionManager::new(SessionConfig::server(store, keys(1))).unwrap();
    let mut jar = Jar::default();
    let req = jar.start(&manager);
    req.primary().insert("a", &1).await.unwrap();
    finish(&mut jar, &req).await;
    let req = jar.start(&manager);
    req.primary().insert("a", &2).await.unwrap();
    let started = std::time::Instant::now();
    let err = req.finish().await.unwrap_err();
    let took = started.elapsed();
    let SessionError::Store(StoreError::Contended { attempts }) = err else {
        panic!("{err}");
    };
    assert_eq!(
        SessionError::Store(StoreError::Contended { attempts }).http_status(),
        503
    );
    assert!(took >= session_core::CAS_BUDGET, "{took:?}");
    assert!(took < session_core::CAS_BUDGET * 2, "{took:?}");
    // Backoff, not a busy loop: at most a few hundred attempts in 1.5 s.
    assert!((5..500).contains(&attempts), "{attempts} attempts");
}

/// Cookie tossing: a sibling subdomain sets a second cookie of the same name
/// (browsers send the one with the longer path first). Candidates are tried
/// in the order sent: one that does not open is skipped, and the first that
/// opens and names a live session wins.
#[tokio::test]
async fn of_several_cookies_with_the_session_name_the_first_live_one_wins() {
    let env = server_env();
    let mut victim = Jar::default();
    let mut attacker = Jar::default();
    bump(&env, &mut victim).await;
    for _ in 0..3 {
        bump(&env, &mut attacker).await;
    }
    let read = |cookie: String| {
        let manager = env.manager.clone();
        async move {
            let req = start(&manager, [("cookie", cookie.as_bytes())]);
            let n = req.primary().get(&COUNTER).await.unwrap();
            req.finish_primary().await.unwrap();
            n
        }
    };
    let victim_cookie = victim.0.clone().unwrap();
    let attacker_cookie = attacker.0.clone().unwrap();
    // A forged or stale cookie sent first does not hide the real one.
    assert_eq!(read(format!("sid=forged; {victim_cookie}")).await, Some(1));
    // A valid tossed cookie sent first wins: what the `__Host-` prefix,
    // which a subdomain cannot set, is for (see `SessionConfig::name`).
    assert_eq!(
        read(format!("{attacker_cookie}; {victim_cookie}")).await,
        Some(3)
    );
    assert_eq!(
        read(format!("{victim_cookie}; {attacker_cookie}")).await,
        Some(1)
    );
}

/// A store whose loads or saves take a while, so concurrent saves queue
/// up, or a load is under way while something else touches the session.
#[derive(Debug, Default)]
struct Slow {
    inner: CountingStore,
    load_delay: Duration,
    save_delay: Duration,
}

impl Slow {
    fn loads(delay_ms: u64) -> Self {
        Slow {
            load_delay: Duration::from_millis(delay_ms),
            ..Slow::default()
        }
    }

    fn saves(delay_ms: u64) -> Self {
        Slow {
            save_delay: Duration::from_millis(delay_ms),
            ..Slow::default()
        }
    }
}

#[session_core::async_trait]
impl Store for Slow {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        session_core::UserIndexSupport::Records(self)
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        if !self.load_delay.is_zero() {
            tokio::time::sleep(self.load_delay).await;
        }
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: session_core::time::OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        if !self.save_delay.is_zero() {
            tokio::time::sleep(self.save_delay).await;
        }
        self.inner.save(key, record, expires_at, condition).await
    }
    async fn touch(
        &self,
        key: &StoreKey,
        expires_at: session_core::time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// Saves of one session queued behind a slow write ride along in the next
/// one: 32 concurrent updates count exactly, in a handful of writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_saves_of_one_session_are_combined_into_one_write() {
    let store = Arc::new(Slow::saves(20));
    let manager = SessionManager::new(
        SessionConfig::server(store.clone(), keys(1))
            .cookie_attributes(CookieAttributes::default().secure(false)),
    )
    .unwrap();
    let mut jar = Jar::default();
    {
        let req = jar.start(&manager);
        req.primary().insert(&COUNTER, &0u64).await.unwrap();
        finish(&mut jar, &req).await;
    }
    let before = store.inner.saves.load(Ordering::SeqCst);
    for task in concurrent_counts(&manager, &jar, 32) {
        let finished = task.await.unwrap().unwrap();
        assert_eq!(finished.len(), 2, "Vary and Cache-Control, no token change");
    }
    let writes = store.inner.saves.load(Ordering::SeqCst) - before;
    let req = jar.start(&manager);
    assert_eq!(req.primary().get(&COUNTER).await.unwrap(), Some(32));
    eprintln!("32 concurrent saves of one session: {writes} writes");
    assert!(writes <= 4, "32 saves took {writes} writes");
}

/// Concurrent first uses of a session load it once; a request that
/// finishes while a task of its handler is still loading the session waits
/// for that load, and saves what the task then changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_under_way_is_shared_and_waited_for() {
    let store = Arc::new(Slow::loads(50));
    let manager = SessionManager::new(
        SessionConfig::server(store.clone(), keys(1))
            .cookie_attributes(CookieAttributes::default().secure(false)),
    )
    .unwrap();
    let mut jar = Jar::default();
    {
        let req = jar.start(&manager);
        req.primary().insert("a", &1u64).await.unwrap();
        finish(&mut jar, &req).await;
    }
    let req = jar.start(&manager);
    let before = store.inner.loads.load(Ordering::SeqCst);
    let (a, b) = tokio::join!(
        req.primary().get::<u64, _>("a"),
        req.primary().get::<u64, _>("a")
    );
    assert_eq!((a.unwrap(), b.unwrap()), (Some(1), Some(1)));
    assert_eq!(store.inner.loads.load(Ordering::SeqCst) - before, 1);

    let req = jar.start(&manager);
    let session = req.primary().clone();
    let task = tokio::spawn(async move { session.insert("b", &2u64).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let headers = req.finish().await.unwrap();
    task.await.unwrap();
    assert!(
        headers.iter().any(|h| h.name() == "vary"),
        "the session counts as read"
    );
    let req = jar.start(&manager);
    assert_eq!(req.primary().get::<u64, _>("b").await.unwrap(), Some(2));

    // A load given up half-way (its future dropped) leaves no one waiting.
    let req = jar.start(&manager);
    let session = req.primary().clone();
    let loader = {
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                std::time::Duration::from_millis(30),
                session.get::<u64, _>("a"),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let waiter = {
        let session = session.clone();
        tokio::spawn(async move { session.get::<u64, _>("a").await.unwrap() })
    };
    assert!(loader.await.unwrap().is_err(), "the load takes 50 ms");
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
    assert_eq!(woken.expect("the waiter was woken").unwrap(), Some(1));
    assert_eq!(session.get::<u64, _>("a").await.unwrap(), Some(1));
}
