//! A gateway registering itself with the API server (`wasmbed gateway
//! --api URL`): it creates its Gateway resource, retrying with back-off
//! until the API server answers, so either may start first and either may
//! restart. A gateway already registered under its name with other
//! endpoints (it came back on other ports) has them updated. The API
//! server's controller then probes the gateway and keeps its status.
//!
//! The token it needs is a gateway token bound to its name (`wasmbed token
//! create --role gateway --gateway NAME`): `POST /api/v1/gateways` with
//! that name, `GET` and `PUT /api/v1/gateways/NAME` are all it may do.

use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use crate::client::{ApiClient, ApiError, segment};

#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) api: String,
    pub(crate) token: Option<String>,
    /// A CA to trust for an https:// API server.
    pub(crate) api_ca: Option<std::path::PathBuf>,
    pub(crate) name: String,
    pub(crate) http_endpoint: String,
    pub(crate) device_endpoint: String,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Registration {
    /// Registers, retrying until it succeeds or is refused for good.
    pub(crate) async fn run(self) {
        let client = match ApiClient::new(&self.api, self.token.clone(), self.api_ca.as_deref()) {
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
                    Some(409) => match self.update_endpoints(&client).await {
                        Ok(()) => return,
                        Err(e) if refused_for_good(&e) => {
                            warn!(api = %self.api, error = %format!("{e:#}"), "the API server refused to update the registration; not retrying (--api-token must be a gateway token for --name, or an admin token)");
                            return;
                        }
                        Err(e) => {
                            warn!(api = %self.api, error = %format!("{e:#}"), retry_in = ?retry, "updating the registration failed; retrying");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(LAST_RETRY);
                        }
                    },
                    Some(status @ (400 | 401 | 403)) => {
                        warn!(api = %self.api, status, error = %format!("{e:#}"), "the API server refused the registration; not retrying (--api-token must be a gateway token for --name, or an admin token; --name must be a valid name)");
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

    /// The gateway is registered already: its endpoints are made ours
    /// (a `PUT` at the version read; a concurrent change is retried).
    async fn update_endpoints(&self, client: &ApiClient) -> anyhow::Result<()> {
        let path = format!("/api/v1/gateways/{}", segment(&self.name));
        let current = client.get(&path).await?;
        let spec = &current["spec"];
        if spec["http_endpoint"] == self.http_endpoint.as_str()
            && spec["device_endpoint"] == self.device_endpoint.as_str()
        {
            info!(api = %self.api, name = %self.name, "already registered with the API server");
            return Ok(());
        }
        let body = json!({
            "metadata": {
                "labels": current["metadata"]["labels"],
                "resource_version": current["metadata"]["resource_version"],
            },
            "spec": {"http_endpoint": self.http_endpoint, "device_endpoint": self.device_endpoint},
        });
        client.put(&path, &body).await?;
        info!(
            api = %self.api, name = %self.name,
            http = %self.http_endpoint, devices = %self.device_endpoint,
            was = %spec["http_endpoint"],
            "registration updated with new endpoints"
        );
        Ok(())
    }
}

/// A refusal that retrying cannot change: a bad request or a bad token.
fn refused_for_good(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ApiError>().map(|e| e.status),
        Some(400 | 401 | 403)
    )
}
