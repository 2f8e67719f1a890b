//! Real Redis and PostgreSQL processes for tests.
//!
//! `cargo xtask ci` starts shared instances and passes their URLs in
//! `SESSION_TEST_REDIS` and `SESSION_TEST_POSTGRES`. Without them a test
//! starts a private instance; under `CI=true` their absence is a failure,
//! never a skip. Fault tests always start their own, to kill and restart.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Waits until `port` accepts connections or `child` exits.
fn wait_listening(child: &mut Child, port: u16, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port} within 20 s");
}

/// A redis-server on a loopback port, without persistence, killed when
/// dropped.
pub struct RedisProcess {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts redis-server on a free port.
    pub fn start() -> Self {
        for _ in 0..10 {
            let port = free_port();
            let mut process = RedisProcess {
                url: format!("redis://127.0.0.1:{port}"),
                port,
                child: None,
            };
            if process.try_start() {
                return process;
            }
        }
        panic!("redis-server did not start on any of 10 ports");
    }

    fn try_start(&mut self) -> bool {
        self.stop();
        // Its own folder: a replica's full sync writes an RDB file there
        // even with `--save ""`.
        let dir = std::env::temp_dir().join(format!(
            "session-redis-{}-{}",
            std::process::id(),
            self.port
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut child = Command::new(redis_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        if wait_listening(&mut child, self.port, "redis-server") {
            self.child = Some(child);
            true
        } else {
            false
        }
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
        assert!(self.try_start(), "redis-server did not restart");
    }

    /// Runs one command with `redis-cli` (beside the server binary);
    /// returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = redis_cli_output(self.port, args);
        assert!(output.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!(
            "session-redis-{}-{}",
            std::process::id(),
            self.port
        )));
    }
}

fn redis_binary() -> PathBuf {
    std::env::var_os("SESSION_TEST_REDIS_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
        .expect("redis-server not found: apt-get install redis-server, or run `cargo xtask ci`")
}

/// The directory of PostgreSQL's server binaries (`initdb`, `postgres`).
pub fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SESSION_TEST_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL not found: apt-get install postgresql, or run `cargo xtask ci`")
}

/// Runs `program` as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root); `setpriv` execs, so the child is the server.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Waits until PostgreSQL accepts sessions: it listens before it has
/// finished starting (and answers "the database system is starting up").
fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ready = Command::new(postgres_bin_dir().join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("postgres on {port} not ready within 20 s");
}

/// A private PostgreSQL server: a fresh data directory in a temporary
/// folder, on a loopback port; stopped and removed when dropped.
pub struct PostgresProcess {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PostgresProcess {
    /// Initialises a data directory and starts the server.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir =
            std::env::temp_dir().join(format!("session-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("data dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {}", dir.display());
        }
        let status = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed in {}", dir.display());
        for _ in 0..10 {
            let port = free_port();
            let mut process = PostgresProcess {
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                port,
                dir: dir.clone(),
                child: None,
            };
            if process.try_start() {
                return process;
            }
            process.dir = PathBuf::new(); // keep the directory for the next try
        }
        panic!("postgres did not start on any of 10 ports");
    }

    fn try_start(&mut self) -> bool {
        let bin = postgres_bin_dir();
        let mut command = as_postgres(&bin.join("postgres"));
        // A process group of its own (the postmaster's pid), so that
        // `pause` stops every backend with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        if wait_listening(&mut child, self.port, "postgres") {
            wait_ready(self.port);
            self.child = Some(child);
            true
        } else {
            false
        }
    }

    /// Stops the server: `fast` is a clean shutdown (SIGINT), otherwise it is
    /// killed outright (SIGKILL), as a crash would.
    pub fn stop(&mut self, fast: bool) {
        if let Some(mut child) = self.child.take() {
            let signal = if fast { "-INT" } else { "-KILL" };
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let _ = child.wait();
            if !fast {
                // The postmaster's children die with it, shortly.
                std::thread::sleep(Duration::from_millis(200));
                let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
            }
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.try_start(), "postgres did not restart");
    }

    /// Runs SQL with `psql` (beside the server binaries) as the superuser;
    /// returns its output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(postgres_bin_dir().join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stalls the server and every backend (SIGSTOP to its process
    /// group): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal_group("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal_group("-CONT");
    }

    fn signal_group(&self, signal: &str) {
        let child = self.child.as_ref().expect("postgres is running");
        let group = format!("-{}", child.id());
        let status = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {group}");
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        self.stop(true);
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A shared server from the environment, or a private one held by the
/// returned guard.
pub enum Shared<P> {
    /// Someone else's: from `cargo xtask ci`, or one a test started.
    Env(String),
    /// Started for this test.
    Own(P),
}

impl Shared<RedisProcess> {
    /// The URL to use.
    pub fn url(&self) -> &str {
        match self {
            Shared::Env(url) => url,
            Shared::Own(p) => &p.url,
        }
    }
}

impl Shared<PostgresProcess> {
    /// The URL to use.
    pub fn url(&self) -> &str {
        match self {
            Shared::Env(url) => url,
            Shared::Own(p) => &p.url,
        }
    }
}

fn from_env<P>(var: &str, start: impl FnOnce() -> P) -> Shared<P> {
    if let Ok(url) = std::env::var(var) {
        return Shared::Env(url);
    }
    assert!(
        !in_ci(),
        "{var} is not set under CI=true: run the tests through `cargo xtask ci`"
    );
    Shared::Own(start())
}

/// The shared Redis (`SESSION_TEST_REDIS`) or a private one.
pub fn redis() -> Shared<RedisProcess> {
    from_env("SESSION_TEST_REDIS", RedisProcess::start)
}

/// The shared PostgreSQL (`SESSION_TEST_POSTGRES`) or a private one.
pub fn postgres() -> Shared<PostgresProcess> {
    from_env("SESSION_TEST_POSTGRES", PostgresProcess::start)
}

/// Two ports `p` and `p + 10000` both free (a cluster node binds both: the
/// second for the cluster bus).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + (std::process::id() as u16 % 50) * 100 + rand_u16() % 5_000;
        let both = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if both {
            return port;
        }
    }
    panic!("no free pair of ports for a cluster node");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u16
}

/// One command with `redis-cli` (beside the server binary) to the server on
/// `port`.
fn redis_cli_output(port: u16, args: &[&str]) -> std::process::Output {
    let cli = redis_binary().with_file_name("redis-cli");
    Command::new(cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli")
}

/// Its output, whatever its status (a node may be on its way down).
fn redis_cli(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&redis_cli_output(port, args).stdout)
        .trim()
        .to_owned()
}

/// A local Redis Cluster: three masters and three replicas
/// (`cluster-node-timeout` 1000 ms), in a temporary folder; stopped and
/// removed when dropped.
pub struct RedisCluster {
    /// The nodes' ports, masters first as created.
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    /// Starts six nodes and joins them (`redis-cli --cluster create`).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "session-redis-cluster-{}-{}",
            std::process::id(),
            rand_u16()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for _ in 0..6 {
            let port = free_port_pair();
            let mut child = Command::new(redis_binary())
                .current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "1000"])
                // A replica may take over however long ago it last heard
                // from its master (a test kills one seconds after start).
                .args(["--cluster-replica-validity-factor", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a cluster node");
            assert!(
                wait_listening(&mut child, port, "redis cluster node"),
                "cluster node on {port}"
            );
            ports.push(port);
            children.push(Some(child));
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let cli = redis_binary().with_file_name("redis-cli");
        let status = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create");
        let cluster = RedisCluster {
            ports,
            dir,
            children,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster
            .ports
            .iter()
            .all(|p| redis_cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster not ok within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The nodes as a comma-separated list of `redis://` URLs.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    /// The ports of the nodes that are masters now, each with its key count.
    pub fn masters(&self) -> Vec<(u16, u64)> {
        self.ports
            .iter()
            .enumerate()
            .filter(|(i, _)| self.children[*i].is_some())
            .filter(|(_, p)| redis_cli(**p, &["ROLE"]).starts_with("master"))
            .map(|(_, p)| (*p, redis_cli(*p, &["DBSIZE"]).parse().unwrap_or(0)))
            .collect()
    }

    /// Kills the node on `port` (as a crash would).
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the cluster has three live masters again (a replica
    /// promoted) and says it is ok; returns when that was seen.
    pub fn wait_for_promotion(&self) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let masters = self.masters().len();
            let ok = self
                .ports
                .iter()
                .enumerate()
                .filter(|(i, _)| self.children[*i].is_some())
                .all(|(_, p)| redis_cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if masters == 3 && ok {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "no replica promoted within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, a replica and one Sentinel watching them as `NAME`
/// (`down-after-milliseconds` 1000); stopped and removed when dropped.
pub struct RedisSentinel {
    /// The primary's name the Sentinel knows.
    pub name: String,
    /// The Sentinel's port.
    pub sentinel_port: u16,
    /// The primary (index 0) and the replica (index 1).
    pub nodes: Vec<RedisProcess>,
    sentinel: Option<Child>,
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts the three and waits until the Sentinel sees the replica.
    pub fn start() -> Self {
        let primary = RedisProcess::start();
        let replica = RedisProcess::start();
        replica.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
        let dir = std::env::temp_dir().join(format!(
            "session-redis-sentinel-{}-{}",
            std::process::id(),
            rand_u16()
        ));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let name = "sessions".to_owned();
        let sentinel_port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 3000\n",
                dir.display(),
                primary.port
            ),
        )
        .expect("sentinel.conf");
        let mut child = Command::new(redis_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis sentinel");
        assert!(
            wait_listening(&mut child, sentinel_port, "redis sentinel"),
            "sentinel on {sentinel_port}"
        );
        let sentinel = RedisSentinel {
            name,
            sentinel_port,
            nodes: vec![primary, replica],
            sentinel: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !redis_cli(sentinel_port, &["SENTINEL", "replicas", &sentinel.name])
            .contains(&sentinel.nodes[1].port.to_string())
        {
            assert!(
                Instant::now() < deadline,
                "the Sentinel never saw the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sentinel
    }

    /// `redis+sentinel://127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel_port, self.name
        )
    }

    /// The port the Sentinel names as the primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let answer = redis_cli(
            self.sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", &self.name],
        );
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.sentinel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
