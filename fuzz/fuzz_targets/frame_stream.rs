//! Any bytes as the TLS byte stream: frames found one after another, each
//! body decoded in both directions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmbed_fuzz::check_stream(data);
});
