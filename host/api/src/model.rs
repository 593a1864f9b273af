//! The resources, shaped like Kubernetes custom resources: each has
//! `metadata`, a `spec` (what is wanted) and a `status` (what was seen).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of resource the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Kind {
    Device,
    Application,
    Gateway,
}

impl Kind {
    /// The name stored in the database and shown in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => "Device",
            Kind::Application => "Application",
            Kind::Gateway => "Gateway",
        }
    }
}

/// What every resource carries, as in Kubernetes' `ObjectMeta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectMeta {
    /// Unique per kind; DNS-label-like (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63).
    pub name: String,
    /// Assigned by the store at creation; never reused.
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch, assigned by the store.
    #[serde(default)]
    pub created_at: u64,
    /// Changes at every write; an update must carry the version it read.
    /// Opaque: compare it for equality only (a Kubernetes API server makes
    /// its own).
    #[serde(default)]
    pub resource_version: String,
    /// Bumped by the store when the spec changes (not the status, labels
    /// or finalizers); 1 at creation.
    #[serde(default)]
    pub generation: u64,
    /// What must happen before the object goes: deletion only marks it
    /// ([`deletion_timestamp`](Self::deletion_timestamp)) until the last
    /// finalizer is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// When deletion was asked for (milliseconds since the Unix epoch),
    /// set by the store while finalizers remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<u64>,
}

impl ObjectMeta {
    /// Whether deletion was asked for and cleanup is still under way.
    pub fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Whether `finalizer` is among the object's finalizers.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// The finalizer of every application: it stays until the controller has
/// removed the application from its devices.
pub const UNDEPLOY_FINALIZER: &str = "wasmbed.io/undeploy";

/// A resource of one kind.
pub trait Object: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    /// Whether the status is the default one, which a new object is
    /// created without (a Kubernetes API server ignores a status sent with
    /// a create; writing it after would be one more write and event).
    fn status_is_default(&self) -> bool;
}

macro_rules! object {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $spec:ty, $status:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            pub metadata: ObjectMeta,
            pub spec: $spec,
            #[serde(default)]
            pub status: $status,
        }

        impl Object for $name {
            const KIND: Kind = Kind::$kind;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn status_is_default(&self) -> bool {
                self.status == <$status>::default()
            }
        }
    };
}

object!(
    /// A device: a board that enrolls with a gateway.
    Device, Device, DeviceSpec, DeviceStatus
);
object!(
    /// A WebAssembly module and where it should run.
    Application, Application, ApplicationSpec, ApplicationStatus
);
object!(
    /// A gateway the controller deploys through.
    Gateway, Gateway, GatewaySpec, GatewayStatus
);

impl Device {
    /// The gateway the device is served by now: the one it is connected
    /// to ([`DeviceStatus::gateway`]), or `spec.gateway` until one reports it.
    pub fn current_gateway(&self) -> &str {
        self.status.gateway.as_deref().unwrap_or(&self.spec.gateway)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct DeviceSpec {
    /// Board name, e.g. `mps2-an385` or `wasmbed-sim`.
    pub board: String,
    /// Name of the [`Gateway`] resource the device connects to first.
    /// Behind a load balancer any gateway of the fleet serves it: where
    /// it is now is [`DeviceStatus::gateway`].
    pub gateway: String,
    /// The id the gateway gave the device at enrollment (32 hex digits),
    /// unknown until it enrolled.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Whether the device runs in an emulator.
    #[serde(default)]
    pub emulated: bool,
    /// Revoke the device: the controller has its gateway refuse its
    /// certificate and key from now on (at the TLS handshake and to
    /// enroll) and delete its records and deployments there; no
    /// application is placed on it. Cannot be undone: a device with a new
    /// key is a new device.
    #[serde(default)]
    pub revoked: bool,
}

/// Whether the gateway currently has a session with the device.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Unknown,
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct DeviceStatus {
    #[serde(default)]
    pub presence: Presence,
    /// The [`Gateway`] the device is connected to now, as the gateways
    /// report it; behind a load balancer it changes whenever the device
    /// reconnects elsewhere. The controller places the device's work there
    /// (at `spec.gateway` until a gateway reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Gateway time of the last heartbeat, milliseconds since the epoch.
    #[serde(default)]
    pub last_heartbeat: Option<u64>,
    /// The WebAssembly runtime the device reported to its gateway at its
    /// last session start, which tells its firmware; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<DeviceRuntime>,
    /// Applications deployed to the device, as the controller placed them.
    #[serde(default)]
    pub deployments: Vec<DeviceDeployment>,
    /// The gateway confirmed the revocation `spec.revoked` asked for.
    #[serde(default)]
    pub revoked: bool,
    /// Why the last change the controller tried for this device failed
    /// (a revocation waiting for its gateway, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A device's WebAssembly runtime, e.g. `{"kind": "wamr", "version": "2.4.3"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct DeviceRuntime {
    /// `wasmi` (the bare-metal Rust firmware and the simulator), `wamr`
    /// (the Zephyr firmware), `wasmtime`, or `unknown(N)` for a code the
    /// gateway does not know.
    #[schema(example = "wamr")]
    pub kind: String,
    /// The runtime's version as the device reported it.
    #[schema(example = "2.4.3")]
    pub version: String,
}

impl DeviceRuntime {
    /// Whether a gateway could have reported it: a device sends at most
    /// [`wasmbed_protocol::NAME_LEN`] bytes of version, and the gateway
    /// names kinds as short words and replaces control characters.
    pub fn is_plausible(&self) -> bool {
        let fits = |text: &str| {
            text.len() <= wasmbed_protocol::NAME_LEN && !text.chars().any(char::is_control)
        };
        fits(&self.kind) && fits(&self.version) && !self.kind.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct DeviceDeployment {
    pub application: String,
    pub phase: Phase,
}

/// Where a module is: its bytes live in the blob table under `sha256`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ModuleRef {
    /// SHA-256 of the module, hex.
    pub sha256: String,
    pub size: u32,
}

/// A WebAssembly value: `{"i32": 5}`, `{"f64": 1.5}`, ...
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WasmValue {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

/// What a module may use and how it is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct Limits {
    /// Instructions the module may execute per invocation (wasmi fuel).
    pub fuel: u64,
    /// Linear memory pages (64 KiB) the module may have.
    pub memory_pages: u16,
    /// Exported function to call.
    pub entry: String,
    #[serde(default)]
    pub args: Vec<WasmValue>,
}

/// Which devices an application runs on: those with all of `match_labels`
/// and, when `names` is not empty, one of `names`. An empty selector
/// selects no device. Other keys are refused: a misspelt key would
/// otherwise make an empty selector that silently selects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub names: Vec<String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.names.is_empty()
    }

    pub fn matches(&self, device: &ObjectMeta) -> bool {
        !self.is_empty()
            && (self.names.is_empty() || self.names.contains(&device.name))
            && self
                .match_labels
                .iter()
                .all(|(k, v)| device.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ApplicationSpec {
    pub module: ModuleRef,
    pub limits: Limits,
    pub selector: Selector,
}

impl ApplicationSpec {
    /// What a device runs, as 16 hex digits: a hash of the module and the
    /// limits (not of the selector, whose changes only move the
    /// application between devices).
    pub fn revision(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(self.module.sha256.as_bytes());
        hash.update(serde_json::to_vec(&self.limits).unwrap_or_default());
        hex::encode(&hash.finalize()[..8])
    }
}

/// A deployment's phase on one device.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema,
)]
pub enum Phase {
    /// Not yet on the gateway, or the gateway has not started sending it.
    #[default]
    Pending,
    Transferring,
    Installed,
    Running,
    /// The module ran and returned, or was stopped.
    Stopped,
    Failed,
    Removed,
}

impl From<wasmbed_gateway_api::DeploymentState> for Phase {
    /// The phase for a gateway deployment state.
    fn from(state: wasmbed_gateway_api::DeploymentState) -> Phase {
        use wasmbed_gateway_api::DeploymentState as State;
        match state {
            State::Pending => Phase::Pending,
            State::Transferring => Phase::Transferring,
            State::Installed => Phase::Installed,
            State::Running => Phase::Running,
            State::Stopped => Phase::Stopped,
            State::Removed => Phase::Removed,
            State::Failed => Phase::Failed,
        }
    }
}

/// An application on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct DeploymentStatus {
    /// The [`Device`] resource's name.
    pub device: String,
    pub phase: Phase,
    #[serde(default)]
    pub reason: Option<String>,
    /// The deployment id at the device's gateway, once created there.
    #[serde(default)]
    pub gateway_deployment_id: Option<u64>,
    /// The [`Gateway`] holding that deployment: where it is polled and
    /// removed from, even after the device moved to another gateway or
    /// was deleted.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The device id the deployment was made for, at that gateway.
    #[serde(default)]
    pub device_id: Option<String>,
    /// The application's [revision](ApplicationStatus::revision) deployed.
    #[serde(default)]
    pub revision: Option<String>,
    /// Execution results of this deployment: those its gateway holds, and
    /// those collected from gateways the device left.
    #[serde(default)]
    pub results: u64,
    /// Gateways the device left that still hold this deployment (the same
    /// fleet-wide id): the controller collects its results there, then has
    /// them forget it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_from: Vec<String>,
    /// Of [`results`](Self::results), those collected from gateways the
    /// device left.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub results_moved: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ApplicationStatus {
    /// The current module and limits, as a short hash: a deployment of
    /// another revision is replaced on its device.
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub deployments: Vec<DeploymentStatus>,
    /// Execution results over all devices.
    #[serde(default)]
    pub results: u64,
}

/// Most results kept per deployment (device) of an application.
pub const RESULTS_PER_DEPLOYMENT: usize = 10;

/// One execution of an application's module on a device, as its gateway
/// reported it. Kept apart from the application (the last
/// [`RESULTS_PER_DEPLOYMENT`] per device) and served by
/// `GET /api/v1/applications/{name}/results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResult {
    /// The [`Device`] resource's name.
    pub device: String,
    /// The deployment id at the device's gateway.
    pub gateway_deployment_id: u64,
    /// Which run of the deployment on the device.
    pub invocation: u32,
    /// Returned values, when the invocation returned.
    #[serde(default)]
    pub returned: Option<Vec<WasmValue>>,
    /// The trap, when it trapped (e.g. `OutOfFuel`).
    #[serde(default)]
    pub trap: Option<String>,
    pub fuel_used: u64,
    pub duration_us: u64,
    /// Lines the module logged.
    #[serde(default)]
    pub logs: Vec<String>,
    /// Whether the device dropped log lines.
    #[serde(default)]
    pub logs_truncated: bool,
    /// When the gateway received it, milliseconds since the epoch.
    pub received_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct GatewaySpec {
    /// Base URL of the gateway's HTTP/JSON interface, e.g. `http://10.0.0.2:8080`.
    pub http_endpoint: String,
    /// Where devices connect (`host:port`), for provisioning.
    pub device_endpoint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct GatewayStatus {
    /// When the gateway last answered, milliseconds since the epoch.
    #[serde(default)]
    pub last_seen: Option<u64>,
    #[serde(default)]
    pub reachable: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_runtime_is_taken_from_a_gateway_only_when_a_device_could_have_sent_it() {
        let runtime = |kind: &str, version: &str| DeviceRuntime {
            kind: kind.into(),
            version: version.into(),
        };
        assert!(runtime("wamr", "2.4.3").is_plausible());
        assert!(runtime("unknown(65535)", "").is_plausible());
        assert!(runtime("wasmi", &"9".repeat(32)).is_plausible());
        assert!(!runtime("wasmi", &"9".repeat(33)).is_plausible());
        assert!(!runtime("", "1").is_plausible());
        assert!(!runtime("wamr\n", "1").is_plausible());
        assert!(!runtime("wamr", "1\u{1b}[2J").is_plausible());
    }

    #[test]
    fn a_device_stored_before_runtimes_were_kept_still_loads() {
        let stored = r#"{"metadata": {"name": "d"},
                         "spec": {"board": "mps2-an385", "gateway": "gw"},
                         "status": {"presence": "connected", "last_heartbeat": 5}}"#;
        let device: Device = serde_json::from_str(stored).unwrap();
        assert_eq!(device.status.runtime, None);
        assert_eq!(device.status.last_heartbeat, Some(5));
        // And it is written back without the field, as before.
        let written = serde_json::to_value(&device).unwrap();
        assert!(written["status"].get("runtime").is_none(), "{written}");
    }

    #[test]
    fn selectors_match_labels_and_names() {
        let mut selector = Selector::default();
        assert!(!selector.matches(&meta("a", &[])), "empty selects nothing");
        selector.match_labels.insert("site".into(), "lab".into());
        assert!(selector.matches(&meta("a", &[("site", "lab"), ("x", "y")])));
        assert!(!selector.matches(&meta("a", &[("site", "home")])));
        selector.names.push("b".into());
        assert!(!selector.matches(&meta("a", &[("site", "lab")])));
        assert!(selector.matches(&meta("b", &[("site", "lab")])));
    }
}
