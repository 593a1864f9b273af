//! `cargo xtask bench gateway`: builds the `wasmbed` and `wasmbed-bench`
//! binaries in release mode and runs `wasmbed-bench gateway`, which starts
//! the real gateway as a child process and prints the gateway's figures
//! (handshakes against a bare TLS baseline, memory per idle session,
//! heartbeats per core, deployment time) with PASS/MISS against targets.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::cmd;

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    cmd::run(cmd::cargo(root).args([
        "build",
        "--release",
        "-p",
        "wasmbed-cli",
        "-p",
        "wasmbed-bench",
    ]))?;
    let release = target_dir(root)?.join("release");
    let mut bench = Command::new(release.join("wasmbed-bench"));
    bench
        .current_dir(root)
        .arg("gateway")
        .arg("--wasmbed")
        .arg(release.join("wasmbed"))
        .args(args);
    Ok(cmd::run(&mut bench)?)
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and build.target-dir).
fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let metadata =
        cmd::output(cmd::cargo(root).args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("`cargo metadata` printed no JSON")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` names no target directory")
}
