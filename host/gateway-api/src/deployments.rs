//! `POST /v1/deployments` and the deployments it answers with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::results::ValueJson;

/// What a module may consume and how it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct LimitsJson {
    /// Fuel (roughly, instructions) per invocation.
    pub fuel: u64,
    /// Largest linear memory, in 64 KiB pages.
    pub memory_pages: u16,
    /// The exported function to call (1 to 32 bytes).
    #[schema(min_length = 1, max_length = 32)]
    pub entry: String,
    /// Its arguments (at most 8).
    #[serde(default)]
    #[schema(max_items = 8)]
    pub args: Vec<ValueJson>,
}

/// `POST /v1/deployments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeployRequest {
    /// The caller's id of what is deployed (the API server derives it from
    /// the application and its revision).
    pub application_id: u64,
    /// The module, base64 (standard alphabet), at most 1 MiB decoded.
    pub module: String,
    /// The ids of the devices to deploy it to (at least one).
    #[schema(min_items = 1)]
    pub devices: Vec<String>,
    /// What the module may consume and how it starts.
    pub limits: LimitsJson,
    /// The deployment's fleet-wide id, chosen by the API server so that it
    /// keeps its id at every gateway its device moves to (a device runs a
    /// deployment id once): within [`FLEET_DEPLOYMENT_IDS`], with exactly
    /// one device. A deployment of that id for that device and application
    /// is answered as it stands (200); one for another is a conflict (409).
    /// Without it the gateway numbers the deployments itself, below that
    /// range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        minimum = 4_503_599_627_370_496_u64,
        maximum = 9_007_199_254_740_991_u64
    )]
    pub deployment_id: Option<u64>,
}

/// The ids a caller may give deployments ([`DeployRequest::deployment_id`]):
/// 2^52 to 2^53 - 1, exact in every JSON implementation, and above every
/// id a gateway gives by itself.
pub const FLEET_DEPLOYMENT_IDS: std::ops::RangeInclusive<u64> = (1 << 52)..=((1 << 53) - 1);

/// `POST /v1/deployments/{id}/forget`: the deployment moved with its device
/// to another gateway, and its results here were collected.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ForgetRequest {
    /// How many results of the deployment the caller collected from this
    /// gateway. If the gateway holds another number (one arrived since),
    /// or the device is connected here now, nothing is forgotten (409).
    pub results: u32,
}

/// What the operator wants a deployment to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Installed and started.
    Running,
    /// Installed, not running.
    Stopped,
    /// Taken off the device.
    Removed,
}

impl Desired {
    /// Its name in JSON and in the gateway's database.
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
            Desired::Removed => "removed",
        }
    }

    /// The value named `name` ([`Desired::as_str`]); `None` for any other.
    pub fn from_name(name: &str) -> Option<Self> {
        [Desired::Running, Desired::Stopped, Desired::Removed]
            .into_iter()
            .find(|d| d.as_str() == name)
    }
}

/// Where a deployment stands, as the gateway last learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Created; the device has not been sent anything yet.
    Pending,
    /// The module is being sent.
    Transferring,
    /// On the device, not started.
    Installed,
    /// Running on the device.
    Running,
    /// Stopped on the device (or it ran and returned).
    Stopped,
    /// Taken off the device.
    Removed,
    /// The device refused or lost it; the view's `reason` says why.
    Failed,
}

impl DeploymentState {
    /// Every state.
    pub const ALL: [DeploymentState; 7] = [
        DeploymentState::Pending,
        DeploymentState::Transferring,
        DeploymentState::Installed,
        DeploymentState::Running,
        DeploymentState::Stopped,
        DeploymentState::Removed,
        DeploymentState::Failed,
    ];

    /// Its name in JSON and in the gateway's database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Pending => "pending",
            DeploymentState::Transferring => "transferring",
            DeploymentState::Installed => "installed",
            DeploymentState::Running => "running",
            DeploymentState::Stopped => "stopped",
            DeploymentState::Removed => "removed",
            DeploymentState::Failed => "failed",
        }
    }

    /// The state named `name` ([`DeploymentState::as_str`]); `None` for
    /// any other.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One module deployed to one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeploymentView {
    /// The gateway's id of the deployment.
    pub id: u64,
    /// The device's id (`8-4-4-4-12` hex).
    pub device: String,
    /// The caller's id given at creation ([`DeployRequest::application_id`]).
    pub application_id: u64,
    /// The module's SHA-256, hex.
    pub module_sha256: String,
    /// The module's size in bytes.
    pub module_size: u32,
    /// What the operator wants it to be.
    pub desired: Desired,
    /// Where it stands.
    pub state: DeploymentState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Module bytes the device acknowledged.
    pub bytes_acked: u32,
    /// When it last changed (Unix milliseconds).
    pub updated_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deployment as the gateway emitted it before this crate existed.
    const DEPLOYMENT_JSON: &str = r#"{"id":7,"device":"00112233-4455-6677-8899-aabbccddeeff","application_id":42,"module_sha256":"ab","module_size":120,"desired":"removed","state":"transferring","reason":null,"bytes_acked":64,"updated_at_ms":1700000000000}"#;

    #[test]
    fn a_deployment_view_keeps_its_json() {
        let view: DeploymentView = serde_json::from_str(DEPLOYMENT_JSON).expect("decodes");
        assert_eq!(view.desired, Desired::Removed);
        assert_eq!(view.state, DeploymentState::Transferring);
        assert_eq!(
            serde_json::to_string(&view).expect("encodes"),
            DEPLOYMENT_JSON
        );
    }

    #[test]
    fn every_state_and_desire_is_named_as_in_json() {
        for state in DeploymentState::ALL {
            let json = serde_json::to_string(&state).expect("encodes");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(DeploymentState::from_name(state.as_str()), Some(state));
        }
        for desired in [Desired::Running, Desired::Stopped, Desired::Removed] {
            let json = serde_json::to_string(&desired).expect("encodes");
            assert_eq!(json, format!("\"{}\"", desired.as_str()));
            assert_eq!(Desired::from_name(desired.as_str()), Some(desired));
        }
    }

    #[test]
    fn an_unknown_state_is_an_error_not_a_failure() {
        let json = DEPLOYMENT_JSON.replace("transferring", "exploded");
        assert!(serde_json::from_str::<DeploymentView>(&json).is_err());
        assert_eq!(DeploymentState::from_name("exploded"), None);
    }

    #[test]
    fn a_deploy_request_keeps_its_json() {
        let json = r#"{"application_id":1,"module":"AGFzbQ==","devices":["00112233445566778899aabbccddeeff"],"limits":{"fuel":1000,"memory_pages":1,"entry":"run","args":[{"i32":21}]}}"#;
        let request: DeployRequest = serde_json::from_str(json).expect("decodes");
        assert_eq!(request.limits.args, vec![ValueJson::I32(21)]);
        assert_eq!(serde_json::to_string(&request).expect("encodes"), json);
    }
}
