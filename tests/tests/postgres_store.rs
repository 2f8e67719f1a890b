//! The PostgreSQL store against real PostgreSQL servers: the conformance
//! suite, migrations, the sweeper, and restarts (clean and crash) that keep
//! every acknowledged write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::PostgresStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, SaveOutcome, Store, StoreKey};
use session_tests::datastores::{self, PostgresProcess};
use session_tests::memcached::WithServers;
use session_tests::outage::{writes_refused_reads_served, writes_resume};

session_backends::store_conformance_tests!(conformance, {
    let server = datastores::postgres();
    let store = PostgresStore::builder(server.url()).build().unwrap();
    store.migrate().await.unwrap();
    WithServers::new(Arc::new(store), server)
});

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + session_core::time::Duration::seconds(secs)
}

fn key(tag: &str) -> StoreKey {
    session_backends::conformance::unique_key(tag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_in_parallel_with_custom_names() {
    let server = datastores::postgres();
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| {
            PostgresStore::builder(server.url())
                .schema("app_sessions")
                .table("web")
                .build()
                .unwrap()
        })
        .collect();
    let runs: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    stores[0].migrate().await.unwrap();
    let k = key("pg-names");
    stores[0]
        .save(&k, b"v", at(60), SaveCondition::Always)
        .await
        .unwrap();
    assert_eq!(stores[1].load(&k).await.unwrap().unwrap().bytes, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_expired_rows_in_batches_from_several_servers() {
    let server = datastores::postgres();
    let store = PostgresStore::builder(server.url())
        .table("swept")
        .sweep_interval(None)
        .build()
        .unwrap();
    store.migrate().await.unwrap();
    store.sweep_expired().await.unwrap();
    for i in 0..2500 {
        let deadline = if i % 5 == 0 { at(600) } else { at(1) };
        store
            .save(&key("pg-sweep"), b"v", deadline, SaveCondition::Always)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = store.clone();
    let (a, b) = tokio::join!(store.sweep_expired(), other.sweep_expired());
    assert_eq!(a.unwrap() + b.unwrap(), 2000, "every expired row, once");
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_every_acknowledged_write_and_unavailability_is_a_503() {
    let mut server = PostgresProcess::start();
    let store = PostgresStore::builder(server.url.clone()).build().unwrap();
    store.migrate().await.unwrap();
    for fast in [true, false] {
        let keys: Vec<StoreKey> = (0..50).map(|_| key("pg-durable")).collect();
        for k in &keys {
            let saved = store
                .save(k, b"kept", at(600), SaveCondition::IfAbsent)
                .await;
            assert!(matches!(saved, Ok(SaveOutcome::Saved(_))), "{saved:?}");
        }
        server.stop(fast);
        let started = Instant::now();
        let err = store.load(&keys[0]).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        server.restart();
        let back = Instant::now();
        while store.load(&keys[0]).await.is_err() {
            assert!(
                back.elapsed() < Duration::from_secs(1),
                "not back after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for k in &keys {
            let loaded = store.load(k).await.unwrap();
            assert_eq!(
                loaded.map(|r| r.bytes),
                Some(b"kept".to_vec()),
                "acknowledged write lost (fast shutdown: {fast})"
            );
        }
    }
}

/// Rows this store did not write (an `expires_at` of 'infinity' or past
/// year 9999) read as absent, never a panic; '-infinity' is expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_it_did_not_write_are_refused() {
    let server = PostgresProcess::start();
    let store = PostgresStore::builder(server.url.clone()).build().unwrap();
    store.migrate().await.unwrap();
    for (tag, expires) in [
        ("pg-infinity", "'infinity'"),
        ("pg-minus-infinity", "'-infinity'"),
        ("pg-far", "'200000-01-01 00:00:00+00'"),
    ] {
        let k = key(tag);
        store
            .save(&k, b"v", at(300), SaveCondition::Always)
            .await
            .unwrap();
        server.psql(&format!(
            "UPDATE sessions SET expires_at = {expires} WHERE key = convert_to('{}', 'UTF8')",
            k.as_str()
        ));
        assert_eq!(store.load(&k).await.unwrap(), None, "{tag}");
    }
}

/// A server made read-only (as a demoted primary is): writes are 503 with
/// a JSON body, reads 200; writable again, writes succeed within 2 s. The
/// demo creates its table, so this also shows no DDL is re-run while the
/// server is read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_is_a_503_for_writes_and_writes_resume() {
    use session_tests::{DemoServer, Framework};
    let server = PostgresProcess::start();
    let demo = DemoServer::start(
        Framework::Rocket,
        &[
            ("SESSION_STORE", "postgres"),
            ("DATABASE_URL", server.url.as_str()),
            ("SESSION_SECRET", session_tests::SECRET_A),
        ],
    );
    let client = demo.client();
    assert_eq!(client.get("/counter").await.status, 200);
    let set_read_only = |on: &str| {
        server.psql(&format!(
            "ALTER SYSTEM SET default_transaction_read_only = {on}"
        ));
        server.psql("SELECT pg_reload_conf()");
        server.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        );
    };
    set_read_only("on");
    // A restarted demo (connecting while the server is read-only) too.
    let fresh = DemoServer::start(
        Framework::Axum,
        &[
            ("SESSION_STORE", "postgres"),
            ("DATABASE_URL", server.url.as_str()),
            ("SESSION_SECRET", session_tests::SECRET_A),
        ],
    );
    for demo in [&demo, &fresh] {
        writes_refused_reads_served(&demo.adopt(&client), 1).await;
    }
    set_read_only("off");
    writes_resume(&client, 2, Duration::from_secs(2)).await;
}
