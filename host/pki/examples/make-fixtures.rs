//! Regenerates the TEST ONLY fixtures in `host/pki/fixtures/`:
//!
//! ```sh
//! cargo run -p wasmbed-pki --features test-fixtures --example make-fixtures
//! ```
//!
//! Every key and certificate changes; commit the new files together.
//! `--control-only` regenerates only the control PKI's files.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let made = if std::env::args().any(|a| a == "--control-only") {
        wasmbed_pki::generate_control_fixtures(&dir)
    } else {
        wasmbed_pki::generate_test_fixtures(&dir)
    };
    match made {
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
