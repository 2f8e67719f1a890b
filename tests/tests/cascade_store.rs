//! The cascade store over real tiers: memory in front of memcached in front
//! of files.

use std::sync::Arc;
use std::time::Duration;

use session_backends::{CascadeStore, FileStore, MemcacheStore, MemoryStore};
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, SaveOutcome, Store, StoreKey};
use session_tests::memcached;

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "cascade-test-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    ))
}

struct Tiers {
    memory: Arc<MemoryStore>,
    memcache: Arc<MemcacheStore>,
    file: Arc<FileStore>,
    _servers: memcached::Servers,
}

fn tiers(memcache_limit: usize) -> Tiers {
    let servers = memcached::single();
    Tiers {
        memory: Arc::new(MemoryStore::new()),
        memcache: Arc::new(
            MemcacheStore::builder(servers.addrs.clone())
                .max_record_size(memcache_limit)
                .build()
                .unwrap(),
        ),
        file: Arc::new(FileStore::builder(temp_dir()).build().unwrap()),
        _servers: servers,
    }
}

fn cascade(t: &Tiers, cache_ttl: Duration) -> CascadeStore {
    CascadeStore::builder()
        .cache_tier(t.memory.clone(), cache_ttl)
        .tier(t.memcache.clone())
        .tier(t.file.clone())
        .build()
        .unwrap()
}

session_backends::store_conformance_tests!(memory_memcache_file, {
    let t = tiers(session_backends::DEFAULT_MAX_MEMCACHE_RECORD);
    let store = cascade(&t, Duration::from_secs(30));
    session_tests::memcached::WithServers::new(Arc::new(store), t)
});

fn key() -> StoreKey {
    session_backends::conformance::unique_key("cascade")
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_every_tier_and_misses_fill_back() {
    let t = tiers(session_backends::DEFAULT_MAX_MEMCACHE_RECORD);
    let store = cascade(&t, Duration::from_secs(30));
    let k = key();
    store
        .save(&k, b"value", later(), SaveCondition::IfAbsent)
        .await
        .unwrap();
    for tier in [
        t.memory.clone() as Arc<dyn Store>,
        t.memcache.clone(),
        t.file.clone(),
    ] {
        assert!(
            tier.load(&k).await.unwrap().is_some(),
            "{tier:?} has no copy"
        );
    }
    // Lose the faster copies: the read comes from files and fills them back.
    t.memory.delete(&k).await.unwrap();
    t.memcache.delete(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().unwrap().bytes, b"value");
    assert!(
        t.memory.load(&k).await.unwrap().is_some(),
        "filled back into memory"
    );
    assert!(
        t.memcache.load(&k).await.unwrap().is_some(),
        "filled back into memcached"
    );
    store.delete(&k).await.unwrap();
    for tier in [
        t.memory.clone() as Arc<dyn Store>,
        t.memcache.clone(),
        t.file.clone(),
    ] {
        assert!(
            tier.load(&k).await.unwrap().is_none(),
            "{tier:?} kept a deleted record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_is_skipped_for_records_over_its_limit() {
    let t = tiers(1000);
    let store = cascade(&t, Duration::from_secs(30));
    let k = key();
    store
        .save(&k, b"small", later(), SaveCondition::Always)
        .await
        .unwrap();
    assert!(t.memcache.load(&k).await.unwrap().is_some());
    let big = vec![b'x'; 5000];
    store
        .save(&k, &big, later(), SaveCondition::Always)
        .await
        .unwrap();
    assert!(
        t.memcache.load(&k).await.unwrap().is_none(),
        "stale small copy dropped, big one skipped"
    );
    t.memory.delete(&k).await.unwrap();
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().bytes,
        big,
        "served from files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_local_tier_serves_stale_data_only_until_its_ttl() {
    let t = tiers(session_backends::DEFAULT_MAX_MEMCACHE_RECORD);
    // Two processes: each its own memory tier, sharing memcached and files.
    let here = cascade(&t, Duration::from_secs(1));
    let other_memory = Arc::new(MemoryStore::new());
    let there = CascadeStore::builder()
        .cache_tier(other_memory, Duration::from_secs(1))
        .tier(t.memcache.clone())
        .tier(t.file.clone())
        .build()
        .unwrap();
    let k = key();
    let v1 = match here
        .save(&k, b"one", later(), SaveCondition::IfAbsent)
        .await
        .unwrap()
    {
        SaveOutcome::Saved(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(there.load(&k).await.unwrap().unwrap().bytes, b"one");
    there
        .save(&k, b"two", later(), SaveCondition::IfVersion(v1))
        .await
        .unwrap();
    assert_eq!(
        here.load(&k).await.unwrap().unwrap().bytes,
        b"one",
        "stale from the local tier"
    );
    // A write from the stale view is refused by the authoritative tier...
    let stale = here
        .save(&k, b"three", later(), SaveCondition::IfVersion(v1))
        .await
        .unwrap();
    assert_eq!(stale, SaveOutcome::Conflict);
    // ...and drops the stale copy, so the retry reads fresh data.
    assert_eq!(here.load(&k).await.unwrap().unwrap().bytes, b"two");
    // Without a write, staleness ends with the tier's TTL.
    let fresh = there.load(&k).await.unwrap().unwrap();
    there
        .save(
            &k,
            b"four",
            later(),
            SaveCondition::IfVersion(fresh.version),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(here.load(&k).await.unwrap().unwrap().bytes, b"four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_writes_the_slowest_tier_after_returning() {
    let t = tiers(session_backends::DEFAULT_MAX_MEMCACHE_RECORD);
    let store = CascadeStore::builder()
        .tier(t.memcache.clone())
        .tier(t.file.clone())
        .write_behind(true)
        .build()
        .unwrap();
    let k = key();
    store
        .save(&k, b"v", later(), SaveCondition::IfAbsent)
        .await
        .unwrap();
    assert!(t.memcache.load(&k).await.unwrap().is_some());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.file.load(&k).await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "background write never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
