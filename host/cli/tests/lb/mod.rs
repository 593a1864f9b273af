//! A load-balanced installation made of real processes, for
//! `tests/load_balanced.rs`: `wasmbed api`, three `wasmbed gateway`s
//! (gw-1..gw-3) registered with it, Debian's HAProxy in TCP mode in front
//! of their device ports, and a fleet of simulated devices (`wasmbed-sim`,
//! in this process) or QEMU devices connecting through HAProxy. The
//! gateways hold no device CA key: they pass enrollments to the API
//! server (`--enroll-via-api`), where pairing is open.
//!
//! Every process writes its output into the temporary directory; when a
//! test fails, the end of each log is printed, and every process is
//! killed whatever happened.

#![allow(dead_code)]

pub(crate) mod emulated;
pub(crate) mod haproxy;
pub(crate) mod process;
pub(crate) mod rest;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use wasmbed_sim::{DeviceSnapshot, Fleet, SimConfig, Simulation};

use self::process::{Log, Process};
use self::rest::{Api, GatewayClient};

pub(crate) const WASMBED: &str = env!("CARGO_BIN_EXE_wasmbed");

/// The gateways' names, in the API server and in HAProxy.
pub(crate) const GATEWAYS: [&str; 3] = ["gw-1", "gw-2", "gw-3"];

/// The label every simulated device's resource carries, and applications
/// select.
const FLEET_LABEL: (&str, &str) = ("fleet", "lb");

/// The reconnection backoff of the simulated devices: short, so that the
/// time to reconnect measures the gateways and HAProxy more than the
/// device's patience.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Calls `check` every 100 ms until it gives a value, and returns it;
/// panics after `limit` with `what` and what `check` said last.
pub(crate) fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) => assert!(
                Instant::now() < deadline,
                "{what}: not after {limit:?}: {why}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One gateway: its ports and token stay the same across restarts.
#[derive(Debug)]
struct GatewaySlot {
    name: &'static str,
    device_port: u16,
    http_port: u16,
    token: String,
    log: PathBuf,
    process: Option<Process>,
}

/// The installation. Fields drop in order: the fleet, then the
/// processes, then the runtime, then the directory.
#[derive(Debug)]
pub(crate) struct Cluster {
    fleet: Option<Fleet>,
    /// QEMU devices running the real firmware, instead of the fleet.
    emulators: Option<emulated::Emulators>,
    /// Flags every gateway is started with, besides those of the harness.
    gateway_args: Vec<String>,
    /// The resource name of each simulated device, by fleet index.
    device_names: Vec<String>,
    gateways: Vec<GatewaySlot>,
    api_process: Option<Process>,
    haproxy: Process,
    haproxy_port: u16,
    /// HAProxy's operator socket, which tells whether it sees a gateway up.
    haproxy_socket: PathBuf,
    pub(crate) api: Api,
    gateway_client: GatewayClient,
    api_port: u16,
    logs: Vec<Log>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A new installation with the API server, HAProxy over all three
    /// gateways, and the gateways of `running` started and registered.
    pub(crate) fn start(running: &[&str]) -> Cluster {
        Cluster::start_with(running, &[])
    }

    /// [`Cluster::start`], each gateway started with `gateway_args` too.
    pub(crate) fn start_with(running: &[&str], gateway_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = dir.path().join("pki");
        let init = Command::new(WASMBED)
            .args(["certs", "init", "--dir"])
            .arg(&pki)
            .output()
            .expect("certs init");
        assert!(init.status.success(), "certs init: {init:?}");
        // The gateways' copy lacks the device CA's key: the API server
        // signs every enrollment (`--enroll-via-api`).
        let gateway_pki = dir.path().join("gateway-pki");
        std::fs::create_dir(&gateway_pki).expect("the gateways' installation");
        for entry in std::fs::read_dir(&pki).expect("the installation") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().expect("a file name").to_owned();
            if name != wasmbed_pki::file_names::DEVICE_CA_KEY {
                std::fs::copy(&path, gateway_pki.join(name)).expect("copy");
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fleet");

        let api_port = free_port();
        let api_out = dir.path().join("api.out");
        let mut logs = vec![
            Log {
                label: "wasmbed api (stderr)".into(),
                path: dir.path().join("api.log"),
            },
            Log {
                label: "haproxy".into(),
                path: dir.path().join("haproxy.log"),
            },
        ];
        let (api_process, token) = spawn_api(dir.path(), api_port, &api_out, &logs[0].path);
        let token = token.expect("an admin token at the first start");
        let api = Api::new(
            format!("http://127.0.0.1:{api_port}"),
            token,
            runtime.handle().clone(),
        );
        // Pairing is fleet-wide, at the API server.
        let (status, answer) = api.put(
            "/api/v1/pairing",
            &json!({"open": true, "duration_s": 3600}),
        );
        assert_eq!(status, 200, "open pairing: {answer}");

        let gateways: Vec<GatewaySlot> = GATEWAYS
            .iter()
            .map(|name| {
                let log = dir.path().join(format!("{name}.log"));
                logs.push(Log {
                    label: format!("wasmbed gateway {name}"),
                    path: log.clone(),
                });
                GatewaySlot {
                    name,
                    device_port: free_port(),
                    http_port: free_port(),
                    token: gateway_token(&api, name),
                    log,
                    process: None,
                }
            })
            .collect();
        let haproxy_port = free_port();
        let servers: Vec<(String, u16)> = gateways
            .iter()
            .map(|g| (g.name.to_owned(), g.device_port))
            .collect();
        let haproxy_socket = dir.path().join("haproxy.sock");
        let haproxy = haproxy::start(
            dir.path(),
            &haproxy::config(haproxy_port, &servers, &haproxy_socket),
            &logs[1].path,
        );
        let gateway_client = GatewayClient::new(&pki, runtime.handle().clone());
        let mut cluster = Cluster {
            fleet: None,
            emulators: None,
            gateway_args: gateway_args.iter().map(|a| (*a).to_owned()).collect(),
            device_names: Vec::new(),
            gateways,
            api_process: Some(api_process),
            haproxy,
            haproxy_port,
            haproxy_socket,
            api,
            gateway_client,
            api_port,
            logs,
            runtime,
            dir,
        };
        // The gateways not running are down before any device connects:
        // none is sent to a closed port first.
        for name in GATEWAYS.iter().filter(|g| !running.contains(g)) {
            wait_for(
                &format!("HAProxy sees {name} down"),
                Duration::from_secs(10),
                || {
                    assert!(cluster.haproxy.is_running(), "HAProxy exited");
                    match haproxy::server_status(&cluster.haproxy_socket, name) {
                        Some(status) if status.starts_with("DOWN") => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            );
        }
        for name in running {
            cluster.start_gateway(name);
        }
        cluster
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn slot(&mut self, name: &str) -> &mut GatewaySlot {
        self.gateways
            .iter_mut()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no gateway {name}"))
    }

    /// The names of the gateways running now.
    pub(crate) fn running_gateways(&mut self) -> Vec<&'static str> {
        self.gateways
            .iter_mut()
            .filter_map(|g| {
                let running = g.process.as_mut().is_some_and(Process::is_running);
                running.then_some(g.name)
            })
            .collect()
    }

    /// Starts gateway `name` (again: same ports, database and token) and
    /// waits until its device port answers, HAProxy sees it up and, while
    /// the API server runs, until it is registered there and found
    /// reachable.
    pub(crate) fn start_gateway(&mut self, name: &str) {
        let pki = self.dir.path().join("gateway-pki");
        let db = self.dir.path().join(format!("{name}.db"));
        let api_url = self.api.url.clone();
        let gateway_args = self.gateway_args.clone();
        let slot = self.slot(name);
        assert!(slot.process.is_none(), "{name} is already running");
        let mut command = Command::new(WASMBED);
        command
            .arg("gateway")
            .arg("--pki")
            .arg(&pki)
            .arg("--db")
            .arg(&db)
            .args(["--listen", &format!("127.0.0.1:{}", slot.device_port)])
            .args(["--http", &format!("127.0.0.1:{}", slot.http_port)])
            .args(["--api", &api_url, "--name", name])
            .args(["--api-token", &slot.token])
            .arg("--enroll-via-api")
            .args(&gateway_args)
            .env("WASMBED_LOG", "info")
            .env("NO_COLOR", "1");
        let log = slot.log.clone();
        slot.process = Some(Process::spawn(name, &mut command, &log, &log));
        let (device_port, http_port) = (slot.device_port, slot.http_port);
        wait_for(
            &format!("{name}'s device port"),
            Duration::from_secs(20),
            || {
                let slot = self.slot(name);
                let process = slot.process.as_mut().expect("started");
                assert!(process.is_running(), "{name} exited");
                TcpStream::connect(("127.0.0.1", device_port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        wait_for(
            &format!("HAProxy sees {name} up"),
            Duration::from_secs(10),
            || match haproxy::server_status(&self.haproxy_socket, name) {
                Some(status) if status == "UP" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        if self.api_process.is_some() {
            let endpoint = format!("https://127.0.0.1:{http_port}");
            wait_for(
                &format!("{name} registered and reachable"),
                Duration::from_secs(30),
                || {
                    let gateway = self
                        .api
                        .get(&format!("/api/v1/gateways/{name}"))
                        .ok_or("not registered")?;
                    let registered = gateway["spec"]["http_endpoint"] == endpoint.as_str();
                    if registered && gateway["status"]["reachable"] == true {
                        Ok(())
                    } else {
                        Err(gateway.to_string())
                    }
                },
            );
        }
    }

    /// `kill -9` of gateway `name`: a crash.
    pub(crate) fn kill_gateway(&mut self, name: &str) {
        let mut process = self.slot(name).process.take().expect("running");
        process.kill();
    }

    /// Ctrl-C to gateway `name`; it must stop by itself (draining its
    /// sessions) within 30 s.
    pub(crate) fn stop_gateway(&mut self, name: &str) {
        let mut process = self.slot(name).process.take().expect("running");
        assert!(
            process.interrupt(Duration::from_secs(30)),
            "{name} did not stop on SIGINT within 30 s"
        );
    }

    /// Ctrl-C to the API server; it must stop by itself within 15 s.
    pub(crate) fn stop_api(&mut self) {
        let mut process = self.api_process.take().expect("the API server runs");
        assert!(
            process.interrupt(Duration::from_secs(15)),
            "the API server did not stop on SIGINT within 15 s"
        );
    }

    /// Freezes HAProxy (SIGSTOP): the devices' connections stay open and
    /// nothing passes them, as in a network stall, until
    /// [`Cluster::resume_load_balancer`].
    pub(crate) fn pause_load_balancer(&self) {
        self.haproxy.signal("STOP");
    }

    /// Lets HAProxy run again (SIGCONT).
    pub(crate) fn resume_load_balancer(&self) {
        self.haproxy.signal("CONT");
    }

    /// Starts the API server again, on the same port and database.
    pub(crate) fn restart_api(&mut self) {
        assert!(self.api_process.is_none(), "the API server runs");
        let (process, token) = spawn_api(
            self.dir.path(),
            self.api_port,
            &self.dir.path().join("api.out"),
            &self.logs[0].path,
        );
        assert_eq!(token, None, "a second admin token at a restart");
        self.api_process = Some(process);
    }

    /// Starts `devices` simulated devices connecting through HAProxy and
    /// waits until every one is enrolled and has a session.
    pub(crate) fn start_fleet(&mut self, devices: usize) {
        let installation =
            wasmbed_pki::Installation::load(&self.pki()).expect("load the installation");
        let gateway = SocketAddr::from(([127, 0, 0, 1], self.haproxy_port));
        let config = SimConfig::new(gateway).with_backoff(BACKOFF.0, BACKOFF.1);
        let simulation = Simulation::new(config, &installation).expect("a simulation");
        let fleet = {
            let _inside = self.runtime.enter();
            Fleet::start(simulation, devices, None).expect("start the fleet")
        };
        self.fleet = Some(fleet);
        self.device_names = (0..devices).map(|i| format!("sim-{i:02}")).collect();
        wait_for(
            "every device enrolled and connected",
            Duration::from_secs(60),
            || {
                let snapshots = self.snapshots();
                let waiting = snapshots
                    .iter()
                    .filter(|s| !s.connected || s.device_id.is_none())
                    .count();
                if waiting == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "{waiting} of {devices} not yet; {}",
                        self.fleet.as_ref().expect("started").stats()
                    ))
                }
            },
        );
    }

    /// Each simulated device's counters now, by fleet index.
    pub(crate) fn snapshots(&self) -> Vec<DeviceSnapshot> {
        self.fleet
            .as_ref()
            .expect("the fleet runs")
            .devices()
            .iter()
            .map(|d| d.snapshot())
            .collect()
    }

    /// The resource names of the devices, by fleet index.
    pub(crate) fn device_names(&self) -> &[String] {
        &self.device_names
    }

    /// Starts `devices` QEMU devices running `firmware`, connecting through
    /// HAProxy, and waits until every one has a session.
    pub(crate) fn start_emulated(&mut self, firmware: &std::path::Path, devices: usize) {
        let log = self.dir.path().join("emulator.log");
        self.logs.push(Log {
            label: "wasmbed emulator run".into(),
            path: log.clone(),
        });
        self.logs.push(Log {
            label: "the QEMU devices' consoles".into(),
            path: self.dir.path().join(emulated::CONSOLES),
        });
        let emulators = emulated::Emulators::start(
            self.dir.path(),
            &self.pki(),
            firmware,
            devices,
            self.haproxy_port,
            &log,
        );
        self.device_names = emulators.names().to_vec();
        self.emulators = Some(emulators);
    }

    /// The QEMU devices, once started.
    pub(crate) fn emulators(&mut self) -> &mut emulated::Emulators {
        self.emulators.as_mut().expect("QEMU devices started")
    }

    /// The device id (`8-4-4-4-12` hex) of each device, by resource name.
    fn device_ids(&self) -> BTreeMap<String, String> {
        if let Some(emulators) = &self.emulators {
            return emulators.device_ids();
        }
        self.snapshots()
            .iter()
            .zip(&self.device_names)
            .map(|(s, name)| {
                let id = s.device_id.expect("enrolled").to_string();
                (name.clone(), id)
            })
            .collect()
    }

    /// Creates a Device resource for each simulated device: its id as the
    /// gateway reports it, `spec.gateway` gw-1 (where it connects is
    /// `status.gateway`), the fleet label.
    pub(crate) fn register_devices(&self) {
        for (name, id) in self.device_ids() {
            let board = if self.emulators.is_some() {
                "mps2-an385"
            } else {
                wasmbed_sim::SIM_BOARD
            };
            let body = json!({
                "metadata": {"name": name, "labels": {FLEET_LABEL.0: FLEET_LABEL.1}},
                "spec": {
                    "board": board,
                    "gateway": "gw-1",
                    "device_id": id,
                },
            });
            let (status, answer) = self.api.post("/api/v1/devices", &body);
            assert_eq!(status, 201, "create device {name}: {answer}");
        }
    }

    /// Where each device is connected as the running gateways see it:
    /// device name to gateway name. An error names a device connected
    /// nowhere or at two gateways at once, or a gateway not answering.
    pub(crate) fn holders(&mut self) -> Result<BTreeMap<String, &'static str>, String> {
        let by_id: BTreeMap<String, String> = self
            .device_ids()
            .into_iter()
            .map(|(name, id)| (id, name))
            .collect();
        let mut holders = BTreeMap::new();
        for name in self.running_gateways() {
            let port = self.slot(name).http_port;
            let connected = self
                .gateway_client
                .connected_devices(port)
                .ok_or_else(|| format!("{name} does not answer"))?;
            for id in connected {
                let Some(device) = by_id.get(&id) else {
                    return Err(format!("{name} holds an unknown device {id}"));
                };
                if let Some(other) = holders.insert(device.clone(), name) {
                    return Err(format!("{device} is connected at {other} and {name}"));
                }
            }
        }
        if let Some(missing) = self.device_names.iter().find(|n| !holders.contains_key(*n)) {
            return Err(format!("{missing} is connected at no gateway"));
        }
        Ok(holders)
    }

    /// Where the API server says each device is connected now
    /// (`status.gateway`, with `status.presence` connected): device name
    /// to gateway name, for the simulated devices.
    pub(crate) fn api_placement(&self) -> Result<BTreeMap<String, String>, String> {
        let devices = self.api.get("/api/v1/devices").ok_or("no device list")?;
        let mut placement = BTreeMap::new();
        for device in devices.as_array().ok_or("not a list")? {
            let name = device["metadata"]["name"].as_str().unwrap_or_default();
            if !self.device_names.iter().any(|n| n == name) {
                continue;
            }
            let status = &device["status"];
            match (status["presence"].as_str(), status["gateway"].as_str()) {
                (Some("connected"), Some(gateway)) => {
                    placement.insert(name.to_owned(), gateway.to_owned());
                }
                _ => return Err(format!("{name}: status {status}")),
            }
        }
        if placement.len() != self.device_names.len() {
            return Err(format!(
                "{} of {} devices listed",
                placement.len(),
                self.device_names.len()
            ));
        }
        Ok(placement)
    }

    /// Waits until the gateways hold every device, each at one gateway,
    /// and the API server's `status.gateway` says the same; returns where
    /// each device is.
    pub(crate) fn wait_placement(&mut self, limit: Duration) -> BTreeMap<String, &'static str> {
        wait_for(
            "every device connected, at the gateway status.gateway names",
            limit,
            || {
                let holders = self.holders()?;
                let placement = self.api_placement()?;
                for (device, gateway) in &holders {
                    if placement.get(device).map(String::as_str) != Some(*gateway) {
                        return Err(format!(
                            "{device} is connected at {gateway}, the API server says {:?}",
                            placement.get(device)
                        ));
                    }
                }
                Ok(holders)
            },
        )
    }

    /// Creates application `name` selecting every simulated device: a
    /// module whose `run` returns `value`.
    pub(crate) fn deploy(&self, name: &str, value: i32) {
        let module = wat::parse_str(format!(
            r#"(module (func (export "run") (result i32) i32.const {value}))"#
        ))
        .expect("WAT");
        let body = json!({
            "metadata": {"name": name},
            "spec": {
                "module": base64::engine::general_purpose::STANDARD.encode(module),
                "limits": {"fuel": 10_000, "memory_pages": 1, "entry": "run", "args": []},
                "selector": {"match_labels": {FLEET_LABEL.0: FLEET_LABEL.1}},
            },
        });
        let (status, answer) = self.api.post("/api/v1/applications", &body);
        assert_eq!(status, 201, "create application {name}: {answer}");
    }

    /// The application's status as the API server holds it.
    pub(crate) fn application(&self, name: &str) -> Option<Value> {
        self.api.get(&format!("/api/v1/applications/{name}"))
    }

    /// Waits until the API server holds a result of application `name`
    /// from every device, returning `value`; fails at once when a device
    /// has more than one (a result stored twice or a module run twice).
    /// Then the application's `status.results` must count one per device.
    pub(crate) fn wait_results_exactly_once(&self, name: &str, value: i32, limit: Duration) {
        let devices = self.device_names.len();
        wait_for(
            &format!("one result of {name} per device at the API server"),
            limit,
            || {
                let results = self
                    .api
                    .get(&format!("/api/v1/applications/{name}/results"))
                    .ok_or("no results")?;
                let mut per_device: BTreeMap<&str, usize> = BTreeMap::new();
                for result in results.as_array().ok_or("not a list")? {
                    let device = result["device"].as_str().unwrap_or_default();
                    assert_eq!(
                        result["returned"],
                        json!([{ "i32": value }]),
                        "{name} on {device}: {result}"
                    );
                    *per_device.entry(device).or_default() += 1;
                }
                let twice: Vec<_> = per_device.iter().filter(|(_, n)| **n > 1).collect();
                assert!(twice.is_empty(), "{name}: more than one result: {twice:?}");
                if per_device.len() < devices {
                    return Err(format!(
                        "results from {} of {devices} devices",
                        per_device.len()
                    ));
                }
                let counted = self
                    .application(name)
                    .and_then(|a| a["status"]["results"].as_u64())
                    .ok_or("no status")?;
                if counted != u64::try_from(devices).expect("a count") {
                    return Err(format!("status.results {counted}, {devices} devices"));
                }
                Ok(())
            },
        );
    }

    /// Asserts that each simulated device installed `installs` modules and
    /// produced `results` results in all: nothing installed again from
    /// scratch, nothing run twice.
    pub(crate) fn assert_each_device(&self, installs: u64, results: u64) {
        for (snapshot, name) in self.snapshots().iter().zip(&self.device_names) {
            assert_eq!(
                (snapshot.installs, snapshot.results),
                (installs, results),
                "{name} (installs, results): {snapshot:?}"
            );
        }
    }
}

/// Starts `wasmbed api` on `port` with its database in `dir`, its
/// standard output appended to `out`; waits for its address line and
/// returns it with the admin token it printed, if any.
fn spawn_api(
    dir: &std::path::Path,
    port: u16,
    out: &std::path::Path,
    log: &std::path::Path,
) -> (Process, Option<String>) {
    let printed_before = std::fs::read_to_string(out).map_or(0, |t| t.len());
    let mut command = Command::new(WASMBED);
    command
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--reconcile-interval", "200ms", "--db"])
        .arg(dir.join("api.db"))
        .arg("--pki")
        .arg(dir.join("pki"))
        .env("WASMBED_LOG", "info")
        .env("NO_COLOR", "1");
    let mut process = Process::spawn("wasmbed api", &mut command, out, log);
    let token = wait_for("the API server's address", Duration::from_secs(30), || {
        assert!(process.is_running(), "the API server exited");
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        let lines = printed.get(printed_before..).unwrap_or_default();
        if !lines.lines().any(|l| l.starts_with("API server on ")) {
            return Err("no address yet".into());
        }
        Ok(lines
            .lines()
            .find_map(|l| l.strip_prefix("admin token: "))
            .map(|t| t.trim().to_owned()))
    });
    (process, token)
}

/// A gateway token for gateway `name`, made with `wasmbed token create`.
fn gateway_token(api: &Api, name: &str) -> String {
    let made = Command::new(WASMBED)
        .args(["token", "create", "--name", name, "--role", "gateway"])
        .args(["--gateway", name, "--api", &api.url])
        .env("WASMBED_TOKEN", &api.token)
        .output()
        .expect("token create");
    assert!(made.status.success(), "token create {name}: {made:?}");
    String::from_utf8(made.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

impl Drop for Cluster {
    /// On failure, prints the end of every log before the processes are
    /// killed and the directory removed.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(fleet) = &self.fleet {
            eprintln!("--- fleet: {}", fleet.stats());
        }
        for log in &self.logs {
            eprintln!(
                "--- {} ({}):\n{}",
                log.label,
                log.path.display(),
                log.tail(80)
            );
        }
    }
}
