//! `cargo xtask setup`: installs what the test run needs, as far as that
//! is possible without root, and names the Debian packages that are left.
//!
//! - the Rust targets and components, with rustup;
//! - cargo-nextest and cargo-fuzz, with `cargo install --locked`;
//! - the Python tools, into the project's virtual environment
//!   ([`crate::venv`]);
//! - Debian packages need root: they are checked, never installed. When
//!   some are missing, setup does everything else, then fails with one line
//!   that gives the `apt-get install` command. `--print-debian-packages`
//!   prints their names instead, for `.ci/run`, which runs as root.
//!
//! Everything already present is left alone, so a second run only checks.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::{apps, cmd, firmware, rustup, test, venv};

/// The Debian package that makes `python3 -m venv` work.
pub(crate) const PYTHON_VENV_PACKAGE: &str = "python3-venv";

/// The Debian package of QEMU's Arm system emulator.
pub(crate) const QEMU_PACKAGE: &str = "qemu-system-arm";

/// The Rust components the checks run.
const COMPONENTS: [&str; 2] = ["rustfmt", "clippy"];

/// Cargo subcommands, by the name of their program and crate.
const CARGO_TOOLS: [&str; 2] = ["cargo-nextest", "cargo-fuzz"];

/// How to tell that a Debian package is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// It provides this program, looked up in `PATH`.
    Program(&'static str),
    /// It installs this file (a program in `/usr/sbin`, which a user's
    /// `PATH` may lack).
    File(&'static str),
    /// `python3 -m venv` can make an environment with pip.
    PythonVenv,
}

/// A Debian package a step of the test run needs.
#[derive(Debug, Clone, Copy)]
struct DebianPackage {
    name: &'static str,
    probe: Probe,
    /// Needed only by the steps `--skip-firmware` leaves out.
    firmware_only: bool,
}

/// Every Debian package the test run needs, in the order they are named.
///
/// - gcc: `cc`, the linker rustc drives (it links xtask itself, so `.ci/run`
///   installs it before anything else), and the C compiler of the C ABI
///   test (`protocol/ffi/tests/c_abi.rs`);
/// - g++: that test's check that the C header is valid C++;
/// - qemu-system-arm: boots the firmware in the tests and the Robot suite;
/// - chromium: the headless browser of the dashboard tests;
/// - haproxy: the load balancer in front of three gateways in
///   `host/cli/tests/load_balanced.rs`;
/// - python3-venv: `python3 -m venv`, for the Python tools.
const DEBIAN_PACKAGES: [DebianPackage; 6] = [
    DebianPackage {
        name: "gcc",
        probe: Probe::Program("gcc"),
        firmware_only: false,
    },
    DebianPackage {
        name: "g++",
        probe: Probe::Program("g++"),
        firmware_only: false,
    },
    DebianPackage {
        name: QEMU_PACKAGE,
        probe: Probe::Program("qemu-system-arm"),
        firmware_only: true,
    },
    DebianPackage {
        name: "chromium",
        probe: Probe::Program("chromium"),
        firmware_only: false,
    },
    DebianPackage {
        name: "haproxy",
        probe: Probe::File("/usr/sbin/haproxy"),
        firmware_only: false,
    },
    DebianPackage {
        name: PYTHON_VENV_PACKAGE,
        probe: Probe::PythonVenv,
        firmware_only: false,
    },
];

/// The names of the packages of `packages` that a run needs (all, or
/// without the firmware's with `skip_firmware`) and `present` says are
/// missing.
fn missing_debian_packages(
    packages: &[DebianPackage],
    skip_firmware: bool,
    present: impl Fn(Probe) -> bool,
) -> Vec<&'static str> {
    packages
        .iter()
        .filter(|package| !(skip_firmware && package.firmware_only))
        .filter(|package| !present(package.probe))
        .map(|package| package.name)
        .collect()
}

/// Looks on this machine.
fn is_present(probe: Probe) -> bool {
    match probe {
        Probe::Program(name) => cmd::on_path(name),
        Probe::File(path) => Path::new(path).is_file(),
        Probe::PythonVenv => venv::python_can_make_venvs(),
    }
}

/// The command that installs `packages`, as a user types it.
pub(crate) fn apt_install_line(packages: &[&str]) -> String {
    format!("sudo apt-get install -y {}", packages.join(" "))
}

/// The Rust targets the steps build for, each with the directory whose
/// toolchain builds it.
fn rust_targets(root: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut targets = vec![
        (firmware::PROJECT.path(root), firmware::PROJECT.target),
        (apps::PRIMES.path(root), apps::PRIMES.target),
    ];
    targets.extend(
        test::NO_STD_TARGETS
            .iter()
            .map(|target| (root.to_path_buf(), *target)),
    );
    targets
}

/// `cargo xtask setup`; see the module's documentation.
pub(crate) fn run(
    root: &Path,
    skip_firmware: bool,
    print_debian_packages: bool,
) -> anyhow::Result<()> {
    let debian = missing_debian_packages(&DEBIAN_PACKAGES, skip_firmware, is_present);
    if print_debian_packages {
        println!("{}", debian.join(" "));
        return Ok(());
    }

    for (dir, target) in rust_targets(root) {
        rustup::ensure_target(&dir, target)?;
    }
    rustup::ensure(root, rustup::Kind::Component, &COMPONENTS)?;

    for tool in CARGO_TOOLS {
        if !cmd::on_path(tool) {
            println!("xtask: {tool} is missing; installing it");
            cmd::run(cmd::cargo(root).args(["install", "--locked", tool]))?;
        }
    }

    if debian.contains(&PYTHON_VENV_PACKAGE) {
        println!(
            "xtask: the Python tools wait for {PYTHON_VENV_PACKAGE}: `python3 -m venv` cannot work yet"
        );
    } else {
        venv::ensure(root)?;
    }

    if !debian.is_empty() {
        bail!(
            "Debian packages are missing (everything else is set up; installing them needs root): {}",
            apt_install_line(&debian)
        );
    }
    println!(
        "xtask: setup done: Rust targets and {}, {}, the Python tools and the Debian packages are there",
        COMPONENTS.join(", "),
        CARGO_TOOLS.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_present(_: Probe) -> bool {
        true
    }

    fn none_present(_: Probe) -> bool {
        false
    }

    #[test]
    fn names_the_missing_packages_in_order() {
        assert!(missing_debian_packages(&DEBIAN_PACKAGES, false, all_present).is_empty());
        assert_eq!(
            missing_debian_packages(&DEBIAN_PACKAGES, false, none_present),
            [
                "gcc",
                "g++",
                "qemu-system-arm",
                "chromium",
                "haproxy",
                "python3-venv"
            ]
        );
        let no_browser_no_venv =
            |probe| !matches!(probe, Probe::Program("chromium") | Probe::PythonVenv);
        assert_eq!(
            missing_debian_packages(&DEBIAN_PACKAGES, false, no_browser_no_venv),
            ["chromium", "python3-venv"]
        );
    }

    #[test]
    fn a_run_without_the_firmware_does_not_need_qemu() {
        assert_eq!(
            missing_debian_packages(&DEBIAN_PACKAGES, true, none_present),
            ["gcc", "g++", "chromium", "haproxy", "python3-venv"]
        );
        let no_qemu = |probe| probe != Probe::Program("qemu-system-arm");
        assert!(missing_debian_packages(&DEBIAN_PACKAGES, true, no_qemu).is_empty());
        assert_eq!(
            missing_debian_packages(&DEBIAN_PACKAGES, false, no_qemu),
            ["qemu-system-arm"]
        );
    }

    #[test]
    fn the_install_line_names_every_package() {
        assert_eq!(
            apt_install_line(&["qemu-system-arm", "chromium"]),
            "sudo apt-get install -y qemu-system-arm chromium"
        );
    }

    #[test]
    fn the_targets_are_those_the_steps_build_for() {
        let root = Path::new("/w");
        let targets: Vec<&str> = rust_targets(root).iter().map(|(_, t)| *t).collect();
        for target in [
            "thumbv7m-none-eabi",
            "thumbv7em-none-eabihf",
            "wasm32-unknown-unknown",
        ] {
            assert!(targets.contains(&target), "{target} is not set up");
        }
        // Each project's target is added with the project's toolchain.
        assert!(
            rust_targets(root).contains(&(PathBuf::from("/w/firmware/mps2"), "thumbv7m-none-eabi"))
        );
    }
}
