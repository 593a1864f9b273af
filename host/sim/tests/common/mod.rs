//! The real gateway on loopback, called through its HTTP router, and
//! helpers to wait for what simulated devices do.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tower::ServiceExt;
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::Installation;
use wasmbed_protocol::DeviceId;
use wasmbed_sim::{FleetEvent, SimConfig};

pub const HEARTBEAT_MS: u32 = 250;

pub fn installation() -> &'static Installation {
    &wasmbed_pki::test_fixtures().installation
}

/// Short heartbeats and small chunks, so that tests are quick and modules
/// take several chunks.
pub fn gateway_config() -> GatewayConfig {
    let mut config = GatewayConfig {
        handshake_timeout: Duration::from_secs(5),
        chunk_size: 512,
        transfer_window: 2048,
        // The simulated fleet enrolls from one address, all at once.
        enroll_rate_per_source: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        enroll_rate_total: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = HEARTBEAT_MS;
    // Tolerant liveness: a busy test machine must not time devices out.
    config.session.missed_heartbeats = 12;
    config
}

/// Devices that reconnect quickly and report their events.
pub fn sim_config(gateway: SocketAddr) -> SimConfig {
    let mut config = SimConfig::new(gateway)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
    config.event_capacity = 4096;
    config
}

/// A gateway serving on loopback.
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Serves devices on `addr` (`None`: a free port) with `store`.
    pub async fn start(store: Store, addr: Option<SocketAddr>) -> TestGateway {
        Self::start_with(gateway_config(), store, addr).await
    }

    pub async fn start_with(
        config: GatewayConfig,
        store: Store,
        addr: Option<SocketAddr>,
    ) -> TestGateway {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let gateway = Gateway::new(config, installation(), store).unwrap();
        let devices = TcpListener::bind(addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = devices.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let server = gateway.clone();
        let task = tokio::spawn(async move {
            server
                .serve(devices, http, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestGateway {
            gateway,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn in_memory() -> TestGateway {
        Self::start(Store::in_memory().unwrap(), None).await
    }

    /// Stops serving: every device is told goodbye (restart).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub async fn http(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        // As the TLS layer hands it over for the API server's certificate.
        request
            .extensions_mut()
            .insert(wasmbed_httpd::PeerCertificates(std::sync::Arc::new(vec![
                wasmbed_pki::test_fixtures().api_client.cert.clone(),
            ])));
        let response = self.gateway.router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, uri: &str) -> Value {
        let (status, json) = self.http("GET", uri, None).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}: {json}");
        json
    }

    pub async fn open_pairing(&self) {
        let (status, _) = self
            .http("PUT", "/v1/pairing", Some(json!({ "open": true })))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Deploys `module` to `devices`; returns the deployment ids, in order.
    pub async fn deploy(&self, devices: &[DeviceId], module: &[u8], limits: Value) -> Vec<u64> {
        let body = json!({
            "application_id": 7,
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "devices": devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "limits": limits,
        });
        let (status, json) = self.http("POST", "/v1/deployments", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json.as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect()
    }

    /// Polls `GET uri` until `check` accepts it; panics after `within`.
    pub async fn wait_for(
        &self,
        uri: &str,
        what: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, json) = self.http("GET", uri, None).await;
            if status == StatusCode::OK && check(&json) {
                return json;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("waited {within:?} for {what}; last GET {uri}: {json:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the one result of `deployment` and returns it.
    pub async fn result_of(&self, deployment: u64) -> Value {
        let uri = format!("/v1/results?deployment={deployment}");
        let results = self
            .wait_for(&uri, "a result", Duration::from_secs(15), |r| {
                r.as_array().is_some_and(|r| !r.is_empty())
            })
            .await;
        results[0].clone()
    }
}

/// Polls `check` until it holds; panics after `within`.
pub async fn wait_until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            panic!("waited {within:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects events until `done` matches one; panics after `within`.
pub async fn events_until(
    events: &mut broadcast::Receiver<FleetEvent>,
    within: Duration,
    done: impl Fn(&FleetEvent) -> bool,
) -> Vec<FleetEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => {
                let last = done(&event);
                seen.push(event);
                if last {
                    return seen;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lost {n} events"),
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event channel closed"),
            Err(_) => panic!("waited {within:?}; saw {seen:#?}"),
        }
    }
}

/// The example of `docs/host-api.md`: logs a greeting, reports the time
/// and returns twice its argument. `padding` bytes of data make it take
/// several chunks.
pub fn greeter(padding: usize) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasmbed" "log" (func $log (param i32 i32)))
          (import "wasmbed" "clock_ms" (func $clock_ms (result i64)))
          (import "wasmbed" "report_i64" (func $report_i64 (param i64)))
          (memory (export "memory") 1)
          (data (i32.const 0) "hello from wasm")
          (data (i32.const 64) "{}")
          (func (export "main") (param $x i32) (result i32)
            (call $log (i32.const 0) (i32.const 15))
            (call $report_i64 (call $clock_ms))
            (i32.mul (local.get $x) (i32.const 2))))"#,
        "p".repeat(padding)
    ))
    .unwrap()
}

pub fn greeter_limits() -> Value {
    json!({ "fuel": 100000, "memory_pages": 1, "entry": "main", "args": [{ "i32": 21 }] })
}

/// Loops forever.
pub fn runaway() -> Vec<u8> {
    wat::parse_str(r#"(module (func (export "main") (loop $l br $l)))"#).unwrap()
}
