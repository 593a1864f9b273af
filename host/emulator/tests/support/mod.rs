//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses a different subset
#![allow(clippy::print_stdout)] // tests say on stdout why they skip

pub(crate) mod thumb;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wasmbed_emulator::board::default_boards_dir;
use wasmbed_emulator::{Backend, Board, DeviceSpec};

/// Whether QEMU tests can run; prints why not.
pub(crate) fn qemu_or_skip(test: &str) -> bool {
    if Backend::Qemu.available() {
        true
    } else {
        println!("qemu-system-arm not on PATH: skipping {test} (apt-get install qemu-system-arm)");
        false
    }
}

/// The shipped mps2-an385 board.
pub(crate) fn board() -> Board {
    Board::find_in(&default_boards_dir(), "mps2-an385").expect("the shipped board")
}

/// Writes a test program's ELF to `dir/<name>.elf`.
pub(crate) fn write_firmware(dir: &Path, name: &str, program: thumb::Program) -> PathBuf {
    let path = dir.join(format!("{name}.elf"));
    std::fs::write(&path, program.elf()).expect("write the test firmware");
    path
}

/// A QEMU device spec.
pub(crate) fn spec(name: &str, firmware: &Path, state_dir: &Path, gateway: &str) -> DeviceSpec {
    DeviceSpec {
        name: name.to_owned(),
        board: board(),
        firmware: firmware.to_owned(),
        state_dir: state_dir.to_owned(),
        gateway: gateway.to_owned(),
        backend: Backend::Qemu,
        icount: None,
    }
}

/// The processes whose working directory is `dir` and whose command
/// line mentions qemu (zombies excluded: they have no working directory).
pub(crate) fn qemu_processes_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let is_qemu = String::from_utf8_lossy(&cmdline).contains("qemu");
            (cwd == dir && is_qemu).then_some(pid)
        })
        .collect()
}

/// A TCP echo server standing in for the gateway.
pub(crate) struct EchoGateway {
    pub(crate) addr: SocketAddr,
    pub(crate) accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoGateway {
    pub(crate) async fn start() -> EchoGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        EchoGateway {
            addr,
            accepted,
            task,
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for EchoGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
