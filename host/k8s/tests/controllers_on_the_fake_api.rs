//! The controllers running on the Kubernetes store against the fake API
//! server, driven by its watches: changes written by someone else (as
//! `kubectl` would) reach the application through the device they concern,
//! and deletion goes through the undeploy finalizer. The exact requests of
//! each reconcile are pinned in `controllers_on_a_mocked_api_server.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmbed_api::controller::fixtures::{FakeGateway, application, device, gateway};
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::model::{Application, Device, DeviceDeployment, Gateway};
use wasmbed_api::store::{SqliteStore, Store};
use wasmbed_k8s::KubeStore;
use wasmbed_k8s::fake_api::FakeApiServer;

const ID_1: &str = "00000000000000000000000000000001";
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn store_on(server: &FakeApiServer, rest: &Arc<SqliteStore>) -> Store {
    let resources = Arc::new(KubeStore::new(server.client("wasmbed"), "wasmbed"));
    Store::beside(resources, rest.clone())
}

/// Waits up to 10 s for `done` to hold of what `probe` reads.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = probe().await;
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: still {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The applications device `name`'s status lists.
async fn deployments_on(store: &Store, name: &str) -> Vec<DeviceDeployment> {
    store
        .fetch::<Device>(name)
        .await
        .unwrap()
        .status
        .deployments
}

/// Sets device `name`'s `site` label, as `kubectl label` would.
async fn relabel(store: &Store, name: &str, site: &str) {
    store
        .modify::<Device>(name, |d| {
            d.metadata.labels.insert("site".into(), site.into());
            true
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_device_labelled_by_someone_else_gets_the_application_and_loses_it_when_relabelled() {
    let server = FakeApiServer::new();
    let rest = Arc::new(SqliteStore::in_memory().unwrap());
    // What `kubectl` (or the REST API of another replica) writes through.
    let kubectl = store_on(&server, &rest);
    kubectl.create(&gateway("gw-a")).await.unwrap();
    let sha256 = "11".repeat(32);
    kubectl.put_blob(&sha256, MODULE).await.unwrap();
    kubectl
        .create(&application(&sha256, Vec::new()))
        .await
        .unwrap();

    let gateway = Arc::new(FakeGateway::default());
    let controller = Controller::with_client(
        &store_on(&server, &rest),
        ControllerConfig::default(),
        Arc::clone(&gateway),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    eventually(
        "the gateway's reachability",
        async || kubectl.fetch::<Gateway>("gw-a").await.unwrap().status,
        |status| status.reachable,
    )
    .await;

    // A device that matches the selector, created around the controller.
    let mut d1 = device("d1", "gw-a", Some(ID_1));
    d1.metadata.labels.insert("site".into(), "elsewhere".into());
    kubectl.create(&d1).await.unwrap();
    relabel(&kubectl, "d1", "lab").await;
    let app = eventually(
        "the placement on d1",
        async || kubectl.fetch::<Application>("app").await.unwrap().status,
        |status| {
            status
                .deployments
                .iter()
                .any(|d| d.device == "d1" && d.gateway_deployment_id.is_some())
        },
    )
    .await;
    assert_eq!(app.deployments.len(), 1, "{app:?}");
    eventually(
        "d1 listing the application",
        async || deployments_on(&kubectl, "d1").await,
        |deployments| deployments.iter().any(|d| d.application == "app"),
    )
    .await;

    let placed = app.deployments[0]
        .gateway_deployment_id
        .expect("placed at the gateway");
    // Relabelled away: removed at its gateway, and from both statuses.
    relabel(&kubectl, "d1", "elsewhere").await;
    eventually(
        "the removal from d1",
        async || kubectl.fetch::<Application>("app").await.unwrap().status,
        |status| status.deployments.is_empty(),
    )
    .await;
    assert!(
        gateway
            .calls()
            .contains(&format!("DELETE https://gw-a/v1/deployments/{placed}")),
        "{:?}",
        gateway.calls()
    );
    eventually(
        "d1 no longer listing it",
        async || deployments_on(&kubectl, "d1").await,
        Vec::is_empty,
    )
    .await;

    // Deleted: the finalizer holds it until it is undeployed, then it goes.
    kubectl.delete::<Application>("app", None).await.unwrap();
    eventually(
        "the application's deletion",
        async || kubectl.get::<Application>("app").await.unwrap(),
        Option::is_none,
    )
    .await;
    let posts = gateway
        .calls()
        .iter()
        .filter(|c| c.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "placed once: {:?}", gateway.calls());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the controllers stop")
        .unwrap();
}
