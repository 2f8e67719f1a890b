//! `MemcacheStore` against the raw `async-memcached` client sending the same
//! meta commands to the same memcached, in the same run. The difference is
//! the store's own cost: pool checkout, timeout, key prefix, server choice.
//!
//! Uses `SESSION_TEST_MEMCACHED` when set (as `cargo xtask` does), else
//! starts memcached from `PATH` on a free port.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_memcached::{Client, MetaProtocol};
use criterion::{criterion_group, criterion_main, Criterion};
use session_backends::MemcacheStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, Store, StoreKey};

struct Server {
    addr: String,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn server() -> Server {
    if let Ok(addr) = std::env::var("SESSION_TEST_MEMCACHED") {
        return Server { addr, child: None };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-u",
        "root",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .expect("memcached in PATH (apt-get install memcached)");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..500 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Server {
        addr,
        child: Some(child),
    }
}

fn bench(c: &mut Criterion) {
    let server = server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemcacheStore::builder([server.addr.clone()])
        .pool_size(1)
        .build()
        .unwrap();
    let mut raw = rt
        .block_on(Client::new(format!("tcp://{}", server.addr)))
        .unwrap();
    let key = StoreKey::from_raw("benchkeybenchkeybenchkeybenchkeybenchkeyben");
    let raw_key = format!("session:{}", key.as_str());
    let value = vec![b'v'; 200];
    let later = || OffsetDateTime::now_utc() + Duration::from_secs(300);
    rt.block_on(store.save(&key, &value, later(), SaveCondition::Always))
        .unwrap();

    let mut group = c.benchmark_group("memcache");
    group.bench_function("load/store", |b| {
        b.iter(|| rt.block_on(store.load(black_box(&key))).unwrap())
    });
    group.bench_function("load/raw", |b| {
        b.iter(|| {
            rt.block_on(raw.meta_get(black_box(&raw_key), false, None, Some(&["v", "c", "t"])))
                .unwrap()
        })
    });
    group.bench_function("save/store", |b| {
        b.iter(|| {
            rt.block_on(store.save(&key, black_box(&value), later(), SaveCondition::Always))
                .unwrap()
        })
    });
    group.bench_function("save/raw", |b| {
        b.iter(|| {
            rt.block_on(raw.meta_set(
                black_box(&raw_key),
                value.as_slice(),
                false,
                None,
                Some(&["T300", "c"]),
            ))
            .unwrap()
        })
    });
    group.bench_function("touch/store", |b| {
        b.iter(|| rt.block_on(store.touch(black_box(&key), later())).unwrap())
    });
    group.bench_function("touch/raw", |b| {
        b.iter(|| {
            rt.block_on(raw.meta_get(black_box(&raw_key), false, None, Some(&["T300", "t"])))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
