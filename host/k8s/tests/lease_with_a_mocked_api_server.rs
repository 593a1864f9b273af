//! [`KubeLease`] against a mocked API server (`tower-test`): the exact
//! requests of taking, renewing, losing and releasing the lease.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use wasmbed_api::controller::leader::Leadership;
use wasmbed_k8s::KubeLease;

mod support;
use support::{ApiServer, answer};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/wasmbed/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/wasmbed/leases/wasmbed-api-controller";

fn mocked() -> (KubeLease, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "elsewhere");
    (
        KubeLease::new(client, "wasmbed", "api-0"),
        ApiServer(handle),
    )
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "not found"})
}

/// The lease as the API server holds it.
fn lease(holder: Option<&str>, renewed_secs_ago: i64, transitions: i32) -> Value {
    let renewed =
        k8s_openapi::chrono::Utc::now() - k8s_openapi::chrono::Duration::seconds(renewed_secs_ago);
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "wasmbed-api-controller", "namespace": "wasmbed", "resourceVersion": "5"},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": renewed.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Micros, true),
            "renewTime": renewed.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Micros, true),
            "leaseTransitions": transitions
        }
    })
}

#[tokio::test]
async fn a_missing_lease_is_created_held_by_this_replica() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 404, &not_found());
        let (body, send) = server.expect(Method::POST, &format!("{LEASES}?")).await;
        assert_eq!(body["metadata"]["name"], "wasmbed-api-controller");
        assert_eq!(body["spec"]["holderIdentity"], "api-0");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(body["spec"]["leaseTransitions"], 0);
        assert!(body["spec"]["renewTime"].is_string(), "{body}");
        answer(send, 201, &body);
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(scenario, lease_.acquire())
    })
    .await
    .expect("acquired");
}

#[tokio::test]
async fn the_holder_renews_with_the_version_it_read() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 200, &lease(Some("api-0"), 3, 2));
        let (body, send) = server.expect(Method::PUT, &format!("{LEASE}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "5");
        assert_eq!(body["spec"]["holderIdentity"], "api-0");
        assert_eq!(body["spec"]["leaseTransitions"], 2, "not a transition");
        answer(send, 200, &body);
    };
    let ((), renewed) = tokio::join!(scenario, lease_.renew());
    assert!(renewed);
}

#[tokio::test]
async fn a_lease_another_replica_renewed_is_left_alone_and_lost() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 200, &lease(Some("api-1"), 2, 4));
    };
    let ((), renewed) = tokio::join!(scenario, lease_.renew());
    assert!(!renewed, "another replica holds it");
    drop(lease_);
    server.done().await;
}

#[tokio::test]
async fn a_lapsed_lease_is_taken_over_as_a_transition() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 200, &lease(Some("api-1"), 60, 4));
        let (body, send) = server.expect(Method::PUT, &format!("{LEASE}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "5");
        assert_eq!(body["spec"]["holderIdentity"], "api-0");
        assert_eq!(body["spec"]["leaseTransitions"], 5);
        answer(send, 200, &body);
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(scenario, lease_.acquire())
    })
    .await
    .expect("acquired");
}

#[tokio::test]
async fn losing_the_race_to_write_is_losing_the_lease() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 200, &lease(Some("api-0"), 3, 1));
        let (_, send) = server.expect(Method::PUT, &format!("{LEASE}?")).await;
        answer(
            send,
            409,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "reason": "Conflict", "code": 409, "message": "changed"}),
        );
    };
    let ((), renewed) = tokio::join!(scenario, lease_.renew());
    assert!(!renewed);
}

#[tokio::test]
async fn release_gives_the_lease_up() {
    let (lease_, mut server) = mocked();
    let scenario = async {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        answer(send, 200, &lease(Some("api-0"), 1, 1));
        let (body, send) = server.expect(Method::PUT, &format!("{LEASE}?")).await;
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
        assert!(body["spec"].get("renewTime").is_none(), "{body}");
        answer(send, 200, &body);
    };
    tokio::join!(scenario, lease_.release());
}
