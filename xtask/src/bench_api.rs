//! `cargo xtask bench api`: builds `wasmbed-bench` in release mode and
//! runs `wasmbed-bench api`, which serves the API server over a real
//! socket with a SQLite store and prints `GET /api/v1/devices` (the whole
//! list and its first page `?limit=100`) against `GET /healthz` with
//! 10,000 devices stored, the time to walk the list by `?limit=500`
//! against one unpaged `GET`, and the time from `POST`ing an application
//! to results from 1,000 simulated devices.

use std::path::Path;
use std::process::Command;

use crate::cmd;

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    cmd::run(cmd::cargo(root).args(["build", "--release", "-p", "wasmbed-bench"]))?;
    let release = cmd::target_dir(root)?.join("release");
    let mut bench = Command::new(release.join("wasmbed-bench"));
    bench.current_dir(root).arg("api").args(args);
    Ok(cmd::run(&mut bench)?)
}
