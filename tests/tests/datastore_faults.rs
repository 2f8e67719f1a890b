//! The demo on Redis, on PostgreSQL, and on memory+memcache+postgres tiers
//! while a server dies and comes back. Every server is a real process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_tests::datastores::{PostgresProcess, RedisProcess};
use session_tests::memcached::MemcachedProcess;
use session_tests::{DemoClient, DemoServer, Framework};

/// Loads `/counter` from 4 clients (own sessions) while `outage` runs;
/// returns (start, status, duration) of every request.
async fn under_load(
    server: &DemoServer,
    outage: impl std::future::Future<Output = ()>,
) -> Vec<(Instant, u16, Duration)> {
    let clients: Vec<Arc<DemoClient>> = (0..4).map(|_| Arc::new(server.client())).collect();
    for c in &clients {
        assert_eq!(c.get("/counter").await.status, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let loaders: Vec<_> = clients
        .iter()
        .map(|c| {
            let (c, stop, log) = (c.clone(), stop.clone(), log.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let status = c.get("/counter").await.status;
                    log.lock()
                        .unwrap()
                        .push((started, status, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    outage.await;
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    log
}

fn check(what: &str, log: &[(Instant, u16, Duration)], back: Instant, outage_seen: bool) {
    let unavailable = log.iter().filter(|(_, s, _)| *s == 503).count();
    if outage_seen {
        assert!(unavailable > 0, "{what}: the outage was not seen");
    }
    for (started, status, took) in log {
        assert!(
            *status == 200 || *status == 503,
            "{what}: only 200 or 503, got {status}"
        );
        assert!(
            *took < Duration::from_secs(2),
            "{what}: a request took {took:?}"
        );
        assert!(
            !(*status == 503 && *started > back + Duration::from_secs(1)),
            "{what}: 503 more than a second after the server came back"
        );
    }
    println!("{what}: {} requests, {unavailable} answered 503", log.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_redis_while_redis_dies_and_returns() {
    let mut redis = RedisProcess::start();
    let url = redis.url.clone();
    let server = DemoServer::start(
        Framework::Axum,
        &[("SESSION_STORE", "redis"), ("REDIS_URL", url.as_str())],
    );
    let mut back = Instant::now();
    let log = under_load(&server, async {
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
    let log = under_load(&server, async {
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
    let log = under_load(&server, async {
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
