//! `cargo xtask bench`: our three demos on three stores and the peer
//! libraries, loaded over loopback by wrk, round by round.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, free_port, which, workspace_root, Memcached};

const ROUTES: [&str; 3] = ["/health", "/counter/peek", "/counter"];
/// Sessions each server's load is spread over.
const SESSIONS: usize = 64;
const SECRET: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

struct Options {
    seconds: u64,
    rounds: usize,
    connections: usize,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 10,
        rounds: 3,
        connections: 64,
        out: workspace_root().join("BENCHMARKS.md"),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--rounds" => options.rounds = value()?.parse().map_err(|_| "bad --rounds")?,
            "--connections" => {
                options.connections = value()?.parse().map_err(|_| "bad --connections")?
            }
            "--out" => options.out = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.rounds < 3 {
        return Err("at least 3 rounds".into());
    }
    Ok(options)
}

/// A server under test.
struct Server {
    name: String,
    framework: &'static str,
    ours: bool,
    store: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

struct Running {
    port: u16,
    /// A wrk script sending each request with one of many sessions.
    script: PathBuf,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_wrk() -> Result<PathBuf, String> {
    if let Some(wrk) = which("wrk") {
        return Ok(wrk);
    }
    println!("wrk not found: installing the Debian package");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", "wrk"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success()));
    if !ok {
        return Err("wrk is not installed and apt-get install wrk failed".into());
    }
    which("wrk").ok_or_else(|| "wrk still not found".into())
}

/// One HTTP/1.1 GET; returns the `name=value` of every `Set-Cookie`.
fn cookies_from(port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let pairs: Vec<&str> = response
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next())?
        })
        .collect();
    Ok(pairs.join("; "))
}

fn start(server: &Server) -> Result<Running, String> {
    let port = free_port()?;
    let mut child = Command::new(&server.binary)
        .envs(server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", server.binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if !line.starts_with("listening on") {
        let _ = child.kill();
        return Err(format!("{} did not start: {line}", server.name));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} does not accept connections", server.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // One session per connection's worth of load: 64 connections writing the
    // same session would measure compare-and-swap contention, not cost.
    let mut cookies = Vec::new();
    for _ in 0..SESSIONS {
        let cookie = cookies_from(port, "/counter")?;
        if cookie.is_empty() {
            return Err(format!("{} set no cookie on /counter", server.name));
        }
        cookies.push(format!("{cookie:?}"));
    }
    let script = workspace_root().join(format!("target/bench-{port}.lua"));
    let lua = format!(
        "cookies = {{ {} }}\ncounter = 0\nrequest = function()\n  counter = counter + 1\n  \
         return wrk.format(nil, nil, {{ [\"Cookie\"] = cookies[(counter % #cookies) + 1] }})\nend\n",
        cookies.join(", ")
    );
    std::fs::write(&script, lua).map_err(|e| e.to_string())?;
    Ok(Running {
        port,
        script,
        child,
    })
}

#[derive(Default, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn run_wrk(
    wrk: &PathBuf,
    options: &Options,
    running: &Running,
    route: &str,
) -> Result<Sample, String> {
    let output = Command::new(wrk)
        .args([
            "-t2",
            &format!("-c{}", options.connections),
            &format!("-d{}s", options.seconds),
        ])
        .arg("--latency")
        .arg("-s")
        .arg(&running.script)
        .arg(format!("http://127.0.0.1:{}{route}", running.port))
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut sample = Sample::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            sample.rps = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("50%") {
            sample.p50_ms = millis(rest).unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("99%") {
            sample.p99_ms = millis(rest).unwrap_or(0.0);
        }
    }
    if text.contains("Non-2xx or 3xx responses") {
        return Err(format!("non-2xx answers from {route}: {text}"));
    }
    if sample.rps == 0.0 {
        return Err(format!("no result from wrk: {text}"));
    }
    Ok(sample)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn servers(memcached: &str) -> Vec<Server> {
    let root = workspace_root();
    let mut list = Vec::new();
    for framework in ["axum", "actix", "rocket"] {
        for store in ["memory", "cookie", "memcache"] {
            list.push(Server {
                name: format!("ours: {framework}, {store}"),
                framework,
                ours: true,
                store,
                binary: root.join(format!("target/release/demo-{framework}")),
                env: vec![
                    ("SESSION_STORE".into(), store.into()),
                    ("SESSION_SECRET".into(), SECRET.into()),
                    ("MEMCACHE_SERVERS".into(), memcached.into()),
                ],
            });
        }
    }
    let peers = [
        (
            "actix-session, cookie (private)",
            "actix",
            "cookie",
            "peer-actix-session",
        ),
        (
            "tower-sessions, memory",
            "axum",
            "memory",
            "peer-tower-sessions",
        ),
        (
            "axum-extra PrivateCookieJar",
            "axum",
            "cookie",
            "peer-axum-extra",
        ),
        (
            "Rocket private cookies",
            "rocket",
            "cookie",
            "peer-rocket-private",
        ),
    ];
    for (name, framework, store, binary) in peers {
        list.push(Server {
            name: format!("peer: {name}"),
            framework,
            ours: false,
            store,
            binary: root.join(format!("bench/target/release/{binary}")),
            env: Vec::new(),
        });
    }
    list
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub(crate) fn bench(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("usage: cargo xtask bench [--seconds N] [--rounds N>=3] [--connections N] [--out FILE]: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let wrk = ensure_wrk()?;
    println!("==> building release servers");
    let built = cargo()
        .args(["build", "--release", "-p", "examples", "--bins"])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        return Err("building the demos failed".into());
    }
    let manifest = workspace_root().join("bench/Cargo.toml");
    let built = cargo()
        .args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        return Err("building the peer servers failed".into());
    }
    let memcached = Memcached::start_for_bench()?;
    let servers = servers(memcached.single_addr());
    let mut running = Vec::new();
    for server in &servers {
        running.push(start(server)?);
    }
    let mut samples: BTreeMap<(usize, &str), Vec<Sample>> = BTreeMap::new();
    for round in 1..=options.rounds {
        println!("==> round {round} of {}", options.rounds);
        for (i, server) in servers.iter().enumerate() {
            for route in ROUTES {
                let sample = run_wrk(&wrk, options, &running[i], route)?;
                println!("{:<40} {route:<14} {:>9.0} req/s", server.name, sample.rps);
                samples.entry((i, route)).or_default().push(sample);
            }
        }
    }
    drop(running);
    let memcached_version = version(&memcached.binary.to_string_lossy(), "-V");
    let report = report(options, &servers, &samples, &memcached_version);
    println!("\n{report}");
    std::fs::write(&options.out, &report).map_err(|e| format!("{}: {e}", options.out.display()))?;
    println!("written to {}", options.out.display());
    Ok(())
}

fn report(
    options: &Options,
    servers: &[Server],
    samples: &BTreeMap<(usize, &str), Vec<Sample>>,
    memcached_version: &str,
) -> String {
    let med = |i: usize, route: &str, f: fn(&Sample) -> f64| {
        median(samples[&(i, route)].iter().map(f).collect())
    };
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(&format!(
        "Command: `cargo xtask bench --seconds {} --rounds {} --connections {}`\n\n",
        options.seconds, options.rounds, options.connections
    ));
    out.push_str(&format!(
        "Machine: {} cores, {}; {}; {}. Client (wrk -t2) and servers share the cores; \
         servers alternate route by route, round by round; figures are medians of the rounds. \
         Each request carries one of {SESSIONS} session cookies, made by a first `/counter` each. \
         The memcache servers use one local memcached {} started with `-t 1` (one worker thread).\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        version("rustc", "-V"),
        version("wrk", "-v"),
        memcached_version,
    ));
    out.push_str("| server | /health req/s | /counter/peek req/s | /counter req/s | p50 / p99 /counter (ms) | peek ÷ health | counter ÷ health |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (i, server) in servers.iter().enumerate() {
        let health = med(i, "/health", |s| s.rps);
        let peek = med(i, "/counter/peek", |s| s.rps);
        let counter = med(i, "/counter", |s| s.rps);
        out.push_str(&format!(
            "| {} | {health:.0} | {peek:.0} | {counter:.0} | {:.2} / {:.2} | {:.2} | {:.2} |\n",
            server.name,
            med(i, "/counter", |s| s.p50_ms),
            med(i, "/counter", |s| s.p99_ms),
            peek / health,
            counter / health,
        ));
    }
    out.push_str(
        "\nReading the ratios: each server's `/health` is its own baseline. Our layers \
         are lazy (a route that does not use the session opens and loads nothing), while \
         actix-session decrypts and loads the session of every request that carries a \
         cookie and tower-sessions parses the cookie jar of every request, `/health` \
         included (wrk sends the cookie everywhere), so their baseline already holds part \
         of the session cost. Compare `/counter` req/s \
         across servers of one framework for cost; compare ratios with that in mind.\n",
    );
    out.push_str("\nTargets (read-modify-write `/counter` ÷ own `/health`; and `/counter` at or above the best peer on the framework):\n\n");
    for (i, server) in servers.iter().enumerate().filter(|(_, s)| s.ours) {
        let ratio = med(i, "/counter", |s| s.rps) / med(i, "/health", |s| s.rps);
        let target = match server.store {
            "memory" => 0.90,
            "cookie" => 0.85,
            _ => 0.65,
        };
        let counter = med(i, "/counter", |s| s.rps);
        let best_peer = servers
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.ours && p.framework == server.framework)
            .map(|(j, _)| med(j, "/counter", |s| s.rps))
            .fold(0.0, f64::max);
        out.push_str(&format!(
            "- {}: ratio {ratio:.2} (target {target:.2}: {}); /counter {counter:.0} req/s vs best peer {best_peer:.0} ({})\n",
            server.name,
            if ratio >= target { "met" } else { "missed" },
            if counter >= best_peer { "met" } else { "missed" },
        ));
    }
    out
}
