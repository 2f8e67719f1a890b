//! Sealing, opening and codecs on a 200-byte and a 2 KiB session (whole
//! requests through the engine are measured in `session-backends`' `engine`
//! bench, beside the stores).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use session_core::internals;
use session_core::{Codec, KeyRing, SealMode};

const NOW: i64 = 1_800_000_000;

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

criterion_group!(benches, codecs, sealing);
criterion_main!(benches);
