//! Wasmbed's resources as Kubernetes custom resources: `Device`,
//! `Application` and `Gateway` in the API group [`GROUP`], version
//! `v1alpha1`, namespaced, each with a status subresource.
//!
//! Their specs and statuses are the API server's own types
//! ([`wasmbed_api::model`]): a spec here wraps the model's spec, flattened,
//! so an object's `spec` has exactly the fields the REST API takes, and the
//! CRD schemas are derived from those types with `schemars`. There is no
//! second copy of the fields to keep in step.
//!
//! [`crds`] gives the CustomResourceDefinitions; `cargo xtask crds` writes
//! them to `deploy/kubernetes/crds/` with [`crd_files`].
//!
//! [`KubeStore`] is the API server's [`ResourceStore`] backend on these
//! resources in a cluster. With the feature `fake-api-server`,
//! [`fake_api`] is a stateful fake Kubernetes API server to test it (and
//! what is built on it) without a cluster.
//!
//! [`ResourceStore`]: wasmbed_api::store::ResourceStore

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasmbed_api::model::{
    ApplicationSpec, ApplicationStatus, DeviceSpec, DeviceStatus, GatewaySpec, GatewayStatus,
};

pub mod events;
#[cfg(feature = "fake-api-server")]
pub mod fake_api;
pub mod lease;
mod store;

pub use events::KubeEvents;
pub use lease::KubeLease;
pub use store::{DEFAULT_NAMESPACE, KubeStore, api_resource};

/// The API group of Wasmbed's custom resources.
pub const GROUP: &str = "wasmbed.io";

/// The version of the custom resources.
pub const VERSION: &str = "v1alpha1";

/// The spec of a [`Device`]: the API server's [`DeviceSpec`].
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "wasmbed.io",
    version = "v1alpha1",
    kind = "Device",
    doc = "A device: a board that enrolls with a gateway.",
    namespaced,
    status = "DeviceStatus",
    shortname = "wdev",
    category = "wasmbed",
    printcolumn = r#"{"name":"Board","type":"string","jsonPath":".spec.board"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gateway"}"#,
    printcolumn = r#"{"name":"Presence","type":"string","jsonPath":".status.presence"}"#,
    printcolumn = r#"{"name":"Runtime","type":"string","jsonPath":".status.runtime.kind"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct DeviceResourceSpec {
    /// The model's spec, whose fields are the object's `spec` fields.
    #[serde(flatten)]
    pub spec: DeviceSpec,
}

/// The spec of an [`Application`]: the API server's [`ApplicationSpec`].
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "wasmbed.io",
    version = "v1alpha1",
    kind = "Application",
    doc = "A WebAssembly module and the devices it should run on.",
    namespaced,
    status = "ApplicationStatus",
    shortname = "wapp",
    category = "wasmbed",
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Devices","type":"string","jsonPath":".status.deployments[*].device"}"#,
    printcolumn = r#"{"name":"Phases","type":"string","jsonPath":".status.deployments[*].phase"}"#,
    printcolumn = r#"{"name":"Results","type":"integer","jsonPath":".status.results"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ApplicationResourceSpec {
    /// The model's spec, whose fields are the object's `spec` fields.
    #[serde(flatten)]
    pub spec: ApplicationSpec,
}

/// The spec of a [`Gateway`]: the API server's [`GatewaySpec`].
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "wasmbed.io",
    version = "v1alpha1",
    kind = "Gateway",
    doc = "A gateway the controller deploys through.",
    namespaced,
    status = "GatewayStatus",
    shortname = "wgw",
    category = "wasmbed",
    printcolumn = r#"{"name":"Devices at","type":"string","jsonPath":".spec.device_endpoint"}"#,
    printcolumn = r#"{"name":"HTTP","type":"string","jsonPath":".spec.http_endpoint"}"#,
    printcolumn = r#"{"name":"Reachable","type":"boolean","jsonPath":".status.reachable"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct GatewayResourceSpec {
    /// The model's spec, whose fields are the object's `spec` fields.
    #[serde(flatten)]
    pub spec: GatewaySpec,
}

/// The CustomResourceDefinitions of [`Device`], [`Application`] and
/// [`Gateway`], in that order, ready for the API server of a cluster.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Device::crd(), Application::crd(), Gateway::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|validation| validation.open_api_v3_schema.as_mut())
            {
                let mut value = serde_json::to_value(&*schema).unwrap_or_default();
                drop_closed_objects(&mut value);
                if let Ok(rewritten) = serde_json::from_value(value) {
                    *schema = rewritten;
                }
            }
        }
    }
    crds
}

/// Removes `additionalProperties: false` (from `#[serde(deny_unknown_fields)]`,
/// on the model's `Selector`): Kubernetes refuses it beside `properties`
/// in a CRD schema. It does not weaken the check: the API server of a
/// cluster prunes unknown fields, and `kubectl` refuses them (strict field
/// validation).
fn drop_closed_objects(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            if map.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(drop_closed_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_closed_objects),
        _ => {}
    }
}

/// Each CRD as a YAML file: its file name (the CRD's name, e.g.
/// `devices.wasmbed.io.yaml`) and its text.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let text = serde_yaml::to_string(&crd)?;
            Ok((
                format!("{name}.yaml"),
                format!("# Generated by `cargo xtask crds` from host/k8s: do not edit.\n{text}"),
            ))
        })
        .collect()
}
