//! The store the `wasmbed api` processes of a test keep their resources
//! in: SQLite in `--db` (the default), or, with
//! `WASMBED_TEST_STORE=kubernetes`, custom resources in the fake Kubernetes
//! API server of `wasmbed-k8s` (a test double), served over loopback HTTP
//! by this test process and found through a kubeconfig in `KUBECONFIG`.
//! Blobs, tokens and results stay in SQLite at `--db`, as in a cluster.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use wasmbed_api::model::Kind;
use wasmbed_api::store::{ListParams, ResourceStore as _};
use wasmbed_k8s::KubeStore;
use wasmbed_k8s::fake_api::{FakeApiServer, write_kubeconfig};

/// The namespace the resources are kept in on the Kubernetes store.
const NAMESPACE: &str = "wasmbed";

/// Where this test's `wasmbed api` keeps its resources.
#[derive(Debug)]
pub(crate) enum ApiStore {
    Sqlite,
    Kubernetes(FakeCluster),
}

impl ApiStore {
    /// The store `WASMBED_TEST_STORE` names (`sqlite` when unset); a fake
    /// cluster is started for `kubernetes`, and must have served requests
    /// by the time this is dropped.
    pub(crate) fn from_env() -> ApiStore {
        match std::env::var("WASMBED_TEST_STORE").as_deref() {
            Ok("kubernetes") => ApiStore::Kubernetes(FakeCluster::start()),
            Ok("sqlite") | Err(_) => ApiStore::Sqlite,
            Ok(other) => panic!("WASMBED_TEST_STORE={other}: expected sqlite or kubernetes"),
        }
    }

    /// A fake cluster, whatever `WASMBED_TEST_STORE` says: for the tests
    /// of what only the Kubernetes store does.
    pub(crate) fn kubernetes() -> ApiStore {
        ApiStore::Kubernetes(FakeCluster::start())
    }

    /// Points a `wasmbed api` command at this store. On SQLite it adds
    /// nothing: the command keeps everything in its `--db`.
    pub(crate) fn configure(&self, command: &mut Command) {
        if let ApiStore::Kubernetes(cluster) = self {
            command
                .arg("--store")
                .arg(format!("kubernetes:{NAMESPACE}"))
                .env("KUBECONFIG", &cluster.kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST");
        }
    }

    /// The fake cluster, on the Kubernetes store.
    pub(crate) fn cluster(&self) -> Option<&FakeCluster> {
        match self {
            ApiStore::Sqlite => None,
            ApiStore::Kubernetes(cluster) => Some(cluster),
        }
    }
}

/// The fake API server on a loopback port, served by a runtime of its own
/// for as long as this lives, and its kubeconfig.
#[derive(Debug)]
pub(crate) struct FakeCluster {
    server: FakeApiServer,
    runtime: tokio::runtime::Runtime,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    /// Requests the fake served while the test itself read from it.
    own_requests: std::cell::Cell<u64>,
}

impl FakeCluster {
    fn start() -> FakeCluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the fake API server");
        let address = listener.local_addr().expect("its address");
        let server = FakeApiServer::new();
        runtime.spawn(server.clone().serve(listener));
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, address, NAMESPACE).expect("write the kubeconfig");
        FakeCluster {
            server,
            runtime,
            kubeconfig,
            _dir: dir,
            own_requests: std::cell::Cell::new(0),
        }
    }

    /// The names of the objects of `kind` the fake holds, by name.
    pub(crate) fn names(&self, kind: Kind) -> Vec<String> {
        let before = self.server.requests();
        let list = self
            .runtime
            .block_on(async {
                // In the runtime: a client spawns a task of its own.
                let store = KubeStore::new(self.server.client(NAMESPACE), NAMESPACE);
                store.list(kind, &ListParams::all()).await
            })
            .expect("list the fake's objects");
        let own = self.own_requests.get() + (self.server.requests() - before);
        self.own_requests.set(own);
        list.items.into_iter().map(|o| o.metadata.name).collect()
    }
}

impl FakeCluster {
    /// Who holds the controller's Lease on the fake, if anyone.
    pub(crate) fn lease_holder(&self) -> Option<String> {
        let before = self.server.requests();
        let lease = self.runtime.block_on(async {
            let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                kube::Api::namespaced(self.server.client(NAMESPACE), NAMESPACE);
            leases.get_opt(wasmbed_k8s::lease::LEASE_NAME).await
        });
        let own = self.own_requests.get() + (self.server.requests() - before);
        self.own_requests.set(own);
        lease
            .expect("read the fake's Lease")
            .and_then(|lease| lease.spec)
            .and_then(|spec| spec.holder_identity)
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        // A harness that failed to point `wasmbed api` here would leave the
        // test passing on SQLite: that is a failure of its own.
        if !std::thread::panicking() {
            assert!(
                self.server.requests() > self.own_requests.get(),
                "{}: the Kubernetes-store run never reached the fake API server",
                std::thread::current().name().unwrap_or("this test"),
            );
        }
    }
}
