//! `cargo xtask ffi-header`: regenerates the C header of the protocol's C
//! ABI (`protocol/ffi/include/wasmbed_protocol.h`) with cbindgen, using
//! `protocol/ffi/cbindgen.toml`.
//!
//! `protocol/ffi/tests/header.rs` generates the header the same way and
//! fails while the checked-in one differs.

use std::path::Path;

use anyhow::{Context as _, anyhow};

/// The C-ABI crate, relative to the workspace root.
const CRATE_DIR: &str = "protocol/ffi";
/// The header, relative to the crate.
const HEADER: &str = "include/wasmbed_protocol.h";

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let crate_dir = root.join(CRATE_DIR);
    let header = generate(&crate_dir)?;
    let path = crate_dir.join(HEADER);
    let old = std::fs::read_to_string(&path).ok();
    if old.as_deref() == Some(header.as_str()) {
        println!("xtask: {} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(&path, header).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask: wrote {}", path.display());
    Ok(())
}

/// The header cbindgen generates for the crate in `crate_dir`.
fn generate(crate_dir: &Path) -> anyhow::Result<String> {
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| anyhow!("reading cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .context("cbindgen failed")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).context("cbindgen wrote a header that is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_header_with_the_session_api() -> anyhow::Result<()> {
        let header = generate(&crate::workspace_root().join(CRATE_DIR))?;
        assert!(header.contains("#define WASMBED_PROTOCOL_H"));
        assert!(header.contains("wb_device_session_init_resume("));
        Ok(())
    }
}
