//! `cargo xtask bench gateway`: builds the `wasmbed` and `wasmbed-bench`
//! binaries in release mode and runs `wasmbed-bench gateway`, which starts
//! the real gateway as a child process and prints the gateway's figures
//! (handshakes against a bare TLS baseline, memory per idle session,
//! heartbeats per core, deployment time) with PASS/MISS against targets;
//! `cargo xtask bench scale` runs `wasmbed-bench scale` the same way.

use std::path::Path;
use std::process::Command;

use crate::cmd;

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    run_suite(root, "gateway", args)
}

/// Builds the release binaries and runs `wasmbed-bench SUITE --wasmbed
/// ... ARGS` (`gateway`, or `scale`: sessions per box).
pub(crate) fn run_suite(root: &Path, suite: &str, args: &[String]) -> anyhow::Result<()> {
    cmd::run(cmd::cargo(root).args([
        "build",
        "--release",
        "-p",
        "wasmbed-cli",
        "-p",
        "wasmbed-bench",
    ]))?;
    let release = cmd::target_dir(root)?.join("release");
    let mut bench = Command::new(release.join("wasmbed-bench"));
    bench
        .current_dir(root)
        .arg(suite)
        .arg("--wasmbed")
        .arg(release.join("wasmbed"))
        .args(args);
    Ok(cmd::run(&mut bench)?)
}
