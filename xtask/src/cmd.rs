//! Running external commands: echo them, run them, and turn failures into
//! a typed error that names the command.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::Context as _;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CmdError {
    /// The program could not be started (not installed, not executable, ...).
    #[error("could not start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status})")]
    Failed { cmd: String, status: ExitStatus },
    /// The program printed something that is not UTF-8 where text was expected.
    #[error("`{cmd}` printed output that is not UTF-8")]
    NotUtf8 { cmd: String },
}

/// A `cargo` command in `dir`. Always the `cargo` on `PATH` (the rustup
/// proxy), never `$CARGO`, so that `+toolchain` arguments work.
pub(crate) fn cargo(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir);
    cmd
}

/// Runs `cmd` with inherited stdin, stdout and stderr, after echoing it.
pub(crate) fn run(cmd: &mut Command) -> Result<(), CmdError> {
    let shown = display(cmd);
    println!("xtask: $ {shown}");
    let status = cmd.status().map_err(|source| CmdError::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(CmdError::Failed { cmd: shown, status })
    }
}

/// Runs `cmd`, after echoing it, and returns its standard output; its
/// standard error is inherited so that a failure explains itself.
pub(crate) fn output(cmd: &mut Command) -> Result<String, CmdError> {
    let shown = display(cmd);
    println!("xtask: $ {shown}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| CmdError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd: shown,
            status: out.status,
        });
    }
    String::from_utf8(out.stdout).map_err(|_| CmdError::NotUtf8 { cmd: shown })
}

/// The target directory of the cargo workspace in `dir` (honours
/// CARGO_TARGET_DIR and build.target-dir).
pub(crate) fn target_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let metadata = output(cargo(dir).args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("`cargo metadata` printed no JSON")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` names no target directory")
}

/// `path` as shown to the user: relative to `root` when under it.
pub(crate) fn show<'a>(root: &Path, path: &'a Path) -> std::path::Display<'a> {
    path.strip_prefix(root).unwrap_or(path).display()
}

/// Whether an executable called `name` is in one of the `PATH` directories.
pub(crate) fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// The command as a shell-like line, with the environment variables it sets.
fn display(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(
                line,
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            );
        }
    }
    line.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

/// Quotes an argument for display if it contains whitespace or is empty.
fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    if arg.is_empty() || arg.contains(char::is_whitespace) {
        format!("'{arg}'")
    } else {
        arg.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_and_quoted_args() {
        let mut cmd = Command::new("cargo");
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "a b", ""]);
        assert_eq!(display(&cmd), "RUSTC_BOOTSTRAP=1 cargo fuzz run 'a b' ''");
    }

    #[test]
    fn failing_command_is_a_typed_error() {
        let err = run(Command::new("false").stdin(Stdio::null()));
        assert!(matches!(err, Err(CmdError::Failed { .. })), "{err:?}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = output(&mut Command::new("wasmbed-xtask-no-such-program"));
        assert!(matches!(err, Err(CmdError::Spawn { .. })), "{err:?}");
    }
}
