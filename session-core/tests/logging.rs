//! Logging: outcomes and timings at debug level, never a token. In its own
//! test binary because `tracing` caches per-callsite interest process-wide,
//! which other tests running in parallel without a subscriber would spoil.

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

#[test]
fn logs_carry_outcomes_and_timings_but_no_token_id_or_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
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
        })
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
