//! `cargo xtask bench firmware`: builds the firmware, prints its flash and
//! RAM (`cargo xtask size`), then runs `wasmbed-bench firmware` (boot to
//! enrolled, the TLS handshake in the device in wall time and guest
//! instructions, the time to deploy a 16 KiB module).

use std::path::Path;
use std::process::Command;

use crate::cmd;

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    crate::firmware::run(root, false)?;
    crate::size::run(root, None)?;
    cmd::run(cmd::cargo(root).args(["build", "--release", "-p", "wasmbed-bench"]))?;
    let release = cmd::target_dir(root)?.join("release");
    let mut bench = Command::new(release.join("wasmbed-bench"));
    bench
        .current_dir(root)
        .arg("firmware")
        .arg("--firmware")
        .arg(crate::firmware::elf_path(root)?)
        .args(args);
    Ok(cmd::run(&mut bench)?)
}
