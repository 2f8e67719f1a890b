//! Parsing `Cookie` and token headers as the adapters hand them to the
//! core: never a panic, never more than a few tokens kept per session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::internals::read_tokens;

fuzz_target!(|data: &[u8]| {
    // Split the input into header lines: "name: value".
    let text = String::from_utf8_lossy(data);
    let headers: Vec<(&str, &[u8])> = text
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.as_bytes()))
        .collect();
    for tokens in read_tokens(headers) {
        assert!(tokens.len() <= 4);
    }
});
