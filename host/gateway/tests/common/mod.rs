//! A gateway on loopback and test devices that speak to it over real TLS.
//!
//! The test device drives the protocol crate's `DeviceSession` directly and
//! answers deployments like a device would (reassemble, verify SHA-256,
//! install, report a result) without running WASM: the real agent is
//! tested in `firmware/agent` and end to end in `host/sim`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower::ServiceExt;
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::Installation;
use wasmbed_protocol::session::{CloseReason, DeviceConfig, DeviceEvent, DeviceSession};
use wasmbed_protocol::*;

pub fn installation() -> &'static Installation {
    &wasmbed_pki::test_fixtures().installation
}

/// An HTTPS client of gateways: trusts the gateway CA and presents
/// `certificate` (the API server's control certificate, say), or none.
pub fn https_client(certificate: Option<&wasmbed_pki::Credential>) -> reqwest::Client {
    let gateway_ca = installation().gateway_ca();
    let tls = match certificate {
        Some(credential) => wasmbed_pki::control_client_config(gateway_ca, credential).unwrap(),
        None => wasmbed_pki::anonymous_client_config(gateway_ca).unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap()
}

/// A gateway serving on loopback until dropped: devices on `addr`, its
/// HTTP interface over mutual TLS on `http_addr`.
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn fast_config() -> GatewayConfig {
    let mut config = GatewayConfig {
        handshake_timeout: Duration::from_millis(500),
        chunk_size: 512,
        transfer_window: 2048,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = 300;
    config.session.missed_heartbeats = 6; // generous: CI runs many tests at once on 2 cores
    config
}

impl TestGateway {
    pub async fn start(config: GatewayConfig, store: Store) -> TestGateway {
        Self::start_signing(config, store, None).await
    }

    /// A gateway that forwards enrollments to `signer`, or signs them
    /// itself without one.
    pub async fn start_signing(
        config: GatewayConfig,
        store: Store,
        signer: Option<Arc<dyn wasmbed_gateway::signer::FleetSigner>>,
    ) -> TestGateway {
        // `RUST_LOG=debug cargo test ...` shows the gateway's log.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let config = config
            .with_control_ca(installation(), &wasmbed_pki::test_fixtures().control_ca)
            .unwrap();
        let gateway = match signer {
            Some(signer) => Gateway::with_fleet_signer(config, installation(), store, signer),
            None => Gateway::new(config, installation(), store),
        }
        .unwrap();
        let devices = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = devices.local_addr().unwrap();
        let http_addr = http.local_addr().unwrap();
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
            http_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn in_memory() -> TestGateway {
        Self::start(fast_config(), Store::in_memory().unwrap()).await
    }

    pub async fn on_disk(path: &Path) -> TestGateway {
        Self::start(fast_config(), Store::open(path).unwrap()).await
    }

    /// Stops serving and waits until every connection task has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Calls the HTTP interface without a socket.
    pub async fn http(
        &self,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        // As the TLS layer hands it over for the API server's certificate.
        request
            .extensions_mut()
            .insert(wasmbed_httpd::PeerCertificates(Arc::new(vec![
                wasmbed_pki::test_fixtures().api_client.cert.clone(),
            ])));
        let response = self.gateway.router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    pub async fn open_pairing(&self, open: bool) {
        let (status, _) = self
            .http(
                "PUT",
                "/v1/pairing",
                Some(serde_json::json!({ "open": open })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Polls `GET uri` until `check` accepts the JSON, or panics after 10 s.
    pub async fn wait_for(
        &self,
        uri: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..200 {
            let (status, json) = self.http("GET", uri, None).await;
            if status == StatusCode::OK && check(&json) {
                return json;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, json) = self.http("GET", uri, None).await;
        panic!("timed out waiting for {what}; last {uri}: {json:#}");
    }
}

/// A simulated device with a P-256 key and, once enrolled, a certificate.
pub struct TestDevice {
    pub key: SigningKey,
    pub identity: Option<(DeviceId, Vec<u8>)>,
    /// Module bytes received per deployment (kept across reconnects, like flash).
    pub received: std::collections::HashMap<DeploymentId, Vec<u8>>,
    pub installed: Vec<DeploymentId>,
    /// Install attempts, to check "exactly once".
    pub installs: usize,
    /// What it reports in its `SessionStart`.
    pub capabilities: Capabilities,
    /// A key it asks to enroll instead of its own (while proving with its
    /// own): a forged request.
    pub claimed_key: Option<[u8; PUBLIC_KEY_LEN]>,
}

impl TestDevice {
    pub fn new() -> TestDevice {
        TestDevice {
            key: SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
            identity: None,
            received: Default::default(),
            installed: Vec::new(),
            installs: 0,
            capabilities: samples::capabilities(),
            claimed_key: None,
        }
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.key.verifying_key().to_encoded_point(false);
        point.as_bytes().try_into().unwrap()
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        match &self.identity {
            None => wasmbed_pki::client_config_claim(installation()).unwrap(),
            Some((_, cert)) => {
                let scalar: [u8; 32] = self.key.to_bytes().into();
                let key: PrivateKeyDer<'static> =
                    wasmbed_pki::p256_scalar_to_pkcs8(&scalar).unwrap();
                wasmbed_pki::client_config_device(
                    installation().gateway_ca(),
                    CertificateDer::from(cert.clone()),
                    key,
                )
                .unwrap()
            }
        }
    }

    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        connect_with(self.client_config(), addr).await
    }

    /// Enrolls; returns the refusal if the gateway refused.
    pub async fn enroll(&mut self, addr: SocketAddr) -> Result<DeviceId, EnrollRefusal> {
        let mut tls = self.connect(addr).await.unwrap();
        let mut session: DeviceSession = DeviceSession::enroll(DeviceConfig::default(), now());
        let mut buf = vec![0u8; 4096];
        loop {
            flush(&mut tls, &mut session).await;
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "gateway closed during enrollment");
            let mut data = &buf[..n];
            while !data.is_empty() {
                let taken = session.handle_input(data, now());
                data = &data[taken..];
                while let Some(event) = session.poll_event() {
                    match event {
                        DeviceEvent::EnrollChallenge { nonce } => {
                            let key = self.claimed_key.unwrap_or_else(|| self.public_key());
                            let payload = proof_payload(&nonce, &key);
                            let signature: Signature = self.key.sign(&payload);
                            let request = EnrollRequest {
                                public_key: key,
                                proof: signature.to_bytes().into(),
                                device: DeviceInfo {
                                    board: Name::try_from("test-board").unwrap(),
                                    firmware_version: Name::try_from("0.0.1").unwrap(),
                                },
                                capabilities: samples::capabilities(),
                            };
                            session.send_enroll_request(&request).unwrap();
                        }
                        DeviceEvent::Enrolled {
                            device_id,
                            certificate,
                        } => {
                            self.identity = Some((device_id, certificate.to_vec()));
                            return Ok(device_id);
                        }
                        DeviceEvent::EnrollRefused { reason } => return Err(reason),
                        other => panic!("unexpected during enrollment: {other:?}"),
                    }
                }
            }
        }
    }

    /// Opens a session with the issued certificate.
    pub async fn session(&mut self, addr: SocketAddr) -> Connected<'_> {
        let tls = self.connect(addr).await.unwrap();
        let hello = SessionStart {
            agent_version: Name::try_from("test").unwrap(),
            capabilities: self.capabilities.clone(),
            apps: self
                .installed
                .iter()
                .map(|d| AppStatus {
                    deployment: *d,
                    application: ApplicationId(0),
                    state: AppState::Installed,
                })
                .take(MAX_APPS)
                .collect(),
        };
        let session = DeviceSession::resume(DeviceConfig::default(), &hello, now());
        let mut connected = Connected {
            device: self,
            tls,
            session,
            events: Vec::new(),
            stop_after_bytes: None,
            heartbeats: true,
            fail_commit: None,
            pending: Default::default(),
        };
        connected
            .run_until(|e| matches!(e, Seen::Established))
            .await
            .unwrap();
        connected
    }
}

pub async fn connect_with(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// True when the gateway refuses the connection (TLS 1.3 reports a refused
/// client certificate only on the first read).
pub async fn handshake_fails(config: rustls::ClientConfig, addr: SocketAddr) -> bool {
    let Ok(mut tls) = connect_with(Arc::new(config), addr).await else {
        return true;
    };
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

pub fn now() -> Millis {
    Millis(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    )
}

async fn flush(tls: &mut TlsStream<TcpStream>, session: &mut DeviceSession) {
    let pending = session.poll_transmit().to_vec();
    if !pending.is_empty() {
        tls.write_all(&pending).await.unwrap();
        tls.flush().await.unwrap();
        session.advance_transmit(pending.len());
    }
}

/// What a test device saw, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Established,
    HeartbeatAcked,
    Installed(DeploymentId),
    Failed(DeploymentId, DeployFailure),
    Stopped(DeploymentId),
    Removed(DeploymentId),
    PeerError(ErrorCode),
    Closed(CloseReason),
    /// The connection ended without a goodbye.
    Eof,
}

/// An established session of a test device.
pub struct Connected<'a> {
    pub device: &'a mut TestDevice,
    pub tls: TlsStream<TcpStream>,
    pub session: DeviceSession,
    pub events: Vec<Seen>,
    /// Drop the connection once this many module bytes have been received.
    pub stop_after_bytes: Option<usize>,
    /// Answer heartbeat deadlines (off to simulate a hung device).
    pub heartbeats: bool,
    /// Report this failure for a committed module instead of installing it.
    pub fail_commit: Option<DeployFailure>,
    /// Events seen after the one a `run_until` call returned.
    pending: std::collections::VecDeque<Seen>,
}

#[derive(Debug)]
pub struct Cut;

impl Connected<'_> {
    /// Writes what the session has to send.
    pub async fn flush(&mut self) {
        flush(&mut self.tls, &mut self.session).await;
    }

    /// Drives the connection until `done` matches an event; `Err(Cut)` when
    /// `stop_after_bytes` was reached and the connection dropped.
    pub async fn run_until(&mut self, done: impl Fn(&Seen) -> bool) -> Result<Seen, Cut> {
        let mut buf = vec![0u8; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Some(event) = self.pending.pop_front() {
            self.events.push(event.clone());
            if done(&event) {
                return Ok(event);
            }
        }
        loop {
            flush(&mut self.tls, &mut self.session).await;
            let timer = self
                .session
                .poll_timeout()
                .map(|t| Duration::from_millis(t.0.saturating_sub(now().0)))
                .unwrap_or(Duration::from_secs(3600));
            let read = tokio::select! {
                read = self.tls.read(&mut buf) => Some(read),
                _ = tokio::time::sleep(timer) => None,
                _ = tokio::time::sleep_until(deadline) => panic!("test device waited 20 s; saw {:?}", self.events),
            };
            let mut seen = Vec::new();
            match read {
                None => {
                    if self.heartbeats {
                        self.session.handle_timeout(now());
                    }
                }
                Some(Ok(0)) | Some(Err(_)) => seen.push(Seen::Eof),
                Some(Ok(n)) => {
                    let mut data = &buf[..n];
                    while !data.is_empty() {
                        let taken = self.session.handle_input(data, now());
                        data = &data[taken..];
                        self.drain(&mut seen)?;
                    }
                }
            }
            self.drain(&mut seen)?;
            let mut seen = seen.into_iter();
            while let Some(event) = seen.next() {
                self.events.push(event.clone());
                if done(&event) {
                    self.pending.extend(seen);
                    flush(&mut self.tls, &mut self.session).await;
                    return Ok(event);
                }
                if event == Seen::Eof || matches!(event, Seen::Closed(_)) {
                    panic!(
                        "connection ended before the expected event; saw {:?}",
                        self.events
                    );
                }
            }
        }
    }

    fn drain(&mut self, seen: &mut Vec<Seen>) -> Result<(), Cut> {
        while let Some(event) = self.session.poll_event() {
            match event {
                DeviceEvent::Established(_) => seen.push(Seen::Established),
                DeviceEvent::HeartbeatDue => {
                    let heartbeat = Heartbeat {
                        uptime: Millis(1),
                        free_memory: 1000,
                        apps: AppList::new(),
                    };
                    self.session.send_heartbeat(&heartbeat).unwrap();
                }
                DeviceEvent::HeartbeatAcked(_) => seen.push(Seen::HeartbeatAcked),
                DeviceEvent::DeployStart(start) => {
                    let id = start.deployment;
                    let state = if self.device.installed.contains(&id) {
                        DeployState::Installed
                    } else {
                        let held = self.device.received.get(&id).map_or(0, Vec::len);
                        DeployState::Accepted {
                            resume_offset: u32::try_from(held).unwrap(),
                        }
                    };
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state,
                        })
                        .unwrap();
                }
                DeviceEvent::DeployChunk(chunk) => {
                    let module = self.device.received.entry(chunk.deployment).or_default();
                    assert_eq!(chunk.offset as usize, module.len(), "chunk out of order");
                    module.extend_from_slice(chunk.data);
                    let held = u32::try_from(module.len()).unwrap();
                    let id = chunk.deployment;
                    if self
                        .stop_after_bytes
                        .is_some_and(|limit| held as usize >= limit)
                    {
                        return Err(Cut);
                    }
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state: DeployState::Progress { bytes_held: held },
                        })
                        .unwrap();
                }
                DeviceEvent::DeployCommit(id) if self.fail_commit.is_some() => {
                    let reason = self.fail_commit.unwrap();
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state: DeployState::Failed { reason },
                        })
                        .unwrap();
                    seen.push(Seen::Failed(id, reason));
                }
                DeviceEvent::DeployCommit(id) => {
                    let module = self.device.received.get(&id).cloned().unwrap_or_default();
                    let _ = Sha256::digest(&module);
                    self.device.installs += 1;
                    self.device.installed.push(id);
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state: DeployState::Installed,
                        })
                        .unwrap();
                    let result = ExecutionResult {
                        deployment: id,
                        invocation: 1,
                        outcome: Outcome::Returned(
                            heapless::Vec::from_slice(&[Value::I32(
                                i32::try_from(module.len()).unwrap(),
                            )])
                            .unwrap(),
                        ),
                        fuel_used: 10,
                        duration_us: 5,
                        logs: heapless::Vec::new(),
                        logs_truncated: false,
                    };
                    self.session.send_execution_result(&result).unwrap();
                    seen.push(Seen::Installed(id));
                }
                DeviceEvent::Stop(id) => {
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state: DeployState::Stopped,
                        })
                        .unwrap();
                    seen.push(Seen::Stopped(id));
                }
                DeviceEvent::Remove(id) => {
                    self.device.installed.retain(|d| *d != id);
                    self.session
                        .send_deploy_status(DeployStatus {
                            deployment: id,
                            state: DeployState::Removed,
                        })
                        .unwrap();
                    seen.push(Seen::Removed(id));
                }
                DeviceEvent::PeerError(error) => seen.push(Seen::PeerError(error.code)),
                DeviceEvent::Closed(reason) => seen.push(Seen::Closed(reason)),
                other => panic!("unexpected event {other:?}"),
            }
        }
        Ok(())
    }
}

/// Enrolls a new device with pairing open.
pub async fn enrolled_device(gateway: &TestGateway) -> TestDevice {
    let mut device = TestDevice::new();
    device.enroll(gateway.addr).await.unwrap();
    device
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A valid module of exactly `len` bytes (at least 38) that exports
/// `run: (i32) -> ()`, padded with a custom section (which devices ignore)
/// so that transfers of any size can be tested.
pub fn module_bytes(len: usize) -> Vec<u8> {
    // Type (i32) -> (), one function of it, exported as "run", empty body.
    let code: &[u8] = b"\0asm\x01\0\0\0\
        \x01\x05\x01\x60\x01\x7f\x00\
        \x03\x02\x01\x00\
        \x07\x07\x01\x03run\x00\x00\
        \x0a\x04\x01\x02\x00\x0b";
    let uleb = |mut n: usize| {
        let mut out = Vec::new();
        loop {
            let byte = u8::try_from(n & 0x7f).unwrap();
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    };
    let name = b"\x03pad";
    // Section id, its size (LEB128), the name, the padding: find the
    // padding that makes the whole exactly `len`.
    let room = len
        .checked_sub(code.len() + 1 + name.len())
        .expect("module_bytes needs at least 38 bytes");
    let mut padding = room.saturating_sub(1);
    while padding > 0 && uleb(name.len() + padding).len() + padding > room {
        padding -= 1;
    }
    let mut module = code.to_vec();
    module.push(0);
    module.extend(uleb(name.len() + padding));
    module.extend_from_slice(name);
    module.extend((0..padding).map(|i| u8::try_from(i % 253).unwrap()));
    assert_eq!(module.len(), len, "no padding makes {len} bytes");
    module
}

pub fn deploy_body(devices: &[DeviceId], module: &[u8]) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "application_id": 42,
        "module": base64::engine::general_purpose::STANDARD.encode(module),
        "devices": devices.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "limits": { "fuel": 1000000, "memory_pages": 1, "entry": "run", "args": [{"i32": 1}] }
    })
}
