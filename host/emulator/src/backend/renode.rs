//! Renode: the board's `.resc` script, with the console and link UARTs on
//! server socket terminals that the manager and the bridge connect to.
//!
//! Untested on the machine this was written on (no `renode` there); see
//! `renode/README.md` for what does and does not work under Renode.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use super::{
    Backend, BackendError, ConsoleSource, EmulatorBackend, GracefulStop, LinkMode, Ports, absolute,
};
use crate::manager::DeviceSpec;

/// Environment variable overriding the Renode program.
pub const RENODE_ENV: &str = "WASMBED_RENODE";

/// The Renode backend.
#[derive(Debug, Clone)]
pub struct RenodeBackend {
    program: OsString,
}

impl RenodeBackend {
    /// `renode`, or the program named by [`RENODE_ENV`].
    pub fn from_env() -> RenodeBackend {
        let program = std::env::var_os(RENODE_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| OsString::from("renode"));
        RenodeBackend { program }
    }

    /// A given program.
    pub fn new(program: impl Into<OsString>) -> RenodeBackend {
        RenodeBackend {
            program: program.into(),
        }
    }
}

/// A path as a Renode monitor path literal (`@/abs/path`). The monitor
/// splits words at spaces and has no escape for quotes, so such paths are
/// refused.
fn monitor_path(path: &Path) -> Result<String, BackendError> {
    let path = absolute(path);
    let text = path.to_str().ok_or_else(|| BackendError::UnusablePath {
        backend: Backend::Renode,
        path: path.clone(),
        reason: "not valid UTF-8".to_owned(),
    })?;
    if text.contains(|c: char| c.is_whitespace() || c == '"' || c == ';') {
        return Err(BackendError::UnusablePath {
            backend: Backend::Renode,
            path: path.clone(),
            reason: "the Renode monitor cannot take paths with spaces, quotes or ';'".to_owned(),
        });
    }
    Ok(format!("@{text}"))
}

impl EmulatorBackend for RenodeBackend {
    fn kind(&self) -> Backend {
        Backend::Renode
    }

    fn program(&self) -> &OsStr {
        &self.program
    }

    fn install_hint(&self) -> &'static str {
        "install Renode (https://renode.io, e.g. its .deb or portable package) and put `renode` on PATH, or set WASMBED_RENODE"
    }

    fn link_mode(&self) -> LinkMode {
        LinkMode::EmulatorListens
    }

    fn console_source(&self) -> ConsoleSource {
        ConsoleSource::Socket
    }

    fn graceful_stop(&self) -> GracefulStop {
        GracefulStop::Stdin("quit\n")
    }

    /// ```text
    /// renode --disable-xwt --console --plain
    ///   -e '$name="qemu-0"' -e '$bin=@/abs/firmware.elf'
    ///   -e '$link_port=P' -e '$console_port=C'
    ///   -e 'include @/abs/renode/mps2-an385.resc'
    /// ```
    /// in the state directory.
    fn command(&self, spec: &DeviceSpec, ports: &Ports) -> Result<Command, BackendError> {
        let console = ports.console.ok_or(BackendError::MissingPort {
            backend: Backend::Renode,
            what: "console",
        })?;
        if spec.board.is_networked() {
            return Err(BackendError::NoNetwork {
                backend: Backend::Renode,
                board: spec.board.name.clone(),
            });
        }
        let link = ports.link.ok_or(BackendError::MissingPort {
            backend: Backend::Renode,
            what: "link",
        })?;
        let firmware = monitor_path(&spec.firmware)?;
        let script = monitor_path(&spec.board.renode_script())?;
        // Device names are checked by the manager: letters, digits, '-',
        // '_' and '.', so they need no escaping.
        let mut command = Command::new(&self.program);
        command
            .args(["--disable-xwt", "--console", "--plain"])
            .arg("-e")
            .arg(format!("$name=\"{}\"", spec.name))
            .arg("-e")
            .arg(format!("$bin={firmware}"))
            .arg("-e")
            .arg(format!("$link_port={link}"))
            .arg("-e")
            .arg(format!("$console_port={console}"))
            .arg("-e")
            .arg(format!("include {script}"));
        command.current_dir(&spec.state_dir);
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::board::{Board, default_boards_dir};

    fn spec() -> DeviceSpec {
        DeviceSpec {
            name: "renode-0".to_owned(),
            board: Board::find_in(&default_boards_dir(), "mps2-an385").expect("board"),
            firmware: PathBuf::from("/fw/wasmbed-mps2"),
            state_dir: PathBuf::from("/state/renode-0"),
            gateway: "127.0.0.1:40029".to_owned(),
            backend: Backend::Renode,
            icount: None,
        }
    }

    #[test]
    fn a_networked_board_is_refused_by_name() {
        let spec = DeviceSpec {
            board: Board::find_in(&default_boards_dir(), "mps2-an385-zephyr").expect("board"),
            ..spec()
        };
        let ports = Ports {
            link: None,
            console: Some(4001),
            qmp_fd: None,
        };
        let err = RenodeBackend::new("renode")
            .command(&spec, &ports)
            .expect_err("no network on Renode here");
        assert!(err.to_string().contains("mps2-an385-zephyr"), "{err}");
    }

    #[test]
    fn the_command_runs_the_board_script_with_the_ports() {
        let backend = RenodeBackend::new("renode");
        let ports = Ports {
            link: Some(4000),
            console: Some(4001),
            qmp_fd: None,
        };
        let command = backend.command(&spec(), &ports).expect("command");
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let executed: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-e")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(executed[0], "$name=\"renode-0\"");
        assert_eq!(executed[1], "$bin=@/fw/wasmbed-mps2");
        assert_eq!(executed[2], "$link_port=4000");
        assert_eq!(executed[3], "$console_port=4001");
        assert!(
            executed[4].starts_with("include @/")
                && executed[4].ends_with("renode/mps2-an385.resc"),
            "{}",
            executed[4]
        );
        assert!(args.contains(&"--disable-xwt".to_owned()));
        assert_eq!(
            command.get_current_dir(),
            Some(Path::new("/state/renode-0"))
        );
    }

    #[test]
    fn unusable_paths_and_missing_ports_are_refused() {
        let backend = RenodeBackend::new("renode");
        let ports = Ports {
            link: Some(4000),
            console: None,
            qmp_fd: None,
        };
        assert!(matches!(
            backend.command(&spec(), &ports),
            Err(BackendError::MissingPort { .. })
        ));
        let mut spaced = spec();
        spaced.firmware = PathBuf::from("/my firmware/fw.elf");
        let ports = Ports {
            link: Some(4000),
            console: Some(4001),
            qmp_fd: None,
        };
        assert!(matches!(
            backend.command(&spaced, &ports),
            Err(BackendError::UnusablePath { .. })
        ));
    }
}
