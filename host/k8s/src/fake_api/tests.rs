//! The fake server's Kubernetes semantics, by raw HTTP requests: what a
//! client may rely on, checked apart from any client.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{FakeApiServer, FakeBody};

const THINGS: &str = "/apis/example.com/v1/namespaces/ns/things";

async fn call(
    server: &FakeApiServer,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> http::Response<FakeBody> {
    let body = body.map_or_else(Vec::new, |b| serde_json::to_vec(&b).unwrap());
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(kube::client::Body::from(body))
        .unwrap();
    server.clone().oneshot(request).await.unwrap()
}

/// The status and JSON body of a request.
async fn send(
    server: &FakeApiServer,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = call(server, method, uri, body).await;
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

fn thing(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "example.com/v1", "kind": "Thing",
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": spec,
    })
}

async fn create(server: &FakeApiServer, name: &str) -> Value {
    let (code, body) = send(
        server,
        Method::POST,
        THINGS,
        Some(thing(name, json!({"n": 1}))),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body
}

fn rv(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap()
}

#[tokio::test]
async fn create_assigns_metadata_and_drops_status() {
    let server = FakeApiServer::new();
    let mut with_status = thing("a", json!({"n": 1}));
    with_status["status"] = json!({"ok": true});
    let (code, created) = send(&server, Method::POST, THINGS, Some(with_status)).await;
    assert_eq!(code, 201);
    assert_eq!(
        created.get("status"),
        None,
        "the status subresource drops it"
    );
    let meta = &created["metadata"];
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["namespace"], "ns");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        send(&server, Method::POST, THINGS, Some(thing("a", json!({}))))
            .await
            .1["reason"],
        "AlreadyExists"
    );
    let mut versioned = thing("b", json!({}));
    versioned["metadata"]["resourceVersion"] = json!("5");
    assert_eq!(
        send(&server, Method::POST, THINGS, Some(versioned)).await.0,
        500
    );
    assert_eq!(
        send(
            &server,
            Method::POST,
            THINGS,
            Some(thing("Not_A_Name", json!({})))
        )
        .await
        .0,
        422
    );
}

#[tokio::test]
async fn versions_grow_and_stale_writes_conflict() {
    let server = FakeApiServer::new();
    let created = create(&server, "a").await;
    let mut changed = created.clone();
    changed["spec"]["n"] = json!(2);
    let (code, updated) = send(
        &server,
        Method::PUT,
        &format!("{THINGS}/a"),
        Some(changed.clone()),
    )
    .await;
    assert_eq!(code, 200);
    assert!(rv(&updated).parse::<u64>().unwrap() > rv(&created).parse::<u64>().unwrap());
    assert_eq!(updated["metadata"]["generation"], 2, "the spec changed");
    // The same body again is at a stale version.
    let (code, refused) = send(&server, Method::PUT, &format!("{THINGS}/a"), Some(changed)).await;
    assert_eq!((code, refused["reason"].as_str()), (409, Some("Conflict")));
    // No version at all.
    let mut unversioned = updated.clone();
    unversioned["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(
        send(
            &server,
            Method::PUT,
            &format!("{THINGS}/a"),
            Some(unversioned)
        )
        .await
        .0,
        422
    );
    // Another object's uid.
    let mut other_uid = updated.clone();
    other_uid["metadata"]["uid"] = json!("someone-else");
    assert_eq!(
        send(
            &server,
            Method::PUT,
            &format!("{THINGS}/a"),
            Some(other_uid)
        )
        .await
        .0,
        409
    );
    assert_eq!(
        send(&server, Method::PUT, &format!("{THINGS}/b"), Some(updated))
            .await
            .0,
        400,
        "the name in the body is not the URL's"
    );
}

#[tokio::test]
async fn labels_are_no_spec_and_an_unchanged_update_writes_nothing() {
    let server = FakeApiServer::new();
    let created = create(&server, "a").await;
    let (_, same) = send(
        &server,
        Method::PUT,
        &format!("{THINGS}/a"),
        Some(created.clone()),
    )
    .await;
    assert_eq!(same, created, "no new version for no change");
    let mut relabelled = created.clone();
    relabelled["metadata"]["labels"] = json!({"app": "y"});
    let (_, relabelled) = send(
        &server,
        Method::PUT,
        &format!("{THINGS}/a"),
        Some(relabelled),
    )
    .await;
    assert_ne!(rv(&relabelled), rv(&created));
    assert_eq!(relabelled["metadata"]["generation"], 1);
}

#[tokio::test]
async fn status_is_written_apart_from_the_rest() {
    let server = FakeApiServer::new();
    let created = create(&server, "a").await;
    let mut status = created.clone();
    status["status"] = json!({"ok": true});
    status["spec"]["n"] = json!(99);
    status["metadata"]["labels"] = json!({"ignored": "yes"});
    let (code, written) = send(
        &server,
        Method::PUT,
        &format!("{THINGS}/a/status"),
        Some(status),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(written["status"], json!({"ok": true}));
    assert_eq!(
        written["spec"],
        json!({"n": 1}),
        "a status PUT keeps the spec"
    );
    assert_eq!(written["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(written["metadata"]["generation"], 1);

    let mut spec = written.clone();
    spec["spec"]["n"] = json!(2);
    spec["status"] = json!({"ok": false});
    let (_, respecced) = send(&server, Method::PUT, &format!("{THINGS}/a"), Some(spec)).await;
    assert_eq!(
        respecced["status"],
        json!({"ok": true}),
        "a main PUT keeps the status"
    );
    assert_eq!(respecced["spec"], json!({"n": 2}));
    assert_eq!(
        send(
            &server,
            Method::PUT,
            &format!("{THINGS}/a/status"),
            Some(written)
        )
        .await
        .0,
        409
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_is_removed() {
    let server = FakeApiServer::new();
    let mut held = thing("a", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/f"]);
    let (_, created) = send(&server, Method::POST, THINGS, Some(held)).await;

    let stale = json!({"preconditions": {"resourceVersion": "999"}});
    assert_eq!(
        send(&server, Method::DELETE, &format!("{THINGS}/a"), Some(stale))
            .await
            .0,
        409
    );
    let wrong_uid = json!({"preconditions": {"uid": "nope"}});
    assert_eq!(
        send(
            &server,
            Method::DELETE,
            &format!("{THINGS}/a"),
            Some(wrong_uid)
        )
        .await
        .0,
        409
    );

    let at = json!({"preconditions": {"resourceVersion": rv(&created)}});
    let (code, marked) = send(&server, Method::DELETE, &format!("{THINGS}/a"), Some(at)).await;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked["metadata"]["generation"], 2,
        "marking bumps generation"
    );
    // Asked again: unchanged.
    let (_, again) = send(&server, Method::DELETE, &format!("{THINGS}/a"), None).await;
    assert_eq!(again, marked);

    let mut more = marked.clone();
    more["metadata"]["finalizers"] = json!(["example.com/f", "example.com/g"]);
    assert_eq!(
        send(&server, Method::PUT, &format!("{THINGS}/a"), Some(more))
            .await
            .0,
        422,
        "no new finalizer on an object being deleted"
    );
    let mut done = marked;
    done["metadata"]["finalizers"] = json!([]);
    let (code, last) = send(&server, Method::PUT, &format!("{THINGS}/a"), Some(done)).await;
    assert_eq!(code, 200);
    assert_eq!(last["metadata"]["name"], "a");
    assert_eq!(
        send(&server, Method::GET, &format!("{THINGS}/a"), None)
            .await
            .0,
        404
    );

    create(&server, "b").await;
    let (code, gone) = send(&server, Method::DELETE, &format!("{THINGS}/b"), None).await;
    assert_eq!((code, gone["kind"].as_str()), (200, Some("Status")));
    assert_eq!(
        send(&server, Method::GET, &format!("{THINGS}/b"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn lists_filter_by_label_and_page_with_tokens() {
    let server = FakeApiServer::new();
    for name in ["c", "a", "b"] {
        create(&server, name).await;
    }
    let mut other = thing("d", json!({}));
    other["metadata"]["labels"] = json!({"app": "y"});
    send(&server, Method::POST, THINGS, Some(other)).await;

    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, x) = send(
        &server,
        Method::GET,
        &format!("{THINGS}?labelSelector=app%3Dx"),
        None,
    )
    .await;
    assert_eq!(names(&x), ["a", "b", "c"]);
    assert_eq!(x["kind"], "ThingList");
    let (_, not_x) = send(
        &server,
        Method::GET,
        &format!("{THINGS}?labelSelector=app!%3Dx"),
        None,
    )
    .await;
    assert_eq!(names(&not_x), ["d"]);
    assert_eq!(
        send(
            &server,
            Method::GET,
            &format!("{THINGS}?labelSelector=app%20in%20(x)"),
            None
        )
        .await
        .0,
        400
    );

    let (_, first) = send(&server, Method::GET, &format!("{THINGS}?limit=2"), None).await;
    assert_eq!(names(&first), ["a", "b"]);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = send(
        &server,
        Method::GET,
        &format!("{THINGS}?limit=2&continue={token}"),
        None,
    )
    .await;
    assert_eq!(names(&second), ["c", "d"]);
    assert_eq!(second["metadata"].get("continue"), None, "the last page");
    assert_eq!(
        send(
            &server,
            Method::GET,
            &format!("{THINGS}?limit=2&continue=garbage"),
            None
        )
        .await
        .0,
        400
    );
    // Other namespaces and resources are apart.
    let (_, elsewhere) = send(
        &server,
        Method::GET,
        "/apis/example.com/v1/namespaces/other/things",
        None,
    )
    .await;
    assert_eq!(names(&elsewhere), Vec::<String>::new());
}

/// The next line of a watch's body, as JSON.
async fn next_line(body: &mut FakeBody) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a line within 5 s")
        .expect("the watch goes on")
        .unwrap();
    let bytes = frame.into_data().unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn watches_replay_from_a_version_then_go_live() {
    let server = FakeApiServer::new();
    let before = server.resource_version();
    let a = create(&server, "a").await;
    let response = call(
        &server,
        Method::GET,
        &format!("{THINGS}?watch=true&resourceVersion={before}&labelSelector=app%3Dx"),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert_eq!(
        next_line(&mut body).await,
        json!({"type": "ADDED", "object": a})
    );

    let mut other = thing("other", json!({}));
    other["metadata"]["labels"] = json!({"app": "y"});
    send(&server, Method::POST, THINGS, Some(other)).await;
    let (_, gone) = send(&server, Method::DELETE, &format!("{THINGS}/a"), None).await;
    assert_eq!(gone["status"], "Success");
    let deleted = next_line(&mut body).await;
    assert_eq!(
        deleted["type"], "DELETED",
        "the other label's object is not seen"
    );
    assert_eq!(deleted["object"]["metadata"]["name"], "a");
    assert!(rv(&deleted["object"]).parse::<u64>().unwrap() > rv(&a).parse::<u64>().unwrap());
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_is_gone() {
    let server = FakeApiServer::new();
    let before = server.resource_version();
    create(&server, "a").await;
    server.compact();
    let response = call(
        &server,
        Method::GET,
        &format!("{THINGS}?watch=true&resourceVersion={before}"),
        None,
    )
    .await;
    let mut body = response.into_body();
    let error = next_line(&mut body).await;
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert!(body.frame().await.is_none(), "and the watch ends");
    // From now on is fine.
    let now = server.resource_version();
    let response = call(
        &server,
        Method::GET,
        &format!("{THINGS}?watch=true&resourceVersion={now}"),
        None,
    )
    .await;
    let mut body = response.into_body();
    create(&server, "b").await;
    assert_eq!(next_line(&mut body).await["type"], "ADDED");
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let server = FakeApiServer::new();
    assert_eq!(
        send(&server, Method::GET, "/api/v1/namespaces/ns/pods", None)
            .await
            .0,
        404
    );
    assert_eq!(
        send(&server, Method::PATCH, &format!("{THINGS}/a"), None)
            .await
            .0,
        405
    );
    let request = http::Request::post(THINGS)
        .body(kube::client::Body::from(b"{not json".to_vec()))
        .unwrap();
    assert_eq!(server.clone().oneshot(request).await.unwrap().status(), 400);
    let mut kindless = thing("a", json!({}));
    kindless.as_object_mut().unwrap().remove("kind");
    assert_eq!(
        send(&server, Method::POST, THINGS, Some(kindless)).await.0,
        400
    );
    let huge = json!({"apiVersion": "example.com/v1", "kind": "Thing",
                      "metadata": {"name": "big"}, "spec": {"x": "a".repeat(4 << 20)}});
    assert_eq!(send(&server, Method::POST, THINGS, Some(huge)).await.0, 413);
}
