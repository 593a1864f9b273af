//! Who may call the gateway's HTTP interface: TLS with the gateway
//! certificate, and a client certificate of the control CA for every route
//! but `/healthz` and `/openapi.json`.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use tower::ServiceExt;

fn url(gateway: &TestGateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gateway.http_addr.port())
}

#[tokio::test]
async fn the_api_servers_certificate_may_call_every_route() {
    let gateway = TestGateway::in_memory().await;
    let client = https_client(Some(&wasmbed_pki::test_fixtures().api_client));
    for path in [
        "/v1/devices",
        "/v1/pairing",
        "/v1/deployments",
        "/v1/results",
        "/metrics",
    ] {
        let response = client.get(url(&gateway, path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = client
        .put(url(&gateway, "/v1/pairing"))
        .json(&serde_json::json!({"open": true, "duration_s": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_without_a_certificate_gets_only_health_and_the_document() {
    let gateway = TestGateway::in_memory().await;
    let client = https_client(None);
    for path in ["/healthz", "/openapi.json"] {
        let response = client.get(url(&gateway, path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let document: serde_json::Value = client
        .get(url(&gateway, "/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A device's runtime is documented.
    let schemas = &document["components"]["schemas"];
    assert!(
        schemas["DeviceView"]["properties"]["runtime"]
            .to_string()
            .contains("#/components/schemas/RuntimeView"),
        "{:#}",
        schemas["DeviceView"]
    );
    assert!(
        !schemas["DeviceView"]["required"]
            .as_array()
            .unwrap()
            .contains(&"runtime".into()),
        "absent before the first session"
    );
    assert_eq!(
        schemas["RuntimeView"]["required"],
        serde_json::json!(["kind", "version"])
    );
    // Every documented route refuses it.
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 8, "{document:#}");
    for (path, item) in paths {
        let concrete = path.replace("{id}", "1");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client
                .request(method.clone(), url(&gateway, &concrete))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{method} {path}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized", "{method} {path}");
        }
    }
    // Nothing was changed by the refused calls.
    let (_, pairing) = gateway.http("GET", "/v1/pairing", None).await;
    assert_eq!(pairing["open"], false);
}

#[tokio::test]
async fn a_device_certificate_cannot_call_the_gateway() {
    let gateway = TestGateway::in_memory().await;
    let fixtures = wasmbed_pki::test_fixtures();
    let device = wasmbed_pki::Credential {
        cert: fixtures.device.cert.clone(),
        key: match fixtures.device.private_key() {
            rustls::pki_types::PrivateKeyDer::Pkcs8(key) => key,
            _ => unreachable!("the fixture key is PKCS#8"),
        },
    };
    let client = https_client(Some(&device));
    assert!(
        client
            .get(url(&gateway, "/v1/devices"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_http_gets_no_answer() {
    let gateway = TestGateway::in_memory().await;
    let answer = reqwest::Client::new()
        .get(format!("http://{}/v1/devices", gateway.http_addr))
        .send()
        .await;
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn in_process_calls_without_a_certificate_are_refused_too() {
    let gateway = TestGateway::in_memory().await;
    let request = Request::builder()
        .uri("/v1/devices")
        .body(Body::empty())
        .unwrap();
    let response = gateway.gateway.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Code in the same process says who it is instead.
    let mut request = Request::builder()
        .uri("/v1/devices")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(wasmbed_gateway::http::InProcessCaller("a test"));
    let response = gateway.gateway.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
