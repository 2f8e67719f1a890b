//! Real memcached processes for tests.
//!
//! `cargo xtask ci` starts the shared instances and passes them in
//! `SESSION_TEST_MEMCACHED` (one server) and `SESSION_TEST_MEMCACHED_CLUSTER`
//! (three servers). Without them, each test starts private instances; under
//! `CI=true` their absence is a failure, never a skip. Tests that stop and
//! restart servers always start their own.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The memcached binary: `SESSION_TEST_MEMCACHED_BIN`, or from `PATH`.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SESSION_TEST_MEMCACHED_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("memcached"))
        .find(|p| p.is_file())
        .expect(
            "memcached not found: install it (apt-get install memcached) or run `cargo xtask ci`",
        )
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A memcached process on a loopback port, killed when dropped.
pub struct MemcachedProcess {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl MemcachedProcess {
    /// Starts memcached on a free port with extra arguments.
    pub fn start(args: &[&str]) -> Self {
        for _attempt in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("free port")
                .local_addr()
                .expect("addr")
                .port();
            let mut process = MemcachedProcess {
                addr: format!("127.0.0.1:{port}"),
                port,
                args: args.iter().map(|s| s.to_string()).collect(),
                child: None,
            };
            // Another test may take the port between the probe and the start.
            if process.try_start() {
                return process;
            }
        }
        panic!("memcached did not start on any of 10 ports");
    }

    /// Kills the process (the port stays reserved for [`restart`](Self::restart)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "memcached did not restart on {}",
            self.addr
        );
    }

    /// Starts the process; false when it exits at once (port taken).
    fn try_start(&mut self) -> bool {
        self.stop();
        let mut cmd = Command::new(binary());
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ])
        .args(&self.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd.spawn().expect("start memcached");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if child.try_wait().expect("memcached status").is_some() {
                return false;
            }
            if TcpStream::connect(&self.addr).is_ok() {
                // Still ours after a moment: it bound the port.
                std::thread::sleep(Duration::from_millis(30));
                if child.try_wait().expect("memcached status").is_some() {
                    return false;
                }
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for MemcachedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Servers for a test: the shared ones from the environment, or private
/// processes that live as long as this value.
pub struct Servers {
    /// `host:port` of each server.
    pub addrs: Vec<String>,
    _owned: Vec<MemcachedProcess>,
}

fn servers_from_env(var: &str, count: usize) -> Servers {
    if let Ok(list) = std::env::var(var) {
        let addrs: Vec<String> = list.split(',').map(str::to_owned).collect();
        assert_eq!(addrs.len(), count, "{var} should list {count} servers");
        return Servers {
            addrs,
            _owned: Vec::new(),
        };
    }
    assert!(
        !in_ci(),
        "{var} is not set under CI=true: run the tests through `cargo xtask ci`"
    );
    let owned: Vec<MemcachedProcess> = (0..count).map(|_| MemcachedProcess::start(&[])).collect();
    Servers {
        addrs: owned.iter().map(|p| p.addr.clone()).collect(),
        _owned: owned,
    }
}

/// One memcached server.
pub fn single() -> Servers {
    servers_from_env("SESSION_TEST_MEMCACHED", 1)
}

/// Three memcached servers.
pub fn cluster() -> Servers {
    servers_from_env("SESSION_TEST_MEMCACHED_CLUSTER", 3)
}

/// A store that keeps the memcached processes it uses alive for as long as
/// it lives, and stops them when dropped, so a test leaves no process behind.
pub struct WithServers<G> {
    store: std::sync::Arc<dyn session_core::Store>,
    _servers: G,
}

impl<G: Send + Sync + 'static> WithServers<G> {
    /// `store`, keeping `servers` alive.
    pub fn new(store: std::sync::Arc<dyn session_core::Store>, servers: G) -> std::sync::Arc<Self> {
        std::sync::Arc::new(WithServers {
            store,
            _servers: servers,
        })
    }
}

impl<G> std::fmt::Debug for WithServers<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.store.fmt(f)
    }
}

#[session_core::async_trait]
impl<G: Send + Sync + 'static> session_core::Store for WithServers<G> {
    fn user_index(&self) -> session_core::UserIndexSupport<'_> {
        // The wrapped store's own index (a native one where it has one).
        self.store.user_index()
    }
    async fn load(
        &self,
        key: &session_core::StoreKey,
    ) -> Result<Option<session_core::StoredRecord>, session_core::StoreError> {
        self.store.load(key).await
    }
    async fn save(
        &self,
        key: &session_core::StoreKey,
        record: &[u8],
        expires_at: session_core::time::OffsetDateTime,
        condition: session_core::SaveCondition,
    ) -> Result<session_core::SaveOutcome, session_core::StoreError> {
        self.store.save(key, record, expires_at, condition).await
    }
    async fn touch(
        &self,
        key: &session_core::StoreKey,
        expires_at: session_core::time::OffsetDateTime,
    ) -> Result<bool, session_core::StoreError> {
        self.store.touch(key, expires_at).await
    }
    async fn delete(&self, key: &session_core::StoreKey) -> Result<(), session_core::StoreError> {
        self.store.delete(key).await
    }
    fn max_record_size(&self) -> Option<usize> {
        self.store.max_record_size()
    }
    fn seals_at_rest(&self) -> bool {
        self.store.seals_at_rest()
    }
}

/// A TCP proxy in front of a server that holds back some of the server's
/// replies: every `every`-th chunk the server sends (counted over all
/// connections, so a client that reconnects does not start the count
/// again) reaches the client `delay` late, and everything behind it waits
/// (order is kept). A slow server, as a client sees one. Runs on the
/// current tokio runtime until dropped.
pub struct SlowProxy {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    /// Proxies `upstream`, holding back every `every`-th reply by `delay`.
    pub async fn start(upstream: &str, delay: Duration, every: usize) -> SlowProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let addr = listener.local_addr().expect("addr").to_string();
        let upstream = upstream.to_owned();
        let chunks = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let chunks = chunks.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let (tx, mut rx) =
                        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                    let down = tokio::spawn(async move {
                        while let Some((at, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(at).await;
                            if client_write.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let held = chunks.fetch_add(1, Ordering::SeqCst).is_multiple_of(every);
                        let at =
                            tokio::time::Instant::now() + if held { delay } else { Duration::ZERO };
                        if tx.send((at, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    drop(tx);
                    let _ = down.await;
                    up.abort();
                });
            }
        });
        SlowProxy { addr, task }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
