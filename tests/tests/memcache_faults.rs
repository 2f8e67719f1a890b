//! The memcached store when servers die, hang, come back, or run out of
//! connections; and the demo when its store is unreachable. Every server
//! here is a real memcached process (or, for the silent server, a real TCP
//! listener that never answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::MemcacheStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, SaveOutcome, Store, StoreError, StoreKey};
use session_tests::memcached::MemcachedProcess;
use session_tests::{DemoServer, Framework};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(300)
}

fn keys(n: usize) -> Vec<StoreKey> {
    (0..n)
        .map(|_| session_backends::conformance::unique_key("fault"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_three_servers_affects_only_its_share_and_recovers() {
    let mut servers: Vec<MemcachedProcess> = (0..3).map(|_| MemcachedProcess::start(&[])).collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let op_timeout = Duration::from_millis(300);
    let store = MemcacheStore::builder(addrs.clone())
        .op_timeout(op_timeout)
        .connect_timeout(op_timeout)
        .retry_backoff(Duration::from_millis(200), Duration::from_millis(400))
        .build()
        .unwrap();
    let all = keys(300);
    for k in &all {
        store
            .save(k, b"v", later(), SaveCondition::Always)
            .await
            .unwrap();
    }
    let victim = addrs[1].clone();
    let on_victim: Vec<&StoreKey> = all
        .iter()
        .filter(|k| store.server_for(k) == victim)
        .collect();
    assert!(
        (50..=150).contains(&on_victim.len()),
        "about a third on each server: {}",
        on_victim.len()
    );

    servers[1].stop();
    for k in &all {
        let started = Instant::now();
        let result = store.load(k).await;
        assert!(
            started.elapsed() < op_timeout * 3,
            "a request hung for {:?}",
            started.elapsed()
        );
        if store.server_for(k) == victim {
            let err = result.expect_err("the dead server's sessions fail");
            assert!(err.is_unavailable(), "{err}");
        } else {
            assert_eq!(
                result.unwrap().unwrap().bytes,
                b"v",
                "other servers' sessions keep working"
            );
        }
    }
    assert!(store.is_marked_down(&victim));

    // Back (empty, as a restarted memcached is): used again without a restart of ours.
    servers[1].restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let k = on_victim[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store
            .save(k, b"again", later(), SaveCondition::Always)
            .await
        {
            Ok(SaveOutcome::Saved(_)) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "server never used again: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(store.load(k).await.unwrap().unwrap().bytes, b"again");
    assert!(!store.is_marked_down(&victim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections, reads, and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let store = MemcacheStore::builder([addr])
        .op_timeout(timeout)
        .build()
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.load(&keys(1)[0]).await.unwrap_err();
        assert!(
            started.elapsed() < timeout * 3,
            "took {:?}",
            started.elapsed()
        );
        assert!(err.is_unavailable(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_does_not_poison_the_pool() {
    let server = MemcachedProcess::start(&[]);
    let store = MemcacheStore::builder([server.addr.clone()])
        .pool_size(1)
        .build()
        .unwrap();
    let k = keys(1).remove(0);
    store
        .save(&k, b"first", later(), SaveCondition::Always)
        .await
        .unwrap();
    // Cancel calls at every stage of their life on the one connection.
    for micros in [1, 10, 50, 100, 200, 500, 1000] {
        let big = vec![b'x'; 512 * 1024];
        let _ = tokio::time::timeout(
            Duration::from_micros(micros),
            store.save(&k, &big, later(), SaveCondition::Always),
        )
        .await;
        let got = store.load(&k).await.unwrap().unwrap();
        assert!(
            got.bytes == b"first" || got.bytes == big,
            "a reply was read by the wrong call"
        );
        store
            .save(&k, b"first", later(), SaveCondition::Always)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_waits_or_fails_as_configured() {
    let server = MemcachedProcess::start(&[]);
    let k = keys(1).remove(0);
    let waiting = Arc::new(
        MemcacheStore::builder([server.addr.clone()])
            .pool_size(4)
            .pool_wait_timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    waiting
        .save(&k, b"v", later(), SaveCondition::Always)
        .await
        .unwrap();
    let run = |store: Arc<MemcacheStore>| {
        let k = k.clone();
        async move {
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let store = store.clone();
                    let k = k.clone();
                    tokio::spawn(async move { store.load(&k).await.map(|r| r.is_some()) })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        }
    };
    let results = run(waiting).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(true))),
        "with a long wait, all 200 are served"
    );

    let failing = Arc::new(
        MemcacheStore::builder([server.addr.clone()])
            .pool_size(1)
            .pool_wait_timeout(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let results = run(failing.clone()).await;
    let served = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Timeout(_))))
        .count();
    assert_eq!(
        served + refused,
        200,
        "every request is served or refused with a timeout"
    );
    assert!(
        served >= 1 && refused >= 1,
        "served {served}, refused {refused}"
    );
    assert!(
        !failing.is_marked_down(&server.addr),
        "a busy pool is not a dead server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_503_within_two_seconds_when_memcached_is_unreachable() {
    // A port with nothing listening, and one that never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    for servers in [closed, silent_addr] {
        let server = DemoServer::start(
            Framework::Axum,
            &[
                ("SESSION_STORE", "memcache"),
                ("MEMCACHE_SERVERS", servers.as_str()),
            ],
        );
        let client = server.client();
        // Without a token, reads never reach the store; writes do.
        for path in ["/counter", "/counter"] {
            let started = Instant::now();
            let r = client.get(path).await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} took {:?}",
                started.elapsed()
            );
            assert_eq!(r.status, 503, "{path}: {}", r.body);
            assert_eq!(r.json()["error"], "session store unavailable");
        }
        let r = client.get("/health").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    drop(silent);

    // With a session, reads reach the store too: stop memcached under it.
    let mut memcached = MemcachedProcess::start(&[]);
    let server = DemoServer::start(
        Framework::Axum,
        &[
            ("SESSION_STORE", "memcache"),
            ("MEMCACHE_SERVERS", memcached.addr.as_str()),
        ],
    );
    let client = server.client();
    client
        .post("/login", serde_json::json!({"user": "ada"}))
        .await;
    assert_eq!(client.get("/whoami").await.status, 200);
    memcached.stop();
    for path in ["/whoami", "/counter/peek", "/flash"] {
        let started = Instant::now();
        let r = client.get(path).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(r.status, 503, "{path}: {}", r.body);
    }
    assert_eq!(client.get("/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_keeps_serving_from_files_when_memcached_is_down() {
    let mut memcached = MemcachedProcess::start(&[]);
    let dir = std::env::temp_dir().join(format!("cascade-fault-{}", std::process::id()));
    let vars = [
        ("SESSION_STORE", "cascade"),
        ("MEMCACHE_SERVERS", memcached.addr.as_str()),
        ("SESSION_DIR", dir.to_str().unwrap()),
        ("SESSION_SECRET", session_tests::SECRET_A),
    ];
    let server = DemoServer::start(Framework::Axum, &vars);
    let client = server.client();
    client.get("/counter").await;
    memcached.stop();
    for n in 2..=4 {
        let r = client.get("/counter").await;
        assert_eq!((r.status, r.json()), (200, serde_json::json!({"n": n})));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
