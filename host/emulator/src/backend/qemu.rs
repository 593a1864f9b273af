//! QEMU: `qemu-system-arm` with the console on standard output and the
//! link UART connecting to the bridge.

use std::ffi::{OsStr, OsString};
use std::process::Command;
use std::sync::OnceLock;

use super::{
    Backend, BackendError, ConsoleSource, EmulatorBackend, GracefulStop, LinkMode, Ports, absolute,
};
use crate::manager::DeviceSpec;

/// Environment variable overriding the QEMU program.
pub const QEMU_ENV: &str = "WASMBED_QEMU";

/// The id of the link UART's chardev.
pub(crate) const LINK_CHARDEV: &str = "link";

/// The id of the QMP monitor's chardev.
const QMP_CHARDEV: &str = "qmp";

/// QEMU's `-serial` value for a UART that is not wired.
const NULL_SERIAL: &str = "null";

/// The QEMU backend.
#[derive(Debug)]
pub struct QemuBackend {
    program: OsString,
    /// `(major, minor)`, detected on first use unless given.
    version: OnceLock<Option<(u32, u32)>>,
}

impl QemuBackend {
    /// `qemu-system-arm`, or the program named by [`QEMU_ENV`].
    pub fn from_env() -> QemuBackend {
        let program = std::env::var_os(QEMU_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| OsString::from("qemu-system-arm"));
        QemuBackend {
            program,
            version: OnceLock::new(),
        }
    }

    /// A given program whose version is known (`None`: unknown), without
    /// running it.
    pub fn with_version(program: impl Into<OsString>, version: Option<(u32, u32)>) -> QemuBackend {
        let cell = OnceLock::new();
        let _ = cell.set(version);
        QemuBackend {
            program: program.into(),
            version: cell,
        }
    }

    /// The program's `(major, minor)` version, from `--version`; `None` if
    /// it cannot be run or parsed.
    pub fn version(&self) -> Option<(u32, u32)> {
        *self.version.get_or_init(|| {
            let output = Command::new(&self.program).arg("--version").output().ok()?;
            parse_version(&String::from_utf8_lossy(&output.stdout))
        })
    }

    /// The socket chardev option that makes QEMU reconnect a second after
    /// losing the connection: `reconnect=1` up to QEMU 9.1, `reconnect-ms`
    /// from 9.2 on (where `reconnect` is deprecated, then removed).
    fn reconnect_option(&self) -> &'static str {
        match self.version() {
            Some(version) if version >= (9, 2) => "reconnect-ms=1000",
            _ => "reconnect=1",
        }
    }
}

/// `(major, minor)` from `QEMU emulator version 7.2.22 (Debian …)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl EmulatorBackend for QemuBackend {
    fn kind(&self) -> Backend {
        Backend::Qemu
    }

    fn program(&self) -> &OsStr {
        &self.program
    }

    fn install_hint(&self) -> &'static str {
        "install QEMU's Arm system emulator: apt-get install qemu-system-arm"
    }

    fn link_mode(&self) -> LinkMode {
        LinkMode::EmulatorConnects
    }

    fn console_source(&self) -> ConsoleSource {
        ConsoleSource::Stdout
    }

    fn graceful_stop(&self) -> GracefulStop {
        GracefulStop::Terminate
    }

    /// QEMU 7.2 connects a `reconnect` socket chardev asynchronously: the
    /// CPU may run, and the firmware write to the link UART, before the
    /// connection is up, and QEMU drops what is written to an unconnected
    /// socket chardev. So QEMU starts with `-S` and a QMP monitor on a
    /// socket pair shared with the manager, which sends `cont` once the
    /// link is up.
    fn starts_paused(&self) -> bool {
        true
    }

    /// ```text
    /// qemu-system-arm -machine M -cpu C -nodefaults -display none
    ///   -S -chardev socket,id=qmp,fd=N -mon chardev=qmp,mode=control
    ///                                          (-monitor none without a QMP descriptor)
    ///   -chardev stdio,id=console,signal=off
    ///   -chardev socket,id=link,host=127.0.0.1,port=P,reconnect=1
    ///   -serial … (one per UART index: chardev:console, chardev:link or null)
    ///   -semihosting-config enable=on,target=native
    ///   [-icount shift=N,align=off,sleep=on]
    ///   -kernel /abs/firmware.elf
    /// ```
    /// in the state directory.
    fn command(&self, spec: &DeviceSpec, ports: &Ports) -> Result<Command, BackendError> {
        let board = &spec.board;
        let mut command = Command::new(&self.program);
        command
            .args(["-machine", &board.qemu.machine])
            .args(["-cpu", &board.qemu.cpu])
            .args(["-nodefaults", "-display", "none"]);
        match ports.qmp_fd {
            // The descriptor is a connected socket (a client chardev, no
            // `server`): nothing listens, so nothing else can connect.
            Some(fd) => {
                command
                    .arg("-S")
                    .arg("-chardev")
                    .arg(format!("socket,id={QMP_CHARDEV},fd={fd}"))
                    .arg("-mon")
                    .arg(format!("chardev={QMP_CHARDEV},mode=control"));
            }
            None => {
                command.args(["-monitor", "none"]);
            }
        }
        command.args(["-chardev", "stdio,id=console,signal=off"]);
        let link_uart = match (&board.network, board.uart.link) {
            (Some(network), _) => {
                // QEMU's user-mode network: DHCP, the host at 10.0.2.2, no
                // port of the host opened for the guest.
                command
                    .arg("-nic")
                    .arg(format!("user,model={},ipv6=off", network.model));
                None
            }
            (None, link_uart) => {
                let port = ports.link.ok_or(BackendError::MissingPort {
                    backend: Backend::Qemu,
                    what: "link",
                })?;
                command.arg("-chardev").arg(format!(
                    "socket,id={LINK_CHARDEV},host=127.0.0.1,port={port},{}",
                    self.reconnect_option()
                ));
                link_uart.map(usize::from)
            }
        };
        for index in 0..board.uart_count() {
            let serial = if index == usize::from(board.uart.console) {
                "chardev:console".to_owned()
            } else if Some(index) == link_uart {
                format!("chardev:{LINK_CHARDEV}")
            } else {
                NULL_SERIAL.to_owned()
            };
            command.arg("-serial").arg(serial);
        }
        command.args(["-semihosting-config", "enable=on,target=native"]);
        // `sleep=on`: while the guest idles, virtual time follows real
        // time. With `sleep=off` it jumps to the next timer at once, so a
        // firmware waiting for the gateway sees its timeouts expire before
        // any answer can arrive.
        if let Some(shift) = spec.icount {
            command
                .arg("-icount")
                .arg(format!("shift={shift},align=off,sleep=on"));
        }
        let firmware = absolute(&spec.firmware);
        // QEMU splits option values at commas; a comma in a -kernel path
        // would be taken as the end of it.
        if firmware.to_string_lossy().contains(',') {
            return Err(BackendError::UnusablePath {
                backend: Backend::Qemu,
                path: firmware,
                reason: "QEMU does not accept commas in the -kernel path".to_owned(),
            });
        }
        command.arg("-kernel").arg(firmware);
        command.current_dir(&spec.state_dir);
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::board::{Board, Uarts, default_boards_dir};

    fn spec(icount: Option<u8>) -> DeviceSpec {
        DeviceSpec {
            name: "qemu-0".to_owned(),
            board: Board::find_in(&default_boards_dir(), "mps2-an385").expect("board"),
            firmware: PathBuf::from("/fw/wasmbed-mps2"),
            state_dir: PathBuf::from("/state/qemu-0"),
            gateway: "127.0.0.1:40029".to_owned(),
            backend: Backend::Qemu,
            icount,
        }
    }

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    const PORTS: Ports = Ports {
        link: Some(40123),
        console: None,
        qmp_fd: None,
    };

    #[test]
    fn a_qmp_descriptor_starts_qemu_paused_with_qmp_on_it() {
        let backend = QemuBackend::with_version("qemu-system-arm", Some((7, 2)));
        assert!(backend.starts_paused());
        let ports = Ports {
            qmp_fd: Some(7),
            ..PORTS
        };
        let command = backend.command(&spec(None), &ports).expect("command");
        let args = args(&command);
        assert!(args.contains(&"-S".to_owned()), "{args:?}");
        assert_eq!(
            value_of(&args, "-chardev")[0],
            "socket,id=qmp,fd=7",
            "{args:?}"
        );
        assert_eq!(value_of(&args, "-mon"), ["chardev=qmp,mode=control"]);
        // No other monitor, and none on a TCP port.
        assert!(value_of(&args, "-monitor").is_empty(), "{args:?}");
        assert!(value_of(&args, "-qmp").is_empty(), "{args:?}");
    }

    #[test]
    fn the_command_line_follows_the_board() {
        let backend = QemuBackend::with_version("qemu-system-arm", Some((7, 2)));
        let command = backend.command(&spec(None), &PORTS).expect("command");
        assert_eq!(command.get_program(), "qemu-system-arm");
        assert_eq!(command.get_current_dir(), Some(Path::new("/state/qemu-0")));
        let args = args(&command);
        assert_eq!(value_of(&args, "-machine"), ["mps2-an385"]);
        assert_eq!(value_of(&args, "-cpu"), ["cortex-m3"]);
        assert_eq!(
            value_of(&args, "-chardev"),
            [
                "stdio,id=console,signal=off",
                "socket,id=link,host=127.0.0.1,port=40123,reconnect=1"
            ]
        );
        // UART0 is the console, UART1 the link.
        assert_eq!(
            value_of(&args, "-serial"),
            ["chardev:console", "chardev:link"]
        );
        assert_eq!(
            value_of(&args, "-semihosting-config"),
            ["enable=on,target=native"]
        );
        assert_eq!(value_of(&args, "-kernel"), ["/fw/wasmbed-mps2"]);
        assert!(value_of(&args, "-icount").is_empty());
        assert!(args.contains(&"-nodefaults".to_owned()));
        assert_eq!(value_of(&args, "-monitor"), ["none"]);
    }

    #[test]
    fn a_networked_board_gets_a_user_mode_nic_and_no_link_uart() {
        let mut spec = spec(None);
        spec.board = Board::find_in(&default_boards_dir(), "mps2-an385-zephyr").expect("board");
        let backend = QemuBackend::with_version("qemu-system-arm", Some((7, 2)));
        let ports = Ports {
            link: None,
            ..PORTS
        };
        let args = args(&backend.command(&spec, &ports).expect("command"));
        assert_eq!(value_of(&args, "-nic"), ["user,model=lan9118,ipv6=off"]);
        assert_eq!(value_of(&args, "-chardev"), ["stdio,id=console,signal=off"]);
        assert_eq!(value_of(&args, "-serial"), ["chardev:console"]);
        // A wired board without a link port is a manager bug, reported.
        let wired = DeviceSpec {
            board: Board::find_in(&default_boards_dir(), "mps2-an385").expect("board"),
            ..spec
        };
        assert!(matches!(
            backend.command(&wired, &ports),
            Err(BackendError::MissingPort { what: "link", .. })
        ));
    }

    #[test]
    fn uart_positions_come_from_the_board() {
        let mut spec = spec(None);
        spec.board.uart = Uarts {
            console: 2,
            link: Some(0),
        };
        let backend = QemuBackend::with_version("qemu-system-arm", Some((7, 2)));
        let command = backend.command(&spec, &PORTS).expect("command");
        assert_eq!(
            value_of(&args(&command), "-serial"),
            ["chardev:link", "null", "chardev:console"]
        );
    }

    #[test]
    fn icount_is_passed_when_set() {
        let backend = QemuBackend::with_version("qemu-system-arm", Some((7, 2)));
        let command = backend.command(&spec(Some(4)), &PORTS).expect("command");
        assert_eq!(
            value_of(&args(&command), "-icount"),
            ["shift=4,align=off,sleep=on"]
        );
    }

    #[test]
    fn newer_qemu_reconnects_in_milliseconds() {
        let backend = QemuBackend::with_version("qemu-system-arm", Some((9, 2)));
        let command = backend.command(&spec(None), &PORTS).expect("command");
        assert!(
            value_of(&args(&command), "-chardev")[1].ends_with(",reconnect-ms=1000"),
            "{:?}",
            args(&command)
        );
    }

    #[test]
    fn relative_firmware_paths_are_made_absolute() {
        let mut spec = spec(None);
        spec.firmware = PathBuf::from("target/fw.elf");
        let backend = QemuBackend::with_version("qemu-system-arm", None);
        let command = backend.command(&spec, &PORTS).expect("command");
        let kernel = PathBuf::from(value_of(&args(&command), "-kernel")[0]);
        assert!(kernel.is_absolute(), "{kernel:?}");
        assert!(kernel.ends_with("target/fw.elf"));
    }

    #[test]
    fn a_comma_in_the_firmware_path_is_refused() {
        let mut spec = spec(None);
        spec.firmware = PathBuf::from("/fw/a,b.elf");
        let backend = QemuBackend::with_version("qemu-system-arm", None);
        assert!(matches!(
            backend.command(&spec, &PORTS),
            Err(BackendError::UnusablePath { .. })
        ));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version(
                "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright"
            ),
            Some((7, 2))
        );
        assert_eq!(
            parse_version("QEMU emulator version 10.0.0\n"),
            Some((10, 0))
        );
        assert_eq!(parse_version("something else"), None);
    }
}
