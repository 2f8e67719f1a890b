//! `MemcacheStore` against the floor: a blocking socket sending the same
//! meta command to the same memcached and reading the reply, in the same
//! run. One at a time, the difference is the store's own cost (queueing to
//! the connection task, parsing, server choice); 64 at once shows what the
//! multiplexed connections gain (64 commands in one write).
//!
//! Uses `SESSION_TEST_MEMCACHED` when set (as `cargo xtask` does), else
//! starts memcached from `PATH` on a free port.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use session_backends::MemcacheStore;
use session_core::time::OffsetDateTime;
use session_core::{SaveCondition, Store, StoreKey};
use std::io::{Read, Write};

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

/// One `mg` over a blocking socket: write, then read until the reply's end.
fn raw_get(conn: &mut std::net::TcpStream, command: &[u8], reply: &mut Vec<u8>) {
    conn.write_all(command).unwrap();
    reply.clear();
    let mut buf = [0u8; 4096];
    // `VA 200 ...\r\n<200 bytes>\r\n`: the reply ends with its second CRLF.
    while reply.windows(2).filter(|w| *w == b"\r\n").count() < 2 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed the connection");
        reply.extend_from_slice(&buf[..n]);
    }
}

fn bench(c: &mut Criterion) {
    let server = server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemcacheStore::builder([server.addr.clone()])
        .build()
        .unwrap();
    let mut raw = std::net::TcpStream::connect(&server.addr).unwrap();
    raw.set_nodelay(true).unwrap();
    let key = StoreKey::from_raw("benchkeybenchkeybenchkeybenchkeybenchkeyben");
    let raw_get_command = format!("mg session:{} v c t\r\n", key.as_str()).into_bytes();
    let value = vec![b'v'; 200];
    let later = || OffsetDateTime::now_utc() + Duration::from_secs(300);
    rt.block_on(store.save(&key, &value, later(), SaveCondition::Always))
        .unwrap();
    let mut reply = Vec::new();

    let mut group = c.benchmark_group("memcache");
    group.bench_function("load/store", |b| {
        b.iter(|| rt.block_on(store.load(black_box(&key))).unwrap())
    });
    group.bench_function("load/raw socket", |b| {
        b.iter(|| raw_get(&mut raw, black_box(&raw_get_command), &mut reply))
    });
    group.bench_function("load x64 concurrent/store", |b| {
        b.iter(|| {
            rt.block_on(async {
                let loads = (0..64).map(|_| store.load(&key));
                for loaded in futures_join_all(loads).await {
                    loaded.unwrap();
                }
            })
        })
    });
    group.bench_function("load x64 sequential/raw socket", |b| {
        b.iter(|| {
            for _ in 0..64 {
                raw_get(&mut raw, &raw_get_command, &mut reply);
            }
        })
    });
    group.bench_function("save/store", |b| {
        b.iter(|| {
            rt.block_on(store.save(&key, black_box(&value), later(), SaveCondition::Always))
                .unwrap()
        })
    });
    group.bench_function("touch/store", |b| {
        b.iter(|| rt.block_on(store.touch(black_box(&key), later())).unwrap())
    });
    group.finish();
}

/// Polls every future on this task (the store's calls are queued before
/// any reply is awaited), without a futures crate.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}

criterion_group!(benches, bench);
criterion_main!(benches);
