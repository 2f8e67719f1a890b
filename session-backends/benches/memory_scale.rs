//! The memory store at scale: resident memory per session and load/save
//! latency percentiles at 1k, 100k and 1M sessions of 200 bytes, and the
//! longest a load waits while the sweeper removes half a million expired
//! sessions. Run with `cargo bench -p session-backends --bench memory_scale`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_backends::MemoryStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, Store, StoreKey};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A store key like the engine's: 43 characters of base64url.
fn key(i: u64) -> StoreKey {
    let mut text = format!("{i:020}");
    while text.len() < 43 {
        text.push('x');
    }
    StoreKey::from_raw(text)
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "p50 {:>7.0?}  p99 {:>7.0?}  p99.9 {:>7.0?}",
        at(0.5),
        at(0.99),
        at(0.999)
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::builder()
        .max_sessions(2_000_000)
        .sweep_interval(Duration::from_secs(3600))
        .build();
    let value = vec![b'v'; 200];
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let baseline = resident_bytes();
    let mut filled = 0u64;
    println!("| sessions | resident bytes per session | load | save |");
    println!("| ---: | ---: | --- | --- |");
    for target in [1_000u64, 100_000, 1_000_000] {
        rt.block_on(async {
            while filled < target {
                store
                    .save(&key(filled), &value, later, SaveCondition::Always)
                    .await
                    .expect("save");
                filled += 1;
            }
        });
        let per_session = (resident_bytes().saturating_sub(baseline)) / target;
        let mut loads = Vec::with_capacity(20_000);
        let mut saves = Vec::with_capacity(20_000);
        rt.block_on(async {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = key(x % target);
                let t = Instant::now();
                std::hint::black_box(store.load(&k).await.expect("load"));
                loads.push(t.elapsed());
                // A rolling session's deadline moves with every save, so the
                // expiry index is updated as in real use.
                let deadline = OffsetDateTime::now_utc() + Duration::from_secs(3600);
                let t = Instant::now();
                store
                    .save(&k, &value, deadline, SaveCondition::Always)
                    .await
                    .expect("save");
                saves.push(t.elapsed());
            }
        });
        println!(
            "| {target} | {per_session} | {} | {} |",
            percentiles(loads),
            percentiles(saves)
        );
    }

    // Half a million sessions that expire, swept while another thread loads.
    let soon = OffsetDateTime::now_utc() + Duration::from_millis(200);
    rt.block_on(async {
        for i in 0..500_000u64 {
            store
                .save(&key(10_000_000 + i), &value, soon, SaveCondition::Always)
                .await
                .expect("save");
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let mut i = 0u64;
            let mut loads = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::hint::black_box(rt.block_on(store.load(&key(i % 1_000_000))).expect("load"));
                loads.push(t.elapsed());
                i += 7919;
            }
            loads
        })
    };
    let t = Instant::now();
    let removed = store.sweep_expired();
    let sweep_time = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let loads = reader.join().expect("reader");
    let worst = loads.iter().max().copied().unwrap_or_default();
    println!();
    // The maximum includes the reader being descheduled on a busy machine;
    // the percentiles show what the sweeper's lock holds cost a load.
    println!(
        "sweep: removed {removed} expired sessions in {sweep_time:.0?}; {} loads meanwhile: {}  max {worst:.0?}",
        loads.len(),
        percentiles(loads)
    );
}
