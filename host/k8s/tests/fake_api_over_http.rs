//! The fake API server over real HTTP, found through the kubeconfig
//! `write_kubeconfig` writes, as a `wasmbed api` in another process finds
//! it: [`KubeStore`] reads, writes and watches through it, the watch's
//! events arriving while its response is still open.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use wasmbed_api::model::Device;
use wasmbed_api::store::conformance::device;
use wasmbed_api::store::{SqliteStore, Store, WatchEvent};
use wasmbed_k8s::KubeStore;
use wasmbed_k8s::fake_api::{FakeApiServer, write_kubeconfig};

/// Serves `server` on a loopback port; the kubeconfig's path.
async fn serve(server: &FakeApiServer, dir: &std::path::Path) -> std::path::PathBuf {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(server.clone().serve(listener));
    let path = dir.join("kubeconfig");
    write_kubeconfig(&path, address, "wasmbed").unwrap();
    path
}

/// A client configured from the kubeconfig at `path` only, as
/// `Client::try_default()` is with `KUBECONFIG` set to it.
async fn client_from(path: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.scheme_str(), Some("http"));
    assert_eq!(config.default_namespace, "wasmbed");
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_store_reads_writes_and_watches_through_the_served_fake() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeApiServer::new();
    let path = serve(&server, dir.path()).await;
    let client = client_from(&path).await;
    let rest = Arc::new(SqliteStore::in_memory().unwrap());
    let store = Store::beside(Arc::new(KubeStore::new(client, "wasmbed")), rest);

    // Its headers come at once, before the stream ends (it does not).
    let mut events = tokio::time::timeout(Duration::from_secs(5), store.watch::<Device>(None))
        .await
        .expect("a watch opened within 5 s")
        .unwrap();
    let created = store.create(&device("dev-1")).await.unwrap();
    // Streamed: the event comes while the watch's response goes on.
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a watch event within 5 s")
        .expect("the watch goes on")
        .unwrap();
    assert_eq!(event, WatchEvent::Added(created.clone()));

    let listed = store.list::<Device>().await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&created));
    // The same objects as the server's in-process clients see.
    let in_process = Store::beside(
        Arc::new(KubeStore::new(server.client("wasmbed"), "wasmbed")),
        Arc::new(SqliteStore::in_memory().unwrap()),
    );
    assert_eq!(
        in_process.get::<Device>("dev-1").await.unwrap(),
        Some(created)
    );
    // A watch, a create, a list and a get, at least.
    assert!(server.requests() >= 4, "{}", server.requests());
}

#[cfg(unix)]
#[test]
fn the_kubeconfig_is_written_0600_even_over_a_wider_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_kubeconfig(&path, ([127, 0, 0, 1], 6443).into(), "edge").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("server: http://127.0.0.1:6443"), "{text}");
    assert!(text.contains("namespace: edge"), "{text}");
}
