//! Instructions per request, counted by callgrind: the figure this noisy,
//! shared machine repeats best (within about 1-3 % from run to run).
//!
//! Each in-process server (ours on the memory and cookie stores, and the
//! peers of the same frameworks) runs under `valgrind --tool=callgrind`. For
//! each route: warm up over one keep-alive connection, zero the counters
//! (`callgrind_control -z`), send [`MEASURED`] requests over that connection
//! one after another, dump (`callgrind_control -d`) and divide the dump's
//! instruction total by the request count. The count covers every thread of
//! the server (HTTP parsing, routing, the session layer, the handler), the
//! client's work is not in it, and a route's count minus `/health`'s is what
//! the session costs.
//!
//! Valgrind emulates the CPU: it hides extensions such as SHA-NI, so a
//! library that detects them at run time (sha2) runs its portable code
//! here. Read the counts as the work each server's code asks for, not as
//! native cycles; wall-clock and CPU time are in the wrk columns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::datastores::apt_install;
use crate::{free_port, which, workspace_root};

/// Requests counted per route.
pub(crate) const MEASURED: u64 = 200;
const WARM_UP: u64 = 20;

/// Finds valgrind, installing the Debian package when it is missing.
pub(crate) fn ensure_valgrind() -> Result<(), String> {
    if which("valgrind").is_some() && which("callgrind_control").is_some() {
        return Ok(());
    }
    println!("valgrind not found: installing the Debian package");
    apt_install(&["valgrind"])?;
    which("callgrind_control")
        .map(|_| ())
        .ok_or_else(|| "valgrind still not found".into())
}

/// A server running under callgrind.
struct Profiled {
    child: Child,
    port: u16,
    out: PathBuf,
    dumps: u32,
}

impl Drop for Profiled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for n in 0..=self.dumps {
            let _ = std::fs::remove_file(self.dump_path(n));
        }
    }
}

impl Profiled {
    fn dump_path(&self, n: u32) -> PathBuf {
        if n == 0 {
            self.out.clone()
        } else {
            PathBuf::from(format!("{}.{n}", self.out.display()))
        }
    }

    fn control(&self, flag: &str) -> Result<(), String> {
        let status = Command::new("callgrind_control")
            .arg(flag)
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("callgrind_control: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("callgrind_control {flag} failed"))
        }
    }

    /// Instructions per request of `route`, sent with `cookie`.
    fn count(&mut self, route: &str, cookie: &str) -> Result<u64, String> {
        let mut client = Client::connect(self.port)?;
        for _ in 0..WARM_UP {
            client.get(route, cookie)?;
        }
        self.control("-z")?;
        for _ in 0..MEASURED {
            client.get(route, cookie)?;
        }
        self.control("-d")?;
        self.dumps += 1;
        let path = self.dump_path(self.dumps);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(total) = total_of(&path) {
                return Ok(total / MEASURED);
            }
            if Instant::now() > deadline {
                return Err(format!("no callgrind dump at {}", path.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `totals:` (or `summary:`) line of a complete callgrind dump.
fn total_of(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))
            .and_then(|n| n.trim().split(' ').next()?.parse().ok())
    })
}

/// One keep-alive HTTP/1.1 connection, a request at a time (also how the
/// wrk runs get their session cookies).
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one GET and reads the whole answer; returns the `name=value`
    /// of each `Set-Cookie`.
    pub(crate) fn get(&mut self, path: &str, cookie: &str) -> Result<Vec<String>, String> {
        let cookie_line = if cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {cookie}\r\n")
        };
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie_line}\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut status = String::new();
        self.reader
            .read_line(&mut status)
            .map_err(|e| e.to_string())?;
        if !status.starts_with("HTTP/1.1 2") {
            return Err(format!("GET {path}: {}", status.trim()));
        }
        let mut length = 0usize;
        let mut chunked = false;
        let mut cookies = Vec::new();
        loop {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| "bad content-length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("set-cookie") {
                cookies.extend(value.split(';').next().map(str::to_owned));
            }
        }
        if chunked {
            loop {
                let mut size = String::new();
                self.reader
                    .read_line(&mut size)
                    .map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk")?;
                let mut chunk = vec![0; size + 2];
                self.reader
                    .read_exact(&mut chunk)
                    .map_err(|e| e.to_string())?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0; length];
            self.reader
                .read_exact(&mut body)
                .map_err(|e| e.to_string())?;
        }
        Ok(cookies)
    }
}

/// Instructions per request of each route in `routes`, for `binary` started
/// with `env`.
pub(crate) fn measure(
    binary: &Path,
    env: &[(String, String)],
    routes: &[&str],
) -> Result<Vec<u64>, String> {
    let port = free_port()?;
    let out = workspace_root().join(format!("target/callgrind-{port}.out"));
    let mut child = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("valgrind {}: {e}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            return Err(format!(
                "{} did not start under callgrind",
                binary.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut profiled = Profiled {
        child,
        port,
        out,
        dumps: 0,
    };
    // One session, made by a first `/counter`, as in the wrk runs.
    let cookie = Client::connect(port)?.get("/counter", "")?.join("; ");
    if cookie.is_empty() {
        return Err(format!("{} set no cookie on /counter", binary.display()));
    }
    routes
        .iter()
        .map(|route| profiled.count(route, &cookie))
        .collect()
}
