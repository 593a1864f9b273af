//! The checked-in header is what cbindgen makes of the current sources.

use std::path::Path;

const HEADER: &str = "include/wasmbed_agent.h";

/// Generates the header exactly as `cargo xtask ffi-header` does.
fn generate(crate_dir: &Path) -> String {
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("reading cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap_or_else(|e| panic!("header is not UTF-8: {e}"))
}

#[test]
fn header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = generate(crate_dir);
    let checked_in = std::fs::read_to_string(crate_dir.join(HEADER)).unwrap_or_default();
    if fresh != checked_in {
        let first_difference = fresh
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "firmware/agent-ffi/{HEADER} is stale ({first_difference}): run `cargo xtask ffi-header` \
             and commit the result"
        );
    }
}

/// Every Rust type reaching the header is renamed to its C name in
/// cbindgen.toml: no CamelCase `Wb...` name may leak into the header.
#[test]
fn header_uses_c_names_only() {
    let header = generate(Path::new(env!("CARGO_MANIFEST_DIR")));
    let leaked: Vec<&str> = header
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|word| {
            word.strip_prefix("Wb")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "types without a C name in firmware/agent-ffi/cbindgen.toml [export.rename]: {leaked:?}"
    );
}
