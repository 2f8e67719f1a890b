//! The memcached store against real memcached processes: the conformance
//! suite on one server, three servers and an authenticated server, plus
//! memcached-specific rules.

use std::sync::Arc;
use std::time::Duration;

use session_backends::{MemcacheStore, MAX_RELATIVE_TTL};
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, Store, StoreError, StoreKey};
use session_tests::memcached::{self, MemcachedProcess, WithServers};

session_backends::store_conformance_tests!(one_server, {
    let servers = memcached::single();
    let store = MemcacheStore::builder(servers.addrs.clone())
        .build()
        .unwrap();
    WithServers::new(Arc::new(store), servers)
});

session_backends::store_conformance_tests!(three_servers, {
    let servers = memcached::cluster();
    let store = MemcacheStore::builder(servers.addrs.clone())
        .connections(2)
        .build()
        .unwrap();
    WithServers::new(Arc::new(store), servers)
});

fn auth_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("session-tests-auth-{}", std::process::id()));
    std::fs::write(&path, "sessions:s3cret-pass\n").unwrap();
    path
}

session_backends::store_conformance_tests!(authenticated_server, {
    let file = auth_file();
    let server = MemcachedProcess::start(&["-Y", file.to_str().unwrap()]);
    let store = MemcacheStore::builder([server.addr.clone()])
        .credentials("sessions", "s3cret-pass")
        .build()
        .unwrap();
    WithServers::new(Arc::new(store), server)
});

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let file = auth_file();
    let server = MemcachedProcess::start(&["-Y", file.to_str().unwrap()]);
    let store = MemcacheStore::builder([server.addr.clone()])
        .credentials("sessions", "wrong")
        .build()
        .unwrap();
    let err = store.load(&StoreKey::from_raw("k")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let anonymous = MemcacheStore::builder([server.addr.clone()])
        .build()
        .unwrap();
    assert!(
        anonymous.load(&StoreKey::from_raw("k")).await.is_err(),
        "no credentials, no access"
    );
}

fn key(name: &str) -> StoreKey {
    session_backends::conformance::unique_key(name)
}

#[tokio::test]
async fn ttl_on_both_sides_of_the_30_day_boundary() {
    let servers = memcached::single();
    let store = MemcacheStore::builder(servers.addrs.clone())
        .build()
        .unwrap();
    let now = OffsetDateTime::now_utc();
    for secs in [
        MAX_RELATIVE_TTL - 60,
        MAX_RELATIVE_TTL,
        MAX_RELATIVE_TTL + 60,
        90 * 86_400,
    ] {
        let k = key("ttl-boundary");
        let deadline = now + session_core::time::Duration::seconds(secs);
        store
            .save(&k, b"x", deadline, SaveCondition::Always)
            .await
            .unwrap();
        let got = store
            .load(&k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{secs} s record gone"));
        let reported = got.expires_at.expect("memcached reports the TTL");
        let off = (reported - deadline).whole_seconds().abs();
        assert!(off <= 2, "{secs} s: deadline reported {off} s off");
        assert!(store
            .touch(&k, deadline + session_core::time::Duration::DAY)
            .await
            .unwrap());
        let touched = store.load(&k).await.unwrap().unwrap().expires_at.unwrap();
        assert!(
            (touched - deadline - session_core::time::Duration::DAY)
                .whole_seconds()
                .abs()
                <= 2
        );
    }
}

#[tokio::test]
async fn oversized_record_is_refused_before_sending_and_the_old_value_stays() {
    let servers = memcached::single();
    // The server's own limit (1 MiB) is above ours: the check must be ours.
    let store = MemcacheStore::builder(servers.addrs.clone())
        .max_record_size(10_000)
        .build()
        .unwrap();
    let k = key("oversized");
    let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
    store
        .save(&k, b"old", later, SaveCondition::Always)
        .await
        .unwrap();
    let err = store
        .save(&k, &vec![0u8; 10_001], later, SaveCondition::Always)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::TooLarge {
            size: 10_001,
            limit: 10_000
        }
    ));
    assert_eq!(store.load(&k).await.unwrap().unwrap().bytes, b"old");
    // Past memcached's own 1 MiB limit with the default: still refused by us.
    let default = MemcacheStore::builder(servers.addrs.clone())
        .build()
        .unwrap();
    let err = default
        .save(&k, &vec![0u8; 2 << 20], later, SaveCondition::Always)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }));
    assert_eq!(default.load(&k).await.unwrap().unwrap().bytes, b"old");
}

#[tokio::test]
async fn keys_are_prefixed() {
    let servers = memcached::single();
    let a = MemcacheStore::builder(servers.addrs.clone())
        .key_prefix("app-a:")
        .build()
        .unwrap();
    let b = MemcacheStore::builder(servers.addrs.clone())
        .key_prefix("app-b:")
        .build()
        .unwrap();
    let k = key("prefix");
    let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
    a.save(&k, b"a", later, SaveCondition::Always)
        .await
        .unwrap();
    assert!(b.load(&k).await.unwrap().is_none());
    assert_eq!(a.load(&k).await.unwrap().unwrap().bytes, b"a");
}

/// A user's index in memcached is one record, capped: the 1001st sign-in
/// drops the least recently seen entry, whose session is then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_index_at_its_cap_drops_the_oldest() {
    use session_core::{KeyRing, SessionConfig, SessionManager, MAX_RECORD_INDEX_ENTRIES};
    let servers = memcached::single();
    let store = MemcacheStore::builder(servers.addrs.clone())
        .build()
        .unwrap();
    let manager =
        SessionManager::new(SessionConfig::server(store, KeyRing::generate().unwrap())).unwrap();
    let sign_in = || async {
        let request = manager.start_by_name(|_| None);
        let session = request.sessions().primary();
        session.sign_in("prolific").await.unwrap();
        let handle = session.user_handle().await.unwrap().unwrap();
        let headers = request.finish().await.unwrap();
        let cookie = headers[0].value().split(';').next().unwrap().to_owned();
        (handle, cookie)
    };
    let (first, first_cookie) = sign_in().await;
    for _ in 1..=MAX_RECORD_INDEX_ENTRIES {
        sign_in().await;
    }
    let listed = manager.user_sessions("prolific").await.unwrap();
    assert_eq!(listed.len(), MAX_RECORD_INDEX_ENTRIES);
    assert!(listed.iter().all(|s| s.handle != first), "the oldest went");
    let request =
        manager.start_by_name(|name| (name == "cookie").then_some(first_cookie.as_bytes()));
    assert_eq!(
        request.sessions().primary().user_handle().await.unwrap(),
        None,
        "and its session with it"
    );
    drop(servers);
}
