//! Resources and a fake gateway (a test double of [`GatewayClient`]) for
//! the controllers' tests, here and, with the `conformance` feature, in
//! the Kubernetes backend's scenarios.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use wasmbed_gateway_api::{
    DeployRequest, DeploymentState, DeploymentView, Desired, DeviceView, ResultView,
};

use super::gateway_client::{CallError, GatewayClient};
use crate::model::{
    Application, ApplicationSpec, ApplicationStatus, DeploymentStatus, Device, DeviceSpec,
    DeviceStatus, Gateway, GatewaySpec, GatewayStatus, Limits, ModuleRef, ObjectMeta, Phase,
    Selector,
};

pub const APP_UID: &str = "uid-app";

/// Device `name` at `gateway`, enrolled as `id`, labelled `site=lab`.
pub fn device(name: &str, gateway: &str, id: Option<&str>) -> Device {
    Device {
        metadata: ObjectMeta {
            name: name.to_owned(),
            labels: BTreeMap::from([("site".to_owned(), "lab".to_owned())]),
            ..ObjectMeta::default()
        },
        spec: DeviceSpec {
            board: "mps2-an385".to_owned(),
            gateway: gateway.to_owned(),
            device_id: id.map(str::to_owned),
            emulated: false,
            revoked: false,
        },
        status: DeviceStatus::default(),
    }
}

/// Gateway `name`, its HTTP interface at `https://NAME/`.
pub fn gateway(name: &str) -> Gateway {
    Gateway {
        metadata: ObjectMeta {
            name: name.to_owned(),
            ..ObjectMeta::default()
        },
        spec: GatewaySpec {
            http_endpoint: format!("https://{name}/"),
            device_endpoint: format!("{name}:40029"),
        },
        status: GatewayStatus::default(),
    }
}

/// An application selecting `site=lab`, running `module` (a SHA-256, hex).
pub fn application(module: &str, deployments: Vec<DeploymentStatus>) -> Application {
    Application {
        metadata: ObjectMeta {
            name: "app".to_owned(),
            uid: APP_UID.to_owned(),
            ..ObjectMeta::default()
        },
        spec: ApplicationSpec {
            module: ModuleRef {
                sha256: module.to_owned(),
                size: 8,
            },
            limits: Limits {
                fuel: 1000,
                memory_pages: 1,
                entry: "run".to_owned(),
                args: Vec::new(),
            },
            selector: Selector {
                match_labels: BTreeMap::from([("site".to_owned(), "lab".to_owned())]),
                names: Vec::new(),
            },
        },
        status: ApplicationStatus {
            revision: None,
            deployments,
            results: 0,
        },
    }
}

/// A status entry: `device` placed as deployment `id` at `gateway`.
pub fn placed(
    device: &str,
    gateway: &str,
    device_id: &str,
    revision: &str,
    id: u64,
) -> DeploymentStatus {
    DeploymentStatus {
        device: device.to_owned(),
        phase: Phase::Running,
        reason: None,
        gateway_deployment_id: Some(id),
        gateway: Some(gateway.to_owned()),
        device_id: Some(device_id.to_owned()),
        revision: Some(revision.to_owned()),
        results: 0,
        moved_from: Vec::new(),
        results_moved: 0,
    }
}

/// A gateway deployment as the gateway shows it.
pub fn view(id: u64, device: &str, application_id: u64) -> DeploymentView {
    DeploymentView {
        id,
        device: device.to_owned(),
        application_id,
        module_sha256: "ab".to_owned(),
        module_size: 8,
        desired: Desired::Running,
        state: DeploymentState::Running,
        reason: None,
        bytes_acked: 8,
        updated_at_ms: 1,
    }
}

/// Device `id` as its gateway shows it: connected, its last heartbeat at
/// `heartbeat_ms`.
pub fn connected(id: &str, heartbeat_ms: u64) -> DeviceView {
    DeviceView {
        id: id.to_owned(),
        public_key: "04".to_owned() + &"ab".repeat(64),
        board: "mps2-an385".to_owned(),
        firmware_version: "0.1.0".to_owned(),
        runtime: None,
        enrolled_at_ms: 1,
        last_seen_ms: Some(heartbeat_ms),
        presence: wasmbed_gateway_api::Presence::Connected,
        last_heartbeat_ms: Some(heartbeat_ms),
        uptime_ms: Some(heartbeat_ms),
        free_memory: Some(65_536),
        apps: Vec::new(),
    }
}

/// A gateway kept in memory: its deployments and results, the calls made
/// to it, and an error it answers every call with when set.
#[derive(Debug, Default)]
pub struct FakeGateway {
    /// What `GET /v1/devices` answers.
    pub devices: Mutex<Vec<DeviceView>>,
    pub deployments: Mutex<Vec<DeploymentView>>,
    pub results: Mutex<HashMap<u64, Vec<ResultView>>>,
    pub calls: Mutex<Vec<String>>,
    pub failure: Mutex<Option<CallError>>,
}

impl FakeGateway {
    pub fn with(deployments: Vec<DeploymentView>) -> Self {
        FakeGateway {
            deployments: Mutex::new(deployments),
            ..FakeGateway::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }

    fn answer(&self, call: String) -> Result<(), CallError> {
        self.calls.lock().expect("not poisoned").push(call);
        match self.failure.lock().expect("not poisoned").clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn find(&self, id: u64) -> Result<DeploymentView, CallError> {
        let deployments = self.deployments.lock().expect("not poisoned");
        deployments
            .iter()
            .find(|d| d.id == id)
            .cloned()
            .ok_or_else(|| CallError::Refused(404, "deployment not found".into()))
    }
}

impl GatewayClient for FakeGateway {
    async fn devices(&self, base: &str) -> Result<Vec<DeviceView>, CallError> {
        self.answer(format!("GET {base}/v1/devices"))?;
        Ok(self.devices.lock().expect("not poisoned").clone())
    }

    async fn deployments_of(
        &self,
        base: &str,
        device_id: &str,
    ) -> Result<Vec<DeploymentView>, CallError> {
        self.answer(format!("GET {base}/v1/deployments?device={device_id}"))?;
        let deployments = self.deployments.lock().expect("not poisoned");
        Ok(deployments
            .iter()
            .filter(|d| d.device == device_id)
            .cloned()
            .collect())
    }

    async fn deploy(
        &self,
        base: &str,
        request: &DeployRequest,
    ) -> Result<Vec<DeploymentView>, CallError> {
        self.answer(format!("POST {base}/v1/deployments"))?;
        let mut deployments = self.deployments.lock().expect("not poisoned");
        if let (Some(id), [device]) = (request.deployment_id, request.devices.as_slice()) {
            if let Some(held) = deployments.iter().find(|d| d.id == id) {
                if held.device != *device || held.application_id != request.application_id {
                    return Err(CallError::Refused(409, "deployment_id taken".into()));
                }
                return Ok(vec![held.clone()]);
            }
            let mut view = view(id, device, request.application_id);
            view.state = DeploymentState::Pending;
            deployments.push(view.clone());
            return Ok(vec![view]);
        }
        let mut created = Vec::new();
        for device in &request.devices {
            let id = deployments
                .iter()
                .map(|d| d.id)
                .filter(|id| !wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS.contains(id))
                .max()
                .unwrap_or(0)
                + 1;
            let mut view = view(id, device, request.application_id);
            view.state = DeploymentState::Pending;
            deployments.push(view.clone());
            created.push(view);
        }
        Ok(created)
    }

    async fn deployment(&self, base: &str, id: u64) -> Result<DeploymentView, CallError> {
        self.answer(format!("GET {base}/v1/deployments/{id}"))?;
        self.find(id)
    }

    async fn remove_deployment(&self, base: &str, id: u64) -> Result<(), CallError> {
        self.answer(format!("DELETE {base}/v1/deployments/{id}"))?;
        self.find(id)?;
        let mut deployments = self.deployments.lock().expect("not poisoned");
        for deployment in deployments.iter_mut().filter(|d| d.id == id) {
            deployment.desired = Desired::Removed;
        }
        Ok(())
    }

    async fn forget(&self, base: &str, id: u64, results: u32) -> Result<(), CallError> {
        self.answer(format!("POST {base}/v1/deployments/{id}/forget"))?;
        self.find(id)?;
        let held = self
            .results
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map_or(0, Vec::len);
        if held != results as usize {
            return Err(CallError::Refused(409, "results arrived".into()));
        }
        self.deployments
            .lock()
            .expect("not poisoned")
            .retain(|d| d.id != id);
        self.results.lock().expect("not poisoned").remove(&id);
        Ok(())
    }

    async fn results(
        &self,
        base: &str,
        deployment: u64,
        limit: u32,
    ) -> Result<Vec<ResultView>, CallError> {
        self.answer(format!(
            "GET {base}/v1/results?deployment={deployment}&limit={limit}"
        ))?;
        let results = self.results.lock().expect("not poisoned");
        Ok(results.get(&deployment).cloned().unwrap_or_default())
    }

    async fn revoke(&self, base: &str, device_id: &str) -> Result<(), CallError> {
        self.answer(format!("DELETE {base}/v1/devices/{device_id}"))
    }
}

/// Events kept in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordedEvents {
    pub events: Mutex<Vec<super::events::ObjectEvent>>,
}

impl RecordedEvents {
    /// `(reason, object name)` of each event so far, in order.
    pub fn reasons(&self) -> Vec<(&'static str, String)> {
        self.events
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|e| (e.reason, e.name.clone()))
            .collect()
    }
}

#[async_trait::async_trait]
impl super::events::EventRecorder for RecordedEvents {
    async fn record(&self, event: super::events::ObjectEvent) {
        self.events.lock().expect("not poisoned").push(event);
    }
}
