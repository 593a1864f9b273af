//! Board descriptions: the `boards/*.toml` files.
//!
//! A board says which QEMU machine and CPU to emulate, what memory the
//! firmware is linked for, which UART is the console and which the link to
//! the gateway, and where its Renode script is. `boards/README.md` documents
//! the format.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable naming the directory boards are looked up in.
pub const BOARDS_ENV: &str = "WASMBED_BOARDS";

/// The repository's `boards/` directory, as it was when this crate was built.
pub fn default_boards_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
    dir.canonicalize().unwrap_or(dir)
}

/// The directory [`Board::find`] searches: `WASMBED_BOARDS` if set, else
/// [`default_boards_dir`].
pub fn boards_dir() -> PathBuf {
    match std::env::var_os(BOARDS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_boards_dir(),
    }
}

/// Why a board description could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No `<name>.toml` in the boards directory.
    #[error("no board {name:?} in {}: known boards: {}", dir.display(), known_list(.known))]
    NotFound {
        /// The board asked for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
        /// The boards that directory does hold.
        known: Vec<String>,
    },
    /// The board name is not a plain file name.
    #[error("invalid board name {0:?}: expected letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The board file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid board description (syntax, unknown or
    /// missing field, wrong type).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The board file.
        path: PathBuf,
        /// The TOML parser's message, naming the field and position.
        message: String,
    },
    /// The description parsed but is inconsistent.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The board file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

/// One emulated board, as described by a `boards/*.toml` file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The board's name, equal to its file name without `.toml`.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Core clock the firmware assumes, in Hz.
    pub clock_hz: u32,
    /// How QEMU emulates the board.
    pub qemu: QemuBoard,
    /// The memory the firmware is linked for.
    pub memory: MemoryMap,
    /// Which UARTs carry the console and (for wired links) the link.
    pub uart: Uarts,
    /// An Ethernet interface the firmware reaches the gateway through,
    /// instead of a link UART.
    #[serde(default)]
    pub network: Option<Network>,
    /// How Renode emulates the board.
    pub renode: RenodeBoard,
    /// The file the description was read from (not part of the file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// QEMU's view of a board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuBoard {
    /// `-machine` value, e.g. `mps2-an385`.
    pub machine: String,
    /// `-cpu` value, e.g. `cortex-m3`.
    pub cpu: String,
}

/// The firmware's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryMap {
    /// Where the image is linked and loaded.
    pub flash: Region,
    /// Data, stack and heap.
    pub ram: Region,
}

/// A memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// First address.
    pub origin: u32,
    /// Size in bytes.
    pub length: u32,
}

impl Region {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        u64::from(self.origin) + u64::from(self.length)
    }

    fn overlaps(&self, other: &Region) -> bool {
        u64::from(self.origin) < other.end() && u64::from(other.origin) < self.end()
    }
}

/// UART assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uarts {
    /// Index of the console UART.
    pub console: u8,
    /// Index of the UART linked to the gateway; absent on a board whose
    /// link is its [`Network`].
    #[serde(default)]
    pub link: Option<u8>,
}

/// A board's network interface, on QEMU's user-mode network: the guest
/// gets an address by DHCP and reaches the host at `host_address`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// QEMU's `-nic` model, e.g. `lan9118` (the MPS2 boards' Ethernet).
    pub model: String,
    /// The host as the guest sees it (`10.0.2.2` on QEMU's user network):
    /// a gateway on the host's loopback is reached there.
    pub host_address: std::net::Ipv4Addr,
}

/// Renode's view of a board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenodeBoard {
    /// The `.resc` script; relative paths are relative to the parent of
    /// the boards directory (the repository root for the shipped boards).
    pub script: PathBuf,
}

impl Board {
    /// Parses a description; `path` names it in errors and resolves the
    /// Renode script.
    pub fn from_toml(text: &str, path: &Path) -> Result<Board, BoardError> {
        let mut board: Board = toml::from_str(text).map_err(|e| BoardError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        board.source = Some(path.to_owned());
        board.validate(path)?;
        Ok(board)
    }

    /// Reads and parses a board file.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let text = fs::read_to_string(path).map_err(|source| BoardError::Io {
            path: path.to_owned(),
            source,
        })?;
        let board = Board::from_toml(&text, path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if board.name != stem {
            return Err(BoardError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "name = {:?} but the file is named {stem:?}.toml: they must match",
                    board.name
                ),
            });
        }
        Ok(board)
    }

    /// Finds `<name>.toml` in [`boards_dir`].
    pub fn find(name: &str) -> Result<Board, BoardError> {
        Board::find_in(&boards_dir(), name)
    }

    /// Finds `<name>.toml` in `dir`.
    pub fn find_in(dir: &Path, name: &str) -> Result<Board, BoardError> {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(BoardError::InvalidName(name.to_owned()));
        }
        let path = dir.join(format!("{name}.toml"));
        if !path.is_file() {
            return Err(BoardError::NotFound {
                name: name.to_owned(),
                dir: dir.to_owned(),
                known: Board::names_in(dir),
            });
        }
        Board::load(&path)
    }

    /// The board names (file stems of `*.toml`) in `dir`, sorted; empty if
    /// the directory cannot be read.
    pub fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    path.file_stem()?.to_str().map(str::to_owned)
                } else {
                    None
                }
            })
            .collect();
        names.sort();
        names
    }

    /// The Renode script, resolved against the parent of the directory the
    /// board file is in.
    pub fn renode_script(&self) -> PathBuf {
        if self.renode.script.is_absolute() {
            return self.renode.script.clone();
        }
        let root = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default();
        root.join(&self.renode.script)
    }

    /// The number of UARTs the emulator must wire: one past the larger
    /// index.
    pub fn uart_count(&self) -> usize {
        usize::from(self.uart.console.max(self.uart.link.unwrap_or(0))) + 1
    }

    /// Whether the firmware reaches the gateway over the network rather
    /// than a link UART.
    pub fn is_networked(&self) -> bool {
        self.network.is_some()
    }

    fn validate(&self, path: &Path) -> Result<(), BoardError> {
        let invalid = |message: String| {
            Err(BoardError::Invalid {
                path: path.to_owned(),
                message,
            })
        };
        match (self.uart.link, &self.network) {
            (Some(link), None) if link == self.uart.console => {
                return invalid(format!(
                    "uart.console and uart.link are both {link}: they must differ"
                ));
            }
            (Some(_), Some(_)) => {
                return invalid(
                    "uart.link and [network] are both set: a board reaches the gateway through one of them"
                        .to_owned(),
                );
            }
            (None, None) => {
                return invalid(
                    "neither uart.link nor [network] is set: the firmware could not reach the gateway"
                        .to_owned(),
                );
            }
            (None, Some(network)) if network.model.is_empty() || network.model.contains(',') => {
                return invalid(format!(
                    "network.model {:?} must be a QEMU NIC model name",
                    network.model
                ));
            }
            _ => {}
        }
        for (name, region) in [("flash", self.memory.flash), ("ram", self.memory.ram)] {
            if region.length == 0 {
                return invalid(format!("memory.{name}.length is 0"));
            }
            if region.end() > 1 << 32 {
                return invalid(format!(
                    "memory.{name} extends past the 4 GiB address space"
                ));
            }
        }
        if self.memory.flash.overlaps(&self.memory.ram) {
            return invalid("memory.flash and memory.ram overlap".to_owned());
        }
        if self.qemu.machine.is_empty() || self.qemu.cpu.is_empty() {
            return invalid("qemu.machine and qemu.cpu must not be empty".to_owned());
        }
        if self.clock_hz == 0 {
            return invalid("clock_hz is 0".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Board {
        Board::find_in(&default_boards_dir(), "mps2-an385").expect("the shipped board parses")
    }

    #[test]
    fn the_shipped_board_parses() {
        let board = shipped();
        assert_eq!(board.name, "mps2-an385");
        assert_eq!(board.qemu.machine, "mps2-an385");
        assert_eq!(board.qemu.cpu, "cortex-m3");
        assert_eq!(
            board.memory.flash,
            Region {
                origin: 0,
                length: 4 << 20
            }
        );
        assert_eq!(
            board.memory.ram,
            Region {
                origin: 0x2000_0000,
                length: 4 << 20
            }
        );
        assert_eq!(
            board.uart,
            Uarts {
                console: 0,
                link: Some(1)
            }
        );
        assert!(!board.is_networked());
        assert_eq!(board.clock_hz, 25_000_000);
        assert_eq!(board.uart_count(), 2);
        let script = board.renode_script();
        assert!(script.ends_with("renode/mps2-an385.resc"), "{script:?}");
        assert!(script.is_file(), "{} is missing", script.display());
    }

    #[test]
    fn the_shipped_zephyr_board_reaches_the_gateway_over_ethernet() {
        let board = Board::find_in(&default_boards_dir(), "mps2-an385-zephyr").expect("parses");
        assert_eq!(board.qemu.machine, "mps2-an385");
        assert_eq!(board.uart.link, None);
        let network = board.network.as_ref().expect("a network");
        assert_eq!(network.model, "lan9118");
        assert_eq!(network.host_address, std::net::Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(board.uart_count(), 1);
    }

    #[test]
    fn a_board_needs_exactly_one_way_to_the_gateway() {
        let both = format!(
            "{}\n[network]\nmodel = \"lan9118\"\nhost_address = \"10.0.2.2\"\n",
            shipped_text()
        );
        let err = Board::from_toml(&both, Path::new("b.toml")).expect_err("must fail");
        assert!(err.to_string().contains("both set"), "{err}");
        let neither = shipped_text().replace("link = 1", "");
        let err = Board::from_toml(&neither, Path::new("b.toml")).expect_err("must fail");
        assert!(err.to_string().contains("neither"), "{err}");
    }

    fn shipped_text() -> String {
        fs::read_to_string(default_boards_dir().join("mps2-an385.toml")).expect("readable")
    }

    #[test]
    fn an_unknown_field_is_refused_naming_file_and_field() {
        let text = shipped_text().replace("[uart]", "[uart]\nbaud = 115200");
        let err = Board::from_toml(&text, Path::new("boards/typo.toml")).expect_err("must fail");
        let message = err.to_string();
        assert!(matches!(err, BoardError::Parse { .. }), "{message}");
        assert!(message.contains("boards/typo.toml"), "{message}");
        assert!(message.contains("baud"), "{message}");
    }

    #[test]
    fn a_missing_field_is_refused_naming_file_and_field() {
        let text = shipped_text().replace("cpu = \"cortex-m3\"", "");
        let err = Board::from_toml(&text, Path::new("boards/short.toml")).expect_err("must fail");
        let message = err.to_string();
        assert!(message.contains("boards/short.toml"), "{message}");
        assert!(message.contains("missing field `cpu`"), "{message}");
    }

    #[test]
    fn inconsistent_boards_are_refused() {
        let same_uart = shipped_text().replace("link = 1", "link = 0");
        let err = Board::from_toml(&same_uart, Path::new("b.toml")).expect_err("must fail");
        assert!(err.to_string().contains("must differ"), "{err}");

        let overlap = shipped_text().replace("origin = 0x2000_0000", "origin = 0x0010_0000");
        let err = Board::from_toml(&overlap, Path::new("b.toml")).expect_err("must fail");
        assert!(err.to_string().contains("overlap"), "{err}");
    }

    #[test]
    fn the_name_must_match_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("other.toml");
        fs::write(&path, shipped_text()).expect("write");
        let err = Board::load(&path).expect_err("must fail");
        assert!(err.to_string().contains("other"), "{err}");
    }

    #[test]
    fn an_unknown_board_lists_the_known_ones() {
        let err = Board::find_in(&default_boards_dir(), "mps3-an547").expect_err("must fail");
        let message = err.to_string();
        assert!(matches!(err, BoardError::NotFound { .. }), "{message}");
        assert!(message.contains("mps2-an385"), "{message}");
        let err = Board::find_in(&default_boards_dir(), "../Cargo").expect_err("must fail");
        assert!(matches!(err, BoardError::InvalidName(_)), "{err}");
    }

    #[test]
    fn uart_count_covers_the_higher_index() {
        let mut board = shipped();
        board.uart = Uarts {
            console: 2,
            link: Some(0),
        };
        assert_eq!(board.uart_count(), 3);
    }
}
