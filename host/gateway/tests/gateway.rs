//! The gateway over real sockets and real TLS 1.3.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmbed_protocol::session::{CloseReason, Violation};
use wasmbed_protocol::*;

fn device_uri(id: DeviceId) -> String {
    format!("/v1/devices/{id}")
}

#[tokio::test]
async fn enrollment_while_pairing_is_open_then_reconnect_with_the_issued_certificate() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = TestDevice::new();
    let id = device.enroll(gateway.addr).await.unwrap();

    let (status, json) = gateway.http("GET", &device_uri(id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["public_key"], hex::encode(device.public_key()));
    assert_eq!(json["board"], "test-board");

    let mut connected = device.session(gateway.addr).await;
    gateway
        .wait_for(&device_uri(id), "device connected", |d| {
            d["presence"] == "connected"
        })
        .await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    gateway
        .wait_for(&device_uri(id), "a heartbeat", |d| {
            d["last_heartbeat_ms"].is_u64()
        })
        .await;
}

#[tokio::test]
async fn the_runtime_a_device_reports_at_each_session_start_is_kept_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gateway = TestGateway::on_disk(&db).await;
    gateway.open_pairing(true).await;
    let mut device = TestDevice::new();
    let id = device.enroll(gateway.addr).await.unwrap();
    let (_, json) = gateway.http("GET", &device_uri(id), None).await;
    assert!(json.get("runtime").is_none(), "no session yet: {json:#}");

    // The bare-metal Rust firmware (the test device reports wasmi).
    let connected = device.session(gateway.addr).await;
    gateway
        .wait_for(&device_uri(id), "the wasmi runtime", |d| {
            d["runtime"] == serde_json::json!({"kind": "wasmi", "version": "0.40.0"})
        })
        .await;
    drop(connected);

    // Reflashed with the Zephyr firmware: its next session says so, and a
    // restarted gateway still knows it.
    device.capabilities.runtime = RuntimeKind::Wamr;
    device.capabilities.runtime_version = Name::try_from("2.4.3").unwrap();
    let connected = device.session(gateway.addr).await;
    gateway
        .wait_for(&device_uri(id), "the wamr runtime", |d| {
            d["runtime"]["kind"] == "wamr"
        })
        .await;
    drop(connected);
    gateway.stop().await;
    let gateway = TestGateway::on_disk(&db).await;
    let (_, devices) = gateway.http("GET", "/v1/devices", None).await;
    assert_eq!(
        devices[0]["runtime"],
        serde_json::json!({"kind": "wamr", "version": "2.4.3"})
    );

    // A runtime this gateway does not know, with a version that would
    // garble a terminal: named by its code, the control characters replaced.
    device.capabilities.runtime = RuntimeKind::from_code(7);
    device.capabilities.runtime_version = Name::try_from("9\n\u{1b}[2J").unwrap();
    let _connected = device.session(gateway.addr).await;
    gateway
        .wait_for(&device_uri(id), "the unknown runtime", |d| {
            d["runtime"]
                == serde_json::json!({"kind": "unknown(7)", "version": "9\u{fffd}\u{fffd}[2J"})
        })
        .await;
}

#[tokio::test]
async fn enrollment_is_refused_while_pairing_is_closed_unless_preauthorized() {
    let gateway = TestGateway::in_memory().await;
    let mut device = TestDevice::new();
    assert_eq!(
        device.enroll(gateway.addr).await,
        Err(EnrollRefusal::PairingClosed)
    );
    let (status, json) = gateway.http("GET", "/v1/devices", None).await;
    assert_eq!((status, json), (StatusCode::OK, serde_json::json!([])));

    let body = serde_json::json!({ "public_key": hex::encode(device.public_key()) });
    let (status, _) = gateway.http("POST", "/v1/preauthorized", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    device.enroll(gateway.addr).await.unwrap();

    // The pre-authorization was used up.
    let mut other = TestDevice::new();
    assert_eq!(
        other.enroll(gateway.addr).await,
        Err(EnrollRefusal::PairingClosed)
    );

    // The same key enrolling again (it lost the answer) gets the same id
    // and a fresh certificate, not a second device.
    let id = device.identity.as_ref().unwrap().0;
    let mut again = TestDevice {
        key: device.key.clone(),
        ..TestDevice::new()
    };
    assert_eq!(again.enroll(gateway.addr).await, Ok(id));
    let (_, devices) = gateway.http("GET", "/v1/devices", None).await;
    assert_eq!(devices.as_array().unwrap().len(), 1);
    again.session(gateway.addr).await;
}

#[tokio::test]
async fn the_claim_certificate_can_do_nothing_but_enroll() {
    let gateway = TestGateway::in_memory().await;
    let device = TestDevice::new();
    // A session start under the claim certificate, as if enrolled.
    let mut tls = device.connect(gateway.addr).await.unwrap();
    let hello = Uplink::SessionStart(SessionStart {
        agent_version: Name::try_from("x").unwrap(),
        capabilities: samples::capabilities(),
        apps: AppList::new(),
    });
    let mut frame = vec![0u8; 512];
    let len =
        frame::encode_frame(&Envelope::new(1, hello), &mut frame, frame::MAX_FRAME_LEN).unwrap();
    tls.write_all(&frame[..len]).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut received)).await;

    let mut kinds = Vec::new();
    let mut rest = received.as_slice();
    while let Some(body) = frame::find_frame(rest, frame::MAX_FRAME_LEN).unwrap() {
        kinds.push(
            codec::decode_downlink(&rest[body.clone()])
                .unwrap()
                .body
                .kind(),
        );
        if let Downlink::Error(error) = codec::decode_downlink(&rest[body.clone()]).unwrap().body {
            assert_eq!(error.code, ErrorCode::Unauthorized);
        }
        rest = &rest[body.end..];
    }
    assert_eq!(kinds, ["enroll_challenge", "error", "goodbye"]);
    let (_, devices) = gateway.http("GET", "/v1/devices", None).await;
    assert_eq!(devices, serde_json::json!([]));
}

#[tokio::test]
async fn handshakes_without_a_good_client_certificate_are_refused() {
    let gateway = TestGateway::in_memory().await;
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(installation().gateway_ca().clone()).unwrap();
        roots
    };
    let provider = wasmbed_pki::crypto_provider();

    // No client certificate.
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    assert!(handshake_fails(config, gateway.addr).await);

    // A certificate from a foreign CA.
    let foreign = wasmbed_pki::Installation::create(&Default::default()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(
            vec![foreign.claim_cert().clone()],
            foreign.claim_private_key(),
        )
        .unwrap();
    assert!(handshake_fails(config, gateway.addr).await);

    // TLS 1.2 with the genuine claim certificate.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![installation().claim_cert().clone()],
            installation().claim_private_key(),
        )
        .unwrap();
    assert!(handshake_fails(config, gateway.addr).await);

    let metrics = gateway.gateway.metrics().render();
    assert!(metrics.contains("handshake_failures_total"), "{metrics}");
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_while_other_devices_keep_working() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut stalled = TcpStream::connect(gateway.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // half a record header

    let mut device = enrolled_device(&gateway).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();

    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), stalled.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "stalled handshake still open"
    );
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    assert!(
        gateway
            .gateway
            .metrics()
            .render()
            .contains("reason=\"timeout\"")
    );
}

#[tokio::test]
async fn garbage_oversize_and_truncated_frames_close_only_their_own_connection() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut bystander = enrolled_device(&gateway).await;
    let mut bystander = bystander.session(gateway.addr).await;

    let garbage: Vec<u8> = [
        5u32.to_be_bytes().as_slice(),
        &[0xff, 0xfe, 0xfd, 0xfc, 0xfb],
    ]
    .concat();
    let oversize = (1u32 << 20).to_be_bytes().to_vec();
    for (input, expected) in [
        (garbage, ErrorCode::Malformed),
        (oversize, ErrorCode::FrameTooLarge),
    ] {
        let mut device = enrolled_device(&gateway).await;
        let mut connected = device.session(gateway.addr).await;
        connected.tls.write_all(&input).await.unwrap();
        let seen = connected
            .run_until(|e| matches!(e, Seen::PeerError(_)))
            .await
            .unwrap();
        assert_eq!(seen, Seen::PeerError(expected));
        let seen = connected
            .run_until(|e| matches!(e, Seen::Closed(_)))
            .await
            .unwrap();
        assert_eq!(
            seen,
            Seen::Closed(CloseReason::PeerGoodbye(GoodbyeReason::ProtocolError))
        );
    }

    // A truncated frame followed by the end of the connection.
    let mut device = enrolled_device(&gateway).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .tls
        .write_all(&[0, 0, 0, 40, 0xa3, 0x00])
        .await
        .unwrap();
    connected.tls.shutdown().await.unwrap();
    drop(connected);

    bystander
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    let metrics = gateway.gateway.metrics().render();
    assert!(
        metrics.contains("reason=\"protocol_violation\""),
        "{metrics}"
    );
    let _ = Violation::Decode(codec::DecodeError::Truncated);
}

#[tokio::test]
async fn a_device_that_stops_heartbeating_becomes_unreachable() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let mut connected = device.session(gateway.addr).await;
    connected.heartbeats = false;
    // 6 missed intervals of 300 ms: the gateway drops the connection.
    let seen = connected
        .run_until(|e| *e == Seen::Eof || matches!(e, Seen::Closed(_)))
        .await
        .unwrap();
    assert!(matches!(seen, Seen::Eof | Seen::Closed(_)));
    gateway
        .wait_for(&device_uri(id), "unreachable", |d| {
            d["presence"] == "unreachable"
        })
        .await;

    // A goodbye makes a device disconnected instead.
    let mut connected = device.session(gateway.addr).await;
    connected.session.close(GoodbyeReason::Shutdown);
    let _ = connected.run_until(|e| *e == Seen::Eof).await;
    gateway
        .wait_for(&device_uri(id), "disconnected", |d| {
            d["presence"] == "disconnected"
        })
        .await;
}

#[tokio::test]
async fn a_module_deployed_to_several_devices_is_installed_and_its_results_come_back() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let module = module_bytes(5_000);
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(enrolled_device(&gateway).await);
    }
    let ids: Vec<DeviceId> = devices
        .iter()
        .map(|d| d.identity.as_ref().unwrap().0)
        .collect();
    let (status, created) = gateway
        .http("POST", "/v1/deployments", Some(deploy_body(&ids, &module)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created.as_array().unwrap().len(), 3);
    assert_eq!(created[0]["module_sha256"], sha256_hex(&module));

    for device in &mut devices {
        let mut connected = device.session(gateway.addr).await;
        connected
            .run_until(|e| matches!(e, Seen::Installed(_)))
            .await
            .unwrap();
        connected
            .run_until(|e| *e == Seen::HeartbeatAcked)
            .await
            .unwrap();
    }
    for device in &devices {
        let id = device.received.keys().next().copied().unwrap();
        assert_eq!(device.received[&id], module);
    }
    let results = gateway
        .wait_for("/v1/results", "three results", |r| {
            r.as_array().is_some_and(|a| a.len() == 3)
        })
        .await;
    for result in results.as_array().unwrap() {
        assert_eq!(result["returned"], serde_json::json!([{ "i32": 5000 }]));
    }
    let deployments = gateway.http("GET", "/v1/deployments", None).await.1;
    assert!(
        deployments
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "installed"),
        "{deployments}"
    );
}

#[tokio::test]
async fn a_transfer_cut_midway_resumes_after_reconnect_and_installs_once() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let module = module_bytes(20_000);
    let (status, _) = gateway
        .http("POST", "/v1/deployments", Some(deploy_body(&[id], &module)))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut connected = device.session(gateway.addr).await;
    connected.stop_after_bytes = Some(7_000);
    assert!(
        connected
            .run_until(|e| matches!(e, Seen::Installed(_)))
            .await
            .is_err()
    );
    drop(connected);
    let held = device.received.values().next().unwrap().len();
    assert!((7_000..20_000).contains(&held), "held {held}");

    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    drop(connected);
    assert_eq!(device.received.values().next().unwrap(), &module);
    assert_eq!(device.installs, 1);

    // Reconnecting again does not reinstall.
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    drop(connected);
    assert_eq!(device.installs, 1);
    let results = gateway.http("GET", "/v1/results", None).await.1;
    assert_eq!(results.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn stop_and_remove_reach_the_device() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let (_, created) = gateway
        .http(
            "POST",
            "/v1/deployments",
            Some(deploy_body(&[id], &module_bytes(100))),
        )
        .await;
    let deployment = created[0]["id"].as_u64().unwrap();
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();

    let (status, _) = gateway
        .http("POST", &format!("/v1/deployments/{deployment}/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    connected
        .run_until(|e| matches!(e, Seen::Stopped(_)))
        .await
        .unwrap();
    let (status, _) = gateway
        .http("DELETE", &format!("/v1/deployments/{deployment}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    connected
        .run_until(|e| matches!(e, Seen::Removed(_)))
        .await
        .unwrap();
    gateway
        .wait_for(&format!("/v1/deployments/{deployment}"), "removed", |d| {
            d["state"] == "removed"
        })
        .await;
}

#[tokio::test]
async fn a_gateway_restart_loses_no_device_and_no_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gateway = TestGateway::on_disk(&db).await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let module = module_bytes(3_000);
    let (status, _) = gateway
        .http("POST", "/v1/deployments", Some(deploy_body(&[id], &module)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    gateway.stop().await;

    let gateway = TestGateway::on_disk(&db).await;
    let (status, _) = gateway.http("GET", &device_uri(id), None).await;
    assert_eq!(status, StatusCode::OK);
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    drop(connected);
    assert_eq!(device.received.values().next().unwrap(), &module);
    gateway
        .wait_for("/v1/results", "the result", |r| {
            r.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
}

#[tokio::test]
async fn http_errors_are_typed_and_hide_internals() {
    let gateway = TestGateway::in_memory().await;
    let (status, json) = gateway.http("GET", "/v1/devices/not-an-id", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["code"], "bad_request");
    let (status, json) = gateway
        .http("GET", &device_uri(DeviceId([9; 16])), None)
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let body = serde_json::json!({ "public_key": "04abcd" });
    let (status, _) = gateway.http("POST", "/v1/preauthorized", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = deploy_body(&[DeviceId([9; 16])], &module_bytes(100));
    let (status, _) = gateway.http("POST", "/v1/deployments", Some(body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A module every device would refuse is refused here, with the reason.
    let body = deploy_body(&[DeviceId([9; 16])], b"\0asm");
    let (status, json) = gateway.http("POST", "/v1/deployments", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(json["code"], "invalid_module");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("not valid WebAssembly"),
        "{json}"
    );
    let mut body = deploy_body(&[DeviceId([9; 16])], &module_bytes(100));
    body["limits"]["entry"] = "start".into();
    let (status, json) = gateway.http("POST", "/v1/deployments", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("start"),
        "{json}"
    );
    let (status, _) = gateway.http("GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
}
