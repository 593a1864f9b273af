//! `cargo xtask firmware`: the bare-metal firmware for QEMU's
//! `mps2-an385` machine (`firmware/mps2`, a workspace of its own for
//! `thumbv7m-none-eabi`), built in release mode.

use std::path::{Path, PathBuf};

use crate::cmd;
use crate::cross::Project;

/// The firmware project.
pub(crate) const PROJECT: Project = Project {
    dir: "firmware/mps2",
    target: "thumbv7m-none-eabi",
};

/// The firmware's binary, as `[[bin]]` names it.
const BIN: &str = "wasmbed-mps2";

/// Where the release build puts the firmware ELF.
pub(crate) fn elf_path(root: &Path) -> anyhow::Result<PathBuf> {
    Ok(PROJECT.release_dir(root)?.join(BIN))
}

/// Builds the firmware and returns the ELF's path.
pub(crate) fn build(root: &Path) -> anyhow::Result<PathBuf> {
    PROJECT.build(root)?;
    let elf = elf_path(root)?;
    anyhow::ensure!(
        elf.is_file(),
        "the firmware built but {} does not exist",
        elf.display()
    );
    Ok(elf)
}

/// `cargo xtask firmware [--check]`: with `check`, `cargo fmt --check` and
/// clippy first.
pub(crate) fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    if check {
        PROJECT.fmt_check(root)?;
        PROJECT.clippy(root)?;
    }
    let elf = build(root)?;
    println!("xtask: firmware: {}", cmd::show(root, &elf));
    Ok(())
}
