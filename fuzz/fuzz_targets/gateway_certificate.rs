//! Any bytes as the certificate a gateway sends a device, checked as the
//! firmware checks it, or as a certificate's signed part, signed by a CA
//! of the harness's (see `wasmbed_fuzz::x509` for the input's layout and
//! the checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmbed_fuzz::check_gateway_certificate(data);
});
