//! [`KubeStore`] against a mocked API server (`tower-test`), as kube-rs'
//! controller examples test: each scenario pins the exact requests the
//! store makes (method, path and query, the body fields that matter) and
//! what it makes of the answers.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};
use wasmbed_api::model::{Kind, ObjectMeta};
use wasmbed_api::store::{
    Deletion, ListParams, ResourceStore, StoreError, StoredObject, WatchEvent,
};
use wasmbed_k8s::KubeStore;

mod support;
use support::{ApiServer, answer, status};

const DEVICES: &str = "/apis/wasmbed.io/v1alpha1/namespaces/wasmbed/devices";
const APPLICATIONS: &str = "/apis/wasmbed.io/v1alpha1/namespaces/wasmbed/applications";

fn mocked() -> (KubeStore, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "elsewhere");
    // The store's namespace, not the client's default, is the one used.
    (KubeStore::new(client, "wasmbed"), ApiServer(handle))
}

/// Runs `scenario` (the API server's side) beside `call` (the store's).
async fn with_server<T>(
    mut server: ApiServer,
    scenario: impl AsyncFnOnce(&mut ApiServer),
    call: impl Future<Output = T>,
) -> T {
    let both = async { tokio::join!(scenario(&mut server), call) };
    let ((), result) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("the scenario ran to its end");
    result
}

fn board(status: Value) -> StoredObject {
    StoredObject {
        metadata: ObjectMeta {
            name: "board-1".into(),
            labels: BTreeMap::from([("site".into(), "lab".into())]),
            finalizers: vec!["wasmbed.io/undeploy".into()],
            ..ObjectMeta::default()
        },
        spec: json!({"board": "mps2-an385", "gateway": "gw"}),
        status,
    }
}

/// The board as the API server holds it at version `version`.
fn board_at(version: &str, status: Value) -> Value {
    let mut object = json!({
        "apiVersion": "wasmbed.io/v1alpha1",
        "kind": "Device",
        "metadata": {
            "name": "board-1", "namespace": "wasmbed",
            "uid": "6b3e2c0a-0000-4000-8000-000000000001",
            "resourceVersion": version, "generation": 1,
            "creationTimestamp": "2025-01-02T03:04:05Z",
            "labels": {"site": "lab"}, "finalizers": ["wasmbed.io/undeploy"],
        },
        "spec": {"board": "mps2-an385", "gateway": "gw"},
    });
    if !status.is_null() {
        object["status"] = status;
    }
    object
}

/// A stored board as read back at `version`.
fn stored_at(version: &str, status: Value) -> StoredObject {
    let mut stored = board(status);
    stored.metadata.uid = "6b3e2c0a-0000-4000-8000-000000000001".into();
    stored.metadata.resource_version = version.into();
    stored.metadata.generation = 1;
    stored.metadata.created_at = 1_735_787_045_000;
    stored
}

#[tokio::test]
async fn create_posts_the_object_then_puts_its_status() {
    let (store, server) = mocked();
    let created = with_server(
        server,
        async |server| {
            let (body, send) = server.expect(Method::POST, &format!("{DEVICES}?")).await;
            assert_eq!(
                body,
                json!({
                    "apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
                    "metadata": {
                        "name": "board-1", "namespace": "wasmbed",
                        "labels": {"site": "lab"}, "finalizers": ["wasmbed.io/undeploy"],
                    },
                    "spec": {"board": "mps2-an385", "gateway": "gw"},
                }),
                "no version, uid, timestamps or status on a create"
            );
            answer(send, 201, &board_at("7", Value::Null));
            let (body, send) = server
                .expect(Method::PUT, &format!("{DEVICES}/board-1/status?"))
                .await;
            assert_eq!(body["metadata"]["resourceVersion"], "7");
            assert_eq!(
                body["metadata"]["uid"],
                "6b3e2c0a-0000-4000-8000-000000000001"
            );
            assert_eq!(body["status"], json!({"presence": "connected"}));
            assert_eq!(body.get("spec"), None);
            answer(send, 200, &board_at("8", json!({"presence": "connected"})));
        },
        store.create(Kind::Device, board(json!({"presence": "connected"}))),
    )
    .await
    .unwrap();
    assert_eq!(created, stored_at("8", json!({"presence": "connected"})));
}

#[tokio::test]
async fn create_without_status_is_one_post() {
    let (store, server) = mocked();
    let script = tokio::spawn(async move {
        let mut server = server;
        let (_, send) = server.expect(Method::POST, &format!("{DEVICES}?")).await;
        answer(send, 201, &board_at("7", Value::Null));
        server.done().await;
    });
    let created = store
        .create(Kind::Device, board(Value::Null))
        .await
        .unwrap();
    assert_eq!(created, stored_at("7", Value::Null));
    drop(store);
    script.await.unwrap();
}

#[tokio::test]
async fn replace_puts_spec_labels_and_finalizers_at_the_version_read() {
    let (store, server) = mocked();
    let mut changed = stored_at("7", json!({"presence": "connected"}));
    changed.metadata.finalizers.clear();
    changed.spec["board"] = json!("wasmbed-sim");
    let replaced = with_server(
        server,
        async |server| {
            let (body, send) = server
                .expect(Method::PUT, &format!("{DEVICES}/board-1?"))
                .await;
            assert_eq!(
                body,
                json!({
                    "apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
                    "metadata": {
                        "name": "board-1", "namespace": "wasmbed",
                        "uid": "6b3e2c0a-0000-4000-8000-000000000001",
                        "resourceVersion": "7", "labels": {"site": "lab"},
                    },
                    "spec": {"board": "wasmbed-sim", "gateway": "gw"},
                }),
                "no finalizers left, no status sent"
            );
            let mut object = board_at("9", json!({"presence": "connected"}));
            object["metadata"]["generation"] = json!(2);
            object["spec"]["board"] = json!("wasmbed-sim");
            object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("finalizers");
            answer(send, 200, &object);
        },
        store.replace(Kind::Device, changed.clone()),
    )
    .await
    .unwrap();
    assert_eq!(replaced.metadata.resource_version, "9");
    assert_eq!(replaced.metadata.generation, 2);
    assert_eq!(replaced.spec, changed.spec);
    assert!(replaced.metadata.finalizers.is_empty());
}

#[tokio::test]
async fn replace_status_puts_the_status_at_the_version_read() {
    let (store, server) = mocked();
    let replaced = with_server(
        server,
        async |server| {
            let (body, send) = server
                .expect(Method::PUT, &format!("{DEVICES}/board-1/status?"))
                .await;
            assert_eq!(
                body,
                json!({
                    "apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
                    "metadata": {
                        "name": "board-1", "namespace": "wasmbed",
                        "uid": "6b3e2c0a-0000-4000-8000-000000000001",
                        "resourceVersion": "7",
                    },
                    "status": {"presence": "disconnected"},
                })
            );
            answer(
                send,
                200,
                &board_at("8", json!({"presence": "disconnected"})),
            );
        },
        store.replace_status(
            Kind::Device,
            stored_at("7", json!({"presence": "disconnected"})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        replaced,
        stored_at("8", json!({"presence": "disconnected"}))
    );
}

#[tokio::test]
async fn a_delete_answered_with_the_marked_object_is_pending() {
    let (store, server) = mocked();
    let deletion = with_server(
        server,
        async |server| {
            let (body, send) = server
                .expect(Method::DELETE, &format!("{APPLICATIONS}/app?"))
                .await;
            assert_eq!(body, json!({"preconditions": {"resourceVersion": "5"}}));
            answer(
                send,
                200,
                &json!({
                    "apiVersion": "wasmbed.io/v1alpha1", "kind": "Application",
                    "metadata": {
                        "name": "app", "namespace": "wasmbed", "uid": "u", "resourceVersion": "6",
                        "generation": 2, "finalizers": ["wasmbed.io/undeploy"],
                        "creationTimestamp": "2025-01-02T03:04:05Z",
                        "deletionTimestamp": "2025-01-02T03:05:00Z",
                    },
                    "spec": {},
                }),
            );
        },
        store.delete(Kind::Application, "app", Some("5")),
    )
    .await
    .unwrap();
    let Deletion::Pending(object) = deletion else {
        panic!("an object kept for its finalizers is pending: {deletion:?}");
    };
    assert_eq!(object.metadata.deletion_timestamp, Some(1_735_787_100_000));
    assert_eq!(object.metadata.finalizers, ["wasmbed.io/undeploy"]);
}

#[tokio::test]
async fn a_delete_answered_with_a_status_or_the_last_state_is_done() {
    for last in [
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "app", "group": "wasmbed.io", "kind": "applications"}}),
        json!({"apiVersion": "wasmbed.io/v1alpha1", "kind": "Application",
               "metadata": {"name": "app", "resourceVersion": "6",
                            "deletionTimestamp": "2025-01-02T03:05:00Z"},
               "spec": {}}),
    ] {
        let (store, server) = mocked();
        let deletion = with_server(
            server,
            async move |server| {
                let (body, send) = server
                    .expect(Method::DELETE, &format!("{APPLICATIONS}/app?"))
                    .await;
                assert_eq!(body, json!({}), "no preconditions without a version");
                answer(send, 200, &last);
            },
            store.delete(Kind::Application, "app", None),
        )
        .await
        .unwrap();
        assert_eq!(deletion, Deletion::Deleted);
    }
}

#[tokio::test]
async fn list_sends_selector_limit_and_continue_and_gives_the_next_token() {
    let (store, server) = mocked();
    let params = ListParams {
        labels: BTreeMap::from([
            ("tier".into(), "even".into()),
            ("site".into(), "lab".into()),
        ]),
        limit: Some(2),
        continue_token: Some("page-2".into()),
    };
    let page = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(
                    Method::GET,
                    &format!(
                        "{DEVICES}?&labelSelector=site%3Dlab%2Ctier%3Deven&limit=2&continue=page-2"
                    ),
                )
                .await;
            answer(
                send,
                200,
                &json!({
                    "apiVersion": "wasmbed.io/v1alpha1", "kind": "DeviceList",
                    "metadata": {"resourceVersion": "12", "continue": "page-3"},
                    "items": [board_at("7", Value::Null)],
                }),
            );
        },
        store.list(Kind::Device, &params),
    )
    .await
    .unwrap();
    assert_eq!(page.items, [stored_at("7", Value::Null)]);
    assert_eq!(page.continue_token.as_deref(), Some("page-3"));
    assert_eq!(page.resource_version, "12");
}

#[tokio::test]
async fn the_last_page_has_no_token() {
    let (store, server) = mocked();
    let page = with_server(
        server,
        async |server| {
            let (_, send) = server.expect(Method::GET, &format!("{DEVICES}?")).await;
            answer(
                send,
                200,
                &json!({"metadata": {"resourceVersion": "12", "continue": ""}, "items": []}),
            );
        },
        store.list(Kind::Device, &ListParams::all()),
    )
    .await
    .unwrap();
    assert_eq!(page.continue_token, None);
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn a_label_that_would_change_the_selector_is_refused_before_any_request() {
    let (store, server) = mocked();
    let params = ListParams::labels(BTreeMap::from([("site".into(), "lab,tier=odd".into())]));
    assert!(matches!(
        store.list(Kind::Device, &params).await,
        Err(StoreError::Invalid(_))
    ));
    drop(store);
    server.done().await;
}

#[tokio::test]
async fn get_of_a_missing_object_is_none() {
    let (store, server) = mocked();
    let got = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(Method::GET, &format!("{DEVICES}/board-1"))
                .await;
            answer(send, 404, &status(404, "NotFound"));
        },
        store.get(Kind::Device, "board-1"),
    )
    .await;
    assert_eq!(got, Ok(None));
}

/// Watch events as the API server streams them.
fn event(kind: &str, object: &Value) -> String {
    format!("{}\n", json!({"type": kind, "object": object}))
}

fn watch_answer(send: SendResponse<Response<Body>>, lines: &[String]) {
    send.send_response(Response::new(Body::from(lines.concat().into_bytes())));
}

#[tokio::test]
async fn watch_streams_changes_skips_bookmarks_and_ends_at_410() {
    let (store, server) = mocked();
    let mut events = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(
                    Method::GET,
                    &format!(
                        "{DEVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=5"
                    ),
                )
                .await;
            let bookmark = json!({"apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
                                  "metadata": {"resourceVersion": "9"}});
            watch_answer(
                send,
                &[
                    event("ADDED", &board_at("6", Value::Null)),
                    event("BOOKMARK", &bookmark),
                    event("MODIFIED", &board_at("10", json!({"presence": "connected"}))),
                    event("DELETED", &board_at("11", json!({"presence": "connected"}))),
                    event("ERROR", &status(410, "Expired")),
                ],
            );
        },
        store.watch(Kind::Device, Some("5")),
    )
    .await
    .unwrap();
    assert_eq!(
        events.next().await,
        Some(Ok(WatchEvent::Added(stored_at("6", Value::Null))))
    );
    assert_eq!(
        events.next().await,
        Some(Ok(WatchEvent::Modified(stored_at(
            "10",
            json!({"presence": "connected"})
        ))))
    );
    assert_eq!(
        events.next().await,
        Some(Ok(WatchEvent::Deleted(stored_at(
            "11",
            json!({"presence": "connected"})
        ))))
    );
    assert!(matches!(
        events.next().await,
        Some(Err(StoreError::Expired(version))) if version == "11"
    ));
    assert_eq!(events.next().await, None, "an error ends the stream");
}

#[tokio::test]
async fn watch_without_a_version_starts_at_the_version_of_a_one_item_list() {
    let (store, server) = mocked();
    let _events = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(Method::GET, &format!("{DEVICES}?&limit=1"))
                .await;
            answer(
                send,
                200,
                &json!({"metadata": {"resourceVersion": "20", "continue": "x"},
                        "items": [board_at("7", Value::Null)]}),
            );
            let (_, send) = server
                .expect(
                    Method::GET,
                    &format!(
                        "{DEVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=20"
                    ),
                )
                .await;
            watch_answer(send, &[]);
        },
        store.watch(Kind::Device, None),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_watch_the_server_ends_resumes_from_the_last_version_seen() {
    let (store, server) = mocked();
    let watch = format!("{DEVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true");
    let script = tokio::spawn(async move {
        let mut server = server;
        let (_, send) = server
            .expect(Method::GET, &format!("{watch}&resourceVersion=5"))
            .await;
        let bookmark = json!({"apiVersion": "wasmbed.io/v1alpha1", "kind": "Device",
                              "metadata": {"resourceVersion": "9"}});
        watch_answer(
            send,
            &[
                event("ADDED", &board_at("6", Value::Null)),
                event("BOOKMARK", &bookmark),
            ],
        );
        // The bookmark's version, not the last object's.
        let (_, send) = server
            .expect(Method::GET, &format!("{watch}&resourceVersion=9"))
            .await;
        watch_answer(send, &[event("MODIFIED", &board_at("12", Value::Null))]);
        let (_, send) = server
            .expect(Method::GET, &format!("{watch}&resourceVersion=12"))
            .await;
        answer(send, 403, &status(403, "Forbidden"));
    });
    let mut events = store.watch(Kind::Device, Some("5")).await.unwrap();
    assert_eq!(
        events.next().await,
        Some(Ok(WatchEvent::Added(stored_at("6", Value::Null))))
    );
    assert_eq!(
        events.next().await,
        Some(Ok(WatchEvent::Modified(stored_at("12", Value::Null))))
    );
    assert!(matches!(
        events.next().await,
        Some(Err(StoreError::Unavailable(reason))) if reason.contains("Forbidden")
    ));
    assert_eq!(events.next().await, None);
    script.await.unwrap();
}

#[tokio::test]
async fn a_refused_watch_ends_at_its_first_item() {
    for (code, reason) in [(410, "Expired"), (403, "Forbidden")] {
        let (store, server) = mocked();
        let mut events = with_server(
            server,
            async move |server| {
                let (_, send) = server
                    .expect(
                        Method::GET,
                        &format!(
                            "{DEVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=5"
                        ),
                    )
                    .await;
                answer(send, code, &status(code, reason));
            },
            store.watch(Kind::Device, Some("5")),
        )
        .await
        .unwrap();
        match events.next().await {
            Some(Err(StoreError::Expired(version))) => assert!(code == 410 && version == "5"),
            Some(Err(StoreError::Unavailable(why))) => {
                assert!(code == 403 && why.contains("Forbidden"));
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(events.next().await, None, "{code}: the end");
    }
}

/// Each error answer to a replace, as the store's error.
#[tokio::test]
async fn errors_are_typed_by_fault() {
    type Expected = fn(&StoreError) -> bool;
    let cases: Vec<(u16, &str, Expected)> = vec![
        (404, "NotFound", |e| {
            *e == StoreError::NotFound {
                kind: "Device",
                name: "board-1".into(),
            }
        }),
        (409, "AlreadyExists", |e| {
            *e == StoreError::AlreadyExists {
                kind: "Device",
                name: "board-1".into(),
            }
        }),
        (409, "Conflict", |e| {
            matches!(e, StoreError::Conflict { .. })
        }),
        (400, "BadRequest", |e| matches!(e, StoreError::Invalid(_))),
        (
            422,
            "Invalid",
            |e| matches!(e, StoreError::Invalid(m) if m.contains("told Invalid")),
        ),
        (410, "Expired", |e| matches!(e, StoreError::Expired(_))),
        (500, "InternalError", |e| {
            matches!(e, StoreError::Unavailable(_))
        }),
        (503, "ServiceUnavailable", |e| {
            matches!(e, StoreError::Unavailable(_))
        }),
        (401, "Unauthorized", |e| {
            matches!(e, StoreError::Unavailable(_))
        }),
        (
            403,
            "Forbidden",
            |e| matches!(e, StoreError::Unavailable(m) if m.contains("Forbidden")),
        ),
    ];
    for (code, reason, expected) in cases {
        let (store, server) = mocked();
        let error = with_server(
            server,
            async move |server| {
                let (_, send) = server
                    .expect(Method::PUT, &format!("{DEVICES}/board-1?"))
                    .await;
                answer(send, code, &status(code, reason));
            },
            store.replace(Kind::Device, stored_at("7", Value::Null)),
        )
        .await
        .unwrap_err();
        assert!(expected(&error), "{code} {reason}: {error:?}");
    }
}

#[tokio::test]
async fn a_missing_resource_type_is_no_missing_object() {
    let (store, server) = mocked();
    let listed = with_server(
        server,
        async |server| {
            let (_, send) = server.expect(Method::GET, &format!("{DEVICES}?")).await;
            answer(send, 404, &status(404, "NotFound"));
        },
        store.list(Kind::Device, &ListParams::all()),
    )
    .await;
    assert!(matches!(listed, Err(StoreError::Unavailable(m)) if m.contains("CRDs")));

    // Nor is a create into a namespace or a resource type that is not there.
    let (store, server) = mocked();
    let created = with_server(
        server,
        async |server| {
            let (_, send) = server.expect(Method::POST, &format!("{DEVICES}?")).await;
            answer(send, 404, &status(404, "NotFound"));
        },
        store.create(Kind::Device, board(Value::Null)),
    )
    .await;
    assert!(matches!(created, Err(StoreError::Unavailable(m)) if m.contains("CRDs")));
}

#[tokio::test]
async fn a_connection_failure_or_an_answer_that_does_not_decode_is_typed() {
    let (store, server) = mocked();
    let failed = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(Method::GET, &format!("{DEVICES}/board-1"))
                .await;
            send.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ));
        },
        store.get(Kind::Device, "board-1"),
    )
    .await;
    assert!(matches!(failed, Err(StoreError::Unavailable(m)) if m.contains("connection refused")));

    let (store, server) = mocked();
    let garbled = with_server(
        server,
        async |server| {
            let (_, send) = server
                .expect(Method::GET, &format!("{DEVICES}/board-1"))
                .await;
            send.send_response(Response::new(Body::from(b"<html>".to_vec())));
        },
        store.get(Kind::Device, "board-1"),
    )
    .await;
    assert!(matches!(garbled, Err(StoreError::Corrupt(_))));
}
