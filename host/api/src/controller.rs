//! The controller: a level-triggered, idempotent reconcile loop, run every
//! `interval` and whenever the store changes.
//!
//! Each pass:
//! 1. asks every [`Gateway`] for its devices (which also tells whether it
//!    is reachable) and copies presence, heartbeats and the runtime each
//!    device reported into [`Device`] statuses;
//! 2. for each [`Application`], places it on every matching device that
//!    has no deployment at its gateway yet (`POST /v1/deployments`, unless
//!    `GET /v1/deployments?device=` shows one made before a crash, whose id
//!    was never recorded: that one is adopted), polls
//!    the state and result count of those it placed, and removes it, at
//!    the gateway holding it, from devices that no longer match, were
//!    deleted, or moved to another gateway; a deployment of an older
//!    revision (module and limits) is removed and the current one placed;
//! 3. for an application marked `deleting`, removes its gateway
//!    deployments and then the application;
//! 4. has the gateway of a device whose `spec.revoked` is set revoke it
//!    (`DELETE /v1/devices/{id}`); a revoked device gets no application.
//!
//! A gateway that cannot be reached is left alone for a while, doubling
//! the wait at each failure; the reason is written in the statuses.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::http::devices::normalize_device_id;
use crate::model::{
    Application, DeploymentStatus, Device, DeviceDeployment, DeviceRuntime, ExecutionResult,
    Gateway, Phase, Presence, RESULTS_PER_DEPLOYMENT, WasmValue, now_ms,
};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Longest time between two passes.
    pub interval: Duration,
    /// First wait after a gateway failed; doubled at each further failure.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Timeout of one request to a gateway.
    pub request_timeout: Duration,
    /// The TLS client of gateways' HTTP interfaces: trusts the gateway CA
    /// and presents the API server's control certificate
    /// ([`wasmbed_pki::control_client_config`]). Without it gateways refuse
    /// every call (401), and their statuses say so.
    pub gateway_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            interval: Duration::from_secs(2),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            gateway_tls: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// Why a call to a gateway failed.
#[derive(Debug)]
enum CallError {
    /// Not reached, or it failed (5xx): back off.
    Unreachable(String),
    /// It answered with a client error.
    Refused(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "gateway unreachable: {e}"),
            CallError::Refused(status, message) => {
                write!(f, "gateway refused ({status}): {message}")
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct GatewayDevice {
    id: String,
    presence: String,
    last_heartbeat_ms: Option<u64>,
    /// Absent before the device's first session (and from older gateways).
    #[serde(default)]
    runtime: Option<DeviceRuntime>,
}

#[derive(Debug, Deserialize)]
struct GatewayDeployment {
    id: u64,
    state: String,
    reason: Option<String>,
    #[serde(default)]
    application_id: Option<u64>,
    #[serde(default)]
    desired: Option<String>,
}

/// An execution result as the gateway's `GET /v1/results` shows it.
#[derive(Debug, Deserialize)]
struct GatewayResult {
    invocation: u32,
    #[serde(default)]
    returned: Option<Vec<WasmValue>>,
    #[serde(default)]
    trap: Option<String>,
    #[serde(default)]
    fuel_used: u64,
    #[serde(default)]
    duration_us: u64,
    #[serde(default)]
    logs: Vec<String>,
    #[serde(default)]
    logs_truncated: bool,
    #[serde(default)]
    received_at_ms: u64,
}

/// Most results asked of a gateway per deployment and pass (to count them).
const RESULTS_FETCHED: u32 = 1000;

/// Largest gateway answer read. The biggest legitimate one is a device
/// list or `RESULTS_FETCHED` results with their logs, a few MiB at most;
/// a broken or hostile gateway must not make the API server buffer more.
pub const MAX_GATEWAY_ANSWER: usize = 16 * 1024 * 1024;

/// The reconcile loop. See the module documentation.
#[derive(Debug)]
pub struct Controller {
    store: Store,
    changes: watch::Receiver<u64>,
    client: reqwest::Client,
    config: ControllerConfig,
    backoff: HashMap<String, Backoff>,
}

/// The gateway deployments' application id for one revision of an
/// application: a deployment found at a gateway is adopted only when it
/// carries the revision wanted.
pub fn gateway_application_id(uid: &str, revision: &str) -> u64 {
    let digest = Sha256::digest(format!("{uid}/{revision}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // 53 bits: exact in every JSON implementation.
    u64::from_be_bytes(bytes) >> 11
}

impl Controller {
    pub fn new(store: &Store, config: ControllerConfig) -> Controller {
        let mut client = reqwest::Client::builder().timeout(config.request_timeout);
        match &config.gateway_tls {
            Some(tls) => client = client.use_preconfigured_tls((**tls).clone()),
            None => warn!(
                "no client certificate for gateways: they will refuse the controller (start the API server with --pki)"
            ),
        }
        let client = client.build().unwrap_or_else(|e| {
            // Not expected (the TLS configuration is built already); without
            // it gateways refuse every call, and their statuses say so.
            error!(error = %e, "the HTTP client of gateways could not be built; gateways will refuse the controller");
            reqwest::Client::default()
        });
        Controller {
            // Its own writes must not wake it up again.
            store: store.quiet(),
            changes: store.subscribe(),
            client,
            config,
            backoff: HashMap::new(),
        }
    }

    /// Reconciles until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        info!(interval = ?self.config.interval, "controller running");
        loop {
            self.changes.borrow_and_update();
            if let Err(e) = self.reconcile().await {
                warn!(error = %e, "reconcile pass failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                _ = self.changes.changed() => {}
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    fn available(&self, gateway: &str) -> bool {
        self.backoff
            .get(gateway)
            .is_none_or(|b| Instant::now() >= b.until)
    }

    fn failed(&mut self, gateway: &str) {
        let entry = self.backoff.entry(gateway.to_owned()).or_insert(Backoff {
            failures: 0,
            until: Instant::now(),
        });
        let factor = 1u32 << entry.failures.min(16);
        let delay = self
            .config
            .backoff_min
            .saturating_mul(factor)
            .min(self.config.backoff_max);
        entry.failures = entry.failures.saturating_add(1);
        entry.until = Instant::now() + delay;
        debug!(gateway, ?delay, "backing off");
    }

    fn succeeded(&mut self, gateway: &str) {
        self.backoff.remove(gateway);
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(CallError::Unreachable(format!("status {status}")));
        }
        let mut body = read_capped(response).await?;
        if status == reqwest::StatusCode::NO_CONTENT {
            body = b"null".to_vec();
        }
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = body["message"].as_str().unwrap_or("").to_owned();
            return Err(CallError::Refused(status.as_u16(), message));
        }
        serde_json::from_slice(&body)
            .map_err(|_| CallError::Unreachable("answer does not decode".into()))
    }

    /// One pass over everything.
    pub async fn reconcile(&mut self) -> Result<(), StoreError> {
        let gateways: BTreeMap<String, Gateway> = self
            .store
            .list::<Gateway>()?
            .into_iter()
            .map(|g| (g.metadata.name.clone(), g))
            .collect();
        let mut seen_devices: HashMap<String, HashMap<String, GatewayDevice>> = HashMap::new();
        for (name, gateway) in &gateways {
            if !self.available(name) {
                continue;
            }
            let url = format!("{}/v1/devices", base(gateway));
            let result: Result<Vec<GatewayDevice>, CallError> =
                self.call(self.client.get(url)).await;
            let reason = match result {
                Ok(devices) => {
                    self.succeeded(name);
                    let by_id = devices
                        .into_iter()
                        .filter_map(|d| normalize_device_id(&d.id).map(|id| (id, d)))
                        .collect();
                    seen_devices.insert(name.clone(), by_id);
                    None
                }
                Err(e) => {
                    warn!(gateway = %name, error = %e, "gateway not reachable");
                    self.failed(name);
                    Some(e.to_string())
                }
            };
            self.record_gateway(gateway, reason)?;
        }

        let devices = self.store.list::<Device>()?;
        for device in &devices {
            self.record_presence(device, &seen_devices)?;
        }
        // A gateway is usable in this pass when it answered above.
        let usable: HashMap<String, String> = gateways
            .iter()
            .filter(|(name, _)| seen_devices.contains_key(*name))
            .map(|(name, g)| (name.clone(), base(g)))
            .collect();
        for device in devices
            .iter()
            .filter(|d| d.spec.revoked && !d.status.revoked)
        {
            self.revoke(device, &usable).await?;
        }

        let by_name: HashMap<&str, &Device> = devices
            .iter()
            .map(|d| (d.metadata.name.as_str(), d))
            .collect();
        let mut placements: BTreeMap<String, Vec<DeviceDeployment>> = BTreeMap::new();
        for application in self.store.list::<Application>()? {
            let status = self
                .reconcile_application(&application, &by_name, &usable)
                .await?;
            let revision = application.spec.revision();
            let current = status.iter().flatten().filter(|deployment| {
                by_name
                    .get(deployment.device.as_str())
                    .is_some_and(|device| placed_as_now(deployment, device, &revision))
            });
            for deployment in current {
                placements
                    .entry(deployment.device.clone())
                    .or_default()
                    .push(DeviceDeployment {
                        application: application.metadata.name.clone(),
                        phase: deployment.phase,
                    });
            }
        }
        for device in &devices {
            let wanted = placements.remove(&device.metadata.name).unwrap_or_default();
            if device.status.deployments != wanted {
                self.modify_ignoring_gone::<Device>(&device.metadata.name, |d| {
                    let change = d.status.deployments != wanted;
                    d.status.deployments = wanted.clone();
                    change
                })?;
            }
        }
        Ok(())
    }

    fn modify_ignoring_gone<T: crate::model::Object>(
        &self,
        name: &str,
        change: impl FnMut(&mut T) -> bool,
    ) -> Result<(), StoreError> {
        match self.store.modify(name, change) {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn record_gateway(&self, gateway: &Gateway, reason: Option<String>) -> Result<(), StoreError> {
        let now = now_ms();
        let reachable = reason.is_none();
        self.modify_ignoring_gone::<Gateway>(&gateway.metadata.name, |g| {
            let status = &mut g.status;
            let stale = status
                .last_seen
                .is_none_or(|t| now.saturating_sub(t) >= 5_000);
            let change =
                status.reachable != reachable || status.reason != reason || (reachable && stale);
            status.reachable = reachable;
            status.reason = reason.clone();
            if reachable {
                status.last_seen = Some(now);
            }
            change
        })
    }

    fn record_presence(
        &self,
        device: &Device,
        seen: &HashMap<String, HashMap<String, GatewayDevice>>,
    ) -> Result<(), StoreError> {
        let Some(at_gateway) = seen.get(&device.spec.gateway) else {
            return Ok(());
        };
        let view = device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id)
            .and_then(|id| at_gateway.get(&id));
        let presence = match view.map(|v| v.presence.as_str()) {
            Some("connected") => Presence::Connected,
            Some(_) => Presence::Disconnected,
            None => Presence::Unknown,
        };
        let heartbeat = view
            .and_then(|v| v.last_heartbeat_ms)
            .or(device.status.last_heartbeat);
        let runtime = match view.and_then(|v| v.runtime.as_ref()) {
            Some(runtime) if runtime.is_plausible() => Some(runtime.clone()),
            Some(runtime) => {
                warn!(
                    device = %device.metadata.name,
                    gateway = %device.spec.gateway,
                    kind_len = runtime.kind.len(),
                    version_len = runtime.version.len(),
                    "the gateway reported a runtime no device could have sent; ignored"
                );
                device.status.runtime.clone()
            }
            None => device.status.runtime.clone(),
        };
        let status = &device.status;
        if status.presence == presence
            && status.last_heartbeat == heartbeat
            && status.runtime == runtime
        {
            return Ok(());
        }
        self.modify_ignoring_gone::<Device>(&device.metadata.name, |d| {
            let change = d.status.presence != presence
                || d.status.last_heartbeat != heartbeat
                || d.status.runtime != runtime;
            d.status.presence = presence;
            d.status.last_heartbeat = heartbeat;
            d.status.runtime = runtime.clone();
            change
        })
    }

    /// Has the device's gateway revoke it, and records the outcome.
    async fn revoke(
        &mut self,
        device: &Device,
        usable: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let name = &device.metadata.name;
        let gateway = &device.spec.gateway;
        let outcome = match device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id)
        {
            // Revoked once it enrolls (the pass that sees its id).
            None => Err("not enrolled yet: revoked at its gateway once it enrolls".to_owned()),
            Some(id) => match usable.get(gateway) {
                None => Err(format!("revocation waits for gateway {gateway}")),
                Some(url) => {
                    let request = self.client.delete(format!("{url}/v1/devices/{id}"));
                    match self.call::<serde_json::Value>(request).await {
                        // Also when revoked before (an answer was lost).
                        Ok(_) => {
                            info!(device = %name, %gateway, id, "device revoked at its gateway");
                            Ok(())
                        }
                        Err(CallError::Refused(404, _)) => Err(format!(
                            "gateway {gateway} does not know device {id}: check spec.device_id \
                             and spec.gateway"
                        )),
                        Err(e) => {
                            if matches!(e, CallError::Unreachable(_)) {
                                self.failed(gateway);
                            }
                            Err(e.to_string())
                        }
                    }
                }
            },
        };
        let (revoked, reason) = match outcome {
            Ok(()) => (true, None),
            Err(reason) => (false, Some(reason)),
        };
        self.modify_ignoring_gone::<Device>(name, |d| {
            let change = d.status.revoked != revoked || d.status.reason != reason;
            d.status.revoked = revoked;
            d.status.reason = reason.clone();
            change
        })
    }

    /// Returns the application's deployments after this pass, `None` when
    /// the application is gone.
    async fn reconcile_application(
        &mut self,
        application: &Application,
        by_name: &HashMap<&str, &Device>,
        usable: &HashMap<String, String>,
    ) -> Result<Option<Vec<DeploymentStatus>>, StoreError> {
        let name = application.metadata.name.clone();
        let revision = application.spec.revision();
        let selector = &application.spec.selector;
        let mut module_b64: Option<String> = None;
        let mut next = Vec::new();
        let mut created = Vec::new();
        // The latest results of the deployments polled in this pass, by
        // device and gateway deployment.
        let mut fetched: HashMap<(String, u64), Vec<ExecutionResult>> = HashMap::new();

        // Deployments are removed at the gateway holding them when their
        // device no longer matches, was deleted, moved to another gateway
        // or enrolled again, when they run an older revision, and when the
        // application is deleting.
        for entry in &application.status.deployments {
            let device = by_name.get(entry.device.as_str()).copied();
            let keep = !application.metadata.deleting
                && device.is_some_and(|d| {
                    !d.spec.revoked
                        && selector.matches(&d.metadata)
                        && placed_as_now(entry, d, &revision)
                });
            if keep {
                continue;
            }
            let Some(id) = entry.gateway_deployment_id else {
                continue; // nothing placed
            };
            // Entries written before the gateway was recorded were placed
            // at the device's gateway.
            let Some(gateway) = entry
                .gateway
                .clone()
                .or_else(|| device.map(|d| d.spec.gateway.clone()))
            else {
                warn!(application = %name, device = %entry.device, deployment = id, "deployment of a deleted device left at an unrecorded gateway");
                continue;
            };
            let Some(url) = usable.get(&gateway) else {
                if self.store.get::<Gateway>(&gateway)?.is_none() {
                    continue; // the gateway is gone with its deployments
                }
                let mut entry = entry.clone();
                entry.reason = Some(format!("removal waits for gateway {gateway}"));
                next.push(entry);
                continue;
            };
            let request = self.client.delete(format!("{url}/v1/deployments/{id}"));
            match self.call::<serde_json::Value>(request).await {
                Ok(_) | Err(CallError::Refused(404, _)) => {
                    info!(application = %name, device = %entry.device, %gateway, deployment = id, "removed from device");
                }
                Err(e) => {
                    if matches!(e, CallError::Unreachable(_)) {
                        self.failed(&gateway);
                    }
                    let mut entry = entry.clone();
                    entry.reason = Some(e.to_string());
                    next.push(entry);
                }
            }
        }

        if !application.metadata.deleting {
            let mut matching: Vec<&Device> = by_name
                .values()
                .copied()
                .filter(|d| !d.spec.revoked && selector.matches(&d.metadata))
                .collect();
            matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            for device in matching {
                let existing = application.status.deployments.iter().find(|e| {
                    e.device == device.metadata.name && placed_as_now(e, device, &revision)
                });
                let mut entry = existing.cloned().unwrap_or(DeploymentStatus {
                    device: device.metadata.name.clone(),
                    phase: Phase::Pending,
                    reason: None,
                    gateway_deployment_id: None,
                    gateway: None,
                    device_id: None,
                    revision: None,
                    results: 0,
                });
                let device_id = device
                    .spec
                    .device_id
                    .as_deref()
                    .and_then(normalize_device_id);
                let url = usable.get(&device.spec.gateway);
                match (device_id, url, entry.gateway_deployment_id) {
                    (None, _, None) => {
                        entry.reason = Some("the device has no device_id yet".into());
                    }
                    (_, None, _) => {
                        entry.reason = Some(format!(
                            "gateway {} is unknown or unreachable",
                            device.spec.gateway
                        ));
                    }
                    (_, Some(url), Some(id)) => {
                        entry.gateway = Some(device.spec.gateway.clone());
                        if let Some(results) =
                            self.poll(url, id, &mut entry, &device.spec.gateway).await
                        {
                            fetched.insert((entry.device.clone(), id), results);
                        }
                    }
                    (Some(device_id), Some(url), None) => {
                        // A deployment made before a crash, whose id was
                        // never recorded, is adopted, not made again.
                        let app_id = gateway_application_id(&application.metadata.uid, &revision);
                        let lookup = self
                            .client
                            .get(format!("{url}/v1/deployments?device={device_id}"));
                        match self.call::<Vec<GatewayDeployment>>(lookup).await {
                            Ok(views) => {
                                let found = views.into_iter().find(|v| {
                                    v.application_id == Some(app_id)
                                        && v.desired.as_deref() != Some("removed")
                                });
                                if let Some(view) = found {
                                    info!(application = %name, device = %entry.device, deployment = view.id, "adopted");
                                    entry.gateway_deployment_id = Some(view.id);
                                    entry.gateway = Some(device.spec.gateway.clone());
                                    entry.device_id = Some(device_id.clone());
                                    entry.revision = Some(revision.clone());
                                    entry.phase = Phase::from_gateway(&view.state);
                                    entry.reason = view.reason;
                                    created.push((url.clone(), view.id));
                                    next.push(entry);
                                    continue;
                                }
                            }
                            Err(e) => {
                                if matches!(e, CallError::Unreachable(_)) {
                                    self.failed(&device.spec.gateway);
                                }
                                entry.reason = Some(e.to_string());
                                next.push(entry);
                                continue;
                            }
                        }
                        if module_b64.is_none() {
                            let Some(bytes) =
                                self.store.backend().blob(&application.spec.module.sha256)?
                            else {
                                entry.phase = Phase::Failed;
                                entry.reason = Some("the module's bytes are missing".into());
                                next.push(entry);
                                continue;
                            };
                            module_b64 =
                                Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                        }
                        let body = serde_json::json!({
                            "application_id": gateway_application_id(&application.metadata.uid, &revision),
                            "module": module_b64,
                            "devices": [device_id],
                            "limits": application.spec.limits,
                        });
                        let request = self
                            .client
                            .post(format!("{url}/v1/deployments"))
                            .json(&body);
                        match self.call::<Vec<GatewayDeployment>>(request).await {
                            Ok(views) if !views.is_empty() => {
                                let view = &views[0];
                                info!(application = %name, device = %entry.device, deployment = view.id, "deployed");
                                entry.gateway_deployment_id = Some(view.id);
                                entry.gateway = Some(device.spec.gateway.clone());
                                entry.device_id = Some(device_id.clone());
                                entry.revision = Some(revision.clone());
                                entry.phase = Phase::from_gateway(&view.state);
                                entry.reason = view.reason.clone();
                                created.push((url.clone(), view.id));
                            }
                            Ok(_) => entry.reason = Some("gateway created no deployment".into()),
                            Err(e) => {
                                if matches!(e, CallError::Unreachable(_)) {
                                    self.failed(&device.spec.gateway);
                                }
                                entry.reason = Some(e.to_string());
                            }
                        }
                    }
                }
                next.push(entry);
            }
        }

        // Results first: whoever sees the new counts finds them.
        self.record_results(&application.metadata.uid, &next, fetched)?;
        let results = next.iter().map(|e| e.results).sum();
        let finished = application.metadata.deleting && next.is_empty();
        let uid = &application.metadata.uid;
        let outcome = self.store.modify::<Application>(&name, |a| {
            // Deleted and created again under the same name meanwhile: this
            // pass's placements belong to the old one, not to it.
            if &a.metadata.uid != uid {
                return false;
            }
            let change = a.status.deployments != next
                || a.status.results != results
                || a.status.revision.as_ref() != Some(&revision);
            a.status.deployments = next.clone();
            a.status.results = results;
            a.status.revision = Some(revision.clone());
            change
        });
        let outcome = match outcome {
            Ok(current) if &current.metadata.uid != uid => Err(StoreError::NotFound {
                kind: <Application as crate::model::Object>::KIND.as_str(),
                name: name.clone(),
            }),
            other => other,
        };
        match outcome {
            Ok(current) => {
                if finished || (current.metadata.deleting && current.status.deployments.is_empty())
                {
                    match self
                        .store
                        .delete::<Application>(&name, Some(current.metadata.resource_version))
                    {
                        Ok(()) | Err(StoreError::NotFound { .. }) => {
                            info!(application = %name, "application deleted");
                            self.store
                                .backend()
                                .delete_results(&application.metadata.uid)?;
                            return Ok(None);
                        }
                        // Changed meanwhile: the next pass finishes.
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some(current.status.deployments))
            }
            Err(StoreError::NotFound { .. }) => {
                self.store
                    .backend()
                    .delete_results(&application.metadata.uid)?;
                // Deleted while we deployed: take back what we placed.
                for (url, id) in created {
                    let request = self.client.delete(format!("{url}/v1/deployments/{id}"));
                    if let Err(e) = self.call::<serde_json::Value>(request).await {
                        warn!(deployment = id, error = %e, "could not remove the deployment of a deleted application");
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Copies a gateway deployment's state and result count into `entry`;
    /// returns its latest results, newest first (`None` when they could
    /// not be fetched).
    async fn poll(
        &mut self,
        url: &str,
        id: u64,
        entry: &mut DeploymentStatus,
        gateway: &str,
    ) -> Option<Vec<ExecutionResult>> {
        let request = self.client.get(format!("{url}/v1/deployments/{id}"));
        match self.call::<GatewayDeployment>(request).await {
            Ok(view) => {
                entry.phase = Phase::from_gateway(&view.state);
                entry.reason = view.reason;
            }
            Err(CallError::Refused(404, _)) => {
                // The gateway lost it (new database): place it again.
                entry.gateway_deployment_id = None;
                entry.phase = Phase::Pending;
                entry.reason = Some("the gateway no longer knows the deployment".into());
                return None;
            }
            Err(e) => {
                if matches!(e, CallError::Unreachable(_)) {
                    self.failed(gateway);
                }
                entry.reason = Some(e.to_string());
                return None;
            }
        }
        let request = self.client.get(format!(
            "{url}/v1/results?deployment={id}&limit={RESULTS_FETCHED}"
        ));
        let results = self.call::<Vec<GatewayResult>>(request).await.ok()?;
        entry.results = u64::try_from(results.len()).unwrap_or(u64::MAX);
        // The gateway lists them newest first. A run that trapped (or was
        // cut by a device reset) is why a deployment stopped or failed:
        // say so where people look, unless the gateway gave a reason.
        if entry.reason.is_none()
            && let Some(trap) = results.first().and_then(|r| r.trap.as_deref())
        {
            entry.reason = Some(format!("the last run trapped: {trap}"));
        }
        Some(
            results
                .into_iter()
                .take(RESULTS_PER_DEPLOYMENT)
                .map(|r| ExecutionResult {
                    device: entry.device.clone(),
                    gateway_deployment_id: id,
                    invocation: r.invocation,
                    returned: r.returned,
                    trap: r.trap,
                    fuel_used: r.fuel_used,
                    duration_us: r.duration_us,
                    logs: r.logs,
                    logs_truncated: r.logs_truncated,
                    received_at: r.received_at_ms,
                })
                .collect(),
        )
    }

    /// Stores the latest results of an application's deployments: those
    /// fetched in this pass, and the kept ones of deployments not polled
    /// (their gateway is unreachable); those of devices it left are dropped.
    fn record_results(
        &self,
        uid: &str,
        deployments: &[DeploymentStatus],
        mut fetched: HashMap<(String, u64), Vec<ExecutionResult>>,
    ) -> Result<(), StoreError> {
        let kept = self.store.results(uid)?;
        let mut results = Vec::new();
        for deployment in deployments {
            let latest = deployment
                .gateway_deployment_id
                .and_then(|id| fetched.remove(&(deployment.device.clone(), id)));
            match latest {
                Some(latest) => results.extend(latest),
                None => results.extend(
                    kept.iter()
                        .filter(|r| {
                            r.device == deployment.device
                                && Some(r.gateway_deployment_id) == deployment.gateway_deployment_id
                        })
                        .cloned(),
                ),
            }
        }
        results.sort_by(|a, b| {
            b.received_at
                .cmp(&a.received_at)
                .then_with(|| b.invocation.cmp(&a.invocation))
                .then_with(|| a.device.cmp(&b.device))
        });
        if results != kept {
            self.store.put_results(uid, &results)?;
        }
        Ok(())
    }
}

/// Whether `entry` is the device's placement as the device and the
/// application are now: not placed yet, or placed at the device's current
/// gateway under its current device id, with the current revision. One
/// placed before the device moved or enrolled again, or before the module
/// or limits changed, is stale.
fn placed_as_now(entry: &DeploymentStatus, device: &Device, revision: &str) -> bool {
    if entry.gateway_deployment_id.is_none() {
        return true;
    }
    let same_revision = entry.revision.as_deref().is_none_or(|r| r == revision);
    let same_gateway = entry
        .gateway
        .as_deref()
        .is_none_or(|gateway| gateway == device.spec.gateway);
    let current_id = device
        .spec
        .device_id
        .as_deref()
        .and_then(normalize_device_id);
    let same_id = entry
        .device_id
        .as_deref()
        .is_none_or(|id| current_id.as_deref() == Some(id));
    same_revision && same_gateway && same_id
}

/// A gateway answer's body, refused once it exceeds [`MAX_GATEWAY_ANSWER`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let too_large = || CallError::Unreachable(format!("answer over {MAX_GATEWAY_ANSWER} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > MAX_GATEWAY_ANSWER as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallError::Unreachable(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_GATEWAY_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn base(gateway: &Gateway) -> String {
    gateway.spec.http_endpoint.trim_end_matches('/').to_owned()
}

/// A reqwest error's text without the URL (kept out of statuses).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() {
        "answer does not decode".into()
    } else {
        "request failed".into()
    }
}
