//! `cargo xtask zephyr`: builds the Zephyr + WAMR application
//! (`zephyr-app/`) for `mps2/an385` in an existing west workspace, into
//! `zephyr-workspace/build/mps2_an385/zephyr/zephyr.elf`.
//!
//! The workspace is found through `ZEPHYR_BASE` (its parent is the
//! workspace) or at `zephyr-workspace/` in the repository. Zephyr and its
//! modules come from upstream through the repository's `west.yml`; none of
//! them is vendored. Without a workspace the command says how to make one
//! and reports a skip: nothing here can fetch Zephyr on the user's behalf.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// The board the application is built for.
pub(crate) const BOARD: &str = "mps2/an385";
/// The emulator manager's description of that board running Zephyr
/// (`boards/mps2-an385-zephyr.toml`: linked over Ethernet).
pub(crate) const QEMU_BOARD: &str = "mps2-an385-zephyr";
/// The workspace directory in the repository (git-ignored).
const WORKSPACE_DIR: &str = "zephyr-workspace";

/// What `run` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Built: the image.
    Built(PathBuf),
    /// No workspace: why, for the step summary.
    Skipped(String),
}

/// The build directory for `board` (`/` becomes `_`, as west's default).
pub(crate) fn build_dir(root: &Path, board: &str) -> PathBuf {
    root.join(WORKSPACE_DIR)
        .join("build")
        .join(board.replace('/', "_"))
}

/// The image `run` builds.
pub(crate) fn elf_path(root: &Path) -> PathBuf {
    build_dir(root, BOARD).join("zephyr/zephyr.elf")
}

/// The workspace's top directory: the parent of `ZEPHYR_BASE`, else
/// `zephyr-workspace/` when it holds a `zephyr/` tree.
pub(crate) fn find_workspace(root: &Path, zephyr_base: Option<&Path>) -> Option<PathBuf> {
    if let Some(base) = zephyr_base {
        return base
            .join("CMakeLists.txt")
            .is_file()
            .then(|| base.parent().map(Path::to_owned))
            .flatten();
    }
    let local = root.join(WORKSPACE_DIR);
    local
        .join("zephyr/CMakeLists.txt")
        .is_file()
        .then_some(local)
}

/// How to make a workspace, for the skip message and the README.
pub(crate) const HOW_TO_CREATE: &str = "\
no Zephyr workspace: ZEPHYR_BASE is unset and zephyr-workspace/zephyr does not exist.
To create one (needs internet; Zephyr 4.3.0 with its CMSIS 6, mbedTLS and picolibc
modules and WAMR 2.4.3, as this repository's west.yml pins them), from the repository root:
    pip install west
    west init -m <this repository's URL or path> zephyr-workspace
    (cd zephyr-workspace && west update && pip install -r zephyr/scripts/requirements-base.txt)
    cargo xtask zephyr
(Debian: apt-get install gcc-arm-none-eabi qemu-system-arm cmake ninja-build; see README.md,
\"Zephyr + WAMR device\")";

/// `ZEPHYR_BASE`, when set and not empty.
fn zephyr_base() -> Option<PathBuf> {
    std::env::var_os("ZEPHYR_BASE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The workspace `run` would build in, if there is one.
pub(crate) fn workspace_from_env(root: &Path) -> Option<PathBuf> {
    find_workspace(root, zephyr_base().as_deref())
}

pub(crate) fn run(root: &Path) -> anyhow::Result<Outcome> {
    let zephyr_base = zephyr_base();
    let Some(workspace) = find_workspace(root, zephyr_base.as_deref()) else {
        if let Some(base) = &zephyr_base {
            bail!(
                "ZEPHYR_BASE={} is not a Zephyr tree (no CMakeLists.txt there)",
                base.display()
            );
        }
        println!("xtask: {HOW_TO_CREATE}");
        return Ok(Outcome::Skipped(
            "no Zephyr workspace (see `cargo xtask zephyr`)".to_owned(),
        ));
    };
    let build = build_dir(root, BOARD);
    let mut west = Command::new("west");
    west.current_dir(&workspace)
        .args(["build", "--pristine", "auto", "-b", BOARD, "-d"])
        .arg(&build)
        .arg(root.join("zephyr-app"));
    if zephyr_base.is_none() {
        west.env("ZEPHYR_BASE", workspace.join("zephyr"));
    }
    // Debian's arm-none-eabi GCC with picolibc, unless the caller chose.
    if std::env::var_os("ZEPHYR_TOOLCHAIN_VARIANT").is_none() {
        west.env("ZEPHYR_TOOLCHAIN_VARIANT", "gnuarmemb")
            .env("GNUARMEMB_TOOLCHAIN_PATH", "/usr");
    }
    cmd::run(&mut west).with_context(|| {
        format!(
            "building zephyr-app in the workspace {} (is `west` on PATH?)",
            workspace.display()
        )
    })?;
    let elf = elf_path(root);
    if !elf.is_file() {
        bail!("west build succeeded but {} is missing", elf.display());
    }
    println!("xtask: built {}", elf.display());
    Ok(Outcome::Built(elf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_zephyr_base_s_parent_or_the_local_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        assert_eq!(find_workspace(root, None), None);
        std::fs::create_dir_all(root.join("zephyr-workspace/zephyr")).expect("mkdir");
        assert_eq!(
            find_workspace(root, None),
            None,
            "an empty zephyr/ is no tree"
        );
        std::fs::write(root.join("zephyr-workspace/zephyr/CMakeLists.txt"), "").expect("write");
        assert_eq!(
            find_workspace(root, None),
            Some(root.join("zephyr-workspace"))
        );
        let elsewhere = root.join("ws/zephyr");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        assert_eq!(find_workspace(root, Some(&elsewhere)), None);
        std::fs::write(elsewhere.join("CMakeLists.txt"), "").expect("write");
        assert_eq!(
            find_workspace(root, Some(&elsewhere)),
            Some(root.join("ws"))
        );
    }

    #[test]
    fn the_image_lands_where_the_architecture_says() {
        assert_eq!(
            elf_path(Path::new("/r")),
            Path::new("/r/zephyr-workspace/build/mps2_an385/zephyr/zephyr.elf")
        );
    }
}
