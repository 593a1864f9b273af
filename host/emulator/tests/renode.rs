//! The manager with Renode, when it is installed (it is not on the machine
//! these were written on: they have never run, see `renode/README.md`).
#![allow(clippy::print_stdout)] // tests say on stdout why they skip

mod support;

use std::time::Duration;

use support::thumb::{Program, UART0, UART1};
use support::{spec, write_firmware};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmbed_emulator::{Backend, DeviceState, EmulatorManager};

const PATIENCE: Duration = Duration::from_secs(60);

fn renode_or_skip(test: &str) -> bool {
    if Backend::Renode.available() {
        true
    } else {
        println!("renode not on PATH: skipping {test}");
        false
    }
}

#[tokio::test]
async fn renode_runs_a_program_with_console_and_link() {
    if !renode_or_skip("renode_runs_a_program_with_console_and_link") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut echo = Program::new();
    echo.uart_enable(UART0, 1);
    echo.print(UART0, "echo ready\n");
    echo.uart_enable(UART1, 3);
    echo.print(UART1, "hi");
    echo.echo_forever(UART1);
    let firmware = write_firmware(dir.path(), "echo", echo);
    let gateway = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gateway_addr = gateway.local_addr().expect("addr").to_string();

    let manager = EmulatorManager::new();
    let mut spec = spec(
        "renode-0",
        &firmware,
        &dir.path().join("renode-0"),
        &gateway_addr,
    );
    spec.backend = Backend::Renode;
    let device = manager.start(spec).await.expect("start");
    device
        .wait_for("echo ready", PATIENCE)
        .await
        .expect("the console");

    let session = async {
        let (mut stream, _) = gateway.accept().await.expect("the bridge connects");
        let mut hello = [0u8; 2];
        stream.read_exact(&mut hello).await.expect("hello");
        assert_eq!(&hello, b"hi");
        stream.write_all(b"xyz").await.expect("write");
        let mut back = [0u8; 3];
        stream.read_exact(&mut back).await.expect("echo");
        assert_eq!(&back, b"xyz");
    };
    tokio::time::timeout(PATIENCE, session)
        .await
        .expect("a session through Renode's UART in time");
    assert_eq!(
        manager.stop("renode-0").await.expect("stop"),
        DeviceState::Stopped
    );
}
