//! Load on a demo while a store goes away and comes back, and the checks
//! every such fault test makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{DemoClient, DemoServer};

/// One request under load: when it started, its status, how long it took.
pub type Sample = (Instant, u16, Duration);

/// Loads `/counter` from `clients` clients (each its own session) while
/// `outage` runs; returns every request.
pub async fn under_load(
    server: &DemoServer,
    clients: usize,
    outage: impl std::future::Future<Output = ()>,
) -> Vec<Sample> {
    let clients: Vec<Arc<DemoClient>> = (0..clients).map(|_| Arc::new(server.client())).collect();
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

/// Only 200 or 503, none slower than 2 s, no 503 later than a second after
/// the store came `back`; and, when `outage_seen`, at least one 503.
pub fn check(what: &str, log: &[Sample], back: Instant, outage_seen: bool) {
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
    // For the record: the slowest answer, and the last 503 after the store came back.
    let slowest = log
        .iter()
        .map(|(_, _, took)| *took)
        .max()
        .unwrap_or_default();
    let last_503_after_back = log
        .iter()
        .filter(|(started, status, _)| *status == 503 && *started > back)
        .map(|(started, _, _)| *started - back)
        .max();
    println!(
        "{what}: {} requests, {unavailable} answered 503, slowest {slowest:?}, \
         last 503 {last_503_after_back:?} after the store was back",
        log.len()
    );
}

/// While the store takes no writes (a read-only or demoted server): a
/// `/counter` is a 503 with a JSON body, a `/counter/peek` still reads `n`.
pub async fn writes_refused_reads_served(client: &DemoClient, n: u64) {
    let write = client.get("/counter").await;
    assert_eq!(write.status, 503, "{}", write.body);
    assert!(write.body.starts_with('{'), "{}", write.body);
    let read = client.get("/counter/peek").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), serde_json::json!({ "n": n }));
}

/// Once the store takes writes again: `/counter` answers 503 at most until
/// `within` has passed, then 200 with `n`.
pub async fn writes_resume(client: &DemoClient, n: u64, within: Duration) {
    let back = Instant::now();
    loop {
        let r = client.get("/counter").await;
        if r.status == 200 {
            assert_eq!(r.json(), serde_json::json!({ "n": n }));
            return;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(back.elapsed() < within, "writes not back in {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
