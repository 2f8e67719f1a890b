//! The Redis store beyond one server: a local Redis Cluster (three
//! masters, three replicas) and a Sentinel-managed primary with a replica,
//! each a set of real redis-server processes: the store conformance suite,
//! the demo on them (the whole demo contract on the cluster), and a primary
//! killed under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::RedisStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, Store};
use session_tests::datastores::{RedisCluster, RedisSentinel};
use session_tests::outage::{under_load, Sample};
use session_tests::{scenarios, DemoServer, Framework, Setup, SECRET_A};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(300)
}

/// Only 200 or 503 throughout; no 503 for a request started later than
/// `within` after `promoted`; and the outage was seen.
fn check_failover(what: &str, log: &[Sample], promoted: Instant, within: Duration) {
    assert!(!log.is_empty(), "{what}: no requests");
    let unavailable = log.iter().filter(|(_, s, _)| *s == 503).count();
    let last_503 = log
        .iter()
        .filter(|(_, s, _)| *s == 503)
        .map(|(started, _, _)| *started)
        .max();
    let slowest = log
        .iter()
        .map(|(_, _, took)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{what}: {} requests, {unavailable} answered 503, slowest {slowest:?}, last 503 {:?} after the promotion",
        log.len(),
        last_503.map(|t| t.saturating_duration_since(promoted)),
    );
    for (started, status, took) in log {
        assert!(
            *status == 200 || *status == 503,
            "{what}: status {status} during a failover"
        );
        if *status == 503 {
            assert!(
                started.saturating_duration_since(promoted) <= within,
                "{what}: a 503 {:?} after the promotion",
                started.saturating_duration_since(promoted)
            );
        }
        assert!(
            *took < Duration::from_secs(3),
            "{what}: a request took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_conformance_spread_over_masters_and_the_demo() {
    let cluster = RedisCluster::start();
    let store = Arc::new(RedisStore::builder(cluster.urls()).build().unwrap());
    session_backends::conformance::run_all(store.clone()).await;
    for _ in 0..200 {
        let key = session_backends::conformance::unique_key("cluster-spread");
        store
            .save(&key, b"v", later(), SaveCondition::Always)
            .await
            .unwrap();
    }
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for (port, keys) in &masters {
        assert!(*keys > 20, "master {port} holds {keys} of 200 sessions");
    }
    // The demo on the cluster: any reachable nodes, the rest discovered.
    let demo = DemoServer::start(
        Framework::Axum,
        &[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", cluster.urls().as_str()),
            ("SESSION_SECRET", SECRET_A),
        ],
    );
    let client = demo.client();
    for n in 1..=3 {
        assert_eq!(
            client.get("/counter").await.json(),
            serde_json::json!({"n": n})
        );
    }
    let login = client
        .post("/login", serde_json::json!({"user": "ada"}))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(client.get("/whoami").await.json()["user"], "ada");
    assert_eq!(
        client.get("/counter/peek").await.json(),
        serde_json::json!({"n": 3})
    );
    assert_eq!(
        client.post("/logout", serde_json::json!({})).await.status,
        204
    );
    assert_eq!(
        client.get("/counter/peek").await.json(),
        serde_json::json!({"n": 0})
    );
}

/// The demo contract, every scenario, on axum over the cluster (its
/// user-index keys on one slot per user by their hash tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_contract_on_axum() {
    let cluster = RedisCluster::start();
    let urls: &'static str = Box::leak(cluster.urls().into_boxed_str());
    let setup = Setup::new(Framework::Axum, "redis", "cookie").redis_url(urls);
    scenarios::every_scenario(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_under_load() {
    let mut cluster = RedisCluster::start();
    let demo = DemoServer::start(
        Framework::Actix,
        &[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", cluster.urls().as_str()),
            ("SESSION_SECRET", SECRET_A),
        ],
    );
    let victim = cluster.masters()[0].0;
    let mut promoted = Instant::now();
    let log = under_load(&demo, 8, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(victim);
        promoted = tokio::task::block_in_place(|| cluster.wait_for_promotion());
        tokio::time::sleep(Duration::from_secs(6)).await;
    })
    .await;
    check_failover("cluster", &log, promoted, Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_conformance_and_a_primary_killed_under_load() {
    let mut sentinel = RedisSentinel::start();
    let store = Arc::new(RedisStore::builder(sentinel.url()).build().unwrap());
    session_backends::conformance::run_all(store.clone()).await;
    let demo = DemoServer::start(
        Framework::Rocket,
        &[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", sentinel.url().as_str()),
            ("SESSION_SECRET", SECRET_A),
        ],
    );
    let first = sentinel.primary_port().expect("a primary");
    let mut promoted = Instant::now();
    let log = under_load(&demo, 8, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sentinel.nodes[0].stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        while sentinel.primary_port() == Some(first) {
            assert!(Instant::now() < deadline, "no failover within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        promoted = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
    })
    .await;
    check_failover("sentinel", &log, promoted, Duration::from_secs(3));
}
