//! HTTP clients of the test: the API server's REST API with the admin
//! token, and the gateways' HTTPS interface with the API server's control
//! certificate (to read where each device is connected, as the gateways
//! themselves see it). Both block on the test's runtime.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Handle;

/// The API server's REST API as the admin.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) url: String,
    pub(crate) token: String,
    client: reqwest::Client,
    runtime: Handle,
}

impl Api {
    pub(crate) fn new(url: String, token: String, runtime: Handle) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        Api {
            url,
            token,
            client,
            runtime,
        }
    }

    /// `GET path`: the JSON body of a 200, or `None` (not answering, or
    /// another status).
    pub(crate) fn get(&self, path: &str) -> Option<Value> {
        let request = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        self.runtime.block_on(async {
            let response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.json().await.ok()
        })
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body)
    }

    /// `PUT path` with a JSON body: the status and the JSON answer.
    pub(crate) fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body)
    }

    fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body);
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }
}

/// The gateways' HTTPS interfaces, with the control certificate the API
/// server calls them with.
#[derive(Debug, Clone)]
pub(crate) struct GatewayClient {
    client: reqwest::Client,
    runtime: Handle,
}

impl GatewayClient {
    /// A client trusting `pki`'s gateway CA and presenting its
    /// `api-client.pem`.
    pub(crate) fn new(pki: &Path, runtime: Handle) -> GatewayClient {
        let gateway_ca =
            wasmbed_pki::load_certificate(&pki.join(wasmbed_pki::file_names::GATEWAY_CA))
                .expect("the gateway CA");
        let credential = wasmbed_pki::Credential::load(
            &pki.join(wasmbed_pki::control_file_names::API_CLIENT),
            &pki.join(wasmbed_pki::control_file_names::API_CLIENT_KEY),
        )
        .expect("the API server's control certificate");
        let tls = wasmbed_pki::control_client_config(&gateway_ca, &credential)
            .expect("a TLS client configuration");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .use_preconfigured_tls((*tls).clone())
            .build()
            .expect("an HTTPS client");
        GatewayClient { client, runtime }
    }

    /// The ids (`8-4-4-4-12` hex) of the devices the gateway whose HTTP
    /// interface is on `port` has a session with now; `None` when it does
    /// not answer.
    pub(crate) fn connected_devices(&self, port: u16) -> Option<Vec<String>> {
        let request = self
            .client
            .get(format!("https://127.0.0.1:{port}/v1/devices"));
        let devices: Value = self.runtime.block_on(async {
            let response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.json().await.ok()
        })?;
        Some(
            devices
                .as_array()?
                .iter()
                .filter(|d| d["presence"] == "connected")
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect(),
        )
    }
}
