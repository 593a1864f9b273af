//! What a misbehaving or hostile device can and cannot make the gateway
//! do: enrollment floods, pairing windows, revocation, result and log
//! floods, heartbeat floods, and timing on the monotonic clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use wasmbed_gateway::rate::RateLimit;
use wasmbed_gateway::store::Store;
use wasmbed_protocol::session::CloseReason;
use wasmbed_protocol::*;

fn device_uri(id: DeviceId) -> String {
    format!("/v1/devices/{id}")
}

fn metric(gateway: &TestGateway, line_start: &str) -> u64 {
    let text = gateway.gateway.metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Enrolls `n` fresh devices one after the other; returns the outcomes and
/// the seconds it took.
async fn enroll_many(
    gateway: &TestGateway,
    n: usize,
) -> (Vec<Result<DeviceId, EnrollRefusal>>, f64) {
    let started = std::time::Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..n {
        outcomes.push(TestDevice::new().enroll(gateway.addr).await);
    }
    (outcomes, started.elapsed().as_secs_f64())
}

/// Checks a burst-then-refuse pattern: every refusal is `rate-limited`,
/// and no more were accepted than the burst plus what the rate refilled.
fn assert_rate_limited(
    outcomes: &[Result<DeviceId, EnrollRefusal>],
    seconds: f64,
    limit: RateLimit,
) {
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.err()).collect();
    assert!(
        refused.iter().all(|r| *r == EnrollRefusal::RateLimited),
        "{outcomes:?}"
    );
    assert!(!refused.is_empty(), "nothing was refused: {outcomes:?}");
    let allowed = f64::from(limit.burst) + seconds.ceil() * f64::from(limit.per_second);
    assert!(
        accepted as f64 <= allowed,
        "{accepted} enrolled in {seconds:.1} s with {limit}"
    );
    assert!(outcomes[..limit.burst as usize].iter().all(Result::is_ok));
}

#[tokio::test]
async fn enrollment_from_one_source_is_rate_limited() {
    let limit = RateLimit {
        burst: 3,
        per_second: 1,
    };
    let mut config = fast_config();
    config.enroll_rate_per_source = limit;
    let gateway = TestGateway::start(config, Store::in_memory().unwrap()).await;
    gateway.open_pairing(true).await;
    let (outcomes, seconds) = enroll_many(&gateway, 8).await;
    assert_rate_limited(&outcomes, seconds, limit);
    let refused = outcomes.iter().filter(|o| o.is_err()).count() as u64;
    assert_eq!(
        metric(
            &gateway,
            r#"wasmbed_gateway_rate_limited_total{reason="enrollment"}"#
        ),
        refused
    );
}

/// A gateway whose enrollments are limited in all, not per source.
async fn limited_in_all(limit: RateLimit) -> TestGateway {
    let mut config = fast_config();
    config.enroll_rate_per_source = RateLimit::UNLIMITED;
    config.enroll_rate_total = limit;
    TestGateway::start(config, Store::in_memory().unwrap()).await
}

#[tokio::test]
async fn enrollment_from_all_sources_together_is_rate_limited() {
    let limit = RateLimit {
        burst: 2,
        per_second: 1,
    };
    let gateway = limited_in_all(limit).await;
    gateway.open_pairing(true).await;
    let (outcomes, seconds) = enroll_many(&gateway, 6).await;
    assert_rate_limited(&outcomes, seconds, limit);
}

#[tokio::test]
async fn a_pairing_window_closes_by_itself() {
    let gateway = TestGateway::in_memory().await;
    let (status, json) = gateway
        .http(
            "PUT",
            "/v1/pairing",
            Some(serde_json::json!({"open": true, "duration_s": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["open"], true);
    assert!(json["closes_at_ms"].is_u64(), "{json}");
    assert!(TestDevice::new().enroll(gateway.addr).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        TestDevice::new().enroll(gateway.addr).await,
        Err(EnrollRefusal::PairingClosed)
    );
    let (_, json) = gateway.http("GET", "/v1/pairing", None).await;
    assert_eq!(json, serde_json::json!({"open": false}));

    for bad in [0, 8 * 24 * 3600] {
        let (status, _) = gateway
            .http(
                "PUT",
                "/v1/pairing",
                Some(serde_json::json!({"open": true, "duration_s": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "duration_s {bad}");
    }
}

#[tokio::test]
async fn pairing_does_not_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let gateway = TestGateway::on_disk(&path).await;
    gateway.open_pairing(true).await;
    gateway.stop().await;

    let gateway = TestGateway::on_disk(&path).await;
    let (_, json) = gateway.http("GET", "/v1/pairing", None).await;
    assert_eq!(json["open"], false);
    assert_eq!(
        TestDevice::new().enroll(gateway.addr).await,
        Err(EnrollRefusal::PairingClosed)
    );
}

#[tokio::test]
async fn a_revoked_device_is_refused_at_the_handshake_and_loses_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let gateway = TestGateway::on_disk(&path).await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    installed(&gateway, &mut device).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();

    let (status, _) = gateway.http("DELETE", &device_uri(id), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The open session is closed...
    let end = connected
        .run_until(|e| matches!(e, Seen::Closed(_) | Seen::Eof))
        .await
        .unwrap();
    assert!(matches!(end, Seen::Closed(_) | Seen::Eof));
    drop(connected);
    // ...the record and deployments are gone...
    assert_eq!(
        gateway.http("GET", &device_uri(id), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, deployments) = gateway
        .http("GET", &format!("/v1/deployments?device={id}"), None)
        .await;
    assert_eq!(deployments, serde_json::json!([]));
    // Revoking it again says so; a device never enrolled is not found.
    assert_eq!(
        gateway.http("DELETE", &device_uri(id), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        gateway
            .http("DELETE", &device_uri(DeviceId([0x77; 16])), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // ...and its certificate is refused at the handshake.
    assert!(handshake_fails((*device.client_config()).clone(), gateway.addr).await);
    assert_eq!(
        metric(
            &gateway,
            r#"wasmbed_gateway_handshake_failures_total{reason="revoked"}"#
        ),
        1
    );
    // Its key may not enroll again, even with pairing open.
    let certificate = device.identity.take();
    assert_eq!(
        device.enroll(gateway.addr).await,
        Err(EnrollRefusal::KeyRevoked)
    );
    gateway.stop().await;

    // All of it survives a restart.
    let gateway = TestGateway::on_disk(&path).await;
    gateway.open_pairing(true).await;
    assert_eq!(
        device.enroll(gateway.addr).await,
        Err(EnrollRefusal::KeyRevoked)
    );
    device.identity = certificate;
    assert!(handshake_fails((*device.client_config()).clone(), gateway.addr).await);
    assert_eq!(metric(&gateway, "wasmbed_gateway_revoked_devices "), 1);
}

/// A device with one installed deployment, connected.
async fn installed(gateway: &TestGateway, device: &mut TestDevice) -> DeploymentId {
    let id = device.identity.as_ref().unwrap().0;
    let (status, created) = gateway
        .http(
            "POST",
            "/v1/deployments",
            Some(deploy_body(&[id], &module_bytes(600))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    DeploymentId(created[0]["id"].as_u64().unwrap())
}

fn result(deployment: DeploymentId, invocation: u32) -> ExecutionResult<'static> {
    ExecutionResult {
        deployment,
        invocation,
        outcome: Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(7)]).unwrap()),
        fuel_used: 1,
        duration_us: 1,
        logs: heapless::Vec::new(),
        logs_truncated: false,
    }
}

#[tokio::test]
async fn a_deployment_keeps_at_most_its_cap_of_results() {
    let mut config = fast_config();
    config.max_results_per_deployment = 10;
    // The cap is tested here, not the rate of results.
    config.session.result_burst = 100;
    let gateway = TestGateway::start(config, Store::in_memory().unwrap()).await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let deployment = installed(&gateway, &mut device).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    // The install sent invocation 1; 2..=30 follow.
    for invocation in 2..=30 {
        connected
            .session
            .send_execution_result(&result(deployment, invocation))
            .unwrap();
    }
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    let results = gateway
        .wait_for(
            &format!("/v1/results?deployment={}&limit=1000", deployment.0),
            "the newest ten results",
            |r| r.as_array().is_some_and(|a| a.len() == 10),
        )
        .await;
    let mut invocations: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["invocation"].as_u64().unwrap())
        .collect();
    invocations.sort_unstable();
    assert_eq!(invocations, (21..=30).collect::<Vec<u64>>());
    assert_eq!(
        metric(&gateway, "wasmbed_gateway_results_dropped_total "),
        20
    );
}

#[tokio::test]
async fn a_result_for_an_unknown_deployment_is_answered_unknown_deployment() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .session
        .send_execution_result(&result(DeploymentId(999), 1))
        .unwrap();
    let seen = connected
        .run_until(|e| matches!(e, Seen::PeerError(_)))
        .await
        .unwrap();
    assert_eq!(seen, Seen::PeerError(ErrorCode::UnknownDeployment));
    let (_, results) = gateway.http("GET", "/v1/results", None).await;
    assert_eq!(results, serde_json::json!([]));
}

#[tokio::test]
async fn a_state_reported_in_a_heartbeat_reaches_the_deployment() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let deployment = installed(&gateway, &mut device).await;
    let mut connected = device.session(gateway.addr).await;
    connected
        .run_until(|e| matches!(e, Seen::Installed(_)))
        .await
        .unwrap();
    let uri = format!("/v1/deployments/{}", deployment.0);
    gateway
        .wait_for(&uri, "installed", |d| d["state"] == "installed")
        .await;
    // The app trapped: the next heartbeat says so, without a new session.
    let mut apps = AppList::new();
    apps.push(AppStatus {
        deployment,
        application: ApplicationId(42),
        state: AppState::Failed,
    })
    .unwrap();
    let heartbeat = Heartbeat {
        uptime: Millis(5),
        free_memory: 1000,
        apps,
    };
    connected.session.send_heartbeat(&heartbeat).unwrap();
    connected
        .run_until(|e| *e == Seen::HeartbeatAcked)
        .await
        .unwrap();
    gateway
        .wait_for(&uri, "failed from the heartbeat", |d| {
            d["state"] == "failed"
        })
        .await;
}

#[tokio::test]
async fn a_deployment_that_fails_after_its_transfer_shows_the_bytes_sent() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let deployment = installed(&gateway, &mut device).await;
    let mut connected = device.session(gateway.addr).await;
    connected.fail_commit = Some(DeployFailure::InvalidModule);
    connected
        .run_until(|e| matches!(e, Seen::Failed(..)))
        .await
        .unwrap();
    let record = gateway
        .wait_for(
            &format!("/v1/deployments/{}", deployment.0),
            "failed",
            |d| d["state"] == "failed",
        )
        .await;
    assert_eq!(record["reason"], "InvalidModule");
    assert_eq!(record["bytes_acked"], 600, "{record}");
}

#[tokio::test]
async fn a_heartbeat_flood_is_refused_then_the_session_is_closed() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let mut connected = device.session(gateway.addr).await;
    let heartbeat = Heartbeat {
        uptime: Millis(5),
        free_memory: 1000,
        apps: AppList::new(),
    };
    for _ in 0..40 {
        connected.session.send_heartbeat(&heartbeat).unwrap();
    }
    let end = connected
        .run_until(|e| matches!(e, Seen::Closed(_) | Seen::Eof))
        .await;
    let refused = connected
        .events
        .iter()
        .filter(|e| **e == Seen::PeerError(ErrorCode::RateLimited))
        .count();
    let config = fast_config().session;
    // Told `max_rate_limited` times, then once more with the goodbye.
    assert_eq!(
        refused,
        config.max_rate_limited as usize + 1,
        "{:?}",
        connected.events
    );
    assert_eq!(
        end.unwrap(),
        Seen::Closed(CloseReason::PeerGoodbye(GoodbyeReason::ProtocolError))
    );
    assert_eq!(
        metric(
            &gateway,
            r#"wasmbed_gateway_rate_limited_total{reason="heartbeat"}"#
        ),
        u64::from(config.max_rate_limited)
    );
    assert_eq!(
        metric(
            &gateway,
            r#"wasmbed_gateway_sessions_closed_total{reason="protocol_violation"}"#
        ),
        1
    );
}

/// Counts the gateway's warning lines.
#[derive(Clone, Default)]
struct WarningCounter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarningCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= tracing::Level::WARN && meta.target().starts_with("wasmbed_gateway") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test]
async fn a_device_cannot_flood_the_log() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = WarningCounter::default();
    // nextest runs each test in a process of its own: this subscriber sees
    // every line the gateway logs.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(warnings.clone()))
        .unwrap();
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let mut connected = device.session(gateway.addr).await;
    const BAD: usize = 2_000;
    for _ in 0..BAD {
        let status = DeployStatus {
            deployment: DeploymentId(999),
            state: DeployState::Removed,
        };
        if connected.session.send_deploy_status(status).is_err() {
            connected.flush().await;
            connected.session.send_deploy_status(status).unwrap();
        }
    }
    // Every one is still answered.
    let mut answered = 0;
    while answered < BAD {
        connected
            .run_until(|e| *e == Seen::PeerError(ErrorCode::UnknownDeployment))
            .await
            .unwrap();
        answered += 1;
    }
    let logged = warnings.0.load(Ordering::Relaxed);
    let limit = fast_config().log_rate_per_source;
    assert!(
        logged <= limit.burst as usize + 30,
        "{logged} warning lines for {BAD} bad messages"
    );
    assert!(
        metric(&gateway, "wasmbed_gateway_log_lines_suppressed_total ") >= (BAD - logged) as u64
    );
}

#[tokio::test]
async fn session_timing_runs_on_the_monotonic_clock() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut device = enrolled_device(&gateway).await;
    let id = device.identity.as_ref().unwrap().0;
    let mut connected = device.session(gateway.addr).await;
    connected.heartbeats = false;
    tokio::time::pause();
    let wall = std::time::Instant::now();
    let paused = tokio::time::Instant::now();
    // With tokio's clock paused, the liveness timeout (six 300 ms
    // intervals) fires as soon as tokio's time passes it, whatever the
    // wall clock did: the gateway times sessions on tokio's clock.
    gateway
        .wait_for(&device_uri(id), "unreachable", |d| {
            d["presence"] == "unreachable"
        })
        .await;
    assert!(paused.elapsed() >= Duration::from_millis(1_800));
    assert!(
        wall.elapsed() < Duration::from_millis(1_500),
        "waited {:?} of wall time",
        wall.elapsed()
    );
}

#[tokio::test]
async fn deployment_ids_of_a_revoked_device_are_never_given_again() {
    let gateway = TestGateway::in_memory().await;
    gateway.open_pairing(true).await;
    let mut revoked = enrolled_device(&gateway).await;
    let first = installed(&gateway, &mut revoked).await;
    let revoked_id = revoked.identity.as_ref().unwrap().0;
    let (status, _) = gateway.http("DELETE", &device_uri(revoked_id), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The API server may still ask for the old deployment's removal: it
    // must not reach another device's deployment.
    let mut other = enrolled_device(&gateway).await;
    let second = installed(&gateway, &mut other).await;
    assert!(second.0 > first.0, "{second:?} after {first:?}");
    let (status, _) = gateway
        .http("DELETE", &format!("/v1/deployments/{}", first.0), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_dropped_early() {
    let mut config = fast_config();
    config.hello_timeout = Duration::from_millis(300);
    config.handshake_timeout = Duration::from_secs(30);
    let gateway = TestGateway::start(config, Store::in_memory().unwrap()).await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), {
        use tokio::io::AsyncReadExt as _;
        silent.read(&mut buf)
    })
    .await
    .expect("closed before the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        metric(
            &gateway,
            r#"wasmbed_gateway_handshake_failures_total{reason="no_hello"}"#
        ),
        1
    );
}

#[tokio::test]
async fn refused_enrollments_do_not_use_up_the_budget_of_all_sources() {
    let limit = RateLimit {
        burst: 2,
        per_second: 1,
    };
    let gateway = limited_in_all(limit).await;
    // Pairing closed: anyone with the claim certificate may try, and is
    // refused for that, not for the rate.
    for _ in 0..5 {
        assert_eq!(
            TestDevice::new().enroll(gateway.addr).await,
            Err(EnrollRefusal::PairingClosed)
        );
    }
    // The budget is whole when pairing opens.
    gateway.open_pairing(true).await;
    for _ in 0..2 {
        assert!(TestDevice::new().enroll(gateway.addr).await.is_ok());
    }
}
