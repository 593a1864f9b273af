//! Short cargo-fuzz runs of the protocol's fuzz targets.
//!
//! cargo-fuzz needs a nightly compiler. When rustup has a `nightly`
//! toolchain it is used (`cargo +nightly fuzz`); otherwise the stable
//! compiler is run with `RUSTC_BOOTSTRAP=1`, which unlocks the unstable
//! sanitizer flags cargo-fuzz passes.
//!
//! Each target starts from its corpus (`fuzz/corpus/<target>`, not checked
//! in) and its checked-in seeds (`fuzz/seeds/<target>`). Before the first
//! target of a run, the fuzz project's own tests (`cargo test` in `fuzz/`)
//! check that the seeds are up to date and pass their targets' checks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Fuzzes one target for `seconds` seconds, from its corpus and its
/// seeds; a crash is an error. Checks the seeds first, once per run.
pub(crate) fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<()> {
    check_seeds(root)?;
    let dir = fuzz_dir(root);
    let corpus = dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("could not create {}", corpus.display()))?;
    let seeds = dir.join("seeds").join(target);
    let seeds = seeds.is_dir().then_some(seeds);
    let mut cmd = fuzz_cargo(root);
    cmd.args(run_args(target, &corpus, seeds.as_deref(), seconds));
    cmd::run(&mut cmd)?;
    Ok(())
}

/// The arguments of `cargo fuzz run`: new inputs go to `corpus`, the
/// first directory; `seeds` is only read.
fn run_args(target: &str, corpus: &Path, seeds: Option<&Path>, seconds: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["fuzz".into(), "run".into(), target.into()];
    args.push(corpus.into());
    args.extend(seeds.map(OsString::from));
    args.push("--".into());
    args.push(format!("-max_total_time={seconds}").into());
    args
}

/// Whether the seeds passed their tests in this run.
static SEEDS_CHECKED: AtomicBool = AtomicBool::new(false);

/// `cargo test` in the fuzz project, once per run: the checked-in seeds
/// are what the protocol's samples make, and pass their targets' checks.
pub(crate) fn check_seeds(root: &Path) -> anyhow::Result<()> {
    if SEEDS_CHECKED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut cmd = cmd::cargo(&fuzz_dir(root));
    cmd.arg("test");
    cmd::run(&mut cmd).context("the fuzz seeds are out of date or fail their checks")?;
    SEEDS_CHECKED.store(true, Ordering::Relaxed);
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
    fn runs_from_the_corpus_and_the_seeds() {
        let corpus = Path::new("fuzz/corpus/session");
        let seeds = Path::new("fuzz/seeds/session");
        assert_eq!(
            run_args("session", corpus, Some(seeds), 7),
            [
                "fuzz",
                "run",
                "session",
                "fuzz/corpus/session",
                "fuzz/seeds/session",
                "--",
                "-max_total_time=7"
            ]
        );
        assert_eq!(
            run_args("session", corpus, None, 7),
            [
                "fuzz",
                "run",
                "session",
                "fuzz/corpus/session",
                "--",
                "-max_total_time=7"
            ]
        );
    }

    #[test]
    fn unknown_target_names_are_rejected() {
        let known = vec!["frame".to_owned(), "message".to_owned()];
        assert!(check_names(&["frame".to_owned()], &known).is_ok());
        let err = check_names(&["nope".to_owned()], &known).expect_err("unknown name");
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
