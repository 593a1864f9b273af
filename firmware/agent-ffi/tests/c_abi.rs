//! The agent's C ABI from C: builds `tests/c/agent_loop.c` with the host's
//! `gcc` against the static library and the generated headers, and plays
//! the gateway (the protocol's gateway session) over the program's stdin
//! and stdout: enrollment, a deployment run by the C runtime, and a restart
//! that keeps the identity and the installed module in the flash file.
//!
//! Skipped, with a message naming itself, when `gcc` is not installed.

// Test sizes and times are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

#[path = "../../../protocol/ffi/tests/support/c_toolchain.rs"]
mod c_toolchain;
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmbed_agent::provisioning::Provisioning;
use wasmbed_pki::test_fixtures;
use wasmbed_protocol::session::{GatewayConfig, GatewayEvent, GatewaySession, PeerCredential};
use wasmbed_protocol::*;

use c_toolchain::{NATIVE_LIBS, gcc, static_lib};

const DEVICE_ID: DeviceId = DeviceId([0x5a; 16]);

fn build(gcc: &Path, dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = dir.join("agent_loop");
    let compile = Command::new(gcc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-g",
        ])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-I")
        .arg(crate_dir.join("../../protocol/ffi/include"))
        .arg(crate_dir.join("tests/c/agent_loop.c"))
        .arg(static_lib("wasmbed_agent_ffi"))
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&program)
        .output()
        .expect("running gcc");
    assert!(
        compile.status.success(),
        "gcc failed ({}):\n{}",
        compile.status,
        String::from_utf8_lossy(&compile.stderr)
    );
    program
}

fn write_provisioning(dir: &Path) -> PathBuf {
    let installation = &test_fixtures().installation;
    let claim_key = wasmbed_pki::pkcs8_to_p256_scalar(installation.claim_key().secret_pkcs8_der())
        .expect("a P-256 key");
    let record = Provisioning {
        gateway_ca: installation.gateway_ca(),
        server_name: "localhost",
        claim_certificate: installation.claim_cert(),
        claim_private_key: claim_key,
        entropy_seed: [3; 32],
        device_name: "c-0",
        gateway_address: None,
    };
    let path = dir.join("provision.bin");
    std::fs::write(&path, record.to_vec()).expect("writing provision.bin");
    path
}

/// What the gateway saw in one run of the program, and its console.
#[derive(Debug, Default)]
struct Run {
    enrolled: bool,
    established: Option<SessionStart>,
    results: Vec<(Outcome, Vec<String>)>,
    console: String,
}

/// Runs the program for one connection. `module`, if any, is deployed
/// once the session is up; the gateway says goodbye once it has a result
/// (or at once, without a module).
fn run(program: &Path, dir: &Path, module: Option<(&[u8], Limits)>) -> Run {
    let mut child: Child = Command::new(program)
        .arg(dir.join("provision.bin"))
        .arg(dir.join("flash.bin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the C program");
    let mut to_device = child.stdin.take().expect("stdin");
    let mut from_device = child.stdout.take().expect("stdout");
    let mut console_pipe = child.stderr.take().expect("stderr");
    let (bytes_tx, bytes_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = from_device.read(&mut buf) {
            if n == 0 || bytes_tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let console = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = console_pipe.read_to_string(&mut text);
        text
    });

    let mut gateway: Option<GatewaySession<Vec<u8>>> = None;
    let mut run = Run::default();
    let mut module = module;
    let started = Instant::now();
    let now = || Millis(started.elapsed().as_millis() as u64);
    let deadline = started + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the run took over 20 s: {run:?}");
        let bytes = match bytes_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(bytes) => bytes,
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // The first bytes tell claim from device: the session start or
        // enrollment request (a real gateway reads the TLS certificate).
        let session = gateway.get_or_insert_with(|| {
            let credential = if std::fs::metadata(dir.join("enrolled")).is_ok() {
                PeerCredential::Device
            } else {
                PeerCredential::Claim
            };
            GatewaySession::new(credential, GatewayConfig::default(), [1; NONCE_LEN], now())
        });
        let mut fed = 0;
        while fed < bytes.len() {
            let n = session.handle_input(&bytes[fed..], now());
            fed += n;
            let mut decision = None;
            while let Some(event) = session.poll_event() {
                match event {
                    GatewayEvent::EnrollRequested { .. } => decision = Some(true),
                    GatewayEvent::SessionRequested(start) => {
                        run.established = Some(start);
                        decision = Some(false);
                    }
                    GatewayEvent::ExecutionResult(result) => run.results.push((
                        result.outcome.clone(),
                        result.logs.iter().map(|l| l.as_str().to_owned()).collect(),
                    )),
                    _ => {}
                }
            }
            match decision {
                Some(true) => {
                    run.enrolled = true;
                    std::fs::write(dir.join("enrolled"), b"").expect("marker");
                    session
                        .accept_enrollment(DEVICE_ID, test_fixtures().device.cert.as_ref())
                        .expect("deciding");
                }
                Some(false) => {
                    session.accept_session(DEVICE_ID).expect("deciding");
                    match module.take() {
                        Some((bytes, limits)) => {
                            common::send_deployment(session, DeploymentId(11), bytes, 100, limits)
                        }
                        None => session.close(GoodbyeReason::Shutdown),
                    }
                }
                None => {}
            }
            if n == 0 {
                break;
            }
        }
        if !run.results.is_empty() && !session.is_closed() {
            session.close(GoodbyeReason::Shutdown);
        }
        session.handle_timeout(now());
        let out = session.poll_transmit().to_vec();
        if !out.is_empty() {
            if to_device.write_all(&out).is_err() {
                break;
            }
            session.advance_transmit(out.len());
        }
    }
    drop(to_device);
    let status = wait(&mut child);
    run.console = console.join().expect("console reader");
    assert!(
        status.success(),
        "the C program failed ({status}):\n{}",
        run.console
    );
    run
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the C program did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_c_program_enrolls_runs_a_deployment_and_keeps_its_identity() {
    let Some(gcc) = gcc() else {
        eprintln!("agent c_abi: SKIPPED: `gcc` is not on PATH, so the C program cannot be built");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("agent_c_abi")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work directory");
    let program = build(&gcc, &dir);
    write_provisioning(&dir);

    let first = run(&program, &dir, None);
    assert!(first.enrolled, "{first:?}");
    assert!(
        first
            .console
            .contains("boot: device c-0, identity none (will enroll), 0 app(s) installed")
    );
    assert!(
        first
            .console
            .contains("link: connecting with the claim certificate")
    );
    assert!(
        first
            .console
            .contains("agent: enrolled as device 5a5a5a5a-"),
        "{}",
        first.console
    );

    // 300 bytes: several chunks. Only the magic matters to the C runtime.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.resize(300, 0x2a);
    let limits = Limits {
        fuel: 1_000,
        memory_pages: 1,
        entry: "main".try_into().expect("short"),
        args: heapless::Vec::from_slice(&[Value::I32(21)]).expect("one"),
    };
    let second = run(&program, &dir, Some((&module, limits)));
    let start = second.established.as_ref().expect("a session");
    assert_eq!(start.capabilities.runtime, RuntimeKind::Wamr);
    assert_eq!(start.capabilities.runtime_version.as_str(), "test-double");
    assert!(
        second
            .console
            .contains("link: connecting with the device certificate")
    );
    assert_eq!(
        second.results,
        [(
            Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(42)]).expect("one")),
            vec!["double from C".to_owned()]
        )],
        "{}",
        second.console
    );
    assert!(
        second
            .console
            .contains("agent: executed deployment 11: Returned([I32(42)]), fuel 7")
    );

    let third = run(&program, &dir, None);
    assert!(
        third
            .console
            .contains("identity device 5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a, 1 app(s) installed"),
        "{}",
        third.console
    );
    let apps = &third.established.as_ref().expect("a session").apps;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].deployment, DeploymentId(11));
    let _ = std::fs::remove_dir_all(&dir);
}
