//! [`KubeStore`] against the fake Kubernetes API server: the behaviours
//! that are Kubernetes' own (a create's status, watches that expire,
//! writes by others such as `kubectl`), and paging with the expectations
//! the conformance suite's paging check should have.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;
use wasmbed_api::model::{Device, Kind, Presence};
use wasmbed_api::store::conformance::{device, pages};
use wasmbed_api::store::{Deletion, ListParams, SqliteStore, Store, StoreError, WatchEvent};
use wasmbed_k8s::fake_api::FakeApiServer;
use wasmbed_k8s::{KubeStore, api_resource};

fn store_on(server: &FakeApiServer) -> Store {
    let resources = Arc::new(KubeStore::new(server.client("wasmbed"), "wasmbed"));
    let rest = Arc::new(SqliteStore::in_memory().unwrap());
    Store::beside(resources, rest)
}

async fn next<T: std::fmt::Debug>(
    events: &mut BoxStream<'static, Result<WatchEvent<T>, StoreError>>,
) -> Result<WatchEvent<T>, StoreError> {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
}

#[tokio::test]
async fn pages_in_name_order_filtered_by_labels() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    for (i, name) in ["d5", "d1", "d10", "d2", "d4", "d3", "x", "d-0"]
        .into_iter()
        .enumerate()
    {
        let mut d = device(name);
        if i % 2 == 0 {
            d.metadata.labels.insert("tier".into(), "even".into());
        }
        store.create(&d).await.unwrap();
    }
    let all = ["d-0", "d1", "d10", "d2", "d3", "d4", "d5", "x"];
    for limit in 1..=9 {
        assert_eq!(
            pages(&store, &[], limit).await.concat(),
            all,
            "limit {limit}"
        );
    }
    assert_eq!(
        pages(&store, &[], 3).await,
        [
            vec!["d-0", "d1", "d10"],
            vec!["d2", "d3", "d4"],
            vec!["d5", "x"]
        ]
    );
    let even = ["d10", "d4", "d5", "x"];
    for limit in 1..=5 {
        assert_eq!(
            pages(&store, &[("tier", "even")], limit).await.concat(),
            even,
            "limit {limit}"
        );
    }
    assert_eq!(
        pages(&store, &[("tier", "even"), ("site", "lab")], 10).await,
        [even.to_vec()]
    );
    assert!(pages(&store, &[("tier", "odd")], 2).await.is_empty());

    let bad = ListParams {
        continue_token: Some("not a token".into()),
        limit: Some(2),
        ..ListParams::default()
    };
    assert!(matches!(
        store.list_page::<Device>(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    // A token older than what the server keeps: list again.
    let first = store
        .list_page::<Device>(&ListParams {
            limit: Some(2),
            ..ListParams::default()
        })
        .await
        .unwrap();
    store.create(&device("later")).await.unwrap();
    server.compact();
    let stale = ListParams {
        continue_token: first.continue_token,
        limit: Some(2),
        ..ListParams::default()
    };
    assert!(matches!(
        store.list_page::<Device>(&stale).await,
        Err(StoreError::Expired(_))
    ));
}

#[tokio::test]
async fn a_create_with_status_is_seen_as_two_events() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let mut events = store.watch::<Device>(None).await.unwrap();
    let mut connected = device("w");
    connected.status.presence = Presence::Connected;
    let created = store.create(&connected).await.unwrap();
    assert_eq!(created.status.presence, Presence::Connected);

    let WatchEvent::Added(added) = next(&mut events).await.unwrap() else {
        panic!("first the object, added");
    };
    assert_eq!(
        added.status.presence,
        Presence::Unknown,
        "a create sets no status"
    );
    assert_eq!(added.spec, created.spec);
    assert_eq!(
        next(&mut events).await.unwrap(),
        WatchEvent::Modified(created)
    );
}

#[tokio::test]
async fn a_watch_sees_writes_of_others_and_deletion_through_finalizers() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let mut events = store.watch::<Device>(None).await.unwrap();

    // Another client of the cluster (kubectl, say) creates a device.
    let others: Api<DynamicObject> = Api::namespaced_with(
        server.client("default"),
        "wasmbed",
        &api_resource(Kind::Device),
    );
    let made_by_others: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
        "metadata": {"name": "from-kubectl", "finalizers": ["example.com/cleanup"]},
        "spec": {"board": "mps2-an385", "gateway": "gw"},
    }))
    .unwrap();
    others
        .create(&PostParams::default(), &made_by_others)
        .await
        .unwrap();
    let WatchEvent::Added(seen) = next(&mut events).await.unwrap() else {
        panic!("added");
    };
    assert_eq!(seen.metadata.name, "from-kubectl");
    assert_eq!(seen.spec.board, "mps2-an385");

    let Deletion::Pending(marked) = store.delete::<Device>("from-kubectl", None).await.unwrap()
    else {
        panic!("kept for its finalizer");
    };
    assert!(marked.metadata.deleting());
    assert_eq!(
        next(&mut events).await.unwrap(),
        WatchEvent::Modified(marked.clone())
    );

    let mut finalized = marked;
    finalized.metadata.finalizers.clear();
    store.replace(&finalized).await.unwrap();
    let WatchEvent::Deleted(last) = next(&mut events).await.unwrap() else {
        panic!("deleted with its last finalizer");
    };
    assert_eq!(last.metadata.name, "from-kubectl");
    assert!(store.get::<Device>("from-kubectl").await.unwrap().is_none());
}

#[tokio::test]
async fn a_watch_from_a_forgotten_version_expires() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let listed = store.list_page::<Device>(&ListParams::all()).await.unwrap();
    store.create(&device("a")).await.unwrap();
    server.compact();
    let mut events = store
        .watch::<Device>(Some(&listed.resource_version))
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        Err(StoreError::Expired(listed.resource_version))
    );
    assert!(events.next().await.is_none(), "an error ends the stream");
}

#[tokio::test]
async fn a_watch_with_a_short_history_expires_when_it_falls_behind_it() {
    // A create without a status is one event: three for three devices.
    let server = FakeApiServer::with_history(3);
    let store = store_on(&server);
    let listed = store.list_page::<Device>(&ListParams::all()).await.unwrap();
    for name in ["a", "b", "c"] {
        store.create(&device(name)).await.unwrap();
    }
    // All three kept: a watch from the list still sees them.
    let mut events = store
        .watch::<Device>(Some(&listed.resource_version))
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        assert!(
            matches!(next(&mut events).await, Ok(WatchEvent::Added(d)) if d.metadata.name == name)
        );
    }
    store.create(&device("d")).await.unwrap();
    let mut late = store
        .watch::<Device>(Some(&listed.resource_version))
        .await
        .unwrap();
    assert!(matches!(next(&mut late).await, Err(StoreError::Expired(_))));
}

#[tokio::test]
async fn concurrent_modifies_each_land_once() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let mut d = device("shared");
    d.metadata.labels.clear();
    store.create(&d).await.unwrap();
    let writers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .modify::<Device>("shared", |d| {
                    d.metadata.labels.insert(format!("w{i}"), "1".into());
                    true
                })
                .await
                .unwrap();
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let shared: Device = store.fetch("shared").await.unwrap();
    let expected: BTreeMap<String, String> =
        (0..8).map(|i| (format!("w{i}"), "1".to_owned())).collect();
    assert_eq!(
        shared.metadata.labels, expected,
        "no write lost to a conflict"
    );
}

/// Many watchers from now (dashboards, the controller) share one watch of
/// the API server per kind: each sees every event, and the API server
/// serves one list and one watch, not one of each per watcher.
#[tokio::test]
async fn watchers_from_now_share_one_watch_of_the_api_server() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let before = server.requests();
    let mut watchers = Vec::new();
    for _ in 0..5 {
        watchers.push(store.watch::<Device>(None).await.unwrap());
    }
    // The list that finds "now" and the watch: two requests for five.
    assert_eq!(server.requests() - before, 2);
    assert_eq!(store.shared_watches(), 1);
    store.create(&device("seen")).await.unwrap();
    for events in &mut watchers {
        assert!(
            matches!(next(events).await, Ok(WatchEvent::Added(d)) if d.metadata.name == "seen")
        );
    }
    // Another kind is another watch.
    let _gateways = store
        .watch::<wasmbed_api::model::Gateway>(None)
        .await
        .unwrap();
    assert_eq!(store.shared_watches(), 2);
}

/// The shared watch stops once nobody watches, and the next watcher
/// opens another.
#[tokio::test]
async fn the_shared_watch_stops_when_nobody_watches_and_opens_again() {
    let server = FakeApiServer::new();
    let store = store_on(&server);
    let mut first = store.watch::<Device>(None).await.unwrap();
    let mut second = store.watch::<Device>(None).await.unwrap();
    store.create(&device("a")).await.unwrap();
    assert!(matches!(next(&mut first).await, Ok(WatchEvent::Added(_))));
    assert!(matches!(next(&mut second).await, Ok(WatchEvent::Added(_))));
    assert_eq!(store.shared_watches(), 1);
    drop((first, second));
    // With nobody watching, the next event stops the shared watch; a new
    // watcher then opens another.
    store.create(&device("b")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.shared_watches(), 0);
    let mut third = store.watch::<Device>(None).await.unwrap();
    store.create(&device("c")).await.unwrap();
    assert!(matches!(next(&mut third).await, Ok(WatchEvent::Added(d)) if d.metadata.name == "c"));
    assert_eq!(store.shared_watches(), 1);
}
