//! Any bytes, split anywhere, as what the peer sends to a gateway's or a
//! device's session, driven as a real driver would (see
//! `wasmbed_fuzz::session` for the input's layout and the checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmbed_fuzz::check_session(data);
});
