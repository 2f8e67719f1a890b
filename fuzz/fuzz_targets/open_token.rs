//! Opening a sealed token (as a cookie value or a header value) in both
//! modes: never a panic, and nothing opens that was not sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::internals::CookieSeal;
use session_core::{KeyRing, SealMode};

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::from_secret(b"test secret number 07, 32 bytes!").expect("ring");
    let token = String::from_utf8_lossy(data);
    for mode in [SealMode::Private, SealMode::Signed] {
        for name in ["sid", "x-session-token"] {
            let seal = CookieSeal {
                ring: &ring,
                mode,
                name,
            };
            if let Ok(payload) = seal.open(1_800_000_000, &token) {
                // Only tokens sealed with this ring open; the fuzzer cannot
                // forge one, so reaching here means the seed was a real token.
                assert!(payload.len() <= data.len());
            }
        }
    }
});
