//! The Redis store against real redis-server processes: the conformance
//! suite, and the store while its server dies and comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::RedisStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, SaveOutcome, Store};
use session_tests::datastores::{self, RedisProcess};
use session_tests::memcached::WithServers;

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
