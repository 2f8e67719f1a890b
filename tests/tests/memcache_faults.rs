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
use session_tests::outage::{check, under_load};
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

    // Back (empty, as a restarted memcached is): the prober puts it back
    // within a second, without a restart of ours.
    servers[1].restart();
    let k = on_victim[0];
    let deadline = Instant::now() + Duration::from_millis(1200);
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
                tokio::time::sleep(Duration::from_millis(20)).await;
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
        assert!(matches!(err, StoreError::Timeout(_)), "{err}");
    }
    // Three timeouts in a row: marked down, and then refused at once.
    let started = Instant::now();
    let err = store.load(&keys(1)[0]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_leaves_the_connection_in_step() {
    let server = MemcachedProcess::start(&[]);
    let store = MemcacheStore::builder([server.addr.clone()])
        .connections(1)
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
async fn many_requests_share_one_connection_within_the_in_flight_bound() {
    let server = MemcachedProcess::start(&[]);
    let store = Arc::new(
        MemcacheStore::builder([server.addr.clone()])
            .connections(1)
            .max_in_flight(4)
            .build()
            .unwrap(),
    );
    let all = keys(50);
    for (i, k) in all.iter().enumerate() {
        store
            .save(
                k,
                format!("v{i}").as_bytes(),
                later(),
                SaveCondition::Always,
            )
            .await
            .unwrap();
    }
    // 500 concurrent loads through one connection that holds at most four
    // at a time: every one is served, each with its own key's value.
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            let k = all[i % 50].clone();
            tokio::spawn(async move { (i % 50, store.load(&k).await) })
        })
        .collect();
    for t in tasks {
        let (i, loaded) = t.await.unwrap();
        assert_eq!(loaded.unwrap().unwrap().bytes, format!("v{i}").as_bytes());
    }
    assert!(!store.is_marked_down(&server.addr), "busy is not down");
}

/// A listener that accepts connections, counts them, and closes each at
/// once: a server that is "up" for TCP but drops every connection.
async fn counting_closer() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_during_an_outage_makes_no_connection_attempts_beyond_the_probers() {
    let (addr, accepted) = counting_closer().await;
    let store = Arc::new(MemcacheStore::builder([addr.clone()]).build().unwrap());
    let k = keys(1).remove(0);
    let err = store.load(&k).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(store.is_marked_down(&addr));
    // 20,000 requests over a second: each refused at once, none connects.
    let started = Instant::now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            let one = Instant::now();
            assert!(store.load(&k).await.unwrap_err().is_unavailable());
            assert!(one.elapsed() < Duration::from_millis(100));
            refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // One connection by the first request, then the prober's, ~4 a second.
    assert!(
        connections <= 1 + 8,
        "{connections} connections for {refused} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_restarted_while_idle_the_next_request_succeeds() {
    let mut server = MemcachedProcess::start(&[]);
    let store = MemcacheStore::builder([server.addr.clone()])
        .build()
        .unwrap();
    let k = keys(1).remove(0);
    store
        .save(&k, b"v", later(), SaveCondition::Always)
        .await
        .unwrap();
    server.stop();
    server.restart();
    // Let the connections see their end (as an idle server would).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        assert_eq!(
            store.load(&k).await.unwrap(),
            None,
            "restarted empty, no error"
        );
    }
    assert!(!store.is_marked_down(&server.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_under_load_while_memcached_dies_and_returns() {
    for servers in [1usize, 3] {
        let mut memcached: Vec<MemcachedProcess> =
            (0..servers).map(|_| MemcachedProcess::start(&[])).collect();
        let list = memcached
            .iter()
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",");
        let server = DemoServer::start(
            Framework::Axum,
            &[
                ("SESSION_STORE", "memcache"),
                ("MEMCACHE_SERVERS", list.as_str()),
            ],
        );
        let mut back = Instant::now();
        let log = under_load(&server, 8, async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            memcached[0].stop();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            memcached[0].restart();
            back = Instant::now();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        })
        .await;
        check(
            &format!("{servers} memcached servers"),
            &log,
            back,
            servers == 1,
        );
        // Once marked down, 503s are immediate.
        let slow_503 = log
            .iter()
            .filter(|(_, s, took)| *s == 503 && *took >= Duration::from_millis(100))
            .count();
        assert!(
            slow_503 <= 8,
            "{servers} servers: {slow_503} slow 503s (only requests in flight at the crash may wait)"
        );
    }
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
    let cases = [
        (Framework::Axum, closed.clone()),
        (Framework::Actix, closed.clone()),
        (Framework::Rocket, closed),
        (Framework::Axum, silent_addr),
    ];
    for (framework, servers) in cases {
        let server = DemoServer::start(
            framework,
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
            assert_eq!(r.status, 503, "{framework:?} {path}: {}", r.body);
            assert_eq!(r.json()["error"], "session store unavailable");
            assert_eq!(
                r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
                Some("1"),
                "{framework:?}"
            );
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

/// One of three servers is slow: a third of its replies come 400 ms late
/// (past the 250 ms timeout), the rest at once. Its fast replies must not
/// keep it "healthy": it is marked down on the rate of its timeouts, and
/// its share then fails at once instead of waiting out the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_slowly_is_marked_down() {
    use session_tests::memcached::SlowProxy;
    let servers: Vec<MemcachedProcess> = (0..3).map(|_| MemcachedProcess::start(&[])).collect();
    let slow = SlowProxy::start(&servers[2].addr, Duration::from_millis(400), 3).await;
    let addrs = vec![
        servers[0].addr.clone(),
        servers[1].addr.clone(),
        slow.addr.clone(),
    ];
    let op_timeout = Duration::from_millis(250);
    let store = MemcacheStore::builder(addrs)
        .op_timeout(op_timeout)
        .connect_timeout(op_timeout)
        .build()
        .unwrap();
    let on_slow: Vec<StoreKey> = keys(400)
        .into_iter()
        .filter(|k| store.server_for(k) == slow.addr)
        .take(60)
        .collect();
    assert!(
        on_slow.len() >= 40,
        "the ring gives the slow server its share"
    );
    let mut timeouts = 0;
    let mut marked_down_after = None;
    for (i, k) in on_slow.iter().enumerate() {
        match store.save(k, b"v", later(), SaveCondition::Always).await {
            Err(StoreError::Timeout(_)) => timeouts += 1,
            Err(e) if e.is_unavailable() => {
                marked_down_after.get_or_insert(i);
            }
            _ => {}
        }
        if store.is_marked_down(&slow.addr) {
            marked_down_after.get_or_insert(i);
            break;
        }
    }
    let after = marked_down_after.unwrap_or_else(|| {
        panic!(
            "{timeouts} timeouts in {} requests, never marked down",
            on_slow.len()
        )
    });
    assert!(after <= 40, "marked down only after {after} requests");
    // Down: its share fails at once; the other servers serve theirs.
    let started = Instant::now();
    let refused = store
        .save(&on_slow[0], b"v", later(), SaveCondition::Always)
        .await;
    assert!(
        matches!(refused, Err(ref e) if e.is_unavailable()),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    let elsewhere = keys(50)
        .into_iter()
        .find(|k| store.server_for(k) != slow.addr)
        .unwrap();
    assert!(store
        .save(&elsewhere, b"v", later(), SaveCondition::Always)
        .await
        .is_ok());
}

/// Waiting for a free in-flight slot counts against a request's timeout:
/// behind a server whose replies all come late, no call takes much more
/// than the timeout, however many wait for the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_an_in_flight_slot_counts_against_the_timeout() {
    use session_tests::memcached::SlowProxy;
    let server = MemcachedProcess::start(&[]);
    let slow = SlowProxy::start(&server.addr, Duration::from_millis(400), 1).await;
    let op_timeout = Duration::from_millis(250);
    let store = Arc::new(
        MemcacheStore::builder([slow.addr.clone()])
            .connections(1)
            .max_in_flight(2)
            .op_timeout(op_timeout)
            .connect_timeout(op_timeout)
            .build()
            .unwrap(),
    );
    let calls: Vec<_> = keys(8)
        .into_iter()
        .map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = store.load(&k).await;
                (started.elapsed(), result)
            })
        })
        .collect();
    for call in calls {
        let (took, result) = call.await.unwrap();
        assert!(
            result.is_err(),
            "a reply 400 ms late came in time: {result:?}"
        );
        assert!(
            took < op_timeout + Duration::from_millis(150),
            "a call took {took:?} with a timeout of {op_timeout:?}"
        );
    }
}
