//! The store conformance suite of `wasmbed-api`, run on [`KubeStore`]
//! against the fake Kubernetes API server.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wasmbed_api::store::{SqliteStore, Store, conformance};
use wasmbed_k8s::KubeStore;
use wasmbed_k8s::fake_api::FakeApiServer;

/// Resources in a fresh fake cluster; blobs, tokens and results in SQLite
/// as the API server keeps them in a cluster.
fn fresh() -> Store {
    let server = FakeApiServer::new();
    let resources = Arc::new(KubeStore::new(server.client("wasmbed"), "wasmbed"));
    let rest = Arc::new(SqliteStore::in_memory().unwrap());
    Store::beside(resources, rest)
}

#[tokio::test]
async fn crud() {
    conformance::crud(&fresh()).await;
}

#[tokio::test]
async fn status_apart_from_spec() {
    conformance::status_apart_from_spec(&fresh()).await;
}

#[tokio::test]
async fn finalizers() {
    conformance::finalizers(&fresh()).await;
}

#[tokio::test]
async fn paging_and_selectors() {
    conformance::paging_and_selectors(&fresh()).await;
}

#[tokio::test]
async fn watch() {
    conformance::watch(&fresh()).await;
}
