//! The REST API through its router: authentication, validation, problem
//! documents, and one round over a real socket.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use wasmbed_api::store::{SqliteStore, Store};

/// Every protected route, with a body that would be valid.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/openapi.json", None),
        ("POST", "/api/v1/tokens", Some(json!({ "name": "ci" }))),
        ("GET", "/api/v1/devices", None),
        (
            "POST",
            "/api/v1/devices",
            Some(device_body("d1", json!({}), None)),
        ),
        ("GET", "/api/v1/devices/d1", None),
        (
            "PUT",
            "/api/v1/devices/d1",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": 1 },
                "spec": { "board": "b", "gateway": "gw" }
            })),
        ),
        ("DELETE", "/api/v1/devices/d1", None),
        ("GET", "/api/v1/applications", None),
        (
            "POST",
            "/api/v1/applications",
            Some(app_body("a1", &doubler(), json!({ "names": ["d1"] }))),
        ),
        ("GET", "/api/v1/applications/a1", None),
        (
            "PUT",
            "/api/v1/applications/a1",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": 1 },
                "spec": app_body("a1", &doubler(), json!({ "names": ["d1"] }))["spec"],
            })),
        ),
        ("GET", "/api/v1/applications/a1/results", None),
        ("DELETE", "/api/v1/applications/a1", None),
        ("GET", "/api/v1/gateways", None),
        (
            "POST",
            "/api/v1/gateways",
            Some(gateway_body("gw", "http://127.0.0.1:1", "127.0.0.1:2")),
        ),
        ("GET", "/api/v1/gateways/gw", None),
        (
            "PUT",
            "/api/v1/gateways/gw",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": 1 },
                "spec": { "http_endpoint": "http://127.0.0.1:3", "device_endpoint": "127.0.0.1:4" }
            })),
        ),
        ("DELETE", "/api/v1/gateways/gw", None),
    ]
}

fn assert_problem(status: StatusCode, content_type: &str, json: &Value, code: &str) {
    assert_eq!(content_type, "application/problem+json", "{json}");
    assert_eq!(json["status"], status.as_u16());
    assert_eq!(json["code"], code, "{json}");
    assert!(json["type"].as_str().unwrap().ends_with(code));
    assert!(json["title"].is_string());
    assert!(json["detail"].is_string());
}

#[tokio::test]
async fn every_route_but_health_refuses_a_missing_or_wrong_token() {
    let api = TestApi::in_memory();
    for (method, uri, body) in routes() {
        for token in [None, Some("wbd_wrong"), Some("")] {
            let (status, content_type, json) = api.call(method, uri, token, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_problem(status, &content_type, &json, "unauthorized");
        }
    }
    let (status, _, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn read_only_tokens_read_but_may_not_write() {
    let api = TestApi::in_memory();
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("d1", json!({}), None)),
        StatusCode::CREATED,
    )
    .await;
    let reader = api.reader.clone();
    for (method, uri, body) in routes() {
        let (status, content_type, json) = api.call(method, uri, Some(&reader), body).await;
        if method == "GET" {
            assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{method} {uri}: {status}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_problem(status, &content_type, &json, "forbidden");
        }
    }
    // An admin makes read-only tokens, which work at once.
    let created = api
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({ "name": "dashboard" })),
            StatusCode::CREATED,
        )
        .await;
    let token = created["token"].as_str().unwrap();
    assert_eq!(created["role"], "read_only");
    let (status, _, devices) = api.call("GET", "/api/v1/devices", Some(token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(devices[0]["metadata"]["name"], "d1");
    let (status, _, _) = api
        .call(
            "POST",
            "/api/v1/tokens",
            Some(token),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn devices_are_created_listed_by_label_read_and_deleted() {
    let api = TestApi::in_memory();
    let created = api
        .admin(
            "POST",
            "/api/v1/devices",
            Some(device_body(
                "d1",
                json!({ "site": "lab" }),
                Some("00112233-4455-6677-8899-aabbccddeeff".into()),
            )),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created["metadata"]["name"], "d1");
    assert!(created["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(created["metadata"]["resource_version"].as_u64().unwrap() > 0);
    assert_eq!(created["status"]["presence"], "unknown");
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("d2", json!({ "site": "home" }), None)),
        StatusCode::CREATED,
    )
    .await;

    let all = api
        .admin("GET", "/api/v1/devices", None, StatusCode::OK)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let lab = api
        .admin(
            "GET",
            "/api/v1/devices?labelSelector=site=lab",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(lab.as_array().unwrap().len(), 1);
    assert_eq!(lab[0]["metadata"]["name"], "d1");
    let (status, content_type, json) = api
        .call(
            "GET",
            "/api/v1/devices?labelSelector=site",
            Some(&api.admin.clone()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_problem(status, &content_type, &json, "invalid_query");

    let one = api
        .admin("GET", "/api/v1/devices/d1", None, StatusCode::OK)
        .await;
    assert_eq!(one, created);
    api.admin("DELETE", "/api/v1/devices/d1", None, StatusCode::NO_CONTENT)
        .await;
    let token = api.admin.clone();
    for (method, uri) in [
        ("GET", "/api/v1/devices/d1"),
        ("DELETE", "/api/v1/devices/d1"),
        ("GET", "/api/v1/applications/nope"),
        ("DELETE", "/api/v1/applications/nope"),
        ("GET", "/api/v1/gateways/nope"),
        ("GET", "/api/v1/devices/Not_A_Name"),
    ] {
        let (status, content_type, json) = api.call(method, uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_problem(status, &content_type, &json, "not_found");
    }
}

#[tokio::test]
async fn duplicates_conflict() {
    let api = TestApi::in_memory();
    let token = api.admin.clone();
    for (uri, body) in [
        ("/api/v1/devices", device_body("d1", json!({}), None)),
        (
            "/api/v1/applications",
            app_body("a1", &doubler(), json!({ "names": ["d1"] })),
        ),
        (
            "/api/v1/gateways",
            gateway_body("gw", "http://127.0.0.1:8080", "127.0.0.1:40029"),
        ),
    ] {
        api.admin("POST", uri, Some(body.clone()), StatusCode::CREATED)
            .await;
        let (status, content_type, json) = api.call("POST", uri, Some(&token), Some(body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{uri}");
        assert_problem(status, &content_type, &json, "conflict");
    }
}

#[tokio::test]
async fn invalid_input_is_refused_with_a_stable_code() {
    let api = TestApi::in_memory();
    let token = api.admin.clone();
    let mut bad_limits = app_body("a1", &doubler(), json!({ "names": ["d1"] }));
    bad_limits["spec"]["limits"]["fuel"] = json!(0);
    let mut bad_entry = app_body("a1", &doubler(), json!({ "names": ["d1"] }));
    bad_entry["spec"]["limits"]["entry"] = json!("x".repeat(33));
    let mut not_base64 = app_body("a1", &doubler(), json!({}));
    not_base64["spec"]["module"] = json!("%%%");
    let cases = [
        (
            "/api/v1/applications",
            app_body("a1", b"\x7fELF not wasm", json!({ "names": ["d1"] })),
            "invalid_module",
        ),
        ("/api/v1/applications", not_base64, "invalid_module"),
        ("/api/v1/applications", bad_limits, "invalid_limits"),
        ("/api/v1/applications", bad_entry, "invalid_limits"),
        (
            "/api/v1/applications",
            app_body("a1", &doubler(), json!({ "names": ["Bad Name"] })),
            "invalid_name",
        ),
        (
            "/api/v1/devices",
            device_body("-d1", json!({}), None),
            "invalid_name",
        ),
        (
            "/api/v1/devices",
            device_body("d1", json!({ "bad key!": "x" }), None),
            "invalid_label",
        ),
        (
            "/api/v1/devices",
            device_body("d1", json!({}), Some("xyz".into())),
            "invalid_spec",
        ),
        (
            "/api/v1/devices",
            json!({ "metadata": { "name": "d1" } }),
            "invalid_body",
        ),
        (
            "/api/v1/gateways",
            gateway_body("gw", "ftp://x", "127.0.0.1:40029"),
            "invalid_spec",
        ),
        (
            "/api/v1/gateways",
            gateway_body("gw", "http://127.0.0.1:8080", "nowhere"),
            "invalid_spec",
        ),
    ];
    for (uri, body, code) in cases {
        let (status, content_type, json) = api.call("POST", uri, Some(&token), Some(body)).await;
        assert_eq!(status.as_u16(), 400, "{uri} {code}: {json}");
        assert_problem(status, &content_type, &json, code);
    }
    assert!(
        api.state
            .store
            .list::<wasmbed_api::model::Application>()
            .unwrap()
            .is_empty()
    );

    // A body larger than any module is refused before it is parsed.
    let huge =
        json!({ "metadata": { "name": "a1" }, "spec": { "module": "A".repeat(2 * 1024 * 1024) } });
    let (status, content_type, json) = api
        .call("POST", "/api/v1/applications", Some(&token), Some(huge))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_problem(status, &content_type, &json, "payload_too_large");
}

#[tokio::test]
async fn applications_keep_the_module_out_of_the_resource() {
    let api = TestApi::in_memory();
    let module = doubler();
    let created = api
        .admin(
            "POST",
            "/api/v1/applications",
            Some(app_body(
                "a1",
                &module,
                json!({ "match_labels": { "site": "lab" } }),
            )),
            StatusCode::CREATED,
        )
        .await;
    let sha256 = created["spec"]["module"]["sha256"].as_str().unwrap();
    assert_eq!(created["spec"]["module"]["size"], module.len());
    assert_eq!(
        api.state.store.backend().blob(sha256).unwrap().unwrap(),
        module
    );
    let list = api
        .admin("GET", "/api/v1/applications", None, StatusCode::OK)
        .await;
    assert_eq!(list[0], created);
    assert!(
        !list.to_string().contains("AGFzbQ"),
        "no module bytes in lists"
    );
    // Nothing deployed yet: deleted at once.
    api.admin(
        "DELETE",
        "/api/v1/applications/a1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    api.admin(
        "GET",
        "/api/v1/applications/a1",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn openapi_documents_every_route_and_the_bearer_scheme() {
    let api = TestApi::in_memory();
    let doc = api
        .admin("GET", "/openapi.json", None, StatusCode::OK)
        .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/tokens",
        "/api/v1/devices",
        "/api/v1/devices/{name}",
        "/api/v1/applications",
        "/api/v1/applications/{name}",
        "/api/v1/applications/{name}/results",
        "/api/v1/gateways",
        "/api/v1/gateways/{name}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["Application"].is_object());
    let result = &doc["components"]["schemas"]["ExecutionResult"];
    for field in [
        "device",
        "invocation",
        "returned",
        "trap",
        "fuel_used",
        "logs",
    ] {
        assert!(
            result["properties"][field].is_object(),
            "ExecutionResult.{field} missing"
        );
    }
    let ok = &doc["paths"]["/api/v1/applications/{name}/results"]["get"]["responses"]["200"];
    assert_eq!(
        ok["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/ExecutionResult"
    );
}

#[tokio::test]
async fn results_need_a_token_and_a_known_application() {
    let api = TestApi::in_memory();
    let (status, content_type, json) = api
        .call("GET", "/api/v1/applications/nope/results", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_problem(status, &content_type, &json, "unauthorized");
    let reader = api.reader.clone();
    let (status, content_type, json) = api
        .call(
            "GET",
            "/api/v1/applications/nope/results",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_problem(status, &content_type, &json, "not_found");
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body("a1", &doubler(), json!({ "names": ["d1"] }))),
        StatusCode::CREATED,
    )
    .await;
    // Read-only tokens may read them; none yet.
    let (status, _, json) = api
        .call(
            "GET",
            "/api/v1/applications/a1/results",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, json!([]));
    // The list stays small: results are not in it.
    let list = api
        .admin("GET", "/api/v1/applications", None, StatusCode::OK)
        .await;
    assert!(!list.to_string().contains("fuel_used"), "{list}");
}

#[tokio::test]
async fn the_admin_token_is_made_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.db");
    let admin = {
        let store = Store::new(std::sync::Arc::new(SqliteStore::open(&path).unwrap()));
        let (_, admin) = wasmbed_api::http::Auth::bootstrap(&store).unwrap();
        admin.unwrap()
    };
    let store = Store::new(std::sync::Arc::new(SqliteStore::open(&path).unwrap()));
    let (auth, again) = wasmbed_api::http::Auth::bootstrap(&store).unwrap();
    assert_eq!(again, None, "shown only at the first start");
    assert_eq!(auth.role_of(&admin), Some(wasmbed_api::store::Role::Admin));
    assert_eq!(auth.role_of("wbd_0000"), None);
    let raw = std::fs::read(&path).unwrap();
    assert!(
        !raw.windows(admin.len()).any(|w| w == admin.as_bytes()),
        "the token itself is not stored"
    );
}

#[tokio::test]
async fn the_api_answers_over_a_real_socket() {
    let api = TestApi::in_memory();
    let addr = api.serve().await;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let refused = client
        .get(format!("{base}/api/v1/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let created = client
        .post(format!("{base}/api/v1/gateways"))
        .bearer_auth(&api.admin)
        .json(&gateway_body(
            "gw",
            "http://127.0.0.1:8080",
            "127.0.0.1:40029",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let list: Value = client
        .get(format!("{base}/api/v1/gateways"))
        .bearer_auth(&api.reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["spec"]["device_endpoint"], "127.0.0.1:40029");
}

#[tokio::test]
async fn updates_carry_the_version_they_read_and_stale_ones_conflict() {
    let api = TestApi::in_memory();
    let created = api
        .admin(
            "POST",
            "/api/v1/devices",
            Some(device_body("d1", json!({ "site": "lab" }), None)),
            StatusCode::CREATED,
        )
        .await;
    let read = created["metadata"]["resource_version"].clone();
    let update = |id: &str| {
        json!({
            "metadata": { "labels": { "site": "lab", "rack": "2" }, "resource_version": read },
            "spec": { "board": "wasmbed-sim", "gateway": "gw", "device_id": id, "emulated": true }
        })
    };
    let updated = api
        .admin(
            "PUT",
            "/api/v1/devices/d1",
            Some(update("00112233445566778899aabbccddeeff")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        updated["spec"]["device_id"],
        "00112233445566778899aabbccddeeff"
    );
    assert_eq!(updated["metadata"]["labels"]["rack"], "2");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(updated["metadata"]["resource_version"].as_u64() > read.as_u64());
    // The same change again, based on the version now stale.
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/devices/d1",
            Some(&api.admin),
            Some(update("ffeeddccbbaa99887766554433221100")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_problem(status, &content_type, &json, "conflict");
    let now = api
        .admin("GET", "/api/v1/devices/d1", None, StatusCode::OK)
        .await;
    assert_eq!(now, updated);
    let (status, _, _) = api
        .call(
            "PUT",
            "/api/v1/devices/nope",
            Some(&api.admin),
            Some(update("00112233445566778899aabbccddeeff")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let api = TestApi::in_memory();
    let token = api.admin.clone();
    let (status, content_type, json) = api.call("GET", "/api/v2/nothing", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_problem(status, &content_type, &json, "not_found");
    let (status, content_type, json) = api
        .call("PATCH", "/api/v1/gateways", Some(&token), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_problem(status, &content_type, &json, "method_not_allowed");
    // The scheme name is case-insensitive (RFC 7235).
    let request = axum::http::Request::builder()
        .uri("/api/v1/devices")
        .header("authorization", format!("bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(wasmbed_api::http::app(api.state.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_gateway_registration_is_updated_at_its_version_and_forgotten() {
    let api = TestApi::in_memory();
    let created = api
        .admin(
            "POST",
            "/api/v1/gateways",
            Some(gateway_body(
                "gw",
                "http://127.0.0.1:8081",
                "127.0.0.1:40029",
            )),
            StatusCode::CREATED,
        )
        .await;
    let version = created["metadata"]["resource_version"].clone();
    let update = |version: Value, http: &str| {
        json!({
            "metadata": { "labels": { "site": "lab" }, "resource_version": version },
            "spec": { "http_endpoint": http, "device_endpoint": "127.0.0.1:40030" }
        })
    };
    let updated = api
        .admin(
            "PUT",
            "/api/v1/gateways/gw",
            Some(update(version.clone(), "http://127.0.0.1:9000")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(updated["spec"]["http_endpoint"], "http://127.0.0.1:9000");
    assert_eq!(updated["spec"]["device_endpoint"], "127.0.0.1:40030");
    assert_eq!(updated["metadata"]["labels"]["site"], "lab");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    // A change based on the old version conflicts and changes nothing.
    let token = api.admin.clone();
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/gateways/gw",
            Some(&token),
            Some(update(version, "http://127.0.0.1:9001")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_problem(status, &content_type, &json, "conflict");
    // A bad endpoint is refused.
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/gateways/gw",
            Some(&token),
            Some(update(
                updated["metadata"]["resource_version"].clone(),
                "ftp://x",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_problem(status, &content_type, &json, "invalid_spec");
    let now = api
        .admin("GET", "/api/v1/gateways/gw", None, StatusCode::OK)
        .await;
    assert_eq!(now["spec"]["http_endpoint"], "http://127.0.0.1:9000");

    api.admin(
        "DELETE",
        "/api/v1/gateways/gw",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (status, _, _) = api
        .call("GET", "/api/v1/gateways/gw", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_application_is_replaced_at_its_version_with_a_valid_module() {
    let api = TestApi::in_memory();
    let token = api.admin.clone();
    let created = api
        .admin(
            "POST",
            "/api/v1/applications",
            Some(app_body("a1", &doubler(), json!({ "names": ["d1"] }))),
            StatusCode::CREATED,
        )
        .await;
    let replace = |version: &Value, module: Value, selector: Value| {
        let mut spec = app_body("a1", &doubler(), selector)["spec"].clone();
        spec["module"] = module;
        json!({
            "metadata": { "labels": { "tier": "2" }, "resource_version": version },
            "spec": spec,
        })
    };
    let version = &created["metadata"]["resource_version"];
    // Not WebAssembly: refused, nothing changes.
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/applications/a1",
            Some(&token),
            Some(replace(
                version,
                json!("aGVsbG8gd29ybGQ="),
                json!({ "names": ["d1"] }),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_problem(status, &content_type, &json, "invalid_module");

    let other =
        wat::parse_str(r#"(module (func (export "main") (param i32) (result i32) (local.get 0)))"#)
            .unwrap();
    use base64::Engine as _;
    let other_b64 = json!(base64::engine::general_purpose::STANDARD.encode(&other));
    let updated = api
        .admin(
            "PUT",
            "/api/v1/applications/a1",
            Some(replace(
                version,
                other_b64.clone(),
                json!({ "names": ["d2"] }),
            )),
            StatusCode::OK,
        )
        .await;
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(updated["metadata"]["labels"]["tier"], "2");
    assert_eq!(updated["spec"]["selector"]["names"], json!(["d2"]));
    assert_eq!(updated["spec"]["module"]["size"], other.len());
    assert_ne!(
        updated["spec"]["module"]["sha256"],
        created["spec"]["module"]["sha256"]
    );

    // Based on the old version: a conflict.
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/applications/a1",
            Some(&token),
            Some(replace(
                version,
                other_b64.clone(),
                json!({ "names": ["d3"] }),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_problem(status, &content_type, &json, "conflict");
    let (status, _, _) = api
        .call(
            "PUT",
            "/api/v1/applications/nope",
            Some(&token),
            Some(replace(version, other_b64, json!({ "names": ["d3"] }))),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let now = api
        .admin("GET", "/api/v1/applications/a1", None, StatusCode::OK)
        .await;
    assert_eq!(now["spec"]["selector"]["names"], json!(["d2"]));
}
