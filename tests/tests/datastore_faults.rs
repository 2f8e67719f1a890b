//! The demo on Redis, on PostgreSQL, and on memory+memcache+postgres tiers
//! while a server dies and comes back. Every server is a real process.

use std::time::{Duration, Instant};

use session_tests::datastores::{PostgresProcess, RedisProcess};
use session_tests::memcached::MemcachedProcess;
use session_tests::outage::{check, under_load};
use session_tests::{DemoServer, Framework};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_redis_while_redis_dies_and_returns() {
    let mut redis = RedisProcess::start();
    let url = redis.url.clone();
    let server = DemoServer::start(
        Framework::Axum,
        &[("SESSION_STORE", "redis"), ("REDIS_URL", url.as_str())],
    );
    let mut back = Instant::now();
    let log = under_load(&server, 4, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        redis.restart();
        back = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    })
    .await;
    // Redis restarted empty: the sessions are gone, the requests go on.
    check("redis", &log, back, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_postgres_while_postgres_crashes_and_returns_keeping_every_write() {
    let mut postgres = PostgresProcess::start();
    let url = postgres.url.clone();
    let server = DemoServer::start(
        Framework::Actix,
        &[
            ("SESSION_STORE", "postgres"),
            ("DATABASE_URL", url.as_str()),
        ],
    );
    let client = server.client();
    assert_eq!(client.get("/counter").await.status, 200);
    let mut back = Instant::now();
    let log = under_load(&server, 4, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        postgres.stop(false);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        postgres.restart();
        back = Instant::now();
        tokio::time::sleep(Duration::from_millis(2000)).await;
    })
    .await;
    check("postgres", &log, back, true);
    // The session written before the crash is still there.
    assert_eq!(
        client.get("/counter/peek").await.json(),
        serde_json::json!({"n": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memcached_outage_in_front_of_postgres_does_not_show() {
    let mut memcached = MemcachedProcess::start(&[]);
    let postgres = PostgresProcess::start();
    let server = DemoServer::start(
        Framework::Rocket,
        &[
            ("SESSION_STORE", "memory+memcache+postgres"),
            ("MEMCACHE_SERVERS", memcached.addr.as_str()),
            ("DATABASE_URL", postgres.url.as_str()),
        ],
    );
    let mut back = Instant::now();
    let log = under_load(&server, 4, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        memcached.stop();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        memcached.restart();
        back = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    check("memory+memcache+postgres", &log, back, false);
    assert!(
        log.iter().all(|(_, s, _)| *s == 200),
        "a cache tier's outage shows: {:?}",
        log.iter().filter(|(_, s, _)| *s != 200).count()
    );
}
