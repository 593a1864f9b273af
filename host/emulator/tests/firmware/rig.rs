//! A rig for tests against the real firmware: the real gateway in this
#![allow(clippy::print_stdout)] // tests say on stdout why they skip
//! process, devices booted in QEMU by the emulator manager, and the
//! gateway's HTTP interface called without a socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;
use wasmbed_emulator::board::default_boards_dir;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, ConsoleMark, DeviceHandle, DeviceSpec, EmulatorManager,
    ProvisionOptions, provision,
};
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::Installation;

/// Generous: CI runs several QEMU devices at once on two cores.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn installation() -> &'static Installation {
    &wasmbed_pki::test_fixtures().installation
}

/// The release firmware image, or `None` (with a message) when it has not
/// been built. `cargo xtask test` builds it and sets
/// `WASMBED_REQUIRE_FIRMWARE`, so there a missing image fails the test.
pub(crate) fn firmware_or_skip(test: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let elf = std::env::var_os("WASMBED_FIRMWARE").map_or_else(
        || root.join("firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2"),
        PathBuf::from,
    );
    let required = std::env::var_os("WASMBED_REQUIRE_FIRMWARE").is_some();
    if !Backend::Qemu.available() {
        assert!(!required, "qemu-system-arm is required but not on PATH");
        println!("qemu-system-arm not on PATH: skipping {test} (apt-get install qemu-system-arm)");
        return None;
    }
    if !elf.exists() {
        assert!(!required, "{} is required but missing", elf.display());
        println!("firmware not built: skipping {test} (cargo xtask firmware)");
        return None;
    }
    Some(elf)
}

/// The board the firmware runs on: `WASMBED_BOARD` (`mps2-an385-zephyr`
/// for the Zephyr image, whose link is Ethernet), else `mps2-an385`.
pub(crate) fn board() -> Board {
    let name = std::env::var("WASMBED_BOARD").unwrap_or_else(|_| "mps2-an385".to_owned());
    Board::find_in(&default_boards_dir(), &name).expect("the board named by WASMBED_BOARD")
}

/// A WebAssembly module built by `cargo xtask apps` (into `WASMBED_APPS`
/// when set).
pub(crate) fn app(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("WASMBED_APPS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/apps"),
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (build it with `cargo xtask apps`)", path.display()))
}

/// A module from `apps/wat/`.
pub(crate) fn wat_app(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../apps/wat")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The real gateway, serving devices on `addr` until stopped.
pub(crate) struct RunningGateway {
    pub(crate) gateway: Gateway,
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) fn gateway_config() -> GatewayConfig {
    let mut config = GatewayConfig {
        handshake_timeout: Duration::from_secs(20),
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = 1_000;
    config.session.missed_heartbeats = 10;
    config
}

impl RunningGateway {
    /// Starts a gateway on `addr` (port 0: any) with its store at `db`.
    pub(crate) async fn start(addr: SocketAddr, db: &Path) -> RunningGateway {
        let store = Store::open(db).expect("open the gateway store");
        let gateway = Gateway::new(gateway_config(), installation(), store).expect("gateway");
        let devices = TcpListener::bind(addr).await.expect("bind the device port");
        let http = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTP port");
        let addr = devices.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel();
        let server = gateway.clone();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(devices, http, async {
                    let _ = stopped.await;
                })
                .await;
        });
        gateway.pairing().open(None);
        RunningGateway {
            gateway,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub(crate) async fn http(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        request
            .extensions_mut()
            .insert(wasmbed_gateway::http::InProcessCaller("firmware tests"));
        let response = self
            .gateway
            .router()
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Deploys `module` to `device`; returns the deployment id.
    pub(crate) async fn deploy(&self, device: &str, module: &[u8], fuel: u64, args: Value) -> u64 {
        let body = json!({
            "application_id": 1,
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "devices": [device],
            "limits": {"fuel": fuel, "memory_pages": 1, "entry": "run", "args": args},
        });
        let (status, created) = self.http("POST", "/v1/deployments", Some(body)).await;
        assert!(status.is_success(), "deploy: {status} {created}");
        created[0]["id"].as_u64().expect("deployment id")
    }

    /// Waits for the result of `deployment`.
    pub(crate) async fn result(&self, deployment: u64) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, results) = self.http("GET", "/v1/results", None).await;
            let found = results
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["deployment"] == deployment);
            if let Some(result) = found {
                return result.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no result for deployment {deployment}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn results_of(&self, deployment: u64) -> usize {
        let (_, results) = self.http("GET", "/v1/results", None).await;
        results
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["deployment"] == deployment)
            .count()
    }

    pub(crate) async fn presence(&self, device: &str) -> String {
        let (_, view) = self
            .http("GET", &format!("/v1/devices/{device}"), None)
            .await;
        view["presence"].as_str().unwrap_or_default().to_owned()
    }
}

/// The emulator manager and the devices' state directories.
pub(crate) struct Devices {
    pub(crate) manager: EmulatorManager,
    pub(crate) dir: tempfile::TempDir,
    firmware: PathBuf,
}

impl Devices {
    pub(crate) fn new(firmware: PathBuf) -> Devices {
        Devices {
            manager: EmulatorManager::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            firmware,
        }
    }

    /// Provisions (for the fixture installation) and boots a device.
    pub(crate) async fn boot(&self, name: &str, gateway: SocketAddr) -> DeviceHandle {
        self.boot_trusting(name, gateway, installation()).await
    }

    /// Boots a device provisioned for `trusted`'s gateway CA.
    pub(crate) async fn boot_trusting(
        &self,
        name: &str,
        gateway: SocketAddr,
        trusted: &Installation,
    ) -> DeviceHandle {
        let state_dir = self.dir.path().join(name);
        provision(
            &state_dir,
            &ProvisionOptions {
                claim: ClaimMaterial::from_installation(trusted).expect("claim material"),
                server_name: "localhost".to_owned(),
                device_name: name.to_owned(),
                overwrite: false,
            },
        )
        .expect("provision");
        let spec = DeviceSpec {
            name: name.to_owned(),
            board: board(),
            firmware: self.firmware.clone(),
            state_dir,
            gateway: gateway.to_string(),
            backend: Backend::Qemu,
            icount: None,
        };
        self.manager.start(spec).await.expect("start the device")
    }
}

/// The device id in a line like "agent: enrolled as device <id>".
pub(crate) fn device_id(line: &str) -> String {
    line.rsplit("device ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a device id")
        .to_owned()
}

/// Waits for `pattern` after `mark` and returns the line.
pub(crate) async fn expect_line(device: &DeviceHandle, mark: ConsoleMark, pattern: &str) -> String {
    match device.wait_for_after(mark, pattern, WAIT).await {
        Ok(line) => line.text,
        Err(e) => panic!("{e}"),
    }
}
