//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `ci`: formatting, clippy (warnings denied), every test (unit, doc,
//!   trybuild, conformance, cross-framework), and docs (warnings denied),
//!   with memcached, Redis and PostgreSQL found or installed and started on
//!   free loopback ports for the tests, and stopped at the end whatever
//!   happened; checks that `rust-version` covers what the locked
//!   dependencies declare and that duplicate versions are only those the
//!   frameworks force, and that each adapter's README program builds in a
//!   fresh crate with that adapter alone. Prints a summary.
//! - `manifests`: just the `rust-version`, duplicate-version and known-advisory
//!   checks.
//! - `adapters-alone`: just the check that each adapter's README program
//!   builds in a fresh crate with that adapter alone.
//! - `memcached`: starts the test memcached instances and prints their
//!   environment, for running tests by hand; Ctrl-C stops them.
//! - `bench [--seconds N] [--rounds N]`: builds release servers (our three
//!   demos on the memory, cookie and memcache stores, and the peer libraries
//!   of `bench/`), loads each route with wrk (installed when missing), round
//!   by round, and writes the table to `BENCHMARKS.md`.
//! - `fuzz [--seconds N] [TARGET...]`: runs each coverage-guided fuzz target
//!   (cargo-fuzz, installed when missing; nightly features through
//!   `RUSTC_BOOTSTRAP=1`) for N seconds (default 60) from the checked-in seeds,
//!   and reports executions and crashes. `ci` runs each for 30 s.

mod bench;
mod checks;
mod datastores;
mod instructions;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("memcached") => memcached_shell(),
        Some("fuzz") => fuzz_command(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("adapters-alone") => match checks::adapters_alone() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some("manifests") => {
            let results = [checks::msrv(), checks::duplicates(), checks::advisories()];
            for e in results.iter().filter_map(|r| r.as_ref().err()) {
                eprintln!("{e}");
            }
            if results.iter().all(Result::is_ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: cargo xtask <ci | manifests | adapters-alone | memcached | fuzz [--seconds N] [TARGET...] | bench [--seconds N] [--rounds N]>");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

struct Step {
    name: &'static str,
    ok: bool,
    took: Duration,
}

fn run_step(steps: &mut Vec<Step>, name: &'static str, mut cmd: Command) -> bool {
    println!("\n==> {name}: {cmd:?}");
    let started = Instant::now();
    let ok = match cmd.status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("cannot run {name}: {e}");
            false
        }
    };
    if !ok {
        print_free_space();
    }
    steps.push(Step {
        name,
        ok,
        took: started.elapsed(),
    });
    ok
}

/// Whether this is the CI machine's run (`CI=true`): one build from a clean
/// clone, where disk space matters more than rebuild speed.
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A failed build is often a full disk: say how much is left.
fn print_free_space() {
    let _ = Command::new("df")
        .args(["-h", "--output=avail,target"])
        .arg(workspace_root())
        .status();
}

/// Removes a build directory no later step uses (CI only: a local run keeps
/// it for the next run).
fn drop_build_dir(dir: &Path) {
    if on_ci() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn ci() -> ExitCode {
    let mut steps = Vec::new();
    // Line tables only (as the workspace's dev profile), also for the other
    // workspaces ci builds with the dev profile (trybuild's, the README
    // programs'; `cargo fuzz` builds release); on CI, no incremental data.
    // Both keep a clean build's target directory a few gigabytes smaller.
    // Set before any thread starts.
    if std::env::var_os("CARGO_PROFILE_DEV_DEBUG").is_none() {
        std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "line-tables-only");
    }
    if on_ci() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    let memcached = match Memcached::start_all() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("xtask ci: memcached: {e}");
            return ExitCode::FAILURE;
        }
    };

    let datastores = match datastores::Datastores::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("xtask ci: redis/postgres: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_step(&mut steps, "fmt", fmt);

    for (name, check) in [
        (
            "rust-version covers every dependency (cargo metadata)",
            checks::msrv as fn() -> Result<(), String>,
        ),
        (
            "duplicate versions only where frameworks force them (cargo tree -d)",
            checks::duplicates,
        ),
        ("no locked crate with a known advisory", checks::advisories),
    ] {
        println!("\n==> {name}");
        let started = Instant::now();
        let result = check();
        if let Err(e) = &result {
            eprintln!("{e}");
        }
        steps.push(Step {
            name,
            ok: result.is_ok(),
            took: started.elapsed(),
        });
    }

    let mut clippy = cargo();
    // `internals` opens session-core's property tests and benchmarks (its
    // entry points are off for every user).
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "session-core/internals",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(&mut steps, "clippy", clippy);

    let mut test = cargo();
    test.args([
        "test",
        "--workspace",
        "--features",
        "session-core/internals",
        "--no-fail-fast",
    ]);
    memcached.export(&mut test);
    datastores.export(&mut test);
    run_step(
        &mut steps,
        "test (unit, doc, trybuild, conformance, cross-framework)",
        test,
    );
    drop_build_dir(&workspace_root().join("target/tests"));

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_step(&mut steps, "doc", doc);

    println!("\n==> each adapter's README program with that adapter alone");
    let started = Instant::now();
    let alone = checks::adapters_alone();
    if let Err(e) = &alone {
        eprintln!("{e}");
        print_free_space();
    }
    drop_build_dir(&workspace_root().join("target/adapter-alone"));
    steps.push(Step {
        name: "README programs build with their adapter alone",
        ok: alone.is_ok(),
        took: started.elapsed(),
    });

    drop(memcached);
    drop(datastores);

    let started = Instant::now();
    let fuzzed = fuzz(FUZZ_TARGETS, 30);
    steps.push(Step {
        name: "fuzz (30 s per target)",
        ok: fuzzed,
        took: started.elapsed(),
    });

    println!("\n==> summary");
    for step in &steps {
        let mark = if step.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:<60} {:>7.1}s", step.name, step.took.as_secs_f64());
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    println!("{} passed, {} failed", steps.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The fuzz targets under `fuzz/fuzz_targets`.
const FUZZ_TARGETS: &[&str] = &[
    "open_token",
    "decode_record",
    "cookie_header",
    "engine_request",
    "memcache_reply",
];

fn fuzz_command(args: &[String]) -> ExitCode {
    let mut seconds = 60;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(n) => seconds = n,
                None => {
                    eprintln!("--seconds takes a whole number");
                    return ExitCode::from(2);
                }
            },
            name if FUZZ_TARGETS.contains(&name) => targets.push(name),
            other => {
                eprintln!(
                    "unknown fuzz target `{other}` (targets: {})",
                    FUZZ_TARGETS.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    let targets = if targets.is_empty() {
        FUZZ_TARGETS.to_vec()
    } else {
        targets
    };
    if fuzz(&targets, seconds) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn ensure_cargo_fuzz() -> bool {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return true;
    }
    println!("cargo-fuzz not found: installing it from crates.io");
    cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs each target for `seconds`; prints executions and crashes per target.
fn fuzz(targets: &[&str], seconds: u64) -> bool {
    println!("\n==> fuzz: {} s per target", seconds);
    if !ensure_cargo_fuzz() {
        eprintln!("cargo-fuzz could not be installed");
        return false;
    }
    let root = workspace_root();
    let mut all_ok = true;
    let mut report = Vec::new();
    for target in targets {
        // New inputs go to a scratch corpus; the checked-in seeds stay as they are.
        let corpus = root.join("fuzz/corpus-run").join(target);
        let seeds = root.join("fuzz/seeds").join(target);
        let _ = std::fs::create_dir_all(&corpus);
        let output = cargo()
            .current_dir(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ])
            .output();
        let (ok, text) = match output {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, e.to_string()),
        };
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|| "?".into());
        let crashes = std::fs::read_dir(root.join("fuzz/artifacts").join(target))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("crash-"))
                    .count()
            })
            .unwrap_or(0);
        if !ok {
            all_ok = false;
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            print_free_space();
            eprintln!("fuzz target {target} failed:");
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
        report.push(format!(
            "{target:<16} {runs:>12} executions  {crashes} crash files  {}",
            if ok { "ok" } else { "FAIL" }
        ));
    }
    for line in report {
        println!("{line}");
    }
    all_ok
}

fn memcached_shell() -> ExitCode {
    let memcached = match Memcached::start_all() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("xtask memcached: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = Command::new("env");
    memcached.export(&mut cmd);
    for (k, v) in cmd.get_envs() {
        println!(
            "export {}={}",
            k.to_string_lossy(),
            v.map(|v| v.to_string_lossy()).unwrap_or_default()
        );
    }
    println!("# running; press Ctrl-C to stop");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Test memcached processes (one, and a cluster of three), stopped when
/// dropped, also when a step fails.
pub(crate) struct Memcached {
    pub(crate) binary: PathBuf,
    single: Instance,
    cluster: Vec<Instance>,
}

struct Instance {
    addr: String,
    child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Memcached {
    pub(crate) fn start_all() -> Result<Memcached, String> {
        let binary = find_or_install_memcached()?;
        let single = start_instance(&binary, &[])?;
        let cluster = (0..3)
            .map(|_| start_instance(&binary, &[]))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster_addrs: Vec<&str> = cluster.iter().map(|i| i.addr.as_str()).collect();
        println!(
            "memcached {}: {} and cluster {}",
            binary.display(),
            single.addr,
            cluster_addrs.join(",")
        );
        Ok(Memcached {
            binary,
            single,
            cluster,
        })
    }

    /// One instance with one worker thread, for `cargo xtask bench`: the
    /// machine's cores are shared by memcached, the server under test and
    /// the load generator, and memcached's default of four threads spends
    /// them on wake-ups (about 20% of memcache throughput on 2 cores).
    pub(crate) fn start_for_bench() -> Result<Memcached, String> {
        let binary = find_or_install_memcached()?;
        let single = start_instance(&binary, &["-t", "1"])?;
        println!("memcached {} (-t 1): {}", binary.display(), single.addr);
        Ok(Memcached {
            binary,
            single,
            cluster: Vec::new(),
        })
    }

    /// The single instance's address.
    fn single_addr(&self) -> &str {
        &self.single.addr
    }

    /// The single instance's process id.
    fn single_pid(&self) -> u32 {
        self.single.child.id()
    }

    /// Passes the addresses to tests. Tests that need memcached read
    /// `SESSION_TEST_MEMCACHED`, and fail (never skip) without it under CI.
    fn export(&self, cmd: &mut Command) {
        let cluster: Vec<&str> = self.cluster.iter().map(|i| i.addr.as_str()).collect();
        cmd.env("SESSION_TEST_MEMCACHED", &self.single.addr)
            .env("SESSION_TEST_MEMCACHED_CLUSTER", cluster.join(","))
            .env("SESSION_TEST_MEMCACHED_BIN", &self.binary);
    }
}

fn find_or_install_memcached() -> Result<PathBuf, String> {
    if let Some(found) = which("memcached") {
        return Ok(found);
    }
    datastores::apt_install(&["memcached"])?;
    which("memcached").ok_or_else(|| "memcached still not found after installing".into())
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn start_instance(binary: &Path, extra: &[&str]) -> Result<Instance, String> {
    for _attempt in 0..5 {
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-c",
            "1024",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let instance = Instance {
            addr: format!("127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(&instance.addr).is_ok() {
                return Ok(instance);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Port taken between the probe and the start: try another.
    }
    Err("memcached did not start listening".into())
}
