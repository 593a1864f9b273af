//! The real firmware (`firmware/mps2`) in QEMU against the real gateway:
//! enrollment, deployments of Rust and WAT modules, a runaway module, a
//! device restart, a reset inside the emulator (idle and during a run), a
//! gateway restart and a gateway certificate that must be refused. The
//! harness reads the device's console, as a person would.

mod rig;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wasmbed_emulator::ConsoleMark;

use rig::{Devices, RunningGateway, app, device_id, expect_line, firmware_or_skip, wat_app};

/// Boots one device against a fresh gateway and waits for its session.
async fn enrolled_device(
    firmware: std::path::PathBuf,
) -> (
    tempfile::TempDir,
    RunningGateway,
    Devices,
    wasmbed_emulator::DeviceHandle,
    String,
) {
    let store_dir = tempfile::tempdir().expect("temp dir");
    let gateway = RunningGateway::start(
        "127.0.0.1:0".parse().expect("address"),
        &store_dir.path().join("gateway.db"),
    )
    .await;
    let devices = Devices::new(firmware);
    let device = devices.boot("qemu-0", gateway.addr).await;
    let enrolled = expect_line(&device, ConsoleMark::START, "agent: enrolled as device").await;
    let id = device_id(&enrolled);
    expect_line(
        &device,
        ConsoleMark::START,
        &format!("session established as device {id}"),
    )
    .await;
    (store_dir, gateway, devices, device, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolls_with_the_claim_certificate_then_reconnects_with_its_own() {
    let Some(firmware) = firmware_or_skip("enrolls_with_the_claim_certificate") else {
        return;
    };
    let (_dir, gateway, _devices, device, id) = enrolled_device(firmware).await;
    let console = device.console().lines();
    let claim = console
        .iter()
        .position(|l| l.text.contains("connecting with the claim certificate"))
        .expect("first connection with the claim certificate");
    let own = console
        .iter()
        .position(|l| l.text.contains("connecting with the device certificate"))
        .expect("then with its own certificate");
    assert!(claim < own);
    assert_eq!(gateway.presence(&id).await, "connected");
    let (_, view) = gateway
        .http("GET", &format!("/v1/devices/{id}"), None)
        .await;
    assert_eq!(view["board"], "mps2-an385");
    // The runtime says which firmware this is: the bare-metal one runs
    // wasmi, the Zephyr one (on its Ethernet-linked board) WAMR.
    let runtime = if rig::board().is_networked() {
        "wamr"
    } else {
        "wasmi"
    };
    assert_eq!(view["runtime"]["kind"], runtime, "{view}");
    // Its flash holds its private key: only its owner may read it.
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["flash.bin", "provision.bin"] {
        let path = device.spec().state_dir.join(file);
        let mode = std::fs::metadata(&path)
            .expect("state file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_modules_compiled_from_rust_and_from_wat() {
    let Some(firmware) = firmware_or_skip("runs_modules_compiled_from_rust_and_from_wat") else {
        return;
    };
    let (_dir, gateway, _devices, device, id) = enrolled_device(firmware).await;

    let primes = gateway
        .deploy(&id, &app("primes"), 20_000_000, json!([{"i32": 10_000}]))
        .await;
    let result = gateway.result(primes).await;
    // 1229 primes below 10000, the largest 9973 (reported with report_i32).
    assert_eq!(
        result["returned"],
        json!([{"i32": 1229}, {"i32": 9973}]),
        "{result}"
    );
    let log = result["logs"][0].as_str().expect("a log line");
    assert!(log.starts_with("primes below 10000: 1229 in "), "{log}");
    expect_line(
        &device,
        ConsoleMark::START,
        &format!("executed deployment {primes}"),
    )
    .await;

    let fib = gateway
        .deploy(&id, &wat_app("fib"), 20_000_000, json!([{"i64": 20}]))
        .await;
    let result = gateway.result(fib).await;
    assert_eq!(result["returned"], json!([{"i64": 6765}]), "{result}");
    assert_eq!(result["logs"], json!(["fibonacci from WAT"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_module_is_stopped_by_fuel_and_heartbeats_go_on() {
    let Some(firmware) = firmware_or_skip("a_runaway_module_is_stopped_by_fuel") else {
        return;
    };
    let (_dir, gateway, _devices, device, id) = enrolled_device(firmware).await;
    let spin = gateway
        .deploy(&id, &wat_app("spin"), 2_000_000, json!([]))
        .await;
    let result = gateway.result(spin).await;
    assert_eq!(result["trap"], "OutOfFuel", "{result}");
    assert_eq!(result["fuel_used"], 2_000_000);
    let executed = expect_line(&device, ConsoleMark::START, "Trapped(OutOfFuel)").await;
    let after = device
        .console()
        .lines()
        .iter()
        .find(|l| l.text == executed)
        .map(|l| l.mark_after())
        .expect("the trap line");
    expect_line(&device, after, "agent: heartbeat").await;
    let next = device.console().mark();
    expect_line(&device, next, "agent: heartbeat").await;
    assert_eq!(gateway.presence(&id).await, "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_keeps_the_identity_and_the_installed_module() {
    let Some(firmware) = firmware_or_skip("a_reset_keeps_the_identity") else {
        return;
    };
    let (_dir, gateway, devices, device, id) = enrolled_device(firmware).await;
    let fib = gateway
        .deploy(&id, &wat_app("fib"), 20_000_000, json!([{"i64": 10}]))
        .await;
    gateway.result(fib).await;

    let mark = device.console().mark();
    let device = devices.manager.restart("qemu-0").await.expect("restart");
    let boot = expect_line(&device, mark, "boot: device qemu-0").await;
    assert!(
        boot.contains(&format!("identity device {id}, 1 app(s) installed")),
        "{boot}"
    );
    expect_line(&device, mark, "connecting with the device certificate").await;
    expect_line(
        &device,
        mark,
        &format!("session established as device {id}"),
    )
    .await;
    // A deployment runs once, not again after a reset.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gateway.results_of(fib).await, 1);
    let console = device.console().lines_after(mark);
    assert!(
        !console
            .iter()
            .any(|l| l.text.contains("enrolled as device")),
        "enrolled again after a reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reset_inside_the_emulator_the_first_handshake_succeeds() {
    let Some(firmware) = firmware_or_skip("after_a_reset_inside_the_emulator") else {
        return;
    };
    let (_dir, gateway, devices, device, id) = enrolled_device(firmware).await;
    // The reset button: QEMU keeps running and its link socket stays open,
    // so only the device's new TLS session tells the bridge.
    let mark = device.console().mark();
    devices.manager.reset("qemu-0").await.expect("reset");
    expect_line(&device, mark, "boot: device qemu-0").await;
    expect_line(
        &device,
        mark,
        &format!("session established as device {id}"),
    )
    .await;
    let console = device.console().lines_after(mark);
    let failures: Vec<&str> = console
        .iter()
        .map(|l| l.text.as_str())
        .filter(|text| text.contains("failed"))
        .collect();
    assert!(failures.is_empty(), "after the reset: {failures:?}");
    assert_eq!(gateway.presence(&id).await, "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_during_a_run_is_reported_as_a_device_reset_result_and_not_rerun() {
    let Some(firmware) = firmware_or_skip("a_reset_during_a_run") else {
        return;
    };
    let (_dir, gateway, devices, device, id) = enrolled_device(firmware).await;
    // The most fuel the device allows: about two seconds of spinning.
    let module = wat_app("spin");
    let spin = gateway.deploy(&id, &module, 50_000_000, json!([])).await;
    // Nothing is printed when a run starts, nor sent until it ends: the
    // transfer starts, then the module (one chunk) and the commit arrive
    // together and the device installs and runs it.
    expect_line(
        &device,
        ConsoleMark::START,
        &format!("agent: receiving deployment {spin} from byte 0"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let executed = format!("executed deployment {spin}");
    let ran_out = |device: &wasmbed_emulator::DeviceHandle| {
        device
            .console()
            .lines()
            .iter()
            .any(|l| l.text.contains(&executed))
    };
    assert!(!ran_out(&device), "the run ended before the reset");
    assert_eq!(gateway.results_of(spin).await, 0);

    let mark = device.console().mark();
    devices.manager.reset("qemu-0").await.expect("reset");
    let boot = expect_line(&device, mark, "boot: device qemu-0").await;
    assert!(
        boot.contains(&format!("identity device {id}, 1 app(s) installed")),
        "{boot}"
    );
    expect_line(
        &device,
        mark,
        &format!("session established as device {id}"),
    )
    .await;
    let result = gateway.result(spin).await;
    assert_eq!(result["trap"], "DeviceReset", "{result}");
    assert_eq!(result["invocation"], 1, "{result}");
    assert_eq!(result["fuel_used"], 0, "{result}");
    assert_eq!(result["duration_us"], 0, "{result}");
    assert_eq!(result["logs"], json!([]), "{result}");

    // Confirmed by a heartbeat, and never run again.
    let after = device.console().mark();
    expect_line(&device, after, "agent: heartbeat").await;
    expect_line(&device, device.console().mark(), "agent: heartbeat").await;
    assert_eq!(gateway.results_of(spin).await, 1);
    assert!(!ran_out(&device), "run again after the reset");
    let (_, view) = gateway
        .http("GET", &format!("/v1/deployments/{spin}"), None)
        .await;
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(gateway.presence(&id).await, "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gateway_restart_the_device_reconnects() {
    let Some(firmware) = firmware_or_skip("after_a_gateway_restart") else {
        return;
    };
    let (dir, gateway, _devices, device, id) = enrolled_device(firmware).await;
    let addr = gateway.addr;
    let mark = device.console().mark();
    gateway.stop().await;
    expect_line(&device, mark, "link: connection").await;
    let gateway = RunningGateway::start(addr, &dir.path().join("gateway.db")).await;
    expect_line(
        &device,
        mark,
        &format!("session established as device {id}"),
    )
    .await;
    assert_eq!(gateway.presence(&id).await, "connected");
    // And it still works: a deployment after the restart runs.
    let fib = gateway
        .deploy(&id, &wat_app("fib"), 20_000_000, json!([{"i64": 12}]))
        .await;
    assert_eq!(gateway.result(fib).await["returned"], json!([{"i64": 144}]));
}

/// A TLS server presenting `chain`, that records whether any application
/// data reached it.
async fn rogue_gateway(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> std::net::SocketAddr {
    let fixtures = wasmbed_pki::test_fixtures();
    let key = fixtures.leaf_signed_gateway.private_key();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 64];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    assert_eq!(n, 0, "the device sent data to a rogue gateway");
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_certificate_signed_by_a_device_key_is_refused() {
    let Some(firmware) = firmware_or_skip("a_gateway_certificate_signed_by_a_device_key") else {
        return;
    };
    let fixtures = wasmbed_pki::test_fixtures();
    let devices = Devices::new(firmware);

    // As an attacker holding a device key would serve it: with the device
    // certificate as intermediate.
    let with_chain = rogue_gateway(fixtures.leaf_signed_gateway.chain.clone()).await;
    let device = devices.boot("chain", with_chain).await;
    expect_line(
        &device,
        ConsoleMark::START,
        "gateway sent 2 certificates, expected 1",
    )
    .await;
    expect_line(&device, ConsoleMark::START, "tls: handshake failed").await;

    // The leaf alone: its issuer is the device, not the gateway CA.
    let leaf_only = rogue_gateway(fixtures.leaf_signed_gateway.chain[..1].to_vec()).await;
    let device = devices.boot("leaf", leaf_only).await;
    expect_line(
        &device,
        ConsoleMark::START,
        "gateway certificate refused: not issued by the gateway CA",
    )
    .await;
    for device in [
        devices.manager.handle("chain"),
        devices.manager.handle("leaf"),
    ] {
        let device = device.expect("running");
        assert!(
            !device
                .console()
                .lines()
                .iter()
                .any(|l| l.text.contains("enrolled")),
            "enrolled with a rogue gateway"
        );
    }
}
