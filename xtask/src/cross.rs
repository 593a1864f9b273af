//! Cargo workspaces of their own, built for one target only: the bare-metal
//! firmware and the sample WebAssembly applications.
//!
//! Each has a `.cargo/config.toml` that sets its target (and linker
//! script or rustflags), which cargo only reads when run from inside the
//! project, so every cargo command runs with the project as its current
//! directory (never `--manifest-path` from the root).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cmd;
use crate::rustup::ensure_target;

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
