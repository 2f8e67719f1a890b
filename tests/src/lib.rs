//! Harness for the cross-framework scenarios: starts a demo server on a free
//! loopback port with given settings, and a client that keeps the session
//! token the way a browser (cookie) or an API client (header) would.
//!
//! Adding a framework is one more [`Framework`] variant and one line in
//! [`DemoServer::start`]; the scenarios in `tests/contract.rs` then run
//! against it unchanged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod datastores;
pub mod memcached;
pub mod outage;
pub mod scenarios;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use examples::config::{DemoConfig, TransportKind, TOKEN_HEADER};

/// A demo implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `demo-axum`.
    Axum,
    /// `demo-actix`.
    Actix,
    /// `demo-rocket`.
    Rocket,
}

/// A base64 secret of 32 bytes for tests (a sentence, no repeats).
pub const SECRET_A: &str = "RGVtbyBzZWNyZXQgQTogMzIgYnl0ZXMsIHVuaXF1ZSE=";
/// Another 32-byte secret, for rotation.
pub const SECRET_B: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

/// What a scenario runs against: framework, store, transport.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The framework.
    pub framework: Framework,
    /// `SESSION_STORE`.
    pub store: &'static str,
    /// `SESSION_TRANSPORT`.
    pub transport: &'static str,
    /// `SESSION_USER_INDEX` (cookie sessions).
    pub user_index: &'static str,
    /// `REDIS_URL` of a Redis the test started (a cluster's node URLs):
    /// instead of the shared single server.
    pub redis_url: Option<&'static str>,
}

impl Setup {
    /// A setup.
    pub const fn new(framework: Framework, store: &'static str, transport: &'static str) -> Self {
        Setup {
            framework,
            store,
            transport,
            user_index: "memory",
            redis_url: None,
        }
    }

    /// This setup on the Redis at `url` (a Redis Cluster's node URLs, say).
    pub const fn redis_url(mut self, url: &'static str) -> Self {
        self.redis_url = Some(url);
        self
    }

    /// This setup with cookie sessions' user index in `store`.
    pub const fn user_index(mut self, store: &'static str) -> Self {
        self.user_index = store;
        self
    }

    /// Whether two servers on one backing share sessions and their users'
    /// index (not when either lives in a process's memory).
    pub fn shared_between_servers(&self) -> bool {
        match self.store {
            "memory" => false,
            "cookie" => self.user_index != "memory",
            _ => true,
        }
    }

    /// Whether sessions live on the server (tokens can be revoked).
    pub fn server_side(&self) -> bool {
        self.store != "cookie"
    }

    /// Whether the token travels in a cookie.
    pub fn cookie_transport(&self) -> bool {
        self.transport == "cookie"
    }

    /// What the store needs: memcached servers and a directory, shared by
    /// every server started on it (so sessions survive a restart).
    pub fn backing(&self) -> Arc<Backing> {
        let tiers = |name: &str| {
            self.store == name
                || self.store.split('+').any(|t| t == name)
                || (self.store == "cascade" && name == "memcache")
                || (self.store == "cookie" && self.user_index == name)
        };
        let memcached = tiers("memcache").then(memcached::single);
        let redis = tiers("redis").then(|| match self.redis_url {
            Some(url) => datastores::Shared::Env(url.to_owned()),
            None => datastores::redis(),
        });
        let postgres = tiers("postgres").then(datastores::postgres);
        let dir = std::env::temp_dir().join(format!(
            "session-tests-{}-{}",
            std::process::id(),
            BACKING_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        Arc::new(Backing {
            memcached,
            redis,
            postgres,
            dir,
        })
    }

    /// Starts a server with this setup on fresh backing, the fixed secret
    /// [`SECRET_A`], and `extra` variables.
    pub fn start(&self, extra: &[(&str, &str)]) -> DemoServer {
        self.start_on(&self.backing(), SECRET_A, None, extra)
    }

    /// Starts a server on `backing` with these secrets.
    pub fn start_on(
        &self,
        backing: &Arc<Backing>,
        secret: &str,
        old_secrets: Option<&str>,
        extra: &[(&str, &str)],
    ) -> DemoServer {
        let servers = backing.memcached.as_ref().map(|s| s.addrs.join(","));
        let dir = backing.dir.to_string_lossy().into_owned();
        let mut vars = vec![
            ("SESSION_STORE", self.store),
            ("SESSION_TRANSPORT", self.transport),
            ("SESSION_SECRET", secret),
            ("SESSION_DIR", dir.as_str()),
            ("SESSION_USER_INDEX", self.user_index),
        ];
        if let Some(servers) = &servers {
            vars.push(("MEMCACHE_SERVERS", servers));
        }
        if let Some(redis) = &backing.redis {
            vars.push(("REDIS_URL", redis.url()));
        }
        if let Some(postgres) = &backing.postgres {
            vars.push(("DATABASE_URL", postgres.url()));
        }
        if let Some(old) = old_secrets {
            vars.push(("SESSION_OLD_SECRETS", old));
        }
        vars.extend_from_slice(extra);
        let mut server = DemoServer::start(self.framework, &vars);
        server.backing = Some(backing.clone());
        server
    }
}

static BACKING_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Servers and files a demo's store uses; removed when the last demo using
/// them is gone.
pub struct Backing {
    memcached: Option<memcached::Servers>,
    redis: Option<datastores::Shared<datastores::RedisProcess>>,
    postgres: Option<datastores::Shared<datastores::PostgresProcess>>,
    dir: std::path::PathBuf,
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A demo server running on its own thread and runtime, like a separate
/// process; dropping it stops it at once (as a crash or restart would).
pub struct DemoServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    transport: TransportKind,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    backing: Option<Arc<Backing>>,
}

impl DemoServer {
    /// Starts `framework`'s demo with these environment variables (later
    /// entries win). Panics on a configuration error.
    pub fn start(framework: Framework, vars: &[(&str, &str)]) -> DemoServer {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = DemoConfig::from_vars(|k| map.get(k).cloned()).expect("demo configuration");
        let manager = config.session_manager().expect("demo session manager");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || run_server(framework, manager, ready, stopped));
        let addr = bound
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        DemoServer {
            base: format!("http://{addr}"),
            transport: config.transport,
            stop: Some(stop),
            thread: Some(thread),
            backing: None,
        }
    }

    /// A new client of this server, with no session.
    pub fn client(&self) -> DemoClient {
        self.client_as("session-tests")
    }

    /// A new client with this `User-Agent`.
    pub fn client_as(&self, user_agent: &str) -> DemoClient {
        DemoClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent(user_agent)
                .build()
                .expect("client"),
            base: self.base.clone(),
            transport: self.transport,
            token: Mutex::new(None),
        }
    }

    /// The same client (same token) pointed at this server.
    pub fn adopt(&self, client: &DemoClient) -> DemoClient {
        let other = self.client();
        other.set_token(client.token());
        other
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `framework`'s demo on a free loopback port until `stopped` fires,
/// reporting the address on `ready` once it accepts connections.
fn run_server(
    framework: Framework,
    manager: session_core::SessionManager,
    ready: std::sync::mpsc::Sender<SocketAddr>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let tokio_runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    match framework {
        Framework::Axum => {
            let runtime = tokio_runtime();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                ready
                    .send(listener.local_addr().expect("address"))
                    .expect("report address");
                let serve = examples::axum_demo::serve(listener, manager, std::future::pending());
                tokio::select! {
                    result = serve => result.expect("server"),
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        Framework::Actix => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            ready
                .send(listener.local_addr().expect("address"))
                .expect("report address");
            let stop = async move {
                let _ = stopped.await;
            };
            actix_web::rt::System::new()
                .block_on(examples::actix_demo::serve(listener, manager, stop, false))
                .expect("server");
        }
        Framework::Rocket => {
            // Rocket binds by itself: give it a free port and wait until it
            // listens; if another process took the port meanwhile, the launch
            // fails at once and another port is tried.
            let runtime = tokio_runtime();
            runtime.block_on(async move {
                let mut stopped = stopped;
                for attempt in 1..=5 {
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .and_then(|l| l.local_addr())
                        .expect("free port")
                        .port();
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let rocket = examples::rocket_demo::build(manager.clone(), port, false);
                    let ready = ready.clone();
                    let announce = tokio::spawn(async move {
                        while tokio::net::TcpStream::connect(addr).await.is_err() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let _ = ready.send(addr);
                    });
                    tokio::select! {
                        result = rocket.launch() => {
                            announce.abort();
                            match result {
                                Err(e) if attempt < 5 => eprintln!("rocket on {port}: {e}; another port"),
                                other => { other.expect("server"); return; }
                            }
                        }
                        _ = &mut stopped => return,
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP client of one user: keeps the `sid` cookie or the
/// `X-Session-Token` header as the server sets them.
pub struct DemoClient {
    http: reqwest::Client,
    base: String,
    transport: TransportKind,
    token: Mutex<Option<String>>,
}

impl DemoClient {
    /// The current session token, if any.
    pub fn token(&self) -> Option<String> {
        self.token.lock().expect("token lock").clone()
    }

    /// Replaces the token (to replay, tamper or forget it).
    pub fn set_token(&self, token: Option<String>) {
        *self.token.lock().expect("token lock") = token;
    }

    /// Sends a request; `body` is sent as JSON text when present.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = self.token() {
            request = match self.transport {
                TransportKind::Cookie => request.header("cookie", format!("sid={token}")),
                TransportKind::Header => request.header(TOKEN_HEADER, token),
            };
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        let response = Response {
            status,
            headers,
            body,
        };
        self.keep_token(&response);
        response
    }

    fn keep_token(&self, response: &Response) {
        match self.transport {
            TransportKind::Cookie => {
                for cookie in response.set_cookies() {
                    let Some(rest) = cookie.strip_prefix("sid=") else {
                        continue;
                    };
                    let value = rest.split(';').next().unwrap_or("");
                    let removed = value.is_empty() || cookie.contains("Max-Age=0");
                    self.set_token((!removed).then(|| value.to_owned()));
                }
            }
            TransportKind::Header => {
                if let Some(value) = response.headers.get(TOKEN_HEADER) {
                    let value = value.to_str().expect("ascii");
                    self.set_token((!value.is_empty()).then(|| value.to_owned()));
                }
            }
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Response {
        self.request("POST", path, Some(&body.to_string())).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None).await
    }

    /// `POST path` with an empty body.
    pub async fn post_empty(&self, path: &str) -> Response {
        self.request("POST", path, None).await
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: &str) -> Response {
        self.request("POST", path, Some(body)).await
    }
}
