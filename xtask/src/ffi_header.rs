//! `cargo xtask ffi-header`: regenerates the C headers of the C ABIs with
//! cbindgen, each from its crate's `cbindgen.toml`: the protocol's
//! (`protocol/ffi/include/wasmbed_protocol.h`) and the agent's
//! (`firmware/agent-ffi/include/wasmbed_agent.h`).
//!
//! The tests below generate each header the same way and fail while the
//! checked-in one differs.

use std::path::Path;

use anyhow::{Context as _, anyhow};

/// The C-ABI crates, relative to the workspace root, with their headers
/// relative to the crate.
const HEADERS: &[(&str, &str)] = &[
    ("protocol/ffi", "include/wasmbed_protocol.h"),
    ("firmware/agent-ffi", "include/wasmbed_agent.h"),
];

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    for (crate_dir, header) in HEADERS {
        let crate_dir = root.join(crate_dir);
        let fresh = generate(&crate_dir)?;
        let path = crate_dir.join(header);
        let old = std::fs::read_to_string(&path).ok();
        if old.as_deref() == Some(fresh.as_str()) {
            println!("xtask: {} is up to date", path.display());
            continue;
        }
        std::fs::write(&path, fresh).with_context(|| format!("writing {}", path.display()))?;
        println!("xtask: wrote {}", path.display());
    }
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
    fn checked_in_headers_are_up_to_date() -> anyhow::Result<()> {
        let root = crate::workspace_root();
        for (crate_dir, header) in HEADERS {
            let fresh = generate(&root.join(crate_dir))?;
            let path = root.join(crate_dir).join(header);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            if fresh != checked_in {
                let first_difference = fresh
                    .lines()
                    .zip(checked_in.lines())
                    .position(|(a, b)| a != b)
                    .map_or_else(
                        || "one is a prefix of the other".to_owned(),
                        |i| format!("first difference at line {}", i + 1),
                    );
                anyhow::bail!(
                    "{crate_dir}/{header} is stale ({first_difference}): run `cargo xtask ffi-header` \
                     and commit the result"
                );
            }
        }
        Ok(())
    }

    /// Every Rust type reaching a header is renamed to its C name in the
    /// crate's cbindgen.toml: no CamelCase `Wb...` name may leak into it.
    #[test]
    fn headers_use_c_names_only() -> anyhow::Result<()> {
        let root = crate::workspace_root();
        for (crate_dir, _) in HEADERS {
            let header = generate(&root.join(crate_dir))?;
            let leaked: Vec<&str> = header
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .filter(|word| {
                    word.strip_prefix("Wb")
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                })
                .collect();
            assert!(
                leaked.is_empty(),
                "types without a C name in {crate_dir}/cbindgen.toml [export.rename]: {leaked:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn generates_headers_with_the_session_and_agent_apis() -> anyhow::Result<()> {
        let root = crate::workspace_root();
        let protocol = generate(&root.join(HEADERS[0].0))?;
        assert!(protocol.contains("#define WASMBED_PROTOCOL_H"));
        assert!(protocol.contains("wb_device_session_init_resume("));
        let agent = generate(&root.join(HEADERS[1].0))?;
        assert!(agent.contains("#define WASMBED_AGENT_H"));
        assert!(agent.contains("wb_agent_new("));
        Ok(())
    }
}
