//! Regenerates the TEST ONLY fixtures in `host/pki/fixtures/`:
//!
//! ```sh
//! cargo run -p wasmbed-pki --features test-fixtures --example make-fixtures
//! ```
//!
//! Every key and certificate changes; commit the new files together.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    match wasmbed_pki::generate_test_fixtures(&dir) {
        Ok(()) => {
            eprintln!("wrote TEST ONLY fixtures to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-fixtures: {e}");
            ExitCode::FAILURE
        }
    }
}
