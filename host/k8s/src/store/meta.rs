//! Our objects as the API server's and back: [`ObjectMeta`] against
//! Kubernetes' `ObjectMeta`, `spec` and `status` as they are.
//!
//! Timestamps are milliseconds since the epoch here and RFC 3339 there;
//! Kubernetes keeps them to the second, so an object read back has
//! `created_at` and `deletion_timestamp` in whole seconds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta as KubeMeta, Time};
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde_json::{Map, Value};
use wasmbed_api::model::ObjectMeta;
use wasmbed_api::store::{StoreError, StoredObject};

/// Which fields of ours a request carries: each request sends what the API
/// server reads from it and nothing it would ignore or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// POST: name, labels, finalizers and spec. The server assigns the
    /// rest (a `resourceVersion` on a create is refused), and the status
    /// subresource drops a status.
    Create,
    /// PUT: also `resourceVersion` (the conflict check) and `uid`. No
    /// status: the server keeps its own.
    Spec,
    /// PUT `/status`: name, `resourceVersion`, `uid` and status. The server
    /// takes nothing else from it.
    Status,
}

/// `object` as the body of a request of `part`, in `namespace`.
pub(crate) fn to_kube(
    resource: &ApiResource,
    namespace: &str,
    object: &StoredObject,
    part: Part,
) -> DynamicObject {
    let ours = &object.metadata;
    let mut metadata = KubeMeta {
        name: Some(ours.name.clone()),
        namespace: Some(namespace.to_owned()),
        ..KubeMeta::default()
    };
    if part != Part::Status {
        metadata.labels = (!ours.labels.is_empty()).then(|| ours.labels.clone());
        metadata.finalizers = (!ours.finalizers.is_empty()).then(|| ours.finalizers.clone());
    }
    if part != Part::Create {
        metadata.resource_version = Some(ours.resource_version.clone());
        metadata.uid = (!ours.uid.is_empty()).then(|| ours.uid.clone());
    }
    let mut data = Map::new();
    match part {
        Part::Create | Part::Spec => {
            data.insert("spec".into(), object.spec.clone());
        }
        // A status PUT without `status` clears it, as a null status means.
        Part::Status if !object.status.is_null() => {
            data.insert("status".into(), object.status.clone());
        }
        Part::Status => {}
    }
    let mut kube = DynamicObject::new(&ours.name, resource).data(Value::Object(data));
    kube.metadata = metadata;
    kube
}

/// The object the API server gave.
pub(crate) fn from_kube(object: DynamicObject) -> Result<StoredObject, StoreError> {
    let kube = object.metadata;
    let name = kube
        .name
        .ok_or_else(|| StoreError::Corrupt("an object from the API server has no name".into()))?;
    let generation = match kube.generation {
        None => 0,
        Some(generation) => u64::try_from(generation).map_err(|_| {
            StoreError::Corrupt(format!("{name} has a negative generation {generation}"))
        })?,
    };
    let metadata = ObjectMeta {
        uid: kube.uid.unwrap_or_default(),
        labels: kube.labels.unwrap_or_default(),
        created_at: kube.creation_timestamp.map_or(0, |time| to_ms(&time)),
        resource_version: kube.resource_version.unwrap_or_default(),
        generation,
        finalizers: kube.finalizers.unwrap_or_default(),
        deletion_timestamp: kube.deletion_timestamp.map(|time| to_ms(&time)),
        name,
    };
    let part = |name: &str| object.data.get(name).cloned().unwrap_or(Value::Null);
    Ok(StoredObject {
        spec: part("spec"),
        status: part("status"),
        metadata,
    })
}

/// Milliseconds since the epoch; 0 for a time before it.
pub(crate) fn to_ms(time: &Time) -> u64 {
    u64::try_from(time.0.timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use kube::CustomResourceExt as _;
    use serde_json::json;

    use super::*;

    fn object() -> StoredObject {
        StoredObject {
            metadata: ObjectMeta {
                name: "board-1".into(),
                uid: "4f0c".into(),
                labels: BTreeMap::from([("site".into(), "lab".into())]),
                created_at: 1_700_000_000_123,
                resource_version: "42".into(),
                generation: 3,
                finalizers: vec!["wasmbed.io/undeploy".into()],
                deletion_timestamp: Some(1_700_000_100_000),
            },
            spec: json!({"board": "mps2-an385"}),
            status: json!({"presence": "connected"}),
        }
    }

    fn body(part: Part) -> Value {
        let kube = to_kube(&crate::Device::api_resource(), "wasmbed", &object(), part);
        serde_json::to_value(kube).unwrap()
    }

    #[test]
    fn a_create_carries_no_server_assigned_field_nor_status() {
        assert_eq!(
            body(Part::Create),
            json!({
                "apiVersion": "wasmbed.io/v1alpha1",
                "kind": "Device",
                "metadata": {
                    "name": "board-1",
                    "namespace": "wasmbed",
                    "labels": {"site": "lab"},
                    "finalizers": ["wasmbed.io/undeploy"],
                },
                "spec": {"board": "mps2-an385"},
            })
        );
    }

    #[test]
    fn a_replace_carries_the_version_read_and_no_status() {
        assert_eq!(
            body(Part::Spec),
            json!({
                "apiVersion": "wasmbed.io/v1alpha1",
                "kind": "Device",
                "metadata": {
                    "name": "board-1",
                    "namespace": "wasmbed",
                    "uid": "4f0c",
                    "resourceVersion": "42",
                    "labels": {"site": "lab"},
                    "finalizers": ["wasmbed.io/undeploy"],
                },
                "spec": {"board": "mps2-an385"},
            })
        );
    }

    #[test]
    fn a_status_write_carries_the_version_read_and_the_status_only() {
        assert_eq!(
            body(Part::Status),
            json!({
                "apiVersion": "wasmbed.io/v1alpha1",
                "kind": "Device",
                "metadata": {
                    "name": "board-1",
                    "namespace": "wasmbed",
                    "uid": "4f0c",
                    "resourceVersion": "42",
                },
                "status": {"presence": "connected"},
            })
        );
    }

    #[test]
    fn metadata_reads_back_with_timestamps_in_milliseconds() {
        let kube: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "wasmbed.io/v1alpha1",
            "kind": "Device",
            "metadata": {
                "name": "board-1",
                "namespace": "wasmbed",
                "uid": "4f0c",
                "resourceVersion": "42",
                "generation": 3,
                "labels": {"site": "lab"},
                "finalizers": ["wasmbed.io/undeploy"],
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "deletionTimestamp": "2023-11-14T22:15:00Z",
            },
            "spec": {"board": "mps2-an385"},
            "status": {"presence": "connected"},
        }))
        .unwrap();
        let mut expected = object();
        expected.metadata.created_at = 1_700_000_000_000;
        assert_eq!(from_kube(kube).unwrap(), expected);
    }

    #[test]
    fn times_before_the_epoch_read_as_zero() {
        let before: Time = serde_json::from_value(json!("1969-12-31T23:59:59Z")).unwrap();
        assert_eq!(to_ms(&before), 0);
    }

    #[test]
    fn an_object_without_status_reads_back_with_a_null_status() {
        let kube: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "board-1"},
            "spec": {},
        }))
        .unwrap();
        let stored = from_kube(kube).unwrap();
        assert_eq!(stored.status, Value::Null);
        assert_eq!(stored.metadata.generation, 0);
        assert_eq!(stored.metadata.deletion_timestamp, None);
    }

    #[test]
    fn an_object_without_a_name_or_with_a_negative_generation_is_corrupt() {
        let nameless: DynamicObject =
            serde_json::from_value(json!({"metadata": {}, "spec": {}})).unwrap();
        assert!(matches!(from_kube(nameless), Err(StoreError::Corrupt(_))));
        let negative: DynamicObject =
            serde_json::from_value(json!({"metadata": {"name": "a", "generation": -1}})).unwrap();
        assert!(matches!(from_kube(negative), Err(StoreError::Corrupt(_))));
    }
}
