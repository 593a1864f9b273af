//! The Gateway and Application controllers on the Kubernetes store against
//! a mocked API server (`tower-test`), as kube-rs' controller examples are
//! tested: each scenario reconciles one object and pins the exact requests
//! the controller makes (reads, status patches, finalizers) and the calls
//! it makes to a fake gateway. (The Device controller, in `wasmbed up`,
//! is tested with real emulators in `host/cli/tests/up.rs`.)

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use wasmbed_api::controller::fixtures::{FakeGateway, RecordedEvents, connected, view};
use wasmbed_api::controller::{Action, CallError, Controller, ControllerConfig, ReconcileError};
use wasmbed_api::store::{SqliteStore, Store};
use wasmbed_k8s::KubeStore;

mod support;
use support::{ApiServer, answer};

const NS: &str = "/apis/wasmbed.io/v1alpha1/namespaces/wasmbed";
const ID_1: &str = "00000000000000000000000000000001";
const ID_2: &str = "00000000000000000000000000000002";
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A store whose resources are behind the mocked API server (blobs and
/// results stay in SQLite, as in a cluster), and a controller on it
/// calling `gateway`.
fn mocked(
    gateway: &Arc<FakeGateway>,
) -> (
    Controller<Arc<FakeGateway>>,
    Store,
    ApiServer,
    Arc<RecordedEvents>,
) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "wasmbed");
    let resources = Arc::new(KubeStore::new(client, "wasmbed"));
    let rest = Arc::new(SqliteStore::in_memory().unwrap());
    let store = Store::beside(resources, rest);
    let events = Arc::new(RecordedEvents::default());
    let config = ControllerConfig {
        events: events.clone(),
        backoff_min: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
        ..ControllerConfig::default()
    };
    let controller = Controller::with_client(&store, config, Arc::clone(gateway));
    (controller, store, ApiServer(handle), events)
}

/// Runs `scenario` (the API server's side) beside `call` (the
/// controller's).
async fn with_server<T>(
    server: &mut ApiServer,
    scenario: impl AsyncFnOnce(&mut ApiServer),
    call: impl Future<Output = T>,
) -> T {
    let both = async { tokio::join!(scenario(server), call) };
    let ((), result) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("the scenario ran to its end");
    result
}

fn meta(name: &str, version: &str) -> Value {
    json!({
        "name": name, "namespace": "wasmbed",
        "uid": format!("uid-{name}"), "resourceVersion": version, "generation": 1,
        "creationTimestamp": "2026-12-01T00:00:00Z",
    })
}

fn gateway_at(version: &str, status: Value) -> Value {
    json!({
        "apiVersion": "wasmbed.io/v1alpha1", "kind": "Gateway",
        "metadata": meta("gw-a", version),
        "spec": {"http_endpoint": "https://gw-a:8443/", "device_endpoint": "gw-a:40029"},
        "status": status,
    })
}

/// Device `name` at gateway `gw-a`: `d1` enrolled as [`ID_1`], any other
/// as [`ID_2`].
fn device_at(name: &str, version: &str, revoked: bool, status: Value) -> Value {
    let mut metadata = meta(name, version);
    metadata["labels"] = json!({"site": "lab"});
    json!({
        "apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
        "metadata": metadata,
        "spec": {
            "board": "mps2-an385", "gateway": "gw-a",
            "device_id": if name == "d1" { ID_1 } else { ID_2 },
            "emulated": false, "revoked": revoked,
        },
        "status": status,
    })
}

fn application_at(version: &str, extra_meta: Value, status: Value) -> Value {
    let mut metadata = meta("app", version);
    for (key, value) in extra_meta.as_object().unwrap() {
        metadata[key] = value.clone();
    }
    json!({
        "apiVersion": "wasmbed.io/v1alpha1", "kind": "Application",
        "metadata": metadata,
        "spec": {
            "module": {"sha256": sha256(), "size": MODULE.len()},
            "limits": {"fuel": 1000, "memory_pages": 1, "entry": "run", "args": []},
            "selector": {"match_labels": {"site": "lab"}},
        },
        "status": status,
    })
}

fn sha256() -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(MODULE))
}

/// The next request must read `path`; it is answered with `object`.
async fn reads(server: &mut ApiServer, path: &str, object: &Value) {
    let (_, send) = server.expect(Method::GET, path).await;
    answer(send, 200, object);
}

/// The next request must write (PUT) `path`; it is answered with what
/// `stored` makes of its body, which is returned.
async fn writes(server: &mut ApiServer, path: &str, stored: impl FnOnce(&Value) -> Value) -> Value {
    let (body, send) = server.expect(Method::PUT, &format!("{path}?")).await;
    answer(send, 200, &stored(&body));
    body
}

/// The lists the Application controller reads first (which, running, it
/// keeps from its watches): `devices`, and gateway `gw-a`, reachable.
async fn lists_devices_and_gateways(server: &mut ApiServer, devices: Vec<Value>) {
    reads(server, &format!("{NS}/devices?"), &list("Device", devices)).await;
    let gateways = list(
        "Gateway",
        vec![gateway_at("11", json!({"reachable": true}))],
    );
    reads(server, &format!("{NS}/gateways?"), &gateways).await;
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "wasmbed.io/v1alpha1", "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "50"}, "items": items,
    })
}

#[tokio::test]
async fn the_gateway_controller_records_reachability_presence_and_revocations() {
    let gateway = Arc::new(FakeGateway::default());
    gateway
        .devices
        .lock()
        .unwrap()
        .push(connected(ID_1, 1_700_000_000_000));
    let (mut controller, store, mut server, events) = mocked(&gateway);
    let action = with_server(
        &mut server,
        async |server| {
            let gw = format!("{NS}/gateways/gw-a");
            let unreachable = gateway_at("10", json!({"reachable": false}));
            reads(server, &gw, &unreachable).await;
            // Its devices (which, running, it keeps from its watch).
            let d1 = device_at("d1", "20", false, Value::Null);
            let d2 = device_at("d2", "21", true, Value::Null);
            let devices = list("Device", vec![d1.clone(), d2.clone()]);
            reads(server, &format!("{NS}/devices?"), &devices).await;
            // Reachable now: its status says so, read again to write.
            reads(server, &gw, &unreachable).await;
            let body = writes(server, &format!("{gw}/status"), |body| {
                gateway_at("11", body["status"].clone())
            })
            .await;
            assert_eq!(body["metadata"]["resourceVersion"], "10");
            assert_eq!(body["status"]["reachable"], true);
            assert!(body["status"]["last_seen"].is_u64(), "{body}");
            assert!(body["status"]["reason"].is_null(), "{body}");
            // The presence of its devices.
            reads(server, &format!("{NS}/devices/d1"), &d1).await;
            let body = writes(server, &format!("{NS}/devices/d1/status"), |body| {
                device_at("d1", "22", false, body["status"].clone())
            })
            .await;
            assert_eq!(body["status"]["presence"], "connected");
            assert_eq!(body["status"]["last_heartbeat"], 1_700_000_000_000u64);
            // d2, revoked in its spec and not connected: its gateway
            // revokes it, and its status says so.
            reads(server, &format!("{NS}/devices/d2"), &d2).await;
            let body = writes(server, &format!("{NS}/devices/d2/status"), |body| {
                device_at("d2", "23", true, body["status"].clone())
            })
            .await;
            assert_eq!(body["status"]["revoked"], true);
        },
        controller.reconcile_gateway("gw-a"),
    )
    .await
    .unwrap();
    assert_eq!(
        action,
        Action::Requeue(ControllerConfig::default().interval)
    );
    assert_eq!(
        gateway.calls(),
        [
            "GET https://gw-a:8443/v1/devices".to_owned(),
            format!("DELETE https://gw-a:8443/v1/devices/{ID_2}"),
        ]
    );
    assert_eq!(
        events.reasons(),
        [
            ("Reachable", "gw-a".to_owned()),
            ("Revoked", "d2".to_owned())
        ]
    );
    drop((controller, store));
    server.done().await;
}

#[tokio::test]
async fn an_unreachable_gateway_is_written_so_and_its_reconcile_fails_for_a_backoff() {
    let gateway = Arc::new(FakeGateway::default());
    *gateway.failure.lock().unwrap() = Some(CallError::Unreachable("connection refused".into()));
    let (mut controller, store, mut server, events) = mocked(&gateway);
    let gw = format!("{NS}/gateways/gw-a");
    let outcome = with_server(
        &mut server,
        async |server| {
            let reachable = gateway_at("10", json!({"reachable": true}));
            reads(server, &gw, &reachable).await;
            reads(server, &format!("{NS}/devices?"), &list("Device", vec![])).await;
            reads(server, &gw, &reachable).await;
            let body = writes(server, &format!("{gw}/status"), |body| {
                gateway_at("11", body["status"].clone())
            })
            .await;
            assert_eq!(body["status"]["reachable"], false);
            assert_eq!(
                body["status"]["reason"],
                "gateway unreachable: connection refused"
            );
            // No device is read or written: nothing is known of them.
        },
        controller.reconcile_gateway("gw-a"),
    )
    .await;
    assert!(
        matches!(outcome, Err(ReconcileError::Unreachable { ref gateway, .. }) if gateway == "gw-a"),
        "{outcome:?}"
    );
    assert_eq!(events.reasons(), [("Unreachable", "gw-a".to_owned())]);
    // Within its backoff it is not called again: the reconcile only reads
    // the gateway and asks to come back when the wait is over.
    let action = with_server(
        &mut server,
        async |server| {
            reads(server, &gw, &gateway_at("11", json!({"reachable": false}))).await;
            reads(server, &format!("{NS}/devices?"), &list("Device", vec![])).await;
        },
        controller.reconcile_gateway("gw-a"),
    )
    .await
    .unwrap();
    let Action::Requeue(after) = action else {
        panic!("{action:?}")
    };
    assert!(after > Duration::from_secs(50), "{after:?}");
    assert_eq!(gateway.calls().len(), 1);
    drop((controller, store));
    server.done().await;
}

#[tokio::test]
async fn the_application_controller_places_records_and_adds_its_finalizer() {
    let gateway = Arc::new(FakeGateway::default());
    let (mut controller, store, mut server, events) = mocked(&gateway);
    store.put_blob(&sha256(), MODULE).await.unwrap();
    let action = with_server(
        &mut server,
        async |server| {
            let app = format!("{NS}/applications/app");
            let unplaced = application_at("30", json!({}), Value::Null);
            reads(server, &app, &unplaced).await;
            let d1 = device_at("d1", "20", false, Value::Null);
            lists_devices_and_gateways(server, vec![d1.clone()]).await;
            // Placed at the gateway (the fake's calls, below); the status
            // records it.
            reads(server, &app, &unplaced).await;
            let body = writes(server, &format!("{app}/status"), |body| {
                application_at("31", json!({}), body["status"].clone())
            })
            .await;
            let deployments = &body["status"]["deployments"];
            assert_eq!(deployments[0]["device"], "d1", "{body}");
            // Numbered fleet-wide: the same at any gateway d1 moves to.
            let id = deployments[0]["gateway_deployment_id"].as_u64();
            assert!(
                id.is_some_and(|id| wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS.contains(&id)),
                "{body}"
            );
            assert_eq!(deployments[0]["gateway"], "gw-a", "{body}");
            // The finalizer that keeps it until it is undeployed.
            reads(server, &app, &application_at("31", json!({}), Value::Null)).await;
            let body = writes(server, &app, |_| {
                let finalizer = json!({"finalizers": ["wasmbed.io/undeploy"]});
                application_at("32", finalizer, Value::Null)
            })
            .await;
            assert_eq!(
                body["metadata"]["finalizers"],
                json!(["wasmbed.io/undeploy"])
            );
            assert_eq!(body["metadata"]["resourceVersion"], "31");
            // The device's status lists the application.
            reads(server, &format!("{NS}/devices/d1"), &d1).await;
            let body = writes(server, &format!("{NS}/devices/d1/status"), |body| {
                device_at("d1", "24", false, body["status"].clone())
            })
            .await;
            assert_eq!(
                body["status"]["deployments"][0]["application"], "app",
                "{body}"
            );
        },
        controller.reconcile_application("app"),
    )
    .await
    .unwrap();
    assert_eq!(
        action,
        Action::Requeue(ControllerConfig::default().interval)
    );
    assert_eq!(
        gateway.calls(),
        [
            format!("GET https://gw-a:8443/v1/deployments?device={ID_1}"),
            "POST https://gw-a:8443/v1/deployments".to_owned(),
        ]
    );
    assert_eq!(events.reasons(), [("Placed", "app".to_owned())]);
    drop((controller, store));
    server.done().await;
}

#[tokio::test]
async fn a_deleted_application_is_undeployed_then_its_finalizer_removed() {
    let gateway = Arc::new(FakeGateway::with(vec![view(7, ID_1, 99)]));
    let (mut controller, store, mut server, events) = mocked(&gateway);
    let deleting = json!({
        "finalizers": ["wasmbed.io/undeploy"],
        "deletionTimestamp": "2026-12-07T10:00:00Z",
    });
    let placed = json!({
        "deployments": [{
            "device": "d1", "gateway": "gw-a", "device_id": ID_1,
            "gateway_deployment_id": 7, "phase": "Running", "results": 0,
        }],
    });
    let action = with_server(
        &mut server,
        async |server| {
            let app = format!("{NS}/applications/app");
            let marked = application_at("40", deleting.clone(), placed.clone());
            reads(server, &app, &marked).await;
            let listed = json!({"deployments": [{"application": "app", "phase": "Running"}]});
            let d1 = device_at("d1", "20", false, listed);
            lists_devices_and_gateways(server, vec![d1.clone()]).await;
            // Removed at the gateway: no deployment left in its status.
            reads(server, &app, &marked).await;
            let body = writes(server, &format!("{app}/status"), |body| {
                application_at("41", deleting.clone(), body["status"].clone())
            })
            .await;
            assert_eq!(body["status"]["deployments"], json!([]), "{body}");
            // Then its finalizer goes, and with it the object.
            let body = writes(server, &app, |body| {
                let gone = json!({"deletionTimestamp": "2026-12-07T10:00:00Z"});
                application_at("42", gone, body["status"].clone())
            })
            .await;
            assert_eq!(body["metadata"].get("finalizers"), None, "{body}");
            assert_eq!(body["metadata"]["resourceVersion"], "41");
            // The device no longer lists it.
            reads(server, &format!("{NS}/devices/d1"), &d1).await;
            let body = writes(server, &format!("{NS}/devices/d1/status"), |body| {
                device_at("d1", "21", false, body["status"].clone())
            })
            .await;
            assert_eq!(body["status"].get("deployments"), None, "{body}");
        },
        controller.reconcile_application("app"),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::AwaitChange);
    assert_eq!(
        gateway.calls(),
        ["DELETE https://gw-a:8443/v1/deployments/7"]
    );
    assert_eq!(
        events.reasons(),
        [
            ("Removed", "app".to_owned()),
            ("Undeployed", "app".to_owned())
        ]
    );
    drop((controller, store));
    server.done().await;
}
