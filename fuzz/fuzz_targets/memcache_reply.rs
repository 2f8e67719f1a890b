//! The memcached meta-protocol reply parser on arbitrary bytes: never a
//! panic, never more bytes claimed than given, always progress.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_backends::internals::parse_memcached_replies;

fuzz_target!(|data: &[u8]| {
    let _ = parse_memcached_replies(data);
});
