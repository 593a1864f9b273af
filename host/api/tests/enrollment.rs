//! Enrollment signed in one place: `POST /api/v1/enrollments` for
//! gateways, fleet-wide pairing and pre-authorised keys.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use wasmbed_api::store::Role;
use wasmbed_gateway::signer::ApiSigner;
use wasmbed_pki::{Installation, PeerIdentity, certified_device_id, classify_peer};
use wasmbed_sim::{Fleet, SimConfig, Simulation};

/// An API whose server signs with the test installation's device CA; its
/// gateway and operator tokens.
async fn signing_api() -> (TestApi, String, String) {
    let mut api = TestApi::in_memory().await;
    let issuer = Arc::new(installation().device_issuer().unwrap());
    api.state = api.state.clone().with_device_issuer(issuer);
    let gateway = api.state.auth.issue("gw-1", Role::Gateway).await.unwrap();
    let operator = api.state.auth.issue("ops", Role::Operator).await.unwrap();
    (api, gateway, operator)
}

/// A new device key, SEC1 uncompressed, in hex.
fn new_key() -> String {
    loop {
        let scalar: [u8; 32] = rand::random();
        if let Ok(key) = wasmbed_pki::p256_public_key(&scalar) {
            return hex::encode(key);
        }
    }
}

fn request(key: &str) -> Value {
    json!({"public_key": key, "board": "mps2-an385", "firmware_version": "0.3.0"})
}

async fn enroll(api: &TestApi, token: &str, key: &str) -> (StatusCode, Value) {
    let (status, _, json) = api
        .call(
            "POST",
            "/api/v1/enrollments",
            Some(token),
            Some(request(key)),
        )
        .await;
    (status, json)
}

async fn open_pairing(api: &TestApi, token: &str) {
    let (status, _, json) = api
        .call(
            "PUT",
            "/api/v1/pairing",
            Some(token),
            Some(json!({"open": true, "duration_s": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["open"], true);
}

#[tokio::test]
async fn an_enrollment_is_signed_by_the_device_ca_and_the_same_key_keeps_its_id() {
    let (api, gateway, operator) = signing_api().await;
    open_pairing(&api, &operator).await;
    let key = new_key();
    let (status, first) = enroll(&api, &gateway, &key).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "accepted");
    let id = first["device_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    // A certificate of the device CA, for this key and this id.
    let der = base64::engine::general_purpose::STANDARD
        .decode(first["certificate"].as_str().unwrap())
        .unwrap();
    let der = rustls::pki_types::CertificateDer::from(der);
    match classify_peer(&der, &installation().client_roots()).unwrap() {
        PeerIdentity::Device(certified) => assert_eq!(hex::encode(certified.as_sec1()), key),
        other => panic!("not a device certificate: {other:?}"),
    }
    let certified = certified_device_id(&der).unwrap();
    assert_eq!(hex::encode(certified.0), id);

    // The same key again (its answer was lost; through another gateway):
    // the same id, a fresh certificate, even with pairing closed since.
    let (status, _, _) = api
        .call(
            "PUT",
            "/api/v1/pairing",
            Some(&operator),
            Some(json!({"open": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let other_gateway = api.state.auth.issue("gw-2", Role::Gateway).await.unwrap();
    let (status, again) = enroll(&api, &other_gateway, &key).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "reissued");
    assert_eq!(again["device_id"], id.as_str());
    assert_ne!(again["certificate"], first["certificate"]);
}

#[tokio::test]
async fn pairing_closed_refuses_new_keys_but_a_preauthorised_one() {
    let (api, gateway, operator) = signing_api().await;
    let (status, _, json) = api
        .call("GET", "/api/v1/pairing", Some(&api.reader), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, json!({"open": false}), "closed until opened");

    let (status, refused) = enroll(&api, &gateway, &new_key()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], "pairing_closed");

    let key = new_key();
    let (status, _, json) = api
        .call(
            "POST",
            "/api/v1/preauthorized",
            Some(&operator),
            Some(json!({"public_key": key})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let (status, accepted) = enroll(&api, &gateway, &key).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["outcome"], "accepted");
    // Pre-authorising is for one key: others stay refused.
    let (status, refused) = enroll(&api, &gateway, &new_key()).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::FORBIDDEN, json!("pairing_closed"))
    );

    // A window of no time is no window.
    let (status, _, json) = api
        .call(
            "PUT",
            "/api/v1/pairing",
            Some(&operator),
            Some(json!({"open": true, "duration_s": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
}

#[tokio::test]
async fn a_revoked_device_cannot_enroll_again() {
    let (api, gateway, operator) = signing_api().await;
    open_pairing(&api, &operator).await;
    let key = new_key();
    let (_, enrolled) = enroll(&api, &gateway, &key).await;
    let id = enrolled["device_id"].as_str().unwrap().to_owned();
    let mut device = device_body("dev-1", json!({}), Some(id.clone()));
    device["spec"]["revoked"] = json!(true);
    api.admin("POST", "/api/v1/devices", Some(device), StatusCode::CREATED)
        .await;
    let (status, refused) = enroll(&api, &gateway, &key).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], "key_revoked");
    // Another device's revocation is not this one's.
    let other = new_key();
    let (status, _) = enroll(&api, &gateway, &other).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = enroll(&api, &gateway, &other).await;
    assert_eq!(
        (status, again["outcome"].clone()),
        (StatusCode::OK, json!("reissued"))
    );
}

#[tokio::test]
async fn only_gateways_forward_enrollments_and_only_people_set_pairing() {
    let (api, gateway, operator) = signing_api().await;
    for token in [&operator, &api.reader] {
        let (status, json) = enroll(&api, token, &new_key()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
        assert_eq!(json["code"], "forbidden");
    }
    for (method, uri, body) in [
        ("PUT", "/api/v1/pairing", json!({"open": true})),
        (
            "POST",
            "/api/v1/preauthorized",
            json!({"public_key": new_key()}),
        ),
    ] {
        let (status, _, json) = api
            .call(method, uri, Some(&gateway), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {json}");
        let (status, _, _) = api.call(method, uri, Some(&api.reader), Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let (status, _, _) = api
        .call(
            "POST",
            "/api/v1/enrollments",
            None,
            Some(request(&new_key())),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason() {
    let (api, gateway, operator) = signing_api().await;
    open_pairing(&api, &operator).await;
    for bad in [
        "",
        "zz",
        &"04".repeat(65),
        &format!("05{}", &new_key()[2..]),
    ] {
        let (status, json) = enroll(&api, &gateway, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {json}");
        assert_eq!(json["code"], "invalid_key");
    }
    let mut long = request(&new_key());
    long["board"] = json!("b".repeat(33));
    let mut forged_line = request(&new_key());
    forged_line["firmware_version"] = json!("1.0\nINFO forged log line");
    for bad in [long, forged_line] {
        let (status, _, json) = api
            .call("POST", "/api/v1/enrollments", Some(&gateway), Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    }
}

#[tokio::test]
async fn without_a_device_ca_enrollments_are_unavailable() {
    let api = TestApi::in_memory().await;
    let gateway = api.state.auth.issue("gw-1", Role::Gateway).await.unwrap();
    let (status, json) = enroll(&api, &gateway, &new_key()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(json["code"], "no_device_ca");
    assert!(json["detail"].as_str().unwrap().contains("--pki"), "{json}");
}

/// The whole path: a real gateway whose installation has no device CA
/// key, forwarding to a real API server over HTTP, and a simulated device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_the_device_ca_key_enrolls_devices_through_the_api_server() {
    let (api, gateway_token, operator) = signing_api().await;
    let addr = api.serve().await;
    let dir = tempfile::tempdir().unwrap();
    installation().save(dir.path(), false).unwrap();
    std::fs::remove_file(dir.path().join(wasmbed_pki::file_names::DEVICE_CA_KEY)).unwrap();
    let keyless = Installation::load_without_device_ca_key(dir.path()).unwrap();
    let signer = ApiSigner::new(
        &format!("http://{addr}"),
        gateway_token.clone(),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let gateway = start_gateway_signing(&keyless, Some(Arc::new(signer))).await;

    let sim = SimConfig::new(gateway.devices)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(400));
    let fleet = Fleet::start(Simulation::new(sim, installation()).unwrap(), 1, None).unwrap();
    // Pairing is closed fleet-wide: the device is refused and retries.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(fleet.devices()[0].device_id().is_none(), "not enrolled yet");
    open_pairing(&api, &operator).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !fleet.devices()[0].snapshot().connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = fleet.devices()[0].device_id().unwrap();

    // The gateway recorded it; the API server holds its enrollment: the
    // same key, through any gateway, gets the same id.
    let (status, recorded) = gateway.get(&format!("/v1/devices/{id}")).await;
    assert_eq!(status, 200, "{recorded}");
    let key = recorded["public_key"].as_str().unwrap().to_owned();
    let (status, again) = enroll(&api, &gateway_token, &key).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "reissued");
    assert_eq!(again["device_id"], hex::encode(id.0));
}
