//! The Redis store against real redis-server processes: the conformance
//! suite, and the store while its server dies and comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::RedisStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, SaveOutcome, Store};
use session_tests::datastores::{self, RedisProcess};
use session_tests::memcached::WithServers;
use session_tests::outage::{writes_refused_reads_served, writes_resume};

session_backends::store_conformance_tests!(conformance, {
    let server = datastores::redis();
    let store = RedisStore::builder(server.url()).build().unwrap();
    WithServers::new(Arc::new(store), server)
});

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_then_back_within_a_second() {
    let mut server = RedisProcess::start();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let key = session_backends::conformance::unique_key("redis-fault");
    store
        .save(&key, b"v", later(), SaveCondition::Always)
        .await
        .unwrap();
    server.stop();
    for _ in 0..20 {
        let started = Instant::now();
        let err = store.load(&key).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    server.restart();
    let back = Instant::now();
    loop {
        match store
            .save(&key, b"again", later(), SaveCondition::Always)
            .await
        {
            Ok(SaveOutcome::Saved(_)) => break,
            other => {
                assert!(
                    back.elapsed() < Duration::from_secs(1),
                    "not back after 1 s: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(store.load(&key).await.unwrap().unwrap().bytes, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_built_while_redis_is_down_works_once_it_is_up() {
    let mut server = RedisProcess::start();
    server.stop();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let key = session_backends::conformance::unique_key("redis-late");
    assert!(store.load(&key).await.unwrap_err().is_unavailable());
    server.restart();
    let back = Instant::now();
    while store.load(&key).await.is_err() {
        assert!(back.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records this store did not write (a TTL too large for a date, a string
/// where a hash belongs, a missing field, a version that is no number) are
/// read as absent: a fresh session, never a panic or a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_it_did_not_write_are_refused() {
    let server = RedisProcess::start();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let key = |tag: &str| session_backends::conformance::unique_key(tag);
    let far = key("redis-far");
    store
        .save(&far, b"v", later(), SaveCondition::Always)
        .await
        .unwrap();
    let name = |k: &session_core::StoreKey| format!("session:{}", k.as_str());
    server.cli(&["PEXPIRE", &name(&far), "9000000000000000"]);
    assert_eq!(
        store.load(&far).await.unwrap(),
        None,
        "a TTL past year 9999"
    );
    let string = key("redis-string");
    server.cli(&["SET", &name(&string), "hello"]);
    assert_eq!(store.load(&string).await.unwrap(), None, "a string");
    let half = key("redis-half");
    server.cli(&["HSET", &name(&half), "v", "1"]);
    assert_eq!(store.load(&half).await.unwrap(), None, "no data field");
    let word = key("redis-word");
    server.cli(&["HSET", &name(&word), "v", "one", "d", "x"]);
    assert_eq!(
        store.load(&word).await.unwrap(),
        None,
        "a version that is a word"
    );
}

/// A primary demoted to a replica of an unreachable host answers writes
/// with READONLY: 503 (with a JSON body), reads still 200; back to a
/// primary, writes succeed again within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_server_is_a_503_and_writes_resume_when_it_is_primary_again() {
    use session_tests::{DemoServer, Framework};
    let server = RedisProcess::start();
    let demo = DemoServer::start(
        Framework::Axum,
        &[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", server.url.as_str()),
        ],
    );
    let client = demo.client();
    assert_eq!(client.get("/counter").await.status, 200);
    server.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    writes_refused_reads_served(&client, 1).await;
    server.cli(&["REPLICAOF", "NO", "ONE"]);
    writes_resume(&client, 2, Duration::from_secs(2)).await;
}

/// A user's index in Redis: one hash slot per user (the user key in braces
/// in both keys), and the user id never stored in clear, whatever it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_index_is_keyed_by_a_hash_and_on_one_slot() {
    use session_core::{KeyRing, SessionConfig, SessionManager};
    let server = RedisProcess::start();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let manager =
        SessionManager::new(SessionConfig::server(store, KeyRing::generate().unwrap())).unwrap();
    let user = format!("ada-{}\u{7}\n", "x".repeat(10_000));
    let request =
        manager.start_by_name(|name| (name == "user-agent").then_some(b"probe".as_slice()));
    request.sessions().primary().sign_in(&user).await.unwrap();
    request.finish().await.unwrap();
    let keys = server.cli(&["--scan"]);
    let index: Vec<&str> = keys.lines().filter(|k| k.contains("u{")).collect();
    assert_eq!(index.len(), 2, "a sorted set and a hash: {keys}");
    let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
    assert_eq!(tag(index[0]), tag(index[1]), "one hash slot");
    for key in keys.lines() {
        assert!(!key.contains("ada-"), "the user id is not in a key: {key}");
        let dump = server.cli(&["--no-raw", "DUMP", key]);
        assert!(!dump.contains("ada-"), "nor in a value");
    }
    assert_eq!(manager.user_sessions(&user).await.unwrap().len(), 1);
}
