//! A whole request through the engine with an arbitrary cookie or token
//! header, on cookie and memory storage: never a panic, never an error for
//! bad input (only a fresh session).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use session_backends::MemoryStore;
use session_core::{KeyRing, SessionConfig, SessionManager, Transport};

fn managers() -> &'static [SessionManager; 2] {
    static MANAGERS: OnceLock<[SessionManager; 2]> = OnceLock::new();
    MANAGERS.get_or_init(|| {
        let keys = KeyRing::from_secret(b"test secret number 07, 32 bytes!").expect("ring");
        [
            SessionManager::new(SessionConfig::cookie(keys.clone())).expect("cookie"),
            SessionManager::new(
                SessionConfig::server(Arc::new(MemoryStore::new()), keys)
                    .transport(Transport::header("x-session-token")),
            )
            .expect("server"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let manager = &managers()[usize::from(selector % 2)];
    let header = if selector % 2 == 0 {
        "cookie"
    } else {
        "x-session-token"
    };
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    runtime.block_on(async {
        let request = manager.start_by_name(|name| (name == header).then_some(rest));
        let session = request.primary();
        let n: u64 = session
            .get("n")
            .await
            .expect("bad input never errors")
            .unwrap_or(0);
        session
            .insert("n", &n.wrapping_add(1))
            .await
            .expect("insert");
        request.finish().await.expect("finish");
    });
});
