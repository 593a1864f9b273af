//! The project's own Python virtual environment, holding the Python tools
//! of the test run (Robot Framework, Schemathesis, kubernetes-validate) at the versions pinned
//! in `tests/requirements.txt`.
//!
//! It lives in the target directory (`target/venv`), or where
//! `WASMBED_VENV` says, and is made with `python3 -m venv`: nothing is
//! installed into the system's Python. It is kept across runs: a copy of
//! the requirements it was last installed from sits inside it, and pip runs
//! again only when the checked-in file differs from that copy (pip then
//! installs only what is missing or pinned differently) or a tool's program
//! is gone.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::cmd;

/// The environment variable naming another directory for the virtual
/// environment (relative to the repository root, or absolute), for
/// example one shared by several work trees.
pub(crate) const VENV_ENV: &str = "WASMBED_VENV";

/// The pinned requirements, relative to the repository root.
pub(crate) const REQUIREMENTS: &str = "tests/requirements.txt";

/// The programs the requirements install, which the tasks run.
pub(crate) const PROGRAMS: [&str; 3] = ["robot", "schemathesis", "kubernetes-validate"];

/// The copy of the requirements last installed, inside the environment.
const INSTALLED_REQUIREMENTS: &str = "wasmbed-requirements.txt";

/// The Python that makes the environment.
const PYTHON: &str = "python3";

/// A virtual environment with the pinned tools installed.
#[derive(Debug, Clone)]
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// Its Python interpreter.
    pub(crate) fn python(&self) -> PathBuf {
        self.program("python")
    }

    /// One of its programs, such as `schemathesis`.
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The environment's directory: `override_dir` (the value of
/// [`VENV_ENV`]) against `root` when set and not empty, else `venv` in the
/// workspace's target directory.
pub(crate) fn resolve_dir(root: &Path, override_dir: Option<&OsStr>, target_dir: &Path) -> PathBuf {
    match override_dir.filter(|dir| !dir.is_empty()) {
        Some(dir) => root.join(dir),
        None => target_dir.join("venv"),
    }
}

/// What [`ensure`] has to do to an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Make it (again, when its interpreter is gone), then install.
    Create,
    /// Install the requirements into it.
    Install,
    /// It is ready.
    Nothing,
}

/// Decides from what is there: whether the interpreter exists, the
/// requirements it was last installed from (if any), the checked-in
/// requirements, and whether every program of [`PROGRAMS`] exists.
fn next_action(
    has_python: bool,
    installed: Option<&str>,
    wanted: &str,
    has_programs: bool,
) -> Action {
    if !has_python {
        Action::Create
    } else if installed != Some(wanted) || !has_programs {
        Action::Install
    } else {
        Action::Nothing
    }
}

/// Whether `python3 -m venv` can make an environment with pip in it. On
/// Debian the `venv` module is there but `ensurepip`, which it needs, is
/// in the `python3-venv` package. Asked quietly: the answer decides what
/// `setup --print-debian-packages` prints.
pub(crate) fn python_can_make_venvs() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import ensurepip, venv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Makes the environment when missing and installs the pinned tools when
/// they are not all there at the pinned versions; returns it.
pub(crate) fn ensure(root: &Path) -> anyhow::Result<Venv> {
    let target = cmd::target_dir(root)?;
    let venv = Venv {
        dir: resolve_dir(root, std::env::var_os(VENV_ENV).as_deref(), &target),
    };
    let requirements = root.join(REQUIREMENTS);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.dir.join(INSTALLED_REQUIREMENTS);
    let installed = std::fs::read_to_string(&stamp).ok();
    let has_programs = PROGRAMS.iter().all(|p| venv.program(p).is_file());
    let shown = cmd::show(root, &venv.dir);
    match next_action(
        venv.python().is_file(),
        installed.as_deref(),
        &wanted,
        has_programs,
    ) {
        Action::Nothing => {
            println!("xtask: Python tools ready in {shown}");
            return Ok(venv);
        }
        Action::Create => create(&venv)?,
        Action::Install => {}
    }
    // Once pip has started, the old copy no longer tells what is there.
    let _ = std::fs::remove_file(&stamp);
    cmd::run(
        Command::new(venv.python())
            .args([
                "-m",
                "pip",
                "install",
                "--require-virtualenv",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
            ])
            .arg(&requirements),
    )
    .with_context(|| format!("installing {REQUIREMENTS} into {shown}"))?;
    if let Some(absent) = PROGRAMS.iter().find(|p| !venv.program(p).is_file()) {
        bail!(
            "{REQUIREMENTS} installed into {shown}, but it has no `{absent}` program: \
             is the package that provides it still listed?"
        );
    }
    std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    println!("xtask: Python tools installed in {shown}");
    Ok(venv)
}

/// `python3 -m venv DIR`, replacing whatever is left in DIR (an
/// environment whose interpreter is gone cannot be repaired).
fn create(venv: &Venv) -> anyhow::Result<()> {
    if !python_can_make_venvs() {
        bail!(
            "`{PYTHON} -m venv` cannot make a virtual environment (no {PYTHON}, or no ensurepip); \
             install it with `{}`",
            crate::setup::apt_install_line(&[crate::setup::PYTHON_VENV_PACKAGE])
        );
    }
    let mut make = Command::new(PYTHON);
    make.args(["-m", "venv", "--clear"]).arg(&venv.dir);
    cmd::run(&mut make)
        .with_context(|| format!("making the virtual environment {}", venv.dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lives_in_the_target_directory_unless_told_otherwise() {
        let root = Path::new("/src/wasmbed");
        let target = Path::new("/src/wasmbed/target");
        assert_eq!(
            resolve_dir(root, None, target),
            Path::new("/src/wasmbed/target/venv")
        );
        // CARGO_TARGET_DIR moves the target directory, and the venv with it.
        assert_eq!(
            resolve_dir(root, None, Path::new("/cache/target")),
            Path::new("/cache/target/venv")
        );
        assert_eq!(
            resolve_dir(root, Some(OsStr::new("")), target),
            Path::new("/src/wasmbed/target/venv")
        );
        assert_eq!(
            resolve_dir(root, Some(OsStr::new("/opt/venv")), target),
            Path::new("/opt/venv")
        );
        assert_eq!(
            resolve_dir(root, Some(OsStr::new(".venv")), target),
            Path::new("/src/wasmbed/.venv")
        );
    }

    #[test]
    fn programs_are_in_bin() {
        let venv = Venv {
            dir: PathBuf::from("/w/target/venv"),
        };
        assert_eq!(venv.python(), Path::new("/w/target/venv/bin/python"));
        assert_eq!(
            venv.program("schemathesis"),
            Path::new("/w/target/venv/bin/schemathesis")
        );
    }

    #[test]
    fn installs_only_when_something_changed() {
        let wanted = "robotframework==7.5\n";
        assert_eq!(next_action(false, None, wanted, false), Action::Create);
        // An interpreter gone (its Python was removed) means a new
        // environment, whatever the copy says.
        assert_eq!(
            next_action(false, Some(wanted), wanted, true),
            Action::Create
        );
        assert_eq!(next_action(true, None, wanted, false), Action::Install);
        assert_eq!(
            next_action(true, Some("robotframework==7.4\n"), wanted, true),
            Action::Install
        );
        // A program deleted behind pip's back.
        assert_eq!(
            next_action(true, Some(wanted), wanted, false),
            Action::Install
        );
        assert_eq!(
            next_action(true, Some(wanted), wanted, true),
            Action::Nothing
        );
    }

    #[test]
    fn the_requirements_pin_every_package_and_install_the_programs() {
        let text = std::fs::read_to_string(crate::workspace_root().join(REQUIREMENTS))
            .expect("the requirements file");
        let packages: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        for line in &packages {
            assert!(line.contains("=="), "`{line}` is not pinned");
        }
        for package in ["robotframework==", "schemathesis=="] {
            assert!(
                packages.iter().any(|l| l.starts_with(package)),
                "no {package} in {REQUIREMENTS}"
            );
        }
    }
}
