//! Enrollment signed in one place: gateways that forward enrollments to
//! the fleet's signer. The signer here is a test double of
//! [`FleetSigner`] beside the real one ([`ApiSigner`], the API server; see
//! host/api/tests/enrollment.rs for the two together).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use wasmbed_gateway::signer::{ApiSigner, FleetSigner, SignFuture, SignRequest, Signed};
use wasmbed_gateway::store::Store;
use wasmbed_gateway_api::EnrollmentOutcome;
use wasmbed_protocol::*;

/// One signer for the whole fleet, in memory: one id per key, signed with
/// the test installation's device CA; pairing open or closed; answers
/// after `delay`.
#[derive(Debug)]
struct MemorySigner {
    ids: Mutex<HashMap<[u8; PUBLIC_KEY_LEN], DeviceId>>,
    pairing_open: AtomicBool,
    delay: Duration,
    calls: AtomicUsize,
}

impl MemorySigner {
    fn new(pairing_open: bool, delay: Duration) -> Arc<MemorySigner> {
        Arc::new(MemorySigner {
            ids: Mutex::new(HashMap::new()),
            pairing_open: AtomicBool::new(pairing_open),
            delay,
            calls: AtomicUsize::new(0),
        })
    }

    fn decide(&self, request: &SignRequest) -> Result<Signed, EnrollRefusal> {
        let mut ids = self.ids.lock().unwrap();
        let (id, outcome) = match ids.get(&request.public_key) {
            Some(id) => (*id, EnrollmentOutcome::Reissued),
            None if !self.pairing_open.load(Ordering::SeqCst) => {
                return Err(EnrollRefusal::PairingClosed);
            }
            None => {
                let id = DeviceId(rand::random());
                ids.insert(request.public_key, id);
                (id, EnrollmentOutcome::Accepted)
            }
        };
        let issuer = installation().device_issuer().unwrap();
        let certificate = issuer.issue(id.0, &request.public_key).unwrap().to_vec();
        Ok(Signed {
            device_id: id,
            certificate,
            outcome,
        })
    }
}

/// Shared by the gateways it signs for.
#[derive(Debug, Clone)]
struct Shared(Arc<MemorySigner>);

impl FleetSigner for Shared {
    fn sign(&self, request: SignRequest) -> SignFuture {
        let signer = self.0.clone();
        Box::pin(async move {
            signer.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(signer.delay).await;
            signer.decide(&request)
        })
    }
}

async fn gateway_signed_by(signer: &Arc<MemorySigner>) -> TestGateway {
    TestGateway::start_signing(
        fast_config(),
        Store::in_memory().unwrap(),
        Some(Arc::new(Shared(signer.clone()))),
    )
    .await
}

#[tokio::test]
async fn a_device_re_enrolling_through_another_gateway_keeps_its_id() {
    let signer = MemorySigner::new(true, Duration::ZERO);
    let first = gateway_signed_by(&signer).await;
    let second = gateway_signed_by(&signer).await;
    let mut device = TestDevice::new();
    let id = device.enroll(first.addr).await.unwrap();
    // Its answer was lost (power cut): it enrolls again, and the load
    // balancer sends it to the other gateway.
    device.identity = None;
    let again = device.enroll(second.addr).await.unwrap();
    assert_eq!(again, id, "the same device id through either gateway");
    assert_eq!(signer.calls.load(Ordering::SeqCst), 2);

    // Each gateway recorded it, with its board, as one it enrolled.
    for gateway in [&first, &second] {
        let (status, json) = gateway
            .http("GET", &format!("/v1/devices/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["board"], "test-board");
        assert_eq!(json["public_key"], hex::encode(device.public_key()));
    }
    // The certificate the second gateway handed over opens a session.
    let mut connected = device.session(second.addr).await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    let metrics = second.gateway.metrics().render();
    assert!(
        metrics.contains(r#"wasmbed_gateway_enrollments_total{reason="reissued"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_fleet_signer_decides_pairing_not_the_gateway() {
    let signer = MemorySigner::new(false, Duration::ZERO);
    let gateway = gateway_signed_by(&signer).await;
    // Pairing here is refused: it would have no effect.
    for (method, uri, body) in [
        ("PUT", "/v1/pairing", serde_json::json!({"open": true})),
        (
            "POST",
            "/v1/preauthorized",
            serde_json::json!({"public_key": hex::encode(TestDevice::new().public_key())}),
        ),
    ] {
        let (status, json) = gateway.http(method, uri, Some(body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{json}");
        assert_eq!(json["code"], "fleet_wide");
    }
    let mut device = TestDevice::new();
    assert_eq!(
        device.enroll(gateway.addr).await,
        Err(EnrollRefusal::PairingClosed)
    );
    let (_, devices) = gateway.http("GET", "/v1/devices", None).await;
    assert_eq!(devices, serde_json::json!([]), "nothing recorded");
    signer.pairing_open.store(true, Ordering::SeqCst);
    assert!(device.enroll(gateway.addr).await.is_ok());
}

#[tokio::test]
async fn a_bad_proof_never_reaches_the_signer() {
    let signer = MemorySigner::new(true, Duration::ZERO);
    let gateway = gateway_signed_by(&signer).await;
    // It asks for another device's key, proving with its own.
    let mut forger = TestDevice::new();
    forger.claimed_key = Some(TestDevice::new().public_key());
    assert_eq!(
        forger.enroll(gateway.addr).await,
        Err(EnrollRefusal::BadProof)
    );
    assert_eq!(signer.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn sessions_go_on_while_an_enrollment_waits_for_the_signer() {
    // One thread: a connection task that blocked on the signer would stall
    // every other session.
    let signer = MemorySigner::new(true, Duration::from_secs(2));
    let gateway = gateway_signed_by(&signer).await;
    let mut enrolled = TestDevice::new();
    enrolled.enroll(gateway.addr).await.unwrap();

    let addr = gateway.addr;
    let waiting = tokio::spawn(async move { TestDevice::new().enroll(addr).await });
    while signer.calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = tokio::time::Instant::now();
    let mut connected = enrolled.session(gateway.addr).await;
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a heartbeat was acknowledged while the other enrollment waited ({:?})",
        started.elapsed()
    );
    assert!(!waiting.is_finished(), "the signer has not answered yet");
    drop(connected);
    assert!(waiting.await.unwrap().is_ok());
}

#[tokio::test]
async fn an_unreachable_api_server_makes_the_device_retry_later() {
    // A port nobody listens on.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let signer = ApiSigner::new(&api, "token".into(), None, Duration::from_secs(2)).unwrap();
    let gateway = TestGateway::start_signing(
        fast_config(),
        Store::in_memory().unwrap(),
        Some(Arc::new(signer)),
    )
    .await;
    let mut device = TestDevice::new();
    assert_eq!(
        device.enroll(gateway.addr).await,
        Err(EnrollRefusal::Internal)
    );
    // Still serving: the next attempt is answered the same way.
    assert_eq!(
        TestDevice::new().enroll(gateway.addr).await,
        Err(EnrollRefusal::Internal)
    );
    let metrics = gateway.gateway.metrics().render();
    assert!(
        metrics.contains(r#"wasmbed_gateway_enrollments_total{reason="internal"} 2"#),
        "{metrics}"
    );
}
