//! What a user's-sessions operation costs each store, in round trips:
//! measured (a call-counting wrapper for the stores that keep the index in
//! records, Redis's `INFO commandstats`), printed, and held to the bounds
//! the store's data model promises. (PostgreSQL's are one statement each by
//! construction: `PostgresStore`'s `index_query`.)

#[path = "engine_common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::CountingStore;
use session_backends::RedisStore;
use session_core::{KeyRing, SessionConfig, SessionManager, Store};
use session_tests::datastores::RedisProcess;

/// Round trips of a list, an end of one session and an end of all,
/// counted by `count`, with three sessions signed in.
async fn costs<F: Fn() -> usize>(store: Arc<dyn Store>, count: F) -> [usize; 3] {
    let manager =
        SessionManager::new(SessionConfig::server(store, KeyRing::generate().unwrap())).unwrap();
    for _ in 0..3 {
        let request = manager.start_by_name(|_| None);
        request.sessions().primary().sign_in("ada").await.unwrap();
        request.finish().await.unwrap();
    }
    // Every script loaded once (a first call of a script costs a load).
    let warm = session_core::SessionHandle::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
    manager.user_sessions("warm").await.unwrap();
    manager.end_user_session("warm", &warm).await.unwrap();
    manager.end_user_sessions("warm").await.unwrap();
    let measure = async |op: &str| {
        let before = count();
        match op {
            "list" => assert_eq!(manager.user_sessions("ada").await.unwrap().len(), 3),
            "end" => {
                let first = manager.user_sessions("ada").await.unwrap()[0]
                    .handle
                    .clone();
                let after_list = count();
                assert!(manager.end_user_session("ada", &first).await.unwrap());
                return count() - after_list;
            }
            "end_all" => assert_eq!(manager.end_user_sessions("ada").await.unwrap(), 2),
            _ => unreachable!(),
        }
        count() - before
    };
    let list = measure("list").await;
    let end = measure("end").await;
    let end_all = measure("end_all").await;
    [list, end, end_all]
}

fn report(store: &str, [list, end, end_all]: [usize; 3]) {
    println!("{store}: list {list}, end {end}, end all {end_all} round trips");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_redis_cost_what_their_data_models_promise() {
    let counted = Arc::new(CountingStore::default());
    let c = counted.clone();
    let calls = move || {
        [&c.loads, &c.saves, &c.touches, &c.deletes]
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum()
    };
    let records = costs(counted, calls).await;
    report("records (memory, file, memcached)", records);
    assert_eq!(records, [1, 2, 2], "a load; a load and a compare-and-swap");

    let redis = RedisProcess::start();
    let calls = |server: &RedisProcess| -> usize {
        server
            .cli(&["INFO", "commandstats"])
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    let store = Arc::new(RedisStore::builder(redis.url.clone()).build().unwrap());
    let measured = costs(store, || calls(&redis)).await;
    report("redis", measured);
    assert_eq!(measured, [1, 1, 1], "one script each");
}
