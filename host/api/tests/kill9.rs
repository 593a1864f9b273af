//! `kill -9` of the API server and controller while deployments are in
//! flight: every acknowledged write is still there after the restart,
//! and each device runs the module exactly once (no second gateway
//! deployment for a device after the restart).
//!
//! The API server and controller run in a child process (this test
//! binary again, its role chosen by an environment variable) on a SQLite
//! database; the gateway and three simulated devices run in this process.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{app_body, device_body, doubler, gateway_body, gateway_client, gateway_tls};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::http::{AppState, Auth, app};
use wasmbed_api::store::{SqliteStore, Store};
use wasmbed_gateway::store::Store as GatewayStore;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_sim::{Fleet, SimConfig, Simulation};

const DB_VAR: &str = "WASMBED_API_TEST_KILL9_DB";
const TEST: &str = "kill_9_mid_deployment_loses_no_write_and_deploys_once";
const DEVICES: usize = 3;
const WAIT: Duration = Duration::from_secs(60);

fn installation() -> &'static wasmbed_pki::Installation {
    &wasmbed_pki::test_fixtures().installation
}

/// In the child: the API server and the controller on `path` until killed.
fn server(path: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::sqlite(SqliteStore::open(path.as_ref()).unwrap());
        let (auth, token) = Auth::bootstrap(&store).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "listening {}", listener.local_addr().unwrap()).unwrap();
        if let Some(token) = token {
            writeln!(out, "admin-token {token}").unwrap();
        }
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        let config = ControllerConfig {
            interval: Duration::from_millis(100),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            request_timeout: Duration::from_secs(5),
            gateway_tls: Some(gateway_tls()),
            ..ControllerConfig::default()
        };
        tokio::spawn(Controller::new(&store, config).run(std::future::pending()));
        axum::serve(listener, app(AppState::new(store, auth)))
            .await
            .unwrap();
    });
}

/// The child process, killed (SIGKILL) when dropped, even on a panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started child: its address and, on first start, the admin token.
fn start_child(db: &std::path::Path) -> (Killed, SocketAddr, Option<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(DB_VAR, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut addr = None;
    let mut token = None;
    let child = Killed(child);
    // The harness may print `test NAME ... ` before the first line.
    let after = |line: &str, marker: &str| {
        line.find(marker)
            .map(|at| line[at + marker.len()..].trim().to_owned())
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(a) = after(&line, "listening ") {
            addr = Some(a.parse().unwrap());
        } else if let Some(t) = after(&line, "admin-token ") {
            token = Some(t);
        } else if line.ends_with("ready") {
            break;
        }
    }
    (child, addr.expect("the child printed no address"), token)
}

struct Api {
    addr: SocketAddr,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.addr);
        let mut request = self
            .client
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, path: &str, body: Value) {
        let (status, json) = self.call("POST", path, Some(body)).await;
        assert_eq!(status, 201, "POST {path}: {json:#}");
    }
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[test]
fn kill_9_mid_deployment_loses_no_write_and_deploys_once() {
    if let Ok(path) = std::env::var(DB_VAR) {
        server(&path);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(parent());
}

async fn parent() {
    // The gateway, pairing open, and three simulated devices.
    let mut config = GatewayConfig {
        chunk_size: 512,
        transfer_window: 2048,
        // The simulated fleet enrolls from one address, all at once.
        enroll_rate_per_source: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        enroll_rate_total: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = 250;
    config.session.missed_heartbeats = 12;
    let config = config
        .with_control_ca(installation(), &wasmbed_pki::test_fixtures().control_ca)
        .unwrap();
    let gateway = Gateway::new(config, installation(), GatewayStore::in_memory().unwrap()).unwrap();
    let devices_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let devices_addr = devices_listener.local_addr().unwrap();
    let gw = format!("https://{}", http_listener.local_addr().unwrap());
    tokio::spawn(async move {
        gateway
            .serve(devices_listener, http_listener, std::future::pending())
            .await
            .unwrap();
    });
    let client = gateway_client();
    let pairing = client
        .put(format!("{gw}/v1/pairing"))
        .json(&json!({ "open": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(pairing.status(), 200);
    let sim = SimConfig::new(devices_addr)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
    let fleet = Fleet::start(Simulation::new(sim, installation()).unwrap(), DEVICES, None).unwrap();
    let deadline = Instant::now() + WAIT;
    while !fleet.devices().iter().all(|d| d.snapshot().connected) {
        assert!(Instant::now() < deadline, "the devices did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids: Vec<String> = fleet
        .devices()
        .iter()
        .map(|d| d.device_id().unwrap().to_string())
        .collect();

    // The API server and controller, first life.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("api.db");
    let (mut child, addr, token) = start_child(&db);
    let mut api = Api {
        addr,
        token: token.expect("a new database makes an admin token"),
        client: client.clone(),
    };
    api.create(
        "/api/v1/gateways",
        gateway_body("gw", &gw, &devices_addr.to_string()),
    )
    .await;
    for (i, id) in ids.iter().enumerate() {
        api.create(
            "/api/v1/devices",
            device_body(
                &format!("sim-{i}"),
                json!({ "site": "lab" }),
                Some(id.clone()),
            ),
        )
        .await;
    }
    api.create(
        "/api/v1/applications",
        app_body(
            "doubler",
            &doubler(),
            json!({ "match_labels": { "site": "lab" } }),
        ),
    )
    .await;

    // SIGKILL as soon as the gateway has the first deployment: the
    // controller may not have recorded it yet.
    let deadline = Instant::now() + WAIT;
    loop {
        let deployments = get_json(&client, format!("{gw}/v1/deployments")).await;
        if deployments.as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was deployed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let at_kill = get_json(&client, format!("{gw}/v1/deployments")).await;
    let recorded_at_kill = {
        let store = Store::sqlite(SqliteStore::open(&db).unwrap());
        let application = store
            .get::<wasmbed_api::model::Application>("doubler")
            .await
            .unwrap()
            .expect("the acknowledged application is stored");
        application
            .status
            .deployments
            .iter()
            .filter(|d| d.gateway_deployment_id.is_some())
            .count()
    };
    // How often the kill lands in the window (made, not yet recorded)
    // shows with --nocapture.
    eprintln!(
        "killed with {} gateway deployment(s) made, {recorded_at_kill} recorded",
        at_kill.as_array().map_or(0, Vec::len)
    );

    // Second life, on the same database.
    let (child, addr, token) = start_child(&db);
    assert_eq!(token, None, "the admin token survives the restart");
    api.addr = addr;
    let (status, gateway_resource) = api.call("GET", "/api/v1/gateways/gw", None).await;
    assert_eq!(
        status, 200,
        "the gateway resource was lost: {gateway_resource}"
    );
    for (i, id) in ids.iter().enumerate() {
        let (status, device) = api
            .call("GET", &format!("/api/v1/devices/sim-{i}"), None)
            .await;
        assert_eq!(status, 200, "device sim-{i} was lost: {device}");
        assert_eq!(device["spec"]["device_id"], json!(id));
    }
    let deadline = Instant::now() + WAIT;
    let application = loop {
        let (status, application) = api.call("GET", "/api/v1/applications/doubler", None).await;
        assert_eq!(status, 200, "the application was lost: {application}");
        let deployments = application["status"]["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if deployments.len() == DEVICES
            && deployments.iter().all(|d| d["results"].as_u64() >= Some(1))
        {
            break application;
        }
        assert!(
            Instant::now() < deadline,
            "the application did not reach every device: {application:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Time for a duplicate to be made, and to run, if one were.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let deployments = get_json(&client, format!("{gw}/v1/deployments")).await;
    let mut per_device: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for deployment in deployments.as_array().unwrap() {
        per_device
            .entry(deployment["device"].as_str().unwrap().to_owned())
            .or_default()
            .push(deployment["id"].as_u64().unwrap());
    }
    assert_eq!(
        per_device.len(),
        DEVICES,
        "deployments at the gateway: {deployments:#}"
    );
    for (device, ids) in &per_device {
        assert_eq!(
            ids.len(),
            1,
            "device {device} got {} deployments of the application: {deployments:#}",
            ids.len()
        );
    }
    let results = get_json(&client, format!("{gw}/v1/results?limit=1000")).await;
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for result in results.as_array().unwrap() {
        *runs
            .entry(result["device"].as_str().unwrap().to_owned())
            .or_default() += 1;
        assert_eq!(result["returned"][0], json!({ "i32": 42 }));
    }
    assert_eq!(runs.len(), DEVICES, "results: {results:#}");
    assert!(
        runs.values().all(|&n| n == 1),
        "each device ran the module exactly once: {runs:?}"
    );
    // The API's record agrees with the gateway.
    let mut recorded: Vec<u64> = application["status"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["gateway_deployment_id"].as_u64().unwrap())
        .collect();
    recorded.sort_unstable();
    let mut at_gateway: Vec<u64> = per_device.values().flatten().copied().collect();
    at_gateway.sort_unstable();
    assert_eq!(recorded, at_gateway);

    drop(child);
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.installs, DEVICES as u64);
}
