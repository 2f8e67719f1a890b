//! The demo binary's start-up: exit 2 with one line naming a bad variable;
//! otherwise the `listening on` line and a served `/health`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEMOS: [&str; 3] = [
    env!("CARGO_BIN_EXE_demo-axum"),
    env!("CARGO_BIN_EXE_demo-actix"),
    env!("CARGO_BIN_EXE_demo-rocket"),
];

fn run_with(demo: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(demo);
    for var in [
        "PORT",
        "SESSION_STORE",
        "SESSION_TRANSPORT",
        "SESSION_SECRET",
        "SESSION_OLD_SECRETS",
        "SESSION_IDLE_SECS",
        "SESSION_COOKIE_SECURE",
        "MEMCACHE_SERVERS",
        "SESSION_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PORT", "0")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    wait_with_timeout(child, Duration::from_secs(20))
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("demo did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    let secret_31 = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MA=="; // 31 bytes
    let cases: &[(&str, &str)] = &[
        ("SESSION_STORE", "mongo"),
        ("SESSION_STORE", "memory+memory"),
        ("REDIS_URL", "http://not-redis"),
        ("DATABASE_URL", "postgres://u@h:port/d"),
        ("SESSION_SECRET", "not base64!"),
        ("SESSION_SECRET", secret_31),
        // 32 equal bytes: long enough, but nobody drew it at random.
        (
            "SESSION_SECRET",
            "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        ),
        (
            "SESSION_OLD_SECRETS",
            "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        ),
        ("SESSION_OLD_SECRETS", "c2hvcnQ="),
        ("SESSION_TRANSPORT", "smoke-signals"),
        ("SESSION_IDLE_SECS", "-5"),
        ("SESSION_COOKIE_SECURE", "maybe"),
        ("PORT", "99999"),
        ("MEMCACHE_SERVERS", "nocolon"),
    ];
    for (demo, (var, value)) in DEMOS.iter().flat_map(|d| cases.iter().map(move |c| (d, c))) {
        let out = run_with(demo, &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{demo} {var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}={value}: {stderr}");
        assert!(lines[0].contains(var), "{var}={value}: {stderr}");
        if var.contains("SECRET") {
            assert!(!stderr.contains(value), "the secret is not echoed");
        }
    }
}

#[test]
fn starts_prints_the_address_and_serves_health() {
    for demo in DEMOS {
        starts_and_serves(demo);
    }
}

fn starts_and_serves(demo: &str) {
    let mut child = Command::new(demo)
        .env("PORT", "0")
        .env_remove("SESSION_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("listening line")
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    child.kill().ok();
    child.wait().ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("set-cookie"));
}
