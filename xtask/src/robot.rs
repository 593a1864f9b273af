//! `cargo xtask robot`: the Robot Framework suite in `tests/robot`, which
//! drives the `wasmbed` command (a gateway and emulated devices running
//! the real firmware) as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use clap::ValueEnum;

use crate::{apps, cmd, firmware, venv};

/// The suite, relative to the repository root.
const SUITE: &str = "tests/robot";

/// The modules the suite deploys, as `target/apps/<name>.wasm`.
const MODULES: [&str; 4] = ["primes", "fib", "spin", "trap"];

/// The emulator the devices run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Backend {
    /// QEMU (`qemu-system-arm`).
    #[default]
    Qemu,
    /// Renode; the suite is skipped when `renode` is not on PATH.
    Renode,
}

impl Backend {
    /// The name the suite's `${BACKEND}` variable and `wasmbed emulator run
    /// --backend` take.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Renode => "renode",
        }
    }
}

/// Builds what the suite needs (the `wasmbed` command; the firmware and the
/// modules when missing), makes sure Robot Framework is installed in the
/// project's virtual environment, and runs the suite with it, writing its
/// report to `target/robot`.
pub(crate) fn run(root: &Path, backend: Backend) -> anyhow::Result<()> {
    run_with(root, backend, None)
}

/// A firmware image other than the bare-metal one, and the board it runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image<'a> {
    pub(crate) elf: &'a Path,
    pub(crate) board: &'a str,
}

/// [`run`], against `image` when given (the suite's `${BOARD}` variable
/// names its board), the bare-metal firmware otherwise.
pub(crate) fn run_with(
    root: &Path,
    backend: Backend,
    image: Option<Image<'_>>,
) -> anyhow::Result<()> {
    cmd::run(cmd::cargo(root).args(["build", "-p", "wasmbed-cli"]))?;
    let target = cmd::target_dir(root)?;
    let wasmbed = target.join("debug").join("wasmbed");
    anyhow::ensure!(
        wasmbed.is_file(),
        "wasmbed-cli built but {} does not exist",
        wasmbed.display()
    );

    let mut elf = match image {
        Some(image) => image.elf.to_owned(),
        None => firmware::elf_path(root)?,
    };
    if image.is_none() && !elf.is_file() {
        println!(
            "xtask: no firmware at {}: building it",
            cmd::show(root, &elf)
        );
        elf = firmware::build(root)?;
    }

    let apps_dir = apps::out_dir(root)?;
    let missing = missing_modules(&apps_dir);
    if !missing.is_empty() {
        println!(
            "xtask: {} missing from {}: building the applications",
            missing.join(", "),
            cmd::show(root, &apps_dir)
        );
        apps::build(root)?;
        let still = missing_modules(&apps_dir);
        anyhow::ensure!(
            still.is_empty(),
            "the applications built but {} are still missing from {}",
            still.join(", "),
            apps_dir.display()
        );
    }

    let venv = venv::ensure(root)?;

    let out = target.join("robot");
    cmd::run(
        Command::new(venv.python())
            .current_dir(root)
            .env("WASMBED_BIN", &wasmbed)
            .env("WASMBED_FIRMWARE", &elf)
            .env("WASMBED_APPS", &apps_dir)
            .args(robot_args(&out, backend))
            .args(
                image
                    .iter()
                    .flat_map(|image| ["--variable".to_owned(), format!("BOARD:{}", image.board)]),
            )
            .arg(root.join(SUITE)),
    )
    .with_context(|| {
        format!(
            "the Robot tests failed; see {}",
            cmd::show(root, &out.join("log.html"))
        )
    })
}

/// The arguments of Python that run the suite, but for the suite itself.
fn robot_args(out: &Path, backend: Backend) -> Vec<std::ffi::OsString> {
    vec![
        "-m".into(),
        "robot".into(),
        "--outputdir".into(),
        out.into(),
        "--variable".into(),
        format!("BACKEND:{}", backend.as_str()).into(),
    ]
}

/// The modules of [`MODULES`] that are not in `dir`.
fn missing_modules(dir: &Path) -> Vec<&'static str> {
    MODULES
        .into_iter()
        .filter(|name| !module_path(dir, name).is_file())
        .collect()
}

fn module_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_backend_as_a_robot_variable() {
        let args = robot_args(Path::new("target/robot"), Backend::Renode);
        let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args,
            [
                "-m",
                "robot",
                "--outputdir",
                "target/robot",
                "--variable",
                "BACKEND:renode"
            ]
        );
    }

    #[test]
    fn backend_names_are_what_the_cli_takes() {
        for backend in Backend::value_variants() {
            let name = backend
                .to_possible_value()
                .expect("every backend is selectable")
                .get_name()
                .to_owned();
            assert_eq!(name, backend.as_str());
        }
    }

    #[test]
    fn lists_the_modules_that_are_missing() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-robot-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(module_path(&dir, "fib"), b"\0asm")?;
        std::fs::write(module_path(&dir, "trap"), b"\0asm")?;
        let missing = missing_modules(&dir);
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(missing, ["primes", "spin"]);
        Ok(())
    }

    #[test]
    fn the_suite_and_its_library_exist() {
        let suite = crate::workspace_root().join(SUITE);
        assert!(suite.join("wasmbed.robot").is_file());
        assert!(suite.join("WasmbedLibrary.py").is_file());
    }
}
