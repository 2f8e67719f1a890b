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

/// Records this store did not write (an expiry too large for a date, in
/// the head or as the TTL of a hash of the earlier layout, a string too
/// short or of another layout, a hash with a missing field or a version
/// that is no number, a list) are read as absent: a fresh session, never a
/// panic or a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_it_did_not_write_are_refused() {
    let server = RedisProcess::start();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let key = |tag: &str| session_backends::conformance::unique_key(tag);
    let name = |k: &session_core::StoreKey| format!("session:{}", k.as_str());
    // A string whose head is `head` (Lua bytes), then "x".
    let with_head = |server: &RedisProcess, n: &str, head: &str| {
        let script = format!("redis.call('SET', KEYS[1], string.char({head}) .. 'x') return 1");
        server.cli(&["EVAL", &script, "1", n]);
    };
    type Setup<'a> = &'a dyn Fn(&RedisProcess, &str);
    let cases: [(&str, Setup<'_>); 8] = [
        ("an expiry in the head past year 9999", &|server, n| {
            with_head(
                server,
                n,
                "1, 0,0,0,0,0,0,0,5, 127,255,255,255,255,255,255,255",
            )
        }),
        ("a head of another layout", &|server, n| {
            with_head(server, n, "2, 0,0,0,0,0,0,0,5, 0,0,0,0,0,0,0,0")
        }),
        ("a short string", &|server, n| {
            server.cli(&["SET", n, "hello"]);
        }),
        ("an empty string", &|server, n| {
            server.cli(&["SET", n, ""]);
        }),
        ("a hash with a TTL past year 9999", &|server, n| {
            server.cli(&["HSET", n, "v", "1", "d", "x"]);
            server.cli(&["PEXPIRE", n, "9000000000000000"]);
        }),
        ("a hash without its data", &|server, n| {
            server.cli(&["HSET", n, "v", "1"]);
        }),
        ("a hash whose version is a word", &|server, n| {
            server.cli(&["HSET", n, "v", "one", "d", "x"]);
        }),
        ("a list", &|server, n| {
            server.cli(&["RPUSH", n, "x"]);
        }),
    ];
    for (what, setup) in cases {
        let k = key("redis-foreign");
        setup(&server, &name(&k));
        assert_eq!(store.load(&k).await.unwrap(), None, "{what}");
        // And a write over it is refused or replaces it, never an error
        // (a 500) or a panic.
        let written = store
            .save(
                &k,
                b"mine",
                later(),
                SaveCondition::IfVersion(session_core::Version(1)),
            )
            .await;
        assert!(written.is_ok(), "{what}: {written:?}");
        // Nor a touch, which leaves a value it did not write as it is.
        let before = server.cli(&["GET", &name(&k)]);
        let touched = store.touch(&k, later()).await;
        assert!(touched.is_ok(), "{what}: {touched:?}");
        // (A head of this layout, however refused, gets its expiry moved.)
        let this_layout = before.as_bytes().first() == Some(&1);
        if written.unwrap() == SaveOutcome::Conflict && !this_layout {
            assert_eq!(server.cli(&["GET", &name(&k)]), before, "{what}");
        }
    }
    // A huge TTL on a record of this layout does not matter: the expiry
    // read is the head's.
    let far = key("redis-far-ttl");
    store
        .save(&far, b"v", later(), SaveCondition::Always)
        .await
        .unwrap();
    server.cli(&["PEXPIRE", &name(&far), "9000000000000000"]);
    let loaded = store.load(&far).await.unwrap().unwrap();
    assert_eq!(loaded.bytes, b"v");
    assert!(loaded.expires_at.unwrap() < later() + Duration::from_secs(1));
}

/// A record of the earlier layout (a hash of `v` and `d`, the expiry the
/// key's TTL) is read, and the compare-and-swap that writes it next turns
/// it into a record of this layout: an upgrade signs nobody out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_earlier_layout_are_read_and_rewritten() {
    let server = RedisProcess::start();
    let store = RedisStore::builder(server.url.clone()).build().unwrap();
    let key = session_backends::conformance::unique_key("redis-earlier");
    let name = format!("session:{}", key.as_str());
    server.cli(&["HSET", &name, "v", "1764640000000007", "d", "old bytes"]);
    server.cli(&["PEXPIRE", &name, "300000"]);
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.bytes, b"old bytes");
    assert_eq!(loaded.version, session_core::Version(1764640000000007));
    let left = loaded.expires_at.unwrap() - OffsetDateTime::now_utc();
    assert!(left > Duration::from_secs(290) && left <= Duration::from_secs(300));
    // A stale version does not write over it.
    let stale = store
        .save(
            &key,
            b"stale",
            later(),
            SaveCondition::IfVersion(session_core::Version(5)),
        )
        .await
        .unwrap();
    assert_eq!(stale, SaveOutcome::Conflict);
    assert_eq!(server.cli(&["TYPE", &name]), "hash");
    let saved = store
        .save(
            &key,
            b"new bytes",
            later(),
            SaveCondition::IfVersion(loaded.version),
        )
        .await
        .unwrap();
    assert_eq!(
        saved,
        SaveOutcome::Saved(session_core::Version(1764640000000008))
    );
    assert_eq!(server.cli(&["TYPE", &name]), "string");
    let again = store.load(&key).await.unwrap().unwrap();
    assert_eq!(again.bytes, b"new bytes");
    assert_eq!(again.version, session_core::Version(1764640000000008));
    // A touch of a hash moves its TTL only.
    let other = session_backends::conformance::unique_key("redis-earlier-touch");
    let other_name = format!("session:{}", other.as_str());
    server.cli(&["HSET", &other_name, "v", "3", "d", "x"]);
    assert!(store.touch(&other, later()).await.unwrap());
    let ttl: i64 = server.cli(&["PTTL", &other_name]).parse().unwrap();
    assert!(ttl > 290_000, "{ttl}");
    assert_eq!(store.load(&other).await.unwrap().unwrap().bytes, b"x");
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
