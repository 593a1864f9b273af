//! Rust targets and components, added with rustup when missing. Shared by
//! `cargo xtask setup` (and so `test`), `up`, and the firmware and
//! application builds.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anyhow::Context as _;

use crate::cmd;

/// What rustup manages that a task may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A compilation target (`rustup target ...`), the standard library
    /// for it.
    Target,
    /// A toolchain component (`rustup component ...`), such as clippy.
    Component,
}

impl Kind {
    /// The rustup subcommand: `target` or `component`.
    fn subcommand(self) -> &'static str {
        match self {
            Kind::Target => "target",
            Kind::Component => "component",
        }
    }
}

/// The targets of `wanted` that `installed` (the output of `rustup target
/// list --installed`, one target a line) does not list, in the order
/// wanted.
pub(crate) fn missing_targets<'a>(installed: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|name| !installed.lines().any(|line| line.trim() == *name))
        .collect()
}

/// The components of `wanted` that `installed` (the output of `rustup
/// component list --installed`) does not list, in the order wanted.
/// rustup lists a component with the toolchain's host target
/// (`clippy-x86_64-unknown-linux-gnu`); `host` is that target.
pub(crate) fn missing_components<'a>(
    installed: &str,
    host: &str,
    wanted: &[&'a str],
) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|name| {
            let with_host = format!("{name}-{host}");
            !installed
                .lines()
                .map(str::trim)
                .any(|line| line == *name || line == with_host)
        })
        .collect()
}

/// The host target from `rustc -vV` output (its `host: ...` line).
pub(crate) fn host_of(rustc_version: &str) -> Option<&str> {
    rustc_version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::trim)
}

/// Targets and components found installed (or installed) in this run, so
/// that rustup is asked once per name.
static CHECKED: Mutex<Vec<(Kind, &'static str)>> = Mutex::new(Vec::new());

/// Makes sure rustup has every name of `wanted` for the toolchain that
/// cargo uses in `dir`, adding the missing ones in one `rustup <kind> add`.
/// Without rustup, says that it cannot check and carries on: the build
/// then fails if something is missing.
pub(crate) fn ensure(dir: &Path, kind: Kind, wanted: &[&'static str]) -> anyhow::Result<()> {
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let unchecked: Vec<&'static str> = wanted
        .iter()
        .copied()
        .filter(|name| !checked.contains(&(kind, *name)))
        .collect();
    if unchecked.is_empty() {
        return Ok(());
    }
    let what = kind.subcommand();
    if !cmd::on_path("rustup") {
        println!(
            "xtask: rustup not found: cannot check that the Rust {what}(s) {} are installed; \
             assuming they are",
            unchecked.join(", ")
        );
        checked.extend(unchecked.iter().map(|name| (kind, *name)));
        return Ok(());
    }
    let mut list = Command::new("rustup");
    list.current_dir(dir).args([what, "list", "--installed"]);
    let installed = cmd::output(&mut list)?;
    let to_add = match kind {
        Kind::Target => missing_targets(&installed, &unchecked),
        Kind::Component => {
            let mut rustc = Command::new("rustc");
            rustc.current_dir(dir).arg("-vV");
            let version = cmd::output(&mut rustc)?;
            let host = host_of(&version).context("`rustc -vV` names no host target")?;
            missing_components(&installed, host, &unchecked)
        }
    };
    if !to_add.is_empty() {
        println!(
            "xtask: the Rust {what}(s) {} are missing; adding them",
            to_add.join(", ")
        );
        let mut add = Command::new("rustup");
        add.current_dir(dir).args([what, "add"]).args(&to_add);
        cmd::run(&mut add)
            .with_context(|| format!("could not add the Rust {what}(s) {}", to_add.join(", ")))?;
    }
    checked.extend(unchecked.iter().map(|name| (kind, *name)));
    Ok(())
}

/// Makes sure rustup has `target` for the toolchain that cargo uses in
/// `dir`; see [`ensure`].
pub(crate) fn ensure_target(dir: &Path, target: &'static str) -> anyhow::Result<()> {
    ensure(dir, Kind::Target, &[target])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_missing_targets_by_whole_name() {
        let installed = "thumbv7em-none-eabihf\nwasm32-unknown-unknown\nx86_64-unknown-linux-gnu\n";
        assert_eq!(
            missing_targets(
                installed,
                &[
                    "thumbv7m-none-eabi",
                    "thumbv7em-none-eabihf",
                    "wasm32-unknown-unknown"
                ]
            ),
            ["thumbv7m-none-eabi"]
        );
        assert_eq!(
            missing_targets("", &["wasm32-unknown-unknown"]),
            ["wasm32-unknown-unknown"]
        );
        // A longer target that starts like a wanted one is not it.
        assert_eq!(
            missing_targets("thumbv7m-none-eabihf\n", &["thumbv7m-none-eabi"]),
            ["thumbv7m-none-eabi"]
        );
    }

    #[test]
    fn finds_missing_components_listed_with_the_host_target() {
        const HOST: &str = "x86_64-unknown-linux-gnu";
        let installed = "cargo-x86_64-unknown-linux-gnu\n\
                         clippy-x86_64-unknown-linux-gnu\n\
                         rust-std-thumbv7m-none-eabi\n\
                         rust-std-x86_64-unknown-linux-gnu\n\
                         rustc-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            missing_components(installed, HOST, &["rustfmt", "clippy"]),
            ["rustfmt"]
        );
        assert!(missing_components("rustfmt\nclippy\n", HOST, &["rustfmt", "clippy"]).is_empty());
        // `rust-std-thumbv7m-none-eabi` is not a component called `rust`,
        // and clippy for another host is not this toolchain's.
        assert_eq!(missing_components(installed, HOST, &["rust"]), ["rust"]);
        assert_eq!(
            missing_components(installed, "aarch64-apple-darwin", &["clippy"]),
            ["clippy"]
        );
    }

    #[test]
    fn reads_the_host_from_rustc() {
        let version = "rustc 1.95.0 (abc 2026-01-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(host_of(version), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(host_of("rustc 1.95.0\n"), None);
    }
}
