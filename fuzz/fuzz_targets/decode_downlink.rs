//! Any bytes as the body of a frame from the gateway.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmbed_fuzz::check_downlink(data);
});
