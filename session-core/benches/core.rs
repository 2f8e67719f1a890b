//! Sealing, opening and codecs on a 200-byte and a 2 KiB session, and one
//! whole request through the engine.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use session_backends::MemoryStore;
use session_core::internals;
use session_core::{Codec, KeyRing, SealMode, SessionConfig, SessionKey, SessionManager};

const NOW: i64 = 1_800_000_000;
const COUNTER: SessionKey<u64> = SessionKey::new("n");

/// A session of about `size` encoded bytes: a user, a counter and text.
fn values(size: usize) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("user", serde_json::json!("ada@example.com")),
        ("n", serde_json::json!(42)),
        ("roles", serde_json::json!(["reader", "writer"])),
        (
            "note",
            serde_json::json!("x".repeat(size.saturating_sub(70))),
        ),
    ]
}

fn sizes() -> [(&'static str, usize); 2] {
    [("200B", 200), ("2KiB", 2048)]
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, size) in sizes() {
        let values = values(size);
        for codec in [Codec::Cbor, Codec::Json] {
            let bytes = internals::encode_values(codec, &values).unwrap();
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("encode/{}", codec.name()), label),
                &values,
                |b, v| b.iter(|| internals::encode_values(codec, black_box(v)).unwrap()),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("decode/{}", codec.name()), label),
                &bytes,
                |b, bytes| b.iter(|| internals::decode(black_box(bytes)).unwrap()),
            );
        }
    }
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let ring = KeyRing::from_secret(b"test secret number 07, 32 bytes!").unwrap();
    let mut group = c.benchmark_group("seal");
    for (label, size) in sizes() {
        let payload = internals::encode_values(Codec::Cbor, &values(size)).unwrap();
        group.throughput(Throughput::Bytes(payload.len() as u64));
        for (mode_name, mode) in [("private", SealMode::Private), ("signed", SealMode::Signed)] {
            group.bench_with_input(
                BenchmarkId::new(format!("seal/{mode_name}"), label),
                &payload,
                |b, p| {
                    b.iter(|| {
                        internals::CookieSeal {
                            ring: &ring,
                            mode,
                            name: "sid",
                        }
                        .seal(NOW, black_box(p))
                    })
                },
            );
            let token = internals::CookieSeal {
                ring: &ring,
                mode,
                name: "sid",
            }
            .seal(NOW, &payload);
            group.bench_with_input(
                BenchmarkId::new(format!("open/{mode_name}"), label),
                &token,
                |b, t| {
                    b.iter(|| {
                        internals::CookieSeal {
                            ring: &ring,
                            mode,
                            name: "sid",
                        }
                        .open(NOW, black_box(t))
                        .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

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

criterion_group!(benches, codecs, sealing, request);
criterion_main!(benches);
