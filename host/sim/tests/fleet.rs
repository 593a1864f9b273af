//! The real agent against the real gateway, end to end: TCP on loopback,
//! TLS 1.3 with the fixture installation, modules run by wasmi.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::sync::watch;
use wasmbed_agent::AgentEvent;
use wasmbed_gateway::store::Store;
use wasmbed_protocol::DeviceId;
use wasmbed_sim::{ErrorKind, Fleet, FleetEvent, SimEvent, Simulation};

const WAIT: Duration = Duration::from_secs(15);

fn device_uri(id: DeviceId) -> String {
    format!("/v1/devices/{id}")
}

fn ids(fleet: &Fleet) -> Vec<DeviceId> {
    fleet
        .devices()
        .iter()
        .map(|d| d.device_id().expect("enrolled"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enroll_heartbeat_and_run_a_deployed_module() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing().await;
    let sim = Simulation::new(sim_config(gateway.addr), installation()).unwrap();
    let fleet = Fleet::start(sim, 3, None).unwrap();

    // Each device enrolls with the claim certificate, then reconnects with
    // its own certificate and heartbeats.
    wait_until("three sessions with heartbeats", WAIT, || {
        fleet
            .devices()
            .iter()
            .all(|d| d.snapshot().connected && d.snapshot().heartbeats >= 2)
    })
    .await;
    let stats = fleet.stats();
    assert_eq!(
        (stats.enrollments, stats.enrolled, stats.connected),
        (3, 3, 3)
    );
    let ids = ids(&fleet);
    let devices = gateway.get("/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 3);
    for id in &ids {
        let device = gateway
            .wait_for(&device_uri(*id), "a heartbeat", WAIT, |d| {
                d["last_heartbeat_ms"].is_u64()
            })
            .await;
        assert_eq!(device["board"], "wasmbed-sim");
        assert_eq!(device["presence"], "connected");
    }

    let deployments = gateway.deploy(&ids, &greeter(1500), greeter_limits()).await;
    assert_eq!(deployments.len(), 3);
    for (deployment, id) in deployments.iter().zip(&ids) {
        let result = gateway.result_of(*deployment).await;
        assert_eq!(result["device"], id.to_string());
        assert_eq!(result["returned"][0], json!({ "i32": 42 }));
        assert!(result["returned"][1]["i64"].as_i64().unwrap() >= 0);
        assert_eq!(result["logs"], json!(["hello from wasm"]));
        assert_eq!(result["trap"], serde_json::Value::Null);
        assert!(result["fuel_used"].as_u64().unwrap() > 0);
        gateway
            .wait_for(
                &format!("/v1/deployments/{deployment}"),
                "the deployment stopped",
                WAIT,
                |d| d["state"] == "stopped",
            )
            .await;
    }
    let stats = fleet.stats();
    assert_eq!(
        (stats.installs, stats.results, stats.results_trapped),
        (3, 3, 0)
    );
    assert_eq!(fleet.simulation().module_cache().live_modules(), 1);

    // Stopping says goodbye: the gateway sees the devices leave at once.
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.connected, 0);
    assert_eq!(stats.errors.total(), 0, "{}", stats.errors);
    for id in &ids {
        gateway
            .wait_for(&device_uri(*id), "a goodbye", WAIT, |d| {
                d["presence"] == "disconnected"
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_module_runs_out_of_fuel_and_the_device_keeps_heartbeating() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing().await;
    let sim = Simulation::new(sim_config(gateway.addr), installation()).unwrap();
    let fleet = Fleet::start(sim, 1, None).unwrap();
    let status = fleet.devices()[0].clone();
    wait_until("a session", WAIT, || status.snapshot().connected).await;
    let id = status.device_id().unwrap();

    let limits = json!({ "fuel": 50000, "memory_pages": 1, "entry": "main" });
    let deployment = gateway.deploy(&[id], &runaway(), limits).await[0];
    let result = gateway.result_of(deployment).await;
    assert_eq!(result["trap"], "OutOfFuel");
    assert_eq!(result["fuel_used"], 50000);
    assert_eq!(result["returned"], serde_json::Value::Null);
    let received = result["received_at_ms"].as_u64().unwrap();

    // Heartbeats go on after the trap, reporting the failed application.
    let beats = status.snapshot().heartbeats;
    let device = gateway
        .wait_for(&device_uri(id), "heartbeats after the result", WAIT, |d| {
            d["last_heartbeat_ms"]
                .as_u64()
                .is_some_and(|t| t > received + u64::from(HEARTBEAT_MS))
        })
        .await;
    assert_eq!(device["presence"], "connected");
    assert_eq!(device["apps"][0]["deployment"], deployment);
    assert_eq!(device["apps"][0]["state"], "failed");
    assert!(status.snapshot().heartbeats > beats);
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats.results, stats.results_trapped), (1, 1));
    assert_eq!(stats.sessions, 1, "the session was never interrupted");
    assert_eq!(stats.errors.total(), 0, "{}", stats.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_midway_resumes_after_reconnecting_and_installs_once() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing().await;
    let sim = Simulation::new(sim_config(gateway.addr), installation()).unwrap();
    let mut events = sim.subscribe().unwrap();
    let mut device = sim.memory_device(0).unwrap();
    // Drop TCP as soon as two 512-byte chunks have arrived.
    device.cut_connection_at(1024);
    let status = device.status();
    let (stop, stopped) = watch::channel(false);
    let task = device.spawn(stopped);
    wait_until("a session", WAIT, || status.snapshot().connected).await;
    let id = status.device_id().unwrap();

    let module = greeter(6000);
    let size = u32::try_from(module.len()).unwrap();
    let deployment = gateway.deploy(&[id], &module, greeter_limits()).await[0];
    let seen = events_until(&mut events, WAIT, |e| {
        matches!(e.event, SimEvent::Agent(AgentEvent::Executed { .. }))
    })
    .await;
    let result = gateway.result_of(deployment).await;
    assert_eq!(result["returned"][0], json!({ "i32": 42 }));

    let agent = |e: &FleetEvent| match &e.event {
        SimEvent::Agent(event) => Some(event.clone()),
        _ => None,
    };
    let offsets: Vec<u32> = seen
        .iter()
        .filter_map(agent)
        .filter_map(|e| match e {
            AgentEvent::TransferAccepted { resume_offset, .. } => Some(resume_offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets.len(), 2, "{seen:#?}");
    assert_eq!(offsets[0], 0);
    assert!(
        (1024..size).contains(&offsets[1]),
        "resumed at {} of {size}",
        offsets[1]
    );
    let cut = seen
        .iter()
        .position(|e| e.event == SimEvent::ConnectionCut)
        .expect("the connection was cut");
    assert!(
        seen[cut..]
            .iter()
            .any(|e| matches!(e.event, SimEvent::Connecting { claim: false })),
        "reconnected after the cut"
    );
    let count = |pred: fn(&AgentEvent) -> bool| seen.iter().filter_map(agent).filter(pred).count();
    assert_eq!(count(|e| matches!(e, AgentEvent::Installed { .. })), 1);
    assert_eq!(count(|e| matches!(e, AgentEvent::Executed { .. })), 1);

    // Nothing more happens to the deployment afterwards.
    tokio::time::sleep(Duration::from_millis(3 * u64::from(HEARTBEAT_MS))).await;
    let results = gateway
        .get(&format!("/v1/results?deployment={deployment}"))
        .await;
    assert_eq!(results.as_array().unwrap().len(), 1);
    let snapshot = status.snapshot();
    assert_eq!((snapshot.installs, snapshot.results), (1, 1));
    assert_eq!(snapshot.reconnects, 1);
    let stats = sim.stats();
    assert_eq!((stats.transfers, stats.transfers_resumed), (2, 1));
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_loses_no_device_and_no_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let first = TestGateway::start(Store::open(&db).unwrap(), None).await;
    first.open_pairing().await;
    let addr = first.addr;
    let sim = Simulation::new(sim_config(addr), installation()).unwrap();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut statuses = Vec::new();
    for index in 0..3 {
        let device = sim.memory_device(index).unwrap();
        let (stop, stopped) = watch::channel(false);
        statuses.push(device.status());
        tasks.push(device.spawn(stopped));
        stops.push(stop);
    }
    wait_until("three sessions", WAIT, || {
        statuses.iter().all(|s| s.snapshot().connected)
    })
    .await;
    let ids: Vec<DeviceId> = statuses.iter().map(|s| s.device_id().unwrap()).collect();

    // Before the restart: one deployment completes on device 0, and one
    // waits for device 2, which is switched off.
    let done = first
        .deploy(&ids[..1], &greeter(100), greeter_limits())
        .await[0];
    first.result_of(done).await;
    let _ = stops[2].send(true);
    let off = tasks.pop().unwrap().await.unwrap();
    first
        .wait_for(&device_uri(ids[2]), "device 2 off", WAIT, |d| {
            d["presence"] == "disconnected"
        })
        .await;
    let waiting = first
        .deploy(&ids[2..], &greeter(2000), greeter_limits())
        .await[0];
    let pending = first.get(&format!("/v1/deployments/{waiting}")).await;
    assert_eq!(pending["state"], "pending");

    first.stop().await;
    let second = TestGateway::start(Store::open(&db).unwrap(), Some(addr)).await;

    // Devices 0 and 1 come back by themselves, with their certificates.
    for (id, status) in ids.iter().zip(&statuses).take(2) {
        second
            .wait_for(&device_uri(*id), "a reconnected device", WAIT, |d| {
                d["presence"] == "connected" && d["last_heartbeat_ms"].is_u64()
            })
            .await;
        assert!(status.snapshot().sessions >= 2);
        assert!(status.snapshot().reconnects >= 1);
    }
    // Device 2 is switched on again and gets its deployment.
    let (keys, modules) = off.into_stores();
    let device = sim.device(2, keys, modules).unwrap();
    let (stop, stopped) = watch::channel(false);
    stops[2] = stop;
    tasks.push(device.spawn(stopped));
    let result = second.result_of(waiting).await;
    assert_eq!(result["device"], ids[2].to_string());
    assert_eq!(result["returned"][0], json!({ "i32": 42 }));

    // Nothing was lost or repeated.
    let devices = second.get("/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 3);
    let before = second.get(&format!("/v1/results?deployment={done}")).await;
    assert_eq!(before.as_array().unwrap().len(), 1);
    assert_eq!(statuses[0].snapshot().installs, 1);
    let stats = sim.stats();
    assert_eq!(
        (stats.enrollments, stats.installs, stats.results),
        (3, 2, 2)
    );
    assert_eq!(stats.errors.get(ErrorKind::Protocol), 0);
    for stop in &stops {
        let _ = stop.send(true);
    }
    for task in tasks {
        task.await.unwrap();
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_enroll_and_heartbeat() {
    const DEVICES: usize = 200;
    let started = Instant::now();
    // Enrolling costs P-256 arithmetic, slow in a debug build: heartbeats
    // are tolerant here so that a busy machine does not time devices out.
    let mut config = gateway_config();
    config.session.heartbeat_interval_ms = 1000;
    config.session.missed_heartbeats = 5;
    let gateway = TestGateway::start_with(config, Store::in_memory().unwrap(), None).await;
    gateway.open_pairing().await;
    let mut config = sim_config(gateway.addr);
    config.event_capacity = 0;
    config.connect_rate = Some(500.0);
    let fleet = Fleet::start(
        Simulation::new(config, installation()).unwrap(),
        DEVICES,
        None,
    )
    .unwrap();
    wait_until("every device heartbeating", Duration::from_secs(19), || {
        fleet.devices().iter().all(|d| {
            let d = d.snapshot();
            d.connected && d.heartbeats >= 1
        })
    })
    .await;
    let stats = fleet.stats();
    assert_eq!(stats.enrolled, DEVICES as u64);
    assert_eq!(stats.connected, DEVICES as u64);
    let devices = gateway.get("/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), DEVICES);
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    for kind in [
        ErrorKind::Protocol,
        ErrorKind::Storage,
        ErrorKind::PeerError,
    ] {
        assert_eq!(stats.errors.get(kind), 0, "{}", stats.errors);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    eprintln!("{DEVICES} devices enrolled and heartbeating in {elapsed:?}: {stats}");
}
