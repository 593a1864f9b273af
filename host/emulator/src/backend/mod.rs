//! Emulators a device can run on: QEMU and Renode, behind one trait.
//!
//! A backend turns a [`DeviceSpec`] into the emulator's command line and
//! says how its sockets and console are wired; the manager does the rest
//! (bridge, process, console capture) the same way for both.

pub(crate) mod qemu;
pub(crate) mod qmp;
mod renode;

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

pub use qemu::{QEMU_ENV, QemuBackend};
pub use qmp::QmpError;
pub use renode::{RENODE_ENV, RenodeBackend};

use crate::manager::DeviceSpec;

/// Which emulator runs a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `qemu-system-arm`.
    #[default]
    Qemu,
    /// Antmicro's Renode.
    Renode,
}

impl Backend {
    /// The backend's lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Renode => "renode",
        }
    }

    /// The backend's implementation, with the emulator program taken from
    /// the environment ([`QEMU_ENV`], [`RENODE_ENV`]) or `PATH`.
    pub fn implementation(self) -> Box<dyn EmulatorBackend> {
        match self {
            Backend::Qemu => Box::new(QemuBackend::from_env()),
            Backend::Renode => Box::new(RenodeBackend::from_env()),
        }
    }

    /// Whether the emulator program can be found.
    pub fn available(self) -> bool {
        self.implementation().available()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is neither `qemu` nor `renode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown emulator backend {0:?}: expected qemu or renode")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(Backend::Qemu),
            "renode" => Ok(Backend::Renode),
            _ => Err(UnknownBackend(s.to_owned())),
        }
    }
}

/// Who opens the link UART's TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// The emulator connects to the bridge, which listens (QEMU).
    EmulatorConnects,
    /// The emulator listens and the bridge connects (Renode).
    EmulatorListens,
}

/// Where the console UART's output comes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleSource {
    /// The emulator's standard output.
    Stdout,
    /// A TCP port the emulator listens on ([`Ports::console`]).
    Socket,
}

/// How to ask the emulator to exit before killing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GracefulStop {
    /// Send SIGTERM.
    Terminate,
    /// Write this to its standard input (kept open while it runs).
    Stdin(&'static str),
}

/// The sockets the manager chose for a device: TCP ports on 127.0.0.1 and
/// the descriptor of a QMP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The link UART's port: the bridge's with
    /// [`LinkMode::EmulatorConnects`], the emulator's otherwise. `None` on a
    /// board whose link is its network.
    pub link: Option<u16>,
    /// The console's port, with [`ConsoleSource::Socket`].
    pub console: Option<u16>,
    /// When the emulator [starts paused](EmulatorBackend::starts_paused):
    /// the file descriptor, open in the emulator's process, of its end of
    /// a socket pair whose other end the manager keeps to talk QMP.
    pub qmp_fd: Option<RawFd>,
}

/// Why a backend cannot build a command for a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// A path the emulator must be given cannot be expressed on its
    /// command line.
    #[error("{backend}: cannot pass {} to the emulator: {reason}", path.display())]
    UnusablePath {
        /// The backend.
        backend: Backend,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The board reaches the gateway over a network interface this
    /// backend cannot give it.
    #[error(
        "{backend}: board {board} needs a network interface, which this backend does not provide"
    )]
    NoNetwork {
        /// The backend.
        backend: Backend,
        /// The board.
        board: String,
    },
    /// A port the backend needs was not allocated.
    #[error("{backend}: no {what} port allocated")]
    MissingPort {
        /// The backend.
        backend: Backend,
        /// Which port.
        what: &'static str,
    },
}

/// One emulator.
pub trait EmulatorBackend: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> Backend;

    /// The emulator program (a name looked up in `PATH`, or a path).
    fn program(&self) -> &OsStr;

    /// What to tell a user whose machine lacks the program.
    fn install_hint(&self) -> &'static str;

    /// Whether the program can be found.
    fn available(&self) -> bool {
        find_program(self.program()).is_some()
    }

    /// Who opens the link connection.
    fn link_mode(&self) -> LinkMode;

    /// Where the console comes out.
    fn console_source(&self) -> ConsoleSource;

    /// How to stop the emulator cleanly.
    fn graceful_stop(&self) -> GracefulStop;

    /// Whether the emulator starts with its CPU stopped and a QMP monitor
    /// on [`Ports::qmp_fd`], waiting for `cont`. The manager resumes it
    /// once the link UART (chardev `link`) is connected, so that nothing
    /// the firmware sends at boot is lost, and keeps the connection to
    /// press the reset button ([`crate::EmulatorManager::reset`]).
    fn starts_paused(&self) -> bool {
        false
    }

    /// The command line that runs `spec` with the given ports, with the
    /// device's state directory as working directory. Standard streams
    /// are set by the manager.
    fn command(&self, spec: &DeviceSpec, ports: &Ports) -> Result<Command, BackendError>;
}

/// `program` if it is a path to a file, else the first match in `PATH`.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return is_executable(path).then(|| path.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// `path` made absolute against the current directory (the emulator runs
/// in the state directory, so relative paths would change meaning).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_and_print() {
        assert_eq!("qemu".parse::<Backend>(), Ok(Backend::Qemu));
        assert_eq!("Renode".parse::<Backend>(), Ok(Backend::Renode));
        assert!("bochs".parse::<Backend>().is_err());
        assert_eq!(Backend::Renode.to_string(), "renode");
        assert_eq!(Backend::Qemu.implementation().kind(), Backend::Qemu);
        assert_eq!(Backend::Renode.implementation().kind(), Backend::Renode);
    }

    #[test]
    fn programs_are_found_in_path_or_by_path() {
        assert!(find_program(OsStr::new("sh")).is_some());
        assert!(find_program(OsStr::new("/bin/sh")).is_some());
        assert!(find_program(OsStr::new("wasmbed-no-such-program")).is_none());
        assert!(find_program(OsStr::new("/nonexistent/qemu")).is_none());
    }
}
