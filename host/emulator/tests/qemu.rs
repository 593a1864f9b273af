//! The manager with real QEMU processes, running tiny test programs
//! assembled by `support::thumb` (and the real firmware, when it has been
//! built). Every test skips, saying so, when `qemu-system-arm` is missing.
#![allow(clippy::print_stdout)] // tests say on stdout why they skip

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::thumb::{EXIT_FAILURE, EXIT_SUCCESS, Program, UART0, UART1};
use support::{qemu_or_skip, qemu_processes_in, spec, write_firmware};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmbed_emulator::console::ConsoleMark;
use wasmbed_emulator::provision::{CONSOLE_LOG, FLASH_FILE};
use wasmbed_emulator::{
    ClaimMaterial, DeviceState, EmulatorManager, ManagerError, Pattern, ProvisionOptions,
    WaitError, provision,
};

const PATIENCE: Duration = Duration::from_secs(30);
/// A gateway address nothing listens on (the bridge only connects when the
/// device sends, and these programs mostly do not).
const NO_GATEWAY: &str = "127.0.0.1:9";

/// Prints `text` on the console and sleeps.
fn printer(text: &str) -> Program {
    let mut program = Program::new();
    program.uart_enable(UART0, 1);
    program.print(UART0, text);
    program.idle();
    program
}

fn pid_alive(pid: u32) -> bool {
    // A zombie has no working directory; a live process does.
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok()
}

#[tokio::test]
async fn console_lines_are_waited_for_logged_and_listed() {
    if !qemu_or_skip("console_lines_are_waited_for_logged_and_listed") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("boot 1\r\nready for work\n"));
    let state = dir.path().join("qemu-0");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec("qemu-0", &firmware, &state, NO_GATEWAY))
        .await
        .expect("start");

    let line = device
        .wait_for("ready", PATIENCE)
        .await
        .expect("the console line");
    assert_eq!(line.text, "ready for work");
    let line = device
        .wait_for(Pattern::regex(r"^boot \d$").expect("regex"), PATIENCE)
        .await
        .expect("the earlier line is still found");
    assert_eq!(line.index, 0);
    assert_eq!(
        std::fs::read_to_string(state.join(CONSOLE_LOG)).expect("console.log"),
        "boot 1\nready for work\n"
    );

    let listed = manager.list();
    assert_eq!(listed.len(), 1);
    let summary = &listed[0];
    assert_eq!(summary.name, "qemu-0");
    assert_eq!(summary.board, "mps2-an385");
    assert_eq!(summary.state, DeviceState::Running);
    assert_eq!(summary.console_log, state.join(CONSOLE_LOG));
    assert!(summary.link_port.is_some());
    assert!(summary.started_at.is_some());
    let pid = summary.pid.expect("a pid");
    assert!(pid_alive(pid));
    assert_eq!(qemu_processes_in(&state), vec![pid]);

    let err = device
        .wait_for("never printed", Duration::from_millis(300))
        .await
        .expect_err("times out");
    assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("ready for work"), "{err}");

    let link_port = summary.link_port.expect("a link port");
    assert_eq!(
        manager.stop("qemu-0").await.expect("stop"),
        DeviceState::Stopped
    );
    assert!(!pid_alive(pid), "qemu {pid} survived stop");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", link_port))
            .await
            .is_err(),
        "the bridge still listens after stop"
    );
    let summary = &manager.list()[0];
    assert_eq!(summary.state, DeviceState::Stopped);
    assert_eq!(summary.pid, None);
    let err = device
        .wait_for("never printed", PATIENCE)
        .await
        .expect_err("a stopped device prints nothing more");
    assert!(matches!(err, WaitError::Exited { .. }), "{err}");
}

#[tokio::test]
async fn a_missing_firmware_reports_qemu_s_error() {
    if !qemu_or_skip("a_missing_firmware_reports_qemu_s_error") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec(
            "qemu-0",
            &dir.path().join("no-such-firmware.elf"),
            &dir.path().join("qemu-0"),
            NO_GATEWAY,
        ))
        .await
        .expect("QEMU itself starts");
    let err = device
        .wait_for("anything", PATIENCE)
        .await
        .expect_err("QEMU exits");
    let message = err.to_string();
    match &err {
        WaitError::Exited { state, .. } => assert_eq!(*state, DeviceState::Exited { code: 1 }),
        other => panic!("expected Exited, got {other}"),
    }
    assert!(message.contains("Could not load kernel"), "{message}");
    assert!(message.contains("no-such-firmware.elf"), "{message}");
    assert_eq!(device.state(), DeviceState::Exited { code: 1 });
    assert_eq!(manager.list()[0].state, DeviceState::Exited { code: 1 });
}

#[tokio::test]
async fn exits_and_crashes_are_told_apart() {
    if !qemu_or_skip("exits_and_crashes_are_told_apart") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = EmulatorManager::new();

    let mut failing = Program::new();
    failing.uart_enable(UART0, 1);
    failing.print(UART0, "giving up\n");
    failing.exit(EXIT_FAILURE);
    let failing = write_firmware(dir.path(), "failing", failing);
    let mut succeeding = Program::new();
    succeeding.exit(EXIT_SUCCESS);
    let succeeding = write_firmware(dir.path(), "succeeding", succeeding);
    let sleeper = write_firmware(dir.path(), "sleeper", printer("up\n"));

    let failed = manager
        .start(spec("failing", &failing, &dir.path().join("a"), NO_GATEWAY))
        .await
        .expect("start");
    let succeeded = manager
        .start(spec(
            "succeeding",
            &succeeding,
            &dir.path().join("b"),
            NO_GATEWAY,
        ))
        .await
        .expect("start");
    let killed = manager
        .start(spec("killed", &sleeper, &dir.path().join("c"), NO_GATEWAY))
        .await
        .expect("start");

    assert_eq!(
        failed.wait_ended(PATIENCE).await,
        Some(DeviceState::Exited { code: 1 })
    );
    // The last line before the exit is kept.
    assert_eq!(
        failed
            .wait_for("giving", PATIENCE)
            .await
            .expect("line")
            .text,
        "giving up"
    );
    assert_eq!(
        succeeded.wait_ended(PATIENCE).await,
        Some(DeviceState::Exited { code: 0 })
    );

    killed.wait_for("up", PATIENCE).await.expect("running");
    let pid = killed.pid().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    match killed.wait_ended(PATIENCE).await {
        Some(DeviceState::Crashed { signal, reason }) => {
            assert_eq!(signal, Some(9));
            assert!(reason.contains("SIGKILL"), "{reason}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[tokio::test]
async fn restart_is_a_reset_that_keeps_the_state_directory() {
    if !qemu_or_skip("restart_is_a_reset_that_keeps_the_state_directory") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("booted\n"));
    let state = dir.path().join("qemu-0");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec("qemu-0", &firmware, &state, NO_GATEWAY))
        .await
        .expect("start");
    device
        .wait_for("booted", PATIENCE)
        .await
        .expect("first boot");
    let first_pid = device.pid().expect("pid");
    std::fs::write(state.join(FLASH_FILE), b"identity").expect("flash");

    let mark = device.console().mark();
    let again = manager.restart("qemu-0").await.expect("restart");
    let line = again
        .wait_for_after(mark, "booted", PATIENCE)
        .await
        .expect("second boot");
    assert_eq!(line.index, 1);
    assert_eq!(device.state(), DeviceState::Running);
    let second_pid = device.pid().expect("pid");
    assert_ne!(first_pid, second_pid);
    assert!(!pid_alive(first_pid), "the first qemu survived the reset");
    assert_eq!(
        std::fs::read(state.join(FLASH_FILE)).expect("flash kept"),
        b"identity"
    );
    assert_eq!(
        std::fs::read_to_string(state.join(CONSOLE_LOG)).expect("log"),
        "booted\nbooted\n"
    );
    let err = device
        .wait_for_after(line.mark_after(), "booted", Duration::from_millis(300))
        .await
        .expect_err("only two boots");
    assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_name_in_use_is_refused() {
    if !qemu_or_skip("a_name_in_use_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("up\n"));
    let manager = EmulatorManager::new();
    manager
        .start(spec("twin", &firmware, &dir.path().join("a"), NO_GATEWAY))
        .await
        .expect("start");
    let err = manager
        .start(spec("twin", &firmware, &dir.path().join("b"), NO_GATEWAY))
        .await
        .expect_err("the name is taken");
    assert!(matches!(err, ManagerError::AlreadyRunning(_)), "{err}");
    let err = manager
        .start(spec(
            "../escape",
            &firmware,
            &dir.path().join("c"),
            NO_GATEWAY,
        ))
        .await
        .expect_err("not a name");
    assert!(matches!(err, ManagerError::InvalidName(_)), "{err}");
    assert!(matches!(
        manager.stop("nobody").await,
        Err(ManagerError::UnknownDevice(_))
    ));
    // Once stopped, the name can be used again.
    manager.stop("twin").await.expect("stop");
    let again = manager
        .start(spec("twin", &firmware, &dir.path().join("b"), NO_GATEWAY))
        .await
        .expect("a stopped device's name is free");
    again.wait_for("up", PATIENCE).await.expect("running");
    assert_eq!(manager.list().len(), 1);
    assert_eq!(manager.list()[0].state, DeviceState::Running);
}

#[tokio::test]
async fn dropping_the_manager_kills_its_emulators() {
    if !qemu_or_skip("dropping_the_manager_kills_its_emulators") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("up\n"));
    let states: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("d{i}"))).collect();
    let manager = EmulatorManager::new();
    let mut handles = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let device = manager
            .start(spec(&format!("d{i}"), &firmware, state, NO_GATEWAY))
            .await
            .expect("start");
        device.wait_for("up", PATIENCE).await.expect("running");
        assert_eq!(qemu_processes_in(state).len(), 1);
        handles.push(device);
    }
    drop(manager);
    for state in &states {
        assert!(
            gone_within(state, Duration::from_secs(5)).await,
            "qemu still running in {}",
            state.display()
        );
    }
    // The handles outlive the manager and see the devices stopped.
    for device in &handles {
        assert_eq!(
            device.wait_ended(PATIENCE).await,
            Some(DeviceState::Stopped)
        );
    }
}

async fn gone_within(state: &Path, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if qemu_processes_in(state).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    qemu_processes_in(state).is_empty()
}

#[tokio::test]
async fn the_link_uart_reaches_the_gateway_through_the_bridge() {
    if !qemu_or_skip("the_link_uart_reaches_the_gateway_through_the_bridge") {
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
    let device = manager
        .start(spec(
            "echo",
            &firmware,
            &dir.path().join("echo"),
            &gateway_addr,
        ))
        .await
        .expect("start");
    device.wait_for("echo ready", PATIENCE).await.expect("boot");

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
    if tokio::time::timeout(PATIENCE, session).await.is_err() {
        panic!(
            "no session through QEMU's UART in time; bridge {:?}, stderr {:?}",
            device.bridge_counters(),
            device.stderr_tail()
        );
    }
    let counters = device.bridge_counters();
    assert_eq!(counters.device_to_gateway_bytes, 5);
    assert_eq!(counters.gateway_to_device_bytes, 3);
    assert_eq!(counters.gateway_connections, 1);
    manager.stop_all().await;
    assert_eq!(device.state(), DeviceState::Stopped);
}

#[tokio::test]
async fn the_reset_button_reboots_the_program_in_the_same_process() {
    if !qemu_or_skip("the_reset_button_reboots_the_program_in_the_same_process") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("booted\n"));
    let state = dir.path().join("qemu-0");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec("qemu-0", &firmware, &state, NO_GATEWAY))
        .await
        .expect("start");
    device.wait_for("booted", PATIENCE).await.expect("boots");
    let pid = device.pid().expect("a pid");
    let link_port = device.link_port();

    for _ in 0..2 {
        let mark = device.console().mark();
        manager.reset("qemu-0").await.expect("reset");
        device
            .wait_for_after(mark, "booted", PATIENCE)
            .await
            .expect("the program starts again");
        assert_eq!(device.pid(), Some(pid), "the same QEMU process");
        assert_eq!(device.link_port(), link_port);
        assert_eq!(device.state(), DeviceState::Running);
    }

    manager.stop("qemu-0").await.expect("stop");
    let err = manager.reset("qemu-0").await.expect_err("stopped");
    assert!(matches!(err, ManagerError::CannotReset(_)), "{err}");
    let err = manager.reset("qemu-9").await.expect_err("unknown");
    assert!(matches!(err, ManagerError::UnknownDevice(_)), "{err}");
}

#[tokio::test]
async fn semihosting_files_land_in_the_state_directory_with_icount() {
    if !qemu_or_skip("semihosting_files_land_in_the_state_directory_with_icount") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = Program::new();
    writer.write_file("marker.txt", "written by the device");
    writer.uart_enable(UART0, 1);
    writer.print(UART0, "file written\n");
    writer.idle();
    let firmware = write_firmware(dir.path(), "writer", writer);
    let state = dir.path().join("qemu-0");
    let manager = EmulatorManager::new();
    let mut spec = spec("qemu-0", &firmware, &state, NO_GATEWAY);
    spec.icount = Some(4);
    let device = manager.start(spec).await.expect("start");
    device
        .wait_for("file written", PATIENCE)
        .await
        .expect("written");
    assert_eq!(
        std::fs::read_to_string(state.join("marker.txt")).expect("in the state directory"),
        "written by the device"
    );
}

/// The real firmware, if it has been built (`WASMBED_FIRMWARE`, set by
/// `cargo xtask test`, or the default release path).
fn real_firmware() -> Option<PathBuf> {
    let path = std::env::var_os("WASMBED_FIRMWARE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2")
        },
        PathBuf::from,
    );
    path.is_file().then_some(path)
}

#[tokio::test]
async fn the_real_firmware_boots_and_prints() {
    if !qemu_or_skip("the_real_firmware_boots_and_prints") {
        return;
    }
    let Some(firmware) = real_firmware() else {
        println!(
            "firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2 not built: skipping the_real_firmware_boots_and_prints"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("qemu-0");
    let installation = &wasmbed_pki::test_fixtures().installation;
    provision(
        &state,
        &ProvisionOptions {
            claim: ClaimMaterial::from_installation(installation).expect("claim"),
            server_name: "localhost".to_owned(),
            device_name: "qemu-0".to_owned(),
            overwrite: false,
        },
    )
    .expect("provision");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec("qemu-0", &firmware, &state, NO_GATEWAY))
        .await
        .expect("start");
    let line = device
        .wait_for_after(
            ConsoleMark::START,
            Pattern::regex(r"\S").expect("regex"),
            PATIENCE,
        )
        .await
        .expect("the firmware prints on its console");
    println!("first console line of the real firmware: {}", line.text);
}

#[tokio::test]
async fn a_cancelled_start_does_not_block_the_name() {
    if !qemu_or_skip("a_cancelled_start_does_not_block_the_name") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = write_firmware(dir.path(), "printer", printer("booted\n"));
    let state = dir.path().join("qemu-0");
    let manager = EmulatorManager::new();
    // A caller's timeout drops the start while QEMU is being launched.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(1),
        manager.start(spec("qemu-0", &firmware, &state, NO_GATEWAY)),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the start should not finish within 1 ms"
    );
    let device = manager
        .start(spec("qemu-0", &firmware, &state, NO_GATEWAY))
        .await
        .expect("the name is free again");
    device.wait_for("booted", PATIENCE).await.expect("boots");
}
