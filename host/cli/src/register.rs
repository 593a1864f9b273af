//! A gateway registering itself with the API server (`wasmbed gateway
//! --api URL`): it creates its Gateway resource, retrying with back-off
//! until the API server answers, so either may start first and either may
//! restart. The API server's controller then probes the gateway and keeps
//! its status.

use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use crate::client::{ApiClient, ApiError};

#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) api: String,
    pub(crate) token: Option<String>,
    pub(crate) name: String,
    pub(crate) http_endpoint: String,
    pub(crate) device_endpoint: String,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Registration {
    /// Registers, retrying until it succeeds or is refused for good.
    pub(crate) async fn run(self) {
        let client = match ApiClient::new(&self.api, self.token.clone()) {
            Ok(client) => client,
            Err(e) => {
                warn!(api = %self.api, error = %format!("{e:#}"), "cannot register with the API server");
                return;
            }
        };
        let body = json!({
            "metadata": {"name": self.name},
            "spec": {"http_endpoint": self.http_endpoint, "device_endpoint": self.device_endpoint},
        });
        let mut retry = FIRST_RETRY;
        loop {
            match client.post("/api/v1/gateways", &body).await {
                Ok(_) => {
                    info!(api = %self.api, name = %self.name, http = %self.http_endpoint, "registered with the API server");
                    return;
                }
                Err(e) => match e.downcast_ref::<ApiError>().map(|e| e.status) {
                    Some(409) => {
                        info!(api = %self.api, name = %self.name, "already registered with the API server");
                        return;
                    }
                    Some(status @ (400 | 401 | 403)) => {
                        warn!(api = %self.api, status, error = %format!("{e:#}"), "the API server refused the registration; not retrying (check --api-token and --name)");
                        return;
                    }
                    _ => {
                        warn!(api = %self.api, error = %format!("{e:#}"), retry_in = ?retry, "registering with the API server failed; retrying");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(LAST_RETRY);
                    }
                },
            }
        }
    }
}
