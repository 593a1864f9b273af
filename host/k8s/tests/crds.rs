//! The CRDs: what Kubernetes needs of them, and the checked-in copies in
//! deploy/kubernetes/crds.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kube::CustomResourceExt as _;
use serde_json::{Value, json};
use wasmbed_k8s::{Application, Device, GROUP, Gateway, VERSION, crd_files, crds};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/crds")
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = crds_dir();
    let files = crd_files().unwrap();
    for (name, fresh) in &files {
        let checked_in = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            *fresh == checked_in,
            "deploy/kubernetes/crds/{name} is stale: run `cargo xtask crds` and commit the result"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = files.into_iter().map(|(name, _)| name).collect();
    generated.sort();
    assert_eq!(
        on_disk, generated,
        "a file in deploy/kubernetes/crds is no CRD of ours"
    );
}

#[test]
fn each_crd_is_namespaced_with_a_status_subresource_and_short_name() {
    let names: Vec<(String, String, String)> = crds()
        .into_iter()
        .map(|crd| {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Namespaced");
            let [version] = crd.spec.versions.as_slice() else {
                panic!("one version expected");
            };
            assert_eq!(version.name, VERSION);
            assert!(version.subresources.as_ref().unwrap().status.is_some());
            assert!(
                crd.spec
                    .names
                    .categories
                    .unwrap()
                    .contains(&"wasmbed".into())
            );
            let short = crd.spec.names.short_names.unwrap().join(",");
            (crd.spec.names.kind, crd.spec.names.plural, short)
        })
        .collect();
    let expected = [
        ("Device", "devices", "wdev"),
        ("Application", "applications", "wapp"),
        ("Gateway", "gateways", "wgw"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(names, expected);
}

/// The schema reached by a printer column's JSONPath, e.g.
/// `.status.deployments[*].device`: None when a field on the way is not
/// in the schema (a column that would stay empty).
fn schema_at<'a>(root: &'a Value, json_path: &str) -> Option<&'a Value> {
    let mut schema = root;
    for part in json_path.trim_start_matches('.').split('.') {
        let (field, each) = match part.strip_suffix("[*]") {
            Some(field) => (field, true),
            None => (part, false),
        };
        schema = schema.get("properties")?.get(field)?;
        if each {
            schema = schema.get("items")?;
        }
    }
    Some(schema)
}

#[test]
fn every_printer_column_names_a_field_of_its_schema() {
    for crd in crds() {
        let version = &crd.spec.versions[0];
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(
            columns.len() >= 3,
            "{}: too few columns",
            crd.spec.names.kind
        );
        for column in columns {
            if column.json_path == ".metadata.creationTimestamp" {
                continue;
            }
            let field = schema_at(&schema, &column.json_path);
            assert!(
                field.is_some(),
                "{}: column {} shows {}, which the schema does not have",
                crd.spec.names.kind,
                column.name,
                column.json_path
            );
        }
    }
}

/// Kubernetes refuses a CRD whose schema has `additionalProperties`
/// beside `properties` (what `#[serde(deny_unknown_fields)]` makes).
fn closed_objects(schema: &Value, path: &str, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && map.contains_key("additionalProperties") {
                found.push(path.to_owned());
            }
            for (key, value) in map {
                closed_objects(value, &format!("{path}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                closed_objects(item, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn no_schema_has_both_properties_and_additional_properties() {
    for crd in crds() {
        let mut found = Vec::new();
        closed_objects(&serde_json::to_value(&crd).unwrap(), "", &mut found);
        assert!(found.is_empty(), "{}: {found:?}", crd.spec.names.kind);
    }
    // The API server's own selector still refuses unknown keys.
    let selector: Result<wasmbed_api::model::Selector, _> =
        serde_json::from_value(json!({"matchLabels": {"a": "b"}}));
    assert!(selector.is_err());
}

#[test]
fn a_custom_resource_has_the_api_servers_spec_fields() {
    let device: Device = serde_json::from_value(json!({
        "apiVersion": "wasmbed.io/v1alpha1",
        "kind": "Device",
        "metadata": {"name": "d", "namespace": "wasmbed"},
        "spec": {"board": "mps2-an385", "gateway": "gw", "emulated": true},
        "status": {"presence": "connected"}
    }))
    .unwrap();
    assert_eq!(device.spec.spec.board, "mps2-an385");
    assert!(device.spec.spec.emulated);
    let status = device.status.as_ref().unwrap();
    assert_eq!(status.presence, wasmbed_api::model::Presence::Connected);
    // The spec is written as the REST API writes a DeviceSpec.
    let written = serde_json::to_value(&device).unwrap();
    assert_eq!(
        written["spec"],
        serde_json::to_value(&device.spec.spec).unwrap()
    );
    assert_eq!(Device::crd_name(), "devices.wasmbed.io");
    assert_eq!(Application::crd_name(), "applications.wasmbed.io");
    assert_eq!(Gateway::crd_name(), "gateways.wasmbed.io");
}
