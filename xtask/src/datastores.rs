//! Private Redis and PostgreSQL servers for `cargo xtask ci` and `bench`:
//! found (or installed from Debian's packages), started on free loopback
//! ports with their data in a temporary directory, and stopped (and the
//! directory removed) when dropped. PostgreSQL refuses to run as root, so
//! as root it runs as the `postgres` user through `setpriv`, which execs
//! (the child we hold is the server itself).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, is_root, which};

pub(crate) struct Datastores {
    redis: Server,
    postgres: Server,
    postgres_dir: PathBuf,
    redis_bin: PathBuf,
    postgres_bin: PathBuf,
}

struct Server {
    port: u16,
    child: Child,
}

impl Drop for Datastores {
    fn drop(&mut self) {
        let _ = self.redis.child.kill();
        let _ = self.redis.child.wait();
        // A fast shutdown, then the data directory goes.
        let _ = Command::new("kill")
            .args(["-INT", &self.postgres.child.id().to_string()])
            .status();
        let _ = self.postgres.child.wait();
        let _ = std::fs::remove_dir_all(&self.postgres_dir);
    }
}

/// Installs Debian packages (trying without, then with, `apt-get update`).
pub(crate) fn apt_install(packages: &[&str]) -> Result<(), String> {
    println!("installing {} from Debian's packages", packages.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend_from_slice(packages);
    if apt(&install) || (apt(&["update", "-qq"]) && apt(&install)) {
        Ok(())
    } else {
        Err(format!("`apt-get install {}` failed", packages.join(" ")))
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file() && p.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn wait_listening(child: &mut Child, port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited at start: {status}"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    Err(format!("{what} did not listen on {port}"))
}

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

impl Datastores {
    pub(crate) fn start() -> Result<Datastores, String> {
        let redis_bin = match which("redis-server") {
            Some(bin) => bin,
            None => {
                apt_install(&["redis-server"])?;
                which("redis-server").ok_or("redis-server still not found")?
            }
        };
        let postgres_bin = match postgres_bin_dir() {
            Some(dir) => dir,
            None => {
                apt_install(&["postgresql"])?;
                postgres_bin_dir().ok_or("PostgreSQL still not found")?
            }
        };

        let port = free_port()?;
        let mut child = Command::new(&redis_bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        wait_listening(&mut child, port, "redis-server")?;
        let redis = Server { port, child };

        let postgres_dir = std::env::temp_dir().join(format!("xtask-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&postgres_dir);
        std::fs::create_dir_all(&postgres_dir).map_err(|e| e.to_string())?;
        if is_root() {
            let chowned = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&postgres_dir)
                .status()
                .is_ok_and(|s| s.success());
            if !chowned {
                return Err("cannot give the PostgreSQL directory to the postgres user".into());
            }
        }
        let initdb = as_postgres(&postgres_bin.join("initdb"))
            .arg("-D")
            .arg(postgres_dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !initdb {
            return Err("initdb failed".into());
        }
        let port = free_port()?;
        let mut child = as_postgres(&postgres_bin.join("postgres"))
            .arg("-D")
            .arg(postgres_dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&postgres_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        wait_listening(&mut child, port, "postgres")?;
        // It listens before it has finished starting up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(postgres_bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
        {
            if Instant::now() > deadline {
                return Err("postgres did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let postgres = Server { port, child };
        let started = Datastores {
            redis,
            postgres,
            postgres_dir,
            redis_bin,
            postgres_bin,
        };
        println!(
            "redis {} and postgres {}",
            started.redis_url(),
            started.postgres_url()
        );
        Ok(started)
    }

    /// The servers' own version lines, for reports.
    pub(crate) fn versions(&self) -> (String, String) {
        let line = |cmd: &Path| {
            Command::new(cmd)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        (
            line(&self.redis_bin),
            line(&self.postgres_bin.join("postgres")),
        )
    }

    pub(crate) fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    pub(crate) fn postgres_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.postgres.port
        )
    }

    /// The PID of the Redis server, for CPU accounting.
    pub(crate) fn redis_pid(&self) -> u32 {
        self.redis.child.id()
    }

    /// The PID of the PostgreSQL postmaster (its backends are its children).
    pub(crate) fn postgres_pid(&self) -> u32 {
        self.postgres.child.id()
    }

    /// Passes the servers to tests (`SESSION_TEST_REDIS`,
    /// `SESSION_TEST_POSTGRES`, and the binaries for private instances).
    pub(crate) fn export(&self, cmd: &mut Command) {
        cmd.env("SESSION_TEST_REDIS", self.redis_url())
            .env("SESSION_TEST_POSTGRES", self.postgres_url())
            .env("SESSION_TEST_REDIS_BIN", &self.redis_bin)
            .env("SESSION_TEST_POSTGRES_BIN", &self.postgres_bin);
    }
}
