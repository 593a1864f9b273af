//! What every [`ResourceStore`](super::ResourceStore) backend must do, as
//! async checks that panic with the reason when it does not. The SQLite
//! backend runs them in its tests, the Kubernetes backend against a fake
//! API server; [`all`] runs every one on fresh stores.

#![allow(clippy::missing_panics_doc)]

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::{Deletion, ListParams, Store, StoreError, WatchEvent};
use crate::model::{
    Application, ApplicationSpec, Device, DeviceSpec, DeviceStatus, Gateway, GatewaySpec, Limits,
    ModuleRef, ObjectMeta, Presence, Selector,
};

/// A finalizer the checks put on objects.
pub const FINALIZER: &str = "example.com/cleanup";

/// A device named `name`, labelled `site=lab`.
pub fn device(name: &str) -> Device {
    Device {
        metadata: ObjectMeta {
            name: name.into(),
            labels: [("site".to_owned(), "lab".to_owned())].into(),
            ..ObjectMeta::default()
        },
        spec: DeviceSpec {
            board: "wasmbed-sim".into(),
            gateway: "gw".into(),
            device_id: None,
            emulated: true,
            revoked: false,
        },
        status: DeviceStatus::default(),
    }
}

fn gateway(name: &str) -> Gateway {
    Gateway {
        metadata: ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        },
        spec: GatewaySpec {
            http_endpoint: "http://127.0.0.1:1".into(),
            device_endpoint: "127.0.0.1:2".into(),
        },
        status: Default::default(),
    }
}

fn application(name: &str) -> Application {
    Application {
        metadata: ObjectMeta {
            name: name.into(),
            finalizers: vec![FINALIZER.into()],
            ..ObjectMeta::default()
        },
        spec: ApplicationSpec {
            module: ModuleRef {
                sha256: "ab".repeat(32),
                size: 8,
            },
            limits: Limits {
                fuel: 1000,
                memory_pages: 1,
                entry: "run".into(),
                args: Vec::new(),
            },
            selector: Selector {
                match_labels: [("site".to_owned(), "lab".to_owned())].into(),
                names: Vec::new(),
            },
        },
        status: Default::default(),
    }
}

fn names<T: crate::model::Object>(items: &[T]) -> Vec<String> {
    items.iter().map(|o| o.metadata().name.clone()).collect()
}

/// Runs every check, each on a store `fresh` makes.
pub async fn all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Store>,
{
    crud(&fresh().await).await;
    status_apart_from_spec(&fresh().await).await;
    finalizers(&fresh().await).await;
    paging_and_selectors(&fresh().await).await;
    watch(&fresh().await).await;
}

/// Create, get, replace with versions, conflicts, delete, typed errors.
pub async fn crud(store: &Store) {
    let created = store.create(&device("a")).await.expect("created");
    assert_eq!(created.metadata.uid.len(), 36, "a uid is assigned");
    assert!(!created.metadata.resource_version.is_empty());
    assert!(created.metadata.created_at > 0);
    assert_eq!(created.metadata.generation, 1);
    assert!(matches!(
        store.create(&device("a")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    store.create(&device("b")).await.expect("created");
    let got: Device = store.fetch("a").await.expect("there");
    assert_eq!(got, created);
    assert_eq!(
        names(&store.list::<Device>().await.expect("listed")),
        ["a", "b"]
    );
    assert!(store.get::<Gateway>("a").await.expect("read").is_none());

    let mut changed = got.clone();
    changed.spec.device_id = Some("00".repeat(16));
    changed.metadata.labels.insert("rack".into(), "2".into());
    let updated = store.replace(&changed).await.expect("replaced");
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );
    assert_eq!(updated.metadata.uid, got.metadata.uid);
    assert_eq!(updated.metadata.generation, 2, "the spec changed");
    assert_eq!(updated.spec.device_id, changed.spec.device_id);
    assert_eq!(
        updated.metadata.labels.get("rack").map(String::as_str),
        Some("2")
    );

    // A write that changes nothing is no write: same version.
    let again = store.replace(&updated).await.expect("replaced");
    assert_eq!(again, updated, "a replace that changes nothing");
    let again = store.replace_status(&updated).await.expect("written");
    assert_eq!(again, updated, "a status write that changes nothing");

    let mut relabelled = updated.clone();
    relabelled.metadata.labels.remove("rack");
    let relabelled = store.replace(&relabelled).await.expect("replaced");
    assert_eq!(relabelled.metadata.generation, 2, "labels are not the spec");

    // A writer that read before the update loses.
    let mut stale = got.clone();
    stale.spec.board = "other".into();
    assert!(matches!(
        store.replace(&stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .delete::<Device>("a", Some(&got.metadata.resource_version))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    // modify retries on top of the current version.
    let modified = store
        .modify::<Device>("a", |d| {
            d.spec.board = "other".into();
            true
        })
        .await
        .expect("modified");
    assert_eq!(modified.spec.board, "other");
    assert_eq!(modified.spec.device_id, changed.spec.device_id);

    assert_eq!(
        store.delete::<Device>("a", None).await.expect("deleted"),
        Deletion::Deleted
    );
    assert!(store.get::<Device>("a").await.expect("read").is_none());
    assert!(matches!(
        store.delete::<Device>("a", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.replace(&modified).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Status is written through its own call; each call keeps the other part.
pub async fn status_apart_from_spec(store: &Store) {
    let created = store.create(&device("d")).await.expect("created");
    let mut with_status = created.clone();
    with_status.status.presence = Presence::Connected;
    with_status.spec.board = "ignored".into();
    let written = store
        .replace_status(&with_status)
        .await
        .expect("status written");
    assert_eq!(written.status.presence, Presence::Connected);
    assert_eq!(
        written.spec.board, "wasmbed-sim",
        "a status write keeps the spec"
    );
    assert_eq!(written.metadata.generation, 1, "status is not the spec");
    assert_ne!(
        written.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut respec = written.clone();
    respec.spec.board = "mps2-an385".into();
    respec.status.presence = Presence::Disconnected;
    let respecced = store.replace(&respec).await.expect("replaced");
    assert_eq!(respecced.spec.board, "mps2-an385");
    assert_eq!(
        respecced.status.presence,
        Presence::Connected,
        "a spec write keeps the status"
    );
    // A status write at an old version is a conflict too.
    assert!(matches!(
        store.replace_status(&written).await,
        Err(StoreError::Conflict { .. })
    ));
    let fetched: Device = store.fetch("d").await.expect("there");
    assert_eq!(fetched, respecced);
}

/// Deletion of an object with finalizers marks it; removing the last one
/// deletes it.
pub async fn finalizers(store: &Store) {
    let created = store.create(&application("app")).await.expect("created");
    assert_eq!(created.metadata.finalizers, [FINALIZER]);
    assert!(!created.metadata.deleting());
    let pending = match store.delete::<Application>("app", None).await {
        Ok(Deletion::Pending(app)) => app,
        other => panic!("an object with a finalizer is only marked: {other:?}"),
    };
    assert!(pending.metadata.deleting());
    let marked: Application = store.fetch("app").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.finalizers, [FINALIZER]);
    // Asked again: still pending, still there.
    assert!(matches!(
        store.delete::<Application>("app", None).await,
        Ok(Deletion::Pending(_))
    ));
    // Status can still be written while cleanup runs.
    let mut status = marked.clone();
    status.status.results = 3;
    let marked = store.replace_status(&status).await.expect("status written");
    let mut done = marked.clone();
    done.metadata.finalizers.clear();
    store.replace(&done).await.expect("finalizer removed");
    assert!(
        store
            .get::<Application>("app")
            .await
            .expect("read")
            .is_none(),
        "gone once its last finalizer is"
    );

    // Without finalizers, deletion is immediate.
    let mut plain = application("plain");
    plain.metadata.finalizers.clear();
    store.create(&plain).await.expect("created");
    assert_eq!(
        store
            .delete::<Application>("plain", None)
            .await
            .expect("deleted"),
        Deletion::Deleted
    );
}

/// The names of each page of `limit` devices with `params`' labels.
pub async fn pages(store: &Store, labels: &[(&str, &str)], limit: usize) -> Vec<Vec<String>> {
    let mut params = ListParams::labels(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    params.limit = Some(limit);
    let mut pages = Vec::new();
    loop {
        let page = store.list_page::<Device>(&params).await.expect("listed");
        assert!(page.items.len() <= limit);
        assert!(!page.resource_version.is_empty());
        if !page.items.is_empty() {
            pages.push(names(&page.items));
        }
        match page.continue_token {
            Some(token) => params.continue_token = Some(token),
            None => return pages,
        }
    }
}

/// Pages in name order, each name once, filtered by labels in the store,
/// other kinds apart, bad tokens refused.
pub async fn paging_and_selectors(store: &Store) {
    assert!(pages(store, &[], 3).await.is_empty());
    // Created out of order; byte order puts "d10" before "d2".
    for (i, name) in ["d5", "d1", "d10", "d2", "d4", "d3", "x", "d-0"]
        .into_iter()
        .enumerate()
    {
        let mut d = device(name);
        if i % 2 == 0 {
            d.metadata.labels.insert("tier".into(), "even".into());
        }
        store.create(&d).await.expect("created");
    }
    store.create(&gateway("d0")).await.expect("created");
    let all = ["d-0", "d1", "d10", "d2", "d3", "d4", "d5", "x"];
    assert_eq!(names(&store.list::<Device>().await.expect("listed")), all);
    for limit in 1..=9 {
        assert_eq!(
            pages(store, &[], limit).await.concat(),
            all,
            "limit {limit}"
        );
    }
    assert_eq!(
        pages(store, &[], 3).await,
        [
            vec!["d-0", "d1", "d10"],
            vec!["d2", "d3", "d4"],
            vec!["d5", "x"]
        ]
    );
    let even = ["d10", "d4", "d5", "x"];
    for limit in 1..=5 {
        assert_eq!(
            pages(store, &[("tier", "even")], limit).await.concat(),
            even,
            "limit {limit}"
        );
    }
    assert_eq!(
        pages(store, &[("tier", "even"), ("site", "lab")], 10).await,
        [even.to_vec()]
    );
    assert!(pages(store, &[("tier", "odd")], 2).await.is_empty());
    assert_eq!(
        names(&store.list::<Gateway>().await.expect("listed")),
        ["d0"]
    );
    let bad = ListParams {
        continue_token: Some("not a token".into()),
        limit: Some(2),
        ..ListParams::default()
    };
    assert!(matches!(
        store.list_page::<Device>(&bad).await,
        Err(StoreError::Invalid(_) | StoreError::Expired(_))
    ));
}

/// Next event of a watch, within a few seconds.
async fn next<T: std::fmt::Debug>(
    events: &mut futures_util::stream::BoxStream<'static, Result<WatchEvent<T>, StoreError>>,
) -> WatchEvent<T> {
    match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("no watch event: {other:?}"),
    }
}

/// Watches see every write of their kind in order, from now or from a
/// listed version.
pub async fn watch(store: &Store) {
    store.create(&device("before")).await.expect("created");
    let listed = store
        .list_page::<Device>(&ListParams::all())
        .await
        .expect("listed");
    let mut from_now = store.watch::<Device>(None).await.expect("watching");
    let created = store.create(&device("w")).await.expect("created");
    store.create(&gateway("other-kind")).await.expect("created");
    let mut status = created.clone();
    status.status.presence = Presence::Connected;
    let status = store.replace_status(&status).await.expect("written");
    store.delete::<Device>("w", None).await.expect("deleted");

    let mut from_list = store
        .watch::<Device>(Some(&listed.resource_version))
        .await
        .expect("watching");
    for events in [&mut from_now, &mut from_list] {
        match next(events).await {
            WatchEvent::Added(d) => assert_eq!(d, created),
            other => panic!("expected w added: {other:?}"),
        }
        match next(events).await {
            WatchEvent::Modified(d) => assert_eq!(d, status),
            other => panic!("expected w modified: {other:?}"),
        }
        match next(events).await {
            WatchEvent::Deleted(d) => assert_eq!(d.metadata.name, "w"),
            other => panic!("expected w deleted: {other:?}"),
        }
    }
    // Nothing else came: the gateway is another kind.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), from_now.next())
            .await
            .is_err(),
        "no more events"
    );
}
