//! Cargo workspaces of their own, built for one target only: the bare-metal
//! firmware and the sample WebAssembly applications.
//!
//! Each has a `.cargo/config.toml` that sets its target (and linker
//! script or rustflags), which cargo only reads when run from inside the
//! project, so every cargo command runs with the project as its current
//! directory (never `--manifest-path` from the root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::Context as _;

use crate::cmd;

/// A separate cargo workspace, relative to the repository root, and the one
/// target its `.cargo/config.toml` builds for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Project {
    /// Directory, relative to the repository root.
    pub(crate) dir: &'static str,
    /// Rust target the project's `.cargo/config.toml` selects.
    pub(crate) target: &'static str,
}

impl Project {
    /// The project's directory.
    pub(crate) fn path(&self, root: &Path) -> PathBuf {
        root.join(self.dir)
    }

    /// `cargo fmt --check`.
    pub(crate) fn fmt_check(&self, root: &Path) -> anyhow::Result<()> {
        cmd::run(cmd::cargo(&self.path(root)).args(["fmt", "--check"]))
            .with_context(|| format!("{} is not formatted (run `cargo fmt` there)", self.dir))
    }

    /// `cargo clippy --release -- -D warnings`, with the target installed.
    pub(crate) fn clippy(&self, root: &Path) -> anyhow::Result<()> {
        ensure_target(&self.path(root), self.target)?;
        cmd::run(cmd::cargo(&self.path(root)).args(["clippy", "--release", "--", "-D", "warnings"]))
            .with_context(|| format!("clippy warnings in {}", self.dir))
    }

    /// `cargo build --release`, with the target installed.
    pub(crate) fn build(&self, root: &Path) -> anyhow::Result<()> {
        ensure_target(&self.path(root), self.target)?;
        cmd::run(cmd::cargo(&self.path(root)).args(["build", "--release"]))
            .with_context(|| format!("building {}", self.dir))
    }

    /// Where `cargo build --release` puts the project's artifacts.
    pub(crate) fn release_dir(&self, root: &Path) -> anyhow::Result<PathBuf> {
        Ok(cmd::target_dir(&self.path(root))?
            .join(self.target)
            .join("release"))
    }
}

/// Targets found installed (or installed) in this run.
static INSTALLED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Makes sure rustup has `target` for the toolchain that cargo uses in
/// `dir`, adding it when missing. Without rustup, says that it cannot
/// check and carries on: the build then fails if the target is missing.
pub(crate) fn ensure_target(dir: &Path, target: &'static str) -> anyhow::Result<()> {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if installed.contains(&target) {
        return Ok(());
    }
    if !cmd::on_path("rustup") {
        println!(
            "xtask: rustup not found: cannot check that the Rust target {target} is installed; \
             assuming it is (without it the build fails with \"can't find crate for `core`\")"
        );
        installed.push(target);
        return Ok(());
    }
    let mut list = Command::new("rustup");
    list.current_dir(dir)
        .args(["target", "list", "--installed"]);
    let list = cmd::output(&mut list)?;
    if !lists_target(&list, target) {
        println!("xtask: the Rust target {target} is missing; adding it");
        let mut add = Command::new("rustup");
        add.current_dir(dir).args(["target", "add", target]);
        cmd::run(&mut add).with_context(|| format!("could not add the Rust target {target}"))?;
    }
    installed.push(target);
    Ok(())
}

/// Whether `rustup target list --installed` output names `target`.
fn lists_target(list: &str, target: &str) -> bool {
    list.lines().any(|line| line.trim() == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_installed_targets_by_whole_name() {
        let list = "thumbv7em-none-eabihf\nwasm32-unknown-unknown\nx86_64-unknown-linux-gnu\n";
        assert!(lists_target(list, "wasm32-unknown-unknown"));
        assert!(!lists_target(list, "thumbv7m-none-eabi"));
        assert!(!lists_target("", "thumbv7m-none-eabi"));
    }
}
