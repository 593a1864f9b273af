//! Gateways of one fleet behind a load balancer: a device enrolled at one
//! is served by any other, and a deployment the API server numbered
//! fleet-wide keeps its id from gateway to gateway, so the device installs
//! and runs it once.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use wasmbed_protocol::*;

/// A fleet-wide deployment id ([`wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS`]).
const FLEET_ID: u64 = (1 << 52) + 12_345;

fn fleet_body(device: DeviceId, module: &[u8], id: u64) -> serde_json::Value {
    let mut body = deploy_body(&[device], module);
    body["deployment_id"] = id.into();
    body
}

/// `POST /v1/deployments` of `module` to `device` as fleet-wide deployment
/// `id`.
async fn place(
    gateway: &TestGateway,
    device: DeviceId,
    module: &[u8],
    id: u64,
) -> (StatusCode, serde_json::Value) {
    gateway
        .http(
            "POST",
            "/v1/deployments",
            Some(fleet_body(device, module, id)),
        )
        .await
}

#[tokio::test]
async fn a_device_enrolled_at_one_gateway_is_served_by_another() {
    let enrolling = TestGateway::in_memory().await;
    enrolling.open_pairing(true).await;
    let other = TestGateway::in_memory().await;
    let mut device = enrolled_device(&enrolling).await;
    let id = device.identity.as_ref().unwrap().0;

    let mut connected = device.session(other.addr).await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    let (status, json) = other.http("GET", &format!("/v1/devices/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["public_key"], hex::encode(device.public_key()));
    assert_eq!(json["presence"], "connected");
}

#[tokio::test]
async fn a_device_revoked_at_a_gateway_is_not_learned_there_again() {
    let enrolling = TestGateway::in_memory().await;
    enrolling.open_pairing(true).await;
    let other = TestGateway::in_memory().await;
    let mut device = enrolled_device(&enrolling).await;
    let id = device.identity.as_ref().unwrap().0;
    drop(device.session(other.addr).await);
    let (status, _) = other
        .http("DELETE", &format!("/v1/devices/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Refused at the handshake: its key is revoked here.
    assert!(handshake_fails((*device.client_config()).clone(), other.addr).await);
    let (status, _) = other.http("GET", &format!("/v1/devices/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_fleet_deployment_moves_between_gateways_without_a_second_install() {
    let first = TestGateway::in_memory().await;
    first.open_pairing(true).await;
    let second = TestGateway::in_memory().await;
    let mut device = enrolled_device(&first).await;
    let id = device.identity.as_ref().unwrap().0;
    let module = module_bytes(3_000);

    let (status, json) = place(&first, id, &module, FLEET_ID).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json[0]["id"], FLEET_ID);
    let mut connected = device.session(first.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    drop(connected);
    assert_eq!(device.installs, 1);

    // The device is now behind the second gateway, which the API server
    // gives the same deployment: it is announced, and the device says it
    // holds it.
    let mut connected = device.session(second.addr).await;
    let (status, json) = place(&second, id, &module, FLEET_ID).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    second
        .wait_for(
            &format!("/v1/deployments/{FLEET_ID}"),
            "the device to report the deployment installed",
            |d| d["state"] == "installed" || d["state"] == "running",
        )
        .await;
    drop(connected);
    assert_eq!(device.installs, 1, "installed a second time");

    // Placing it again is answered as it stands; the id for another
    // application or outside the fleet range is refused.
    let (status, json) = place(&second, id, &module, FLEET_ID).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let mut other_app = fleet_body(id, &module, FLEET_ID);
    other_app["application_id"] = 43.into();
    let (status, json) = second
        .http("POST", "/v1/deployments", Some(other_app))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    let (status, _) = second
        .http("POST", "/v1/deployments", Some(fleet_body(id, &module, 7)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut two = fleet_body(id, &module, FLEET_ID + 1);
    two["devices"] = serde_json::json!([id.to_string(), id.to_string()]);
    let (status, _) = second.http("POST", "/v1/deployments", Some(two)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Ids the gateway gives itself stay below the fleet's.
    let (status, json) = second
        .http("POST", "/v1/deployments", Some(deploy_body(&[id], &module)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert!(json[0]["id"].as_u64().unwrap() < 1 << 52, "{json}");
}

#[tokio::test]
async fn a_moved_deployment_is_forgotten_only_once_its_results_are_collected() {
    let old = TestGateway::in_memory().await;
    old.open_pairing(true).await;
    let mut device = enrolled_device(&old).await;
    let id = device.identity.as_ref().unwrap().0;
    let module = module_bytes(500);
    let (status, _) = place(&old, id, &module, FLEET_ID).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut connected = device.session(old.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    old.wait_for("/v1/results", "the run's result", |r| {
        r.as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    let forget = |results: u32| serde_json::json!({ "results": results });
    let uri = format!("/v1/deployments/{FLEET_ID}/forget");

    // Still connected here: kept.
    let (status, json) = old.http("POST", &uri, Some(forget(1))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert_eq!(json["code"], "device_connected_here");
    drop(connected);
    old.wait_for(&format!("/v1/devices/{id}"), "the session to end", |d| {
        d["presence"] != "connected"
    })
    .await;

    // A result the caller has not collected: kept.
    let (status, json) = old.http("POST", &uri, Some(forget(0))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert_eq!(json["code"], "results_arrived");
    let (status, _) = old
        .http("GET", &format!("/v1/deployments/{FLEET_ID}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = old.http("POST", &uri, Some(forget(1))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = old
        .http("GET", &format!("/v1/deployments/{FLEET_ID}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let results = old.http("GET", "/v1/results", None).await.1;
    assert_eq!(results.as_array().unwrap().len(), 0);
    let (status, _) = old.http("POST", &uri, Some(forget(1))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A gateway being stopped (scale-in, rolling restart) tells each device
/// to reconnect, which behind a load balancer reaches another gateway,
/// and returns only once every session said goodbye.
#[tokio::test]
async fn a_stopping_gateway_says_goodbye_to_every_device_before_it_returns() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut first = enrolled_device(&gateway).await;
    let mut second = enrolled_device(&gateway).await;
    let addr = gateway.addr;
    let serving = gateway.gateway.clone();
    let mut a = first.session(addr).await;
    let mut b = second.session(addr).await;
    a.run_until(|e| *e == Seen::HeartbeatAcked).await.unwrap();
    b.run_until(|e| *e == Seen::HeartbeatAcked).await.unwrap();
    assert_eq!(serving.metrics().connected_devices.get(), 2);

    tokio::time::timeout(std::time::Duration::from_secs(5), gateway.stop())
        .await
        .expect("the gateway stops once its sessions are closed");
    // Returned only after each session ended: a process may exit now.
    assert_eq!(serving.metrics().connected_devices.get(), 0);
    let restart = Seen::Closed(session::CloseReason::PeerGoodbye(GoodbyeReason::Restart));
    for connected in [&mut a, &mut b] {
        let seen = connected
            .run_until(|e| matches!(e, Seen::Closed(_) | Seen::Eof))
            .await
            .unwrap();
        assert_eq!(seen, restart);
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

/// A stopping gateway registered with an API server keeps its HTTP
/// interface up until the results it holds have been read: its devices
/// went elsewhere, and what they left here is collected, not stranded.
#[tokio::test]
async fn a_stopping_gateway_waits_for_its_results_to_be_collected() {
    let mut config = fast_config();
    config.collect_grace = std::time::Duration::from_secs(20);
    let gateway =
        TestGateway::start(config, wasmbed_gateway::store::Store::in_memory().unwrap()).await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let (status, _) = gateway
        .http(
            "POST",
            "/v1/deployments",
            Some(deploy_body(&[id], &module_bytes(300))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    let serving = gateway.gateway.clone();
    let store = serving.store();
    for _ in 0..100 {
        if store.uncollected_results().unwrap() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(store.uncollected_results().unwrap(), 1);

    let router = gateway.gateway.router();
    let stopping = tokio::spawn(gateway.stop());
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        !stopping.is_finished(),
        "stopped with a result not collected"
    );
    // The API server reads it: the gateway stops.
    let read = axum::http::Request::get("/v1/results")
        .extension(wasmbed_httpd::PeerCertificates(std::sync::Arc::new(vec![
            wasmbed_pki::test_fixtures().api_client.cert.clone(),
        ])))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(router, read).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(std::time::Duration::from_secs(5), stopping)
        .await
        .expect("stopped once its results were read")
        .unwrap();
    assert_eq!(store.uncollected_results().unwrap(), 0);
    drop(connected);
}
