//! An execution result is never lost: the real agent against the real
//! gateway, with the connection cut right after the module ran.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::sync::watch;
use wasmbed_agent::AgentEvent;
use wasmbed_agent::storage::ModuleStore;
use wasmbed_protocol::DeploymentId;
use wasmbed_sim::{FleetEvent, SimEvent, Simulation};

const WAIT: Duration = Duration::from_secs(15);

fn agent(e: &FleetEvent) -> Option<&AgentEvent> {
    match &e.event {
        SimEvent::Agent(event) => Some(event),
        _ => None,
    }
}

/// Deploys the greeter to a device whose connection is cut once it ran the
/// module (before or after the result is written), and checks the gateway
/// ends up with exactly one result and the device with an empty outbox,
/// without running the module again.
async fn cut_after_the_run(after_sending: bool) {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing().await;
    let sim = Simulation::new(sim_config(gateway.addr), installation()).unwrap();
    let mut events = sim.subscribe().unwrap();
    let mut device = sim.memory_device(0).unwrap();
    device.cut_connection_after_run(after_sending);
    let status = device.status();
    let (stop, stopped) = watch::channel(false);
    let task = device.spawn(stopped);
    wait_until("a session", WAIT, || status.snapshot().connected).await;
    let id = status.device_id().unwrap();

    let deployment = gateway
        .deploy(&[id], &greeter(1500), greeter_limits())
        .await[0];
    // Ran, cut, reconnected, and the result confirmed by a heartbeat.
    let seen = events_until(&mut events, WAIT, |e| {
        matches!(agent(e), Some(AgentEvent::ResultDelivered { .. }))
    })
    .await;
    let cut = seen
        .iter()
        .position(|e| e.event == SimEvent::ConnectionCut)
        .expect("the connection was cut");
    let ran = seen
        .iter()
        .position(|e| matches!(agent(e), Some(AgentEvent::Executed { .. })))
        .expect("the module ran");
    assert!(ran < cut, "{seen:#?}");
    let resent = seen
        .iter()
        .position(|e| {
            agent(e)
                == Some(&AgentEvent::ResultResent {
                    deployment: DeploymentId(deployment),
                })
        })
        .expect("the result was resent");
    assert!(cut < resent, "{seen:#?}");
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(agent(e), Some(AgentEvent::ResultResent { .. })))
            .count(),
        1,
        "resent on the one new session"
    );

    let result = gateway.result_of(deployment).await;
    assert_eq!(result["returned"][0], json!({ "i32": 42 }));
    assert_eq!(result["logs"], json!(["hello from wasm"]));
    gateway
        .wait_for(
            &format!("/v1/deployments/{deployment}"),
            "the deployment stopped",
            WAIT,
            |d| d["state"] == "stopped",
        )
        .await;

    // Nothing more happens: one result stored, one run, no more resends.
    tokio::time::sleep(Duration::from_millis(4 * u64::from(HEARTBEAT_MS))).await;
    let results = gateway
        .get(&format!("/v1/results?deployment={deployment}"))
        .await;
    assert_eq!(results.as_array().unwrap().len(), 1, "{results:#}");
    let snapshot = status.snapshot();
    assert_eq!((snapshot.installs, snapshot.results), (1, 1));
    assert_eq!(snapshot.reconnects, 1);
    let _ = stop.send(true);
    let device = task.await.unwrap();
    assert!(device.agent().store().outbox().is_empty());
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(
                agent(&e),
                Some(AgentEvent::ResultResent { .. } | AgentEvent::Executed { .. })
            ),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_lost_in_flight_is_resent_after_reconnecting() {
    cut_after_the_run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_sent_but_unconfirmed_is_resent_and_stored_once() {
    cut_after_the_run(true).await;
}
