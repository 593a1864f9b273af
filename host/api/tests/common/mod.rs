//! An API server in-process: called through its router or over a socket.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wasmbed_gateway::store::Store as GatewayStore;
use wasmbed_gateway::{Gateway, GatewayConfig};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmbed_api::http::{AppState, Auth, app};
use wasmbed_api::store::{Role, Store};

/// The store the tests run on (see [`TestApi::in_memory`]).
pub fn test_store() -> Store {
    match std::env::var("WASMBED_TEST_STORE").as_deref() {
        Ok("kubernetes") => {
            let server = wasmbed_k8s::fake_api::FakeApiServer::new();
            let resources = std::sync::Arc::new(wasmbed_k8s::KubeStore::new(
                server.client("wasmbed"),
                "wasmbed",
            ));
            // Blobs, tokens and results as replicas share them in a
            // cluster: files in a directory (kept after the test, in /tmp).
            let dir = tempfile::Builder::new()
                .prefix("wasmbed-test-files-")
                .tempdir()
                .unwrap()
                .keep();
            let files = std::sync::Arc::new(wasmbed_api::store::DirStore::open(&dir).unwrap());
            Store::beside(resources, files)
        }
        Ok("sqlite") | Err(_) => Store::in_memory(),
        Ok(other) => panic!("WASMBED_TEST_STORE={other}: expected sqlite or kubernetes"),
    }
}

pub struct TestApi {
    pub state: AppState,
    pub admin: String,
    pub reader: String,
}

impl TestApi {
    pub async fn new(store: Store) -> TestApi {
        let (auth, admin) = Auth::bootstrap(&store).await.unwrap();
        let reader = auth.issue("reader", Role::ReadOnly).await.unwrap();
        TestApi {
            state: AppState::new(store, auth),
            admin: admin.unwrap(),
            reader,
        }
    }

    /// An API over a fresh store: SQLite in memory, or, with
    /// `WASMBED_TEST_STORE=kubernetes`, the Kubernetes store over a fake
    /// API server (blobs, tokens and results in a [`DirStore`], as
    /// replicas share them in a cluster).
    ///
    /// [`DirStore`]: wasmbed_api::store::DirStore
    pub async fn in_memory() -> TestApi {
        Self::new(test_store()).await
    }

    /// One request through the router; the status, content type and JSON.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let (status, headers, json) = self.call_with_headers(method, uri, token, body).await;
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, json)
    }

    /// `GET uri` with `token`, which must answer 200 with a JSON array;
    /// the array and the `X-Continue` token, if any.
    pub async fn page(&self, uri: &str, token: &str) -> (Vec<Value>, Option<String>) {
        let (status, headers, json) = self.call_with_headers("GET", uri, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}: {json:#}");
        let items = json.as_array().unwrap_or_else(|| panic!("{json}")).clone();
        let next = headers
            .get("x-continue")
            .map(|v| v.to_str().unwrap().to_owned());
        (items, next)
    }

    /// One request through the router; the status, headers and JSON.
    pub async fn call_with_headers(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    /// As admin; asserts the status.
    pub async fn admin(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> Value {
        let (status, _, json) = self
            .call(method, uri, Some(&self.admin.clone()), body)
            .await;
        assert_eq!(status, expect, "{method} {uri}: {json:#}");
        json
    }

    /// Reads `uri` and `PUT`s what `change` makes of it, as the admin,
    /// reading again while the controller's writes make it a conflict
    /// (409), as any client must; the answer of the `PUT` that succeeded.
    pub async fn replace_retrying(&self, uri: &str, change: impl Fn(&Value) -> Value) -> Value {
        for _ in 0..50 {
            let current = self.admin("GET", uri, None, StatusCode::OK).await;
            let (status, _, json) = self
                .call(
                    "PUT",
                    uri,
                    Some(&self.admin.clone()),
                    Some(change(&current)),
                )
                .await;
            match status {
                StatusCode::OK => return json,
                StatusCode::CONFLICT => continue,
                other => panic!("PUT {uri}: {other}: {json:#}"),
            }
        }
        panic!("PUT {uri}: a conflict 50 times in a row");
    }

    /// Serves the API on a loopback socket, as the API server does.
    pub async fn serve(&self) -> SocketAddr {
        self.serve_with(wasmbed_httpd::HttpServerConfig::default())
            .await
    }

    /// Serves the API on a loopback socket with these HTTP limits.
    pub async fn serve_with(&self, config: wasmbed_httpd::HttpServerConfig) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(self.state.clone());
        tokio::spawn(async move {
            wasmbed_httpd::serve(listener, router, None, config, std::future::pending())
                .await
                .unwrap()
        });
        addr
    }
}

pub fn device_body(name: &str, labels: Value, device_id: Option<String>) -> Value {
    json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "board": "wasmbed-sim", "gateway": "gw", "device_id": device_id, "emulated": true }
    })
}

pub fn app_body(name: &str, module: &[u8], selector: Value) -> Value {
    use base64::Engine;
    json!({
        "metadata": { "name": name },
        "spec": {
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "limits": { "fuel": 100000, "memory_pages": 1, "entry": "main", "args": [{ "i32": 21 }] },
            "selector": selector,
        }
    })
}

pub fn gateway_body(name: &str, http: &str, devices: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": { "http_endpoint": http, "device_endpoint": devices }
    })
}

/// A module that doubles its argument.
pub fn doubler() -> Vec<u8> {
    wat::parse_str(
        r#"(module (func (export "main") (param i32) (result i32)
            (i32.mul (local.get 0) (i32.const 2))))"#,
    )
    .unwrap()
}

pub fn installation() -> &'static wasmbed_pki::Installation {
    &wasmbed_pki::test_fixtures().installation
}

/// The API server's TLS client of gateways, from the test fixtures.
pub fn gateway_tls() -> std::sync::Arc<rustls::ClientConfig> {
    let fixtures = wasmbed_pki::test_fixtures();
    wasmbed_pki::control_client_config(fixtures.installation.gateway_ca(), &fixtures.api_client)
        .unwrap()
}

/// An HTTPS client of the test gateways, with the API server's certificate.
pub fn gateway_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls((*gateway_tls()).clone())
        .build()
        .unwrap()
}

/// A real gateway on loopback, pairing closed until a test opens it.
pub struct TestGateway {
    pub devices: SocketAddr,
    pub http: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn start_gateway() -> TestGateway {
    start_gateway_signing(installation(), None).await
}

/// A real gateway of `installation` on loopback that forwards enrollments
/// to `signer`, or signs them itself without one.
pub async fn start_gateway_signing(
    installation: &wasmbed_pki::Installation,
    signer: Option<std::sync::Arc<dyn wasmbed_gateway::signer::FleetSigner>>,
) -> TestGateway {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = GatewayConfig {
        chunk_size: 512,
        transfer_window: 2048,
        // The simulated fleet enrolls from one address, all at once.
        enroll_rate_per_source: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        enroll_rate_total: wasmbed_gateway::rate::RateLimit::UNLIMITED,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = 250;
    config.session.missed_heartbeats = 12;
    let config = config
        .with_control_ca(installation, &wasmbed_pki::test_fixtures().control_ca)
        .unwrap();
    let store = GatewayStore::in_memory().unwrap();
    let gateway = match signer {
        Some(signer) => Gateway::with_fleet_signer(config, installation, store, signer),
        None => Gateway::new(config, installation, store),
    }
    .unwrap();
    let devices = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let test = TestGateway {
        devices: devices.local_addr().unwrap(),
        http: http.local_addr().unwrap(),
        _stop: stop,
    };
    tokio::spawn(async move {
        gateway
            .serve(devices, http, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    test
}

impl TestGateway {
    /// The gateway's base URL, as registered with the API server.
    pub fn base(&self) -> String {
        format!("https://{}", self.http)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.http)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = gateway_client().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = gateway_client().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}
