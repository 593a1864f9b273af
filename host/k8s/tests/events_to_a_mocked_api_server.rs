//! [`KubeEvents`] against a mocked API server (`tower-test`): the exact
//! Event each controller event becomes, and that a repeat is not sent.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};
use wasmbed_api::controller::events::{EventRecorder, EventType, ObjectEvent};
use wasmbed_api::model::Kind;
use wasmbed_k8s::KubeEvents;

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/wasmbed/events?";

fn mocked() -> (KubeEvents, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "elsewhere");
    (
        KubeEvents::new(client, "wasmbed", "wasmbed-api-7d9f"),
        handle,
    )
}

fn placed() -> ObjectEvent {
    ObjectEvent::new(
        Kind::Application,
        "primes",
        "6b3e2c0a-0000-4000-8000-000000000002",
        EventType::Normal,
        "Placed",
        "placed on device board-1 through gateway gw (deployment 7, revision r1)",
    )
}

/// Serves one request, which must create an Event; gives its body.
async fn one_event(handle: &mut Handle<Request<Body>, Response<Body>>, code: u16) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("a request");
    assert_eq!(request.method(), Method::POST);
    assert_eq!(request.uri().to_string(), EVENTS);
    let body: Value =
        serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
    body
}

#[tokio::test]
async fn an_event_is_posted_on_its_object_with_the_reporting_controller() {
    let (events, mut handle) = mocked();
    let (body, ()) = tokio::join!(one_event(&mut handle, 201), events.record(placed()));
    assert_eq!(body["apiVersion"], "events.k8s.io/v1");
    assert_eq!(body["kind"], "Event");
    assert_eq!(body["type"], "Normal");
    assert_eq!(body["reason"], "Placed");
    assert_eq!(body["action"], "Placed");
    assert_eq!(
        body["note"],
        "placed on device board-1 through gateway gw (deployment 7, revision r1)"
    );
    assert_eq!(body["reportingController"], "wasmbed.io/api-server");
    assert_eq!(body["reportingInstance"], "wasmbed-api-7d9f");
    assert!(body["eventTime"].as_str().is_some(), "{body}");
    assert_eq!(
        body["regarding"],
        json!({
            "apiVersion": "wasmbed.io/v1alpha1", "kind": "Application", "name": "primes",
            "namespace": "wasmbed", "uid": "6b3e2c0a-0000-4000-8000-000000000002"
        })
    );
    let name = body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("primes."), "{name}");
    assert_eq!(body["metadata"]["namespace"], "wasmbed");
}

#[tokio::test]
async fn the_same_event_is_sent_once_and_a_refused_one_costs_nothing_else() {
    let (events, mut handle) = mocked();
    // Refused by the API server (RBAC, say): logged and dropped, and the
    // recorder goes on.
    let (_, ()) = tokio::join!(one_event(&mut handle, 403), events.record(placed()));
    // The same again: not sent (it was, even if refused).
    events.record(placed()).await;
    // Another note on the same object is another event.
    let mut removed = placed();
    removed.reason = "Removed";
    removed.note = "removed from device board-1 at gateway gw (deployment 7)".into();
    let (body, ()) = tokio::join!(one_event(&mut handle, 201), events.record(removed));
    assert_eq!(body["reason"], "Removed");
    drop(events);
    let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the client went away");
    assert!(next.is_none(), "no other request");
}
