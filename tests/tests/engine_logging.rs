//! Logging: outcomes and timings at debug level, never a token. In its own
//! test binary because `tracing` caches per-callsite interest process-wide,
//! which other tests running in parallel without a subscriber would spoil.

#[path = "engine_common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};

use common::*;

/// Captures everything logged, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` on a current-thread runtime with a subscriber that writes
/// everything up to `level` (and, with `close`, each span when it closes)
/// into the returned text.
fn logged<F: std::future::Future<Output = ()>>(
    level: tracing::Level,
    close: bool,
    body: impl FnOnce() -> F,
) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let events = if close {
        tracing_subscriber::fmt::format::FmtSpan::CLOSE
    } else {
        tracing_subscriber::fmt::format::FmtSpan::NONE
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_span_events(events)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || rt.block_on(body()));
    let text = captured.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[test]
fn logs_carry_outcomes_and_timings_but_no_token_id_or_key() {
    let mut tokens = Vec::new();
    let logs = logged(tracing::Level::TRACE, false, || async {
        let env = server_env();
        let mut jar = Jar::default();
        bump(&env, &mut jar).await;
        tokens.push(jar.0.clone().unwrap());
        bump(&env, &mut jar).await;
        let forged = "sid=AAAAforgedtokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
        peek(&env, &mut Jar(Some(forged.clone()))).await;
        tokens.push(forged);
        let cookie_env = cookie_env_with(|c| c);
        let mut jar = Jar::default();
        bump(&cookie_env, &mut jar).await;
        tokens.push(jar.0.unwrap());
    });
    assert!(logs.contains("outcome=\"save\""), "{logs}");
    assert!(logs.contains("save_us="), "{logs}");
    assert!(logs.contains("load=\"loaded\""), "{logs}");
    assert!(logs.contains("session token refused"), "{logs}");
    for token in tokens {
        let value = &token["sid=".len()..];
        assert!(!logs.contains(value), "token leaked into logs");
        assert!(
            !logs.contains(&value[..16]),
            "token prefix leaked into logs"
        );
    }
}

#[test]
fn a_flood_of_refused_tokens_gives_at_most_one_warning_a_second() {
    let started = std::time::Instant::now();
    let mut sent = 0;
    let logs = logged(tracing::Level::WARN, false, || async {
        let env = server_env();
        // Over a second boundary, so at least one warning is this flood's
        // even if another test of this binary warned in the same second.
        while started.elapsed() < std::time::Duration::from_millis(1100) {
            let forged = format!("sid=forged{sent}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
            peek(&env, &mut Jar(Some(forged))).await;
            sent += 1;
        }
    });
    assert!(sent > 100, "a flood: {sent} refused tokens");
    let seconds = started.elapsed().as_secs() + 1;
    let warnings = logs.matches("session token refused").count() as u64;
    assert!(warnings >= 1, "the first refusal is a warning: {logs}");
    // One per second the loop spanned (it may straddle a boundary).
    assert!(
        warnings <= seconds + 1,
        "{warnings} warnings in {seconds} s"
    );
}

#[test]
fn spans_carry_the_session_outcome_and_each_store_operation() {
    let mut token = String::new();
    let logs = logged(tracing::Level::DEBUG, true, || async {
        let env = server_env();
        let mut jar = Jar::default();
        bump(&env, &mut jar).await;
        bump(&env, &mut jar).await;
        token = jar.0.clone().unwrap();
    });
    // The session span: its name, what loading found, what was done.
    assert!(
        logs.contains("session{name=sid load=\"new\" outcome=\"save\"}"),
        "{logs}"
    );
    assert!(
        logs.contains("session{name=sid load=\"loaded\" outcome=\"save\"}"),
        "{logs}"
    );
    // A span per store operation, with its latency and result.
    for op in ["load", "save"] {
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("store{{op=\"{op}\" store=\"custom\"")))
            .unwrap_or_else(|| panic!("no {op} span: {logs}"));
        assert!(
            line.contains("latency_us=") && line.contains("result=\"ok\""),
            "{line}"
        );
    }
    assert!(
        !logs.contains(&token["sid=".len()..]),
        "token leaked into logs"
    );
}

#[test]
fn a_cascade_reports_each_tier_operation_inside_its_own() {
    use session_backends::{CascadeStore, MemoryStore};
    let logs = logged(tracing::Level::DEBUG, true, || async {
        let tiers = CascadeStore::builder()
            .cache_tier(MemoryStore::new(), std::time::Duration::from_secs(1))
            .tier(MemoryStore::new())
            .build()
            .unwrap();
        let manager = session_core::SessionManager::new(
            session_core::SessionConfig::server(tiers, keys(1))
                .cookie_attributes(session_core::CookieAttributes::default().secure(false)),
        )
        .unwrap();
        let mut jar = Jar::default();
        for _ in 0..2 {
            let req = jar.start(&manager);
            let n = req.primary().get(&COUNTER).await.unwrap().unwrap_or(0);
            req.primary().insert(&COUNTER, &(n + 1)).await.unwrap();
            finish(&mut jar, &req).await;
        }
    });
    let nested = logs.lines().find(|l| {
        l.contains("store{op=\"load\" store=\"cascade\"")
            && l.contains(":store{op=\"load\" store=\"memory\"")
    });
    assert!(nested.is_some(), "{logs}");
    assert!(
        logs.contains(":store{op=\"save\" store=\"memory\""),
        "{logs}"
    );
}
