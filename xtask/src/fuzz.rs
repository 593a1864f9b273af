//! Short cargo-fuzz runs of the decoders' fuzz targets.
//!
//! cargo-fuzz needs a nightly compiler. When rustup has a `nightly`
//! toolchain it is used (`cargo +nightly fuzz`); otherwise the stable
//! compiler is run with `RUSTC_BOOTSTRAP=1`, which unlocks the unstable
//! sanitizer flags cargo-fuzz passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use crate::cmd;

/// The environment variable that overrides the default run time.
pub(crate) const SECONDS_ENV: &str = "WASMBED_FUZZ_SECONDS";

/// Seconds each target runs when neither `--seconds` nor the environment say.
pub(crate) const DEFAULT_SECONDS: u64 = 20;

/// The cargo-fuzz project: its own `Cargo.toml`, outside the workspace.
pub(crate) fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("fuzz")
}

/// Whether the cargo-fuzz project exists yet.
pub(crate) fn exists(root: &Path) -> bool {
    fuzz_dir(root).join("Cargo.toml").is_file()
}

/// The fuzz targets, as `cargo fuzz list` names them.
pub(crate) fn list(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut cmd = fuzz_cargo(root);
    cmd.args(["fuzz", "list"]);
    let out = cmd::output(&mut cmd)?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Fuzzes one target for `seconds` seconds; a crash is an error.
pub(crate) fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<()> {
    let mut cmd = fuzz_cargo(root);
    cmd.args(["fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={seconds}"));
    cmd::run(&mut cmd)?;
    Ok(())
}

/// `cargo xtask fuzz`: the named targets, or all of them, one after another.
pub(crate) fn run(root: &Path, seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    if !exists(root) {
        bail!("no fuzz project at {}", fuzz_dir(root).display());
    }
    let known = list(root)?;
    let targets = if targets.is_empty() {
        known
    } else {
        check_names(targets, &known)?
    };
    for target in &targets {
        run_target(root, target, seconds).with_context(|| format!("fuzz target `{target}`"))?;
    }
    println!(
        "xtask: fuzzed {} target(s) for {seconds}s each",
        targets.len()
    );
    Ok(())
}

/// Rejects target names that `cargo fuzz list` does not know.
fn check_names(wanted: &[String], known: &[String]) -> anyhow::Result<Vec<String>> {
    if let Some(unknown) = wanted.iter().find(|t| !known.contains(t)) {
        bail!(
            "unknown fuzz target `{unknown}`; known targets: {}",
            known.join(", ")
        );
    }
    Ok(wanted.to_vec())
}

/// A `cargo` command that can run cargo-fuzz: nightly if rustup has it,
/// else stable with `RUSTC_BOOTSTRAP=1`.
fn fuzz_cargo(root: &Path) -> Command {
    let mut cmd = cmd::cargo(root);
    if nightly_installed() {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd
}

/// Asks rustup once per run.
fn nightly_installed() -> bool {
    static NIGHTLY: OnceLock<bool> = OnceLock::new();
    *NIGHTLY.get_or_init(|| {
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "list"]);
        cmd::output(&mut cmd).is_ok_and(|list| lists_nightly(&list))
    })
}

/// Whether `rustup toolchain list` output has the toolchain that
/// `+nightly` selects (`nightly-<host>`, not a dated `nightly-2025-...`).
fn lists_nightly(list: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_undated_nightly_only() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n";
        assert!(lists_nightly(list));
        assert!(!lists_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\n"
        ));
        assert!(!lists_nightly(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!lists_nightly(""));
    }

    #[test]
    fn unknown_target_names_are_rejected() {
        let known = vec!["frame".to_owned(), "message".to_owned()];
        assert!(check_names(&["frame".to_owned()], &known).is_ok());
        let err = check_names(&["nope".to_owned()], &known).expect_err("unknown name");
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
