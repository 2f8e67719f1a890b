//! One whole request through the engine, on a cookie session and on the
//! memory store: a counter's read-modify-write and a read-only peek. (Here
//! rather than in `session-core`, which knows no store.)

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use session_backends::MemoryStore;
use session_core::{KeyRing, SessionConfig, SessionKey, SessionManager};

const COUNTER: SessionKey<u64> = SessionKey::new("n");

/// One read-modify-write request (`/counter`) through the engine, without HTTP.
fn request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let keys = KeyRing::from_secret(b"test secret number 07, 32 bytes!").unwrap();
    let mut group = c.benchmark_group("request");
    let managers = [
        (
            "cookie",
            SessionManager::new(SessionConfig::cookie(keys.clone())).unwrap(),
        ),
        (
            "memory",
            SessionManager::new(SessionConfig::server(Arc::new(MemoryStore::new()), keys)).unwrap(),
        ),
    ];
    for (name, manager) in managers {
        let cookie = runtime.block_on(async {
            let req = manager.start_by_name(|_| None);
            req.primary().insert(&COUNTER, &1).await.unwrap();
            let headers = req.finish().await.unwrap();
            headers[0].value().split(';').next().unwrap().to_owned()
        });
        group.bench_function(BenchmarkId::new("counter", name), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let req = manager
                        .start_by_name(|name| (name == "cookie").then_some(cookie.as_bytes()));
                    let n = req.primary().get(&COUNTER).await.unwrap().unwrap_or(0);
                    req.primary().insert(&COUNTER, &(n + 1)).await.unwrap();
                    black_box(req.finish().await.unwrap())
                })
            })
        });
        group.bench_function(BenchmarkId::new("peek", name), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let req = manager
                        .start_by_name(|name| (name == "cookie").then_some(cookie.as_bytes()));
                    black_box(req.primary().get(&COUNTER).await.unwrap());
                    black_box(req.finish().await.unwrap())
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
