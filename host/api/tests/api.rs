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
        ("GET", "/api/v1/tokens", None),
        ("DELETE", "/api/v1/tokens/0123456789abcdef", None),
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
            Some(gateway_body("gw", "https://127.0.0.1:1", "127.0.0.1:2")),
        ),
        ("GET", "/api/v1/gateways/gw", None),
        (
            "PUT",
            "/api/v1/gateways/gw",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": 1 },
                "spec": { "http_endpoint": "https://127.0.0.1:3", "device_endpoint": "127.0.0.1:4" }
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
    let api = TestApi::in_memory().await;
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
    let api = TestApi::in_memory().await;
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
        if method == "GET" && !uri.starts_with("/api/v1/tokens") {
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
    let api = TestApi::in_memory().await;
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
    assert!(
        !created["metadata"]["resource_version"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(created["metadata"]["generation"], 1);
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
    let api = TestApi::in_memory().await;
    let token = api.admin.clone();
    for (uri, body) in [
        ("/api/v1/devices", device_body("d1", json!({}), None)),
        (
            "/api/v1/applications",
            app_body("a1", &doubler(), json!({ "names": ["d1"] })),
        ),
        (
            "/api/v1/gateways",
            gateway_body("gw", "https://127.0.0.1:8080", "127.0.0.1:40029"),
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
    let api = TestApi::in_memory().await;
    let token = api.admin.clone();
    let mut bad_limits = app_body("a1", &doubler(), json!({ "names": ["d1"] }));
    bad_limits["spec"]["limits"]["fuel"] = json!(0);
    let mut bad_entry = app_body("a1", &doubler(), json!({ "names": ["d1"] }));
    bad_entry["spec"]["limits"]["entry"] = json!("x".repeat(33));
    let mut not_base64 = app_body("a1", &doubler(), json!({}));
    not_base64["spec"]["module"] = json!("%%%");
    let cases = [
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
            gateway_body("gw", "https://127.0.0.1:8080", "nowhere"),
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
            .await
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
    let api = TestApi::in_memory().await;
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
    assert_eq!(api.state.store.blob(sha256).await.unwrap().unwrap(), module);
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
    let api = TestApi::in_memory().await;
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
    let status = &doc["components"]["schemas"]["DeviceStatus"];
    assert!(
        status["properties"]["runtime"]
            .to_string()
            .contains("#/components/schemas/DeviceRuntime"),
        "{status:#}"
    );
    assert_eq!(
        doc["components"]["schemas"]["DeviceRuntime"]["required"],
        serde_json::json!(["kind", "version"])
    );
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
    // A module devices would refuse: 422, on creation and on replacement.
    for (path, method) in [
        ("/api/v1/applications", "post"),
        ("/api/v1/applications/{name}", "put"),
    ] {
        let refused = &doc["paths"][path][method]["responses"]["422"];
        assert_eq!(
            refused["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn results_need_a_token_and_a_known_application() {
    let api = TestApi::in_memory().await;
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
        let store = Store::sqlite(SqliteStore::open(&path).unwrap());
        let (_, admin) = wasmbed_api::http::Auth::bootstrap(&store).await.unwrap();
        admin.unwrap()
    };
    let store = Store::sqlite(SqliteStore::open(&path).unwrap());
    let (auth, again) = wasmbed_api::http::Auth::bootstrap(&store).await.unwrap();
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
    let api = TestApi::in_memory().await;
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
            "https://127.0.0.1:8080",
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
    let api = TestApi::in_memory().await;
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
    assert_ne!(updated["metadata"]["resource_version"], read);
    assert_eq!(updated["metadata"]["generation"], 2, "the spec changed");
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
    let api = TestApi::in_memory().await;
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
    let api = TestApi::in_memory().await;
    let created = api
        .admin(
            "POST",
            "/api/v1/gateways",
            Some(gateway_body(
                "gw",
                "https://127.0.0.1:8081",
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
            Some(update(version.clone(), "https://127.0.0.1:9000")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(updated["spec"]["http_endpoint"], "https://127.0.0.1:9000");
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
            Some(update(version, "https://127.0.0.1:9001")),
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
    assert_eq!(now["spec"]["http_endpoint"], "https://127.0.0.1:9000");

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

/// A module devices would refuse to install is refused when it is
/// uploaded, with 422 and the reason, and nothing is stored.
#[tokio::test]
async fn modules_devices_would_refuse_are_refused_with_the_reason() {
    let api = TestApi::in_memory().await;
    let token = api.admin.clone();
    let wasm = |wat: &str| wat::parse_str(wat).unwrap();
    // Modules and args; every case runs with entry `main`, one memory page.
    let cases: [(&str, Vec<u8>, Value, &str); 7] = [
        (
            "not WebAssembly",
            b"\x7fELF not wasm".to_vec(),
            json!([]),
            "not valid WebAssembly: it does not start with \\0asm",
        ),
        (
            "truncated",
            b"\0asm\x01\0\0\0\x01".to_vec(),
            json!([]),
            "not valid WebAssembly: ",
        ),
        (
            "an import outside the host API",
            wasm(r#"(module (import "env" "sleep" (func (param i32))) (func (export "main")))"#),
            json!([]),
            "imports env.sleep, which is not in the host API (docs/host-api.md)",
        ),
        (
            "a host API import with a wrong signature",
            wasm(r#"(module (import "wasmbed" "log" (func (param i32))) (func (export "main")))"#),
            json!([]),
            "imports wasmbed.log as (i32) -> (), but the host API's is (i32, i32) -> ()",
        ),
        (
            "no entry point",
            wasm(r#"(module (func (export "run")))"#),
            json!([]),
            "entry function `main` not exported",
        ),
        (
            "an entry point taking other args",
            wasm(r#"(module (func (export "main") (param i32)))"#),
            json!([{ "i32": 1 }, { "i64": 2 }]),
            "`main` takes (i32) but 2 args were given",
        ),
        (
            "a memory larger than memory_pages",
            wasm(r#"(module (memory (export "memory") 2) (func (export "main")))"#),
            json!([]),
            "its memory starts at 2 pages of 64 KiB, more than limits.memory_pages (1)",
        ),
    ];
    for (what, module, args, reason) in cases {
        let mut body = app_body("a1", &module, json!({ "names": ["d1"] }));
        body["spec"]["limits"]["args"] = args;
        let (status, content_type, json) = api
            .call("POST", "/api/v1/applications", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {json}");
        assert_problem(status, &content_type, &json, "invalid_module");
        let detail = json["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("devices would refuse this module: ") && detail.contains(reason),
            "{what}: {detail}"
        );
        use sha2::Digest as _;
        let sha256 = hex::encode(sha2::Sha256::digest(&module));
        assert_eq!(api.state.store.blob(&sha256).await.unwrap(), None, "{what}");
    }
    assert!(
        api.state
            .store
            .list::<wasmbed_api::model::Application>()
            .await
            .unwrap()
            .is_empty()
    );
    // The example of docs/host-api.md is accepted.
    let doc = include_str!("../../../docs/host-api.md");
    let start = doc.find("```wat\n").unwrap() + "```wat\n".len();
    let example = wasm(&doc[start..start + doc[start..].find("```").unwrap()]);
    let created = api
        .admin(
            "POST",
            "/api/v1/applications",
            Some(app_body("a1", &example, json!({ "names": ["d1"] }))),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created["spec"]["module"]["size"], example.len());
}

#[tokio::test]
async fn an_application_is_replaced_at_its_version_with_a_valid_module() {
    use base64::Engine as _;
    let api = TestApi::in_memory().await;
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
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(status, &content_type, &json, "invalid_module");
    // A module devices would refuse: refused with the reason.
    let sleeps = wat::parse_str(
        r#"(module (import "wasmbed" "sleep" (func (param i32)))
           (func (export "main") (param i32) (result i32) (local.get 0)))"#,
    )
    .unwrap();
    let (status, content_type, json) = api
        .call(
            "PUT",
            "/api/v1/applications/a1",
            Some(&token),
            Some(replace(
                version,
                json!(base64::engine::general_purpose::STANDARD.encode(&sleeps)),
                json!({ "names": ["d1"] }),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(status, &content_type, &json, "invalid_module");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("imports wasmbed.sleep, which is not in the host API"),
        "{json}"
    );
    let unchanged = api
        .admin("GET", "/api/v1/applications/a1", None, StatusCode::OK)
        .await;
    assert_eq!(unchanged["spec"], created["spec"]);
    assert_eq!(unchanged["metadata"]["resource_version"], *version);

    let other =
        wat::parse_str(r#"(module (func (export "main") (param i32) (result i32) (local.get 0)))"#)
            .unwrap();
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

/// The names of a list's items.
fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn create_device(api: &TestApi, name: &str, labels: Value) {
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body(name, labels, None)),
        StatusCode::CREATED,
    )
    .await;
}

/// Every page of `uri` (which has a `?`) with `token`; asserts that each
/// page but the last is full and carries a token.
async fn walk(api: &TestApi, uri: &str, limit: usize, token: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page_uri = match &next {
            None => format!("{uri}&limit={limit}"),
            Some(t) => format!("{uri}&limit={limit}&continue={t}"),
        };
        let (items, token_next) = api.page(&page_uri, token).await;
        assert!(items.len() <= limit, "{page_uri}");
        pages.push(names(&items));
        match token_next {
            Some(t) => {
                assert_eq!(items.len(), limit, "a token after a page that is not full");
                next = Some(t);
            }
            None => return pages,
        }
    }
}

#[tokio::test]
async fn pages_cover_every_device_once_in_name_order_while_devices_come_and_go() {
    let api = TestApi::in_memory().await;
    // Created out of name order.
    let mut initial: Vec<String> = (0..23).map(|i| format!("d{:02}", i * 5 % 23)).collect();
    for name in &initial {
        create_device(&api, name, json!({})).await;
    }
    initial.sort();
    let admin = api.admin.clone();
    let mut seen: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &next {
            None => "/api/v1/devices?limit=4".to_owned(),
            Some(t) => format!("/api/v1/devices?limit=4&continue={t}"),
        };
        let (items, token) = api.page(&uri, &admin).await;
        pages += 1;
        seen.extend(names(&items));
        let Some(token) = token else { break };
        assert_eq!(items.len(), 4);
        let last = seen.last().unwrap().clone();
        // Between pages: one device sorting behind the position (not
        // seen), one ahead of it (seen), and one ahead deleted (not seen).
        if pages == 2 {
            create_device(&api, "d00a", json!({})).await;
            create_device(&api, "d99", json!({})).await;
            assert!(last.as_str() > "d00a");
            api.admin(
                "DELETE",
                "/api/v1/devices/d20",
                None,
                StatusCode::NO_CONTENT,
            )
            .await;
        }
        next = Some(token);
    }
    let mut expected: Vec<String> = initial.into_iter().filter(|n| n != "d20").collect();
    expected.push("d99".into());
    assert_eq!(seen, expected, "each once, by name");
    assert_eq!(pages, 6);
    // The whole list has them all, unpaged as before.
    let all = api
        .admin("GET", "/api/v1/devices", None, StatusCode::OK)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 24);
}

#[tokio::test]
async fn a_limit_reaching_the_end_gives_no_token() {
    let api = TestApi::in_memory().await;
    for i in 0..5 {
        create_device(&api, &format!("d{i}"), json!({})).await;
    }
    let admin = api.admin.clone();
    let (items, next) = api.page("/api/v1/devices?limit=5", &admin).await;
    assert_eq!(names(&items), ["d0", "d1", "d2", "d3", "d4"]);
    assert_eq!(next, None, "an exact fit ends the list");
    let (items, next) = api.page("/api/v1/devices?limit=1000", &admin).await;
    assert_eq!(items.len(), 5);
    assert_eq!(next, None);
    let (items, next) = api.page("/api/v1/devices", &admin).await;
    assert_eq!(items.len(), 5);
    assert_eq!(next, None, "no token without a limit");
    let (items, next) = api.page("/api/v1/devices?limit=3", &admin).await;
    assert_eq!(names(&items), ["d0", "d1", "d2"]);
    let next = next.expect("two more remain");
    let (items, last) = api
        .page(
            &format!("/api/v1/devices?limit=100&continue={next}"),
            &admin,
        )
        .await;
    assert_eq!(names(&items), ["d3", "d4"]);
    assert_eq!(last, None);
    // A token without a limit: everything after it.
    let (items, last) = api
        .page(&format!("/api/v1/devices?continue={next}"), &admin)
        .await;
    assert_eq!(names(&items), ["d3", "d4"]);
    assert_eq!(last, None);
    // An empty list.
    let (items, next) = api.page("/api/v1/applications?limit=1", &admin).await;
    assert!(items.is_empty());
    assert_eq!(next, None);
}

#[tokio::test]
async fn label_selected_pages_are_full_of_matching_items() {
    let api = TestApi::in_memory().await;
    // Every fifth matches: a page needs several store pages.
    for i in 0..53 {
        let labels = if i % 5 == 0 {
            json!({ "site": "lab", "n": i.to_string() })
        } else {
            json!({ "site": "field" })
        };
        create_device(&api, &format!("d{i:02}"), labels).await;
    }
    let admin = api.admin.clone();
    let matching: Vec<String> = (0..53)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("d{i:02}"))
        .collect();
    for limit in [1, 2, 3, 4, 11, 1000] {
        let pages = walk(
            &api,
            "/api/v1/devices?labelSelector=site=lab",
            limit,
            &admin,
        )
        .await;
        assert_eq!(pages.concat(), matching, "limit {limit}");
        assert_eq!(pages.len(), matching.len().div_ceil(limit), "limit {limit}");
    }
    // The last match is the last device but one: no token after it
    // although a device follows.
    let (items, next) = api
        .page("/api/v1/devices?labelSelector=site=lab&limit=11", &admin)
        .await;
    assert_eq!(items.len(), 11);
    assert_eq!(next, None);
    // A token belongs to its selector.
    let (_, next) = api
        .page("/api/v1/devices?labelSelector=site=lab&limit=2", &admin)
        .await;
    let next = next.unwrap();
    for uri in [
        format!("/api/v1/devices?limit=2&continue={next}"),
        format!("/api/v1/devices?labelSelector=site=field&limit=2&continue={next}"),
    ] {
        let (status, content_type, json) = api.call("GET", &uri, Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_problem(status, &content_type, &json, "invalid_query");
    }
    // The same selector, written otherwise, is the same list.
    let (items, _) = api
        .page(
            &format!("/api/v1/devices?labelSelector=site%3Dlab,&limit=2&continue={next}"),
            &admin,
        )
        .await;
    assert_eq!(names(&items), ["d10", "d15"]);
}

#[tokio::test]
async fn bad_limits_and_continue_tokens_are_refused_with_a_stable_code() {
    use base64::Engine;
    let api = TestApi::in_memory().await;
    for i in 0..3 {
        create_device(&api, &format!("d{i}"), json!({})).await;
    }
    let admin = api.admin.clone();
    let (_, next) = api.page("/api/v1/devices?limit=1", &admin).await;
    let device_token = next.unwrap();
    let forge =
        |json: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let mut uris: Vec<String> = ["0", "1001", "abc", "-1", "", "1.5", "99999999999"]
        .iter()
        .map(|l| format!("/api/v1/devices?limit={l}"))
        .collect();
    for token in [
        "".to_owned(),
        "!!!".to_owned(),
        "AAAA".to_owned(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("d0"),
        forge(json!({ "v": 2, "kind": "Device", "selector": {} })),
        forge(json!({ "v": 1, "kind": "Device", "inner": "x", "selector": {} })),
        forge(json!({ "v": 2, "kind": "Gateway", "inner": "x", "selector": {} })),
        forge(json!({ "v": 2, "kind": "Device", "inner": "", "selector": {} })),
        forge(json!({ "v": 2, "kind": "Device", "inner": "x", "selector": {}, "x": 1 })),
        // The store's own token, not the API's.
        forge(json!({ "v": 1, "kind": "Device", "after": "d0", "selector": {} })),
        format!("{device_token}x"),
    ] {
        uris.push(format!("/api/v1/devices?limit=1&continue={token}"));
    }
    // A token of one kind's list on another's.
    uris.push(format!(
        "/api/v1/applications?limit=1&continue={device_token}"
    ));
    uris.push(format!("/api/v1/gateways?continue={device_token}"));
    for uri in uris {
        let (status, content_type, json) = api.call("GET", &uri, Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {json}");
        assert_problem(status, &content_type, &json, "invalid_query");
    }
    // The token of the first page is the position after it.
    let (items, _) = api
        .page(
            &format!("/api/v1/devices?limit=5&continue={device_token}"),
            &admin,
        )
        .await;
    assert_eq!(names(&items), ["d1", "d2"]);
}

#[tokio::test]
async fn read_only_tokens_page_applications_and_gateways_too() {
    let api = TestApi::in_memory().await;
    for name in ["gw-c", "gw-a", "gw-b"] {
        api.admin(
            "POST",
            "/api/v1/gateways",
            Some(gateway_body(name, "https://127.0.0.1:1", "127.0.0.1:2")),
            StatusCode::CREATED,
        )
        .await;
    }
    for name in ["app-b", "app-a", "app-c"] {
        api.admin(
            "POST",
            "/api/v1/applications",
            Some(app_body(name, &doubler(), json!({ "names": ["d1"] }))),
            StatusCode::CREATED,
        )
        .await;
    }
    for i in 0..3 {
        create_device(&api, &format!("d{i}"), json!({})).await;
    }
    let reader = api.reader.clone();
    for (uri, all) in [
        ("/api/v1/devices?", ["d0", "d1", "d2"]),
        ("/api/v1/applications?", ["app-a", "app-b", "app-c"]),
        ("/api/v1/gateways?", ["gw-a", "gw-b", "gw-c"]),
    ] {
        let pages = walk(&api, uri, 2, &reader).await;
        assert_eq!(pages, [vec![all[0], all[1]], vec![all[2]]], "{uri}");
    }
}

#[tokio::test]
async fn file_and_memory_databases_serve_the_same_pages() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = TestApi::new(Store::sqlite(
        SqliteStore::open(&dir.path().join("api.db")).unwrap(),
    ))
    .await;
    let memory = TestApi::in_memory().await;
    for i in 0..40 {
        let name = format!("n{}", i * 13 % 40);
        let labels = json!({ "odd": (i % 2).to_string() });
        create_device(&sqlite, &name, labels.clone()).await;
        create_device(&memory, &name, labels).await;
    }
    for uri in ["/api/v1/devices?", "/api/v1/devices?labelSelector=odd=1"] {
        for limit in [1, 3, 7, 40, 41] {
            let a = walk(&sqlite, uri, limit, &sqlite.admin.clone()).await;
            let b = walk(&memory, uri, limit, &memory.admin.clone()).await;
            assert_eq!(a, b, "{uri} limit {limit}");
        }
    }
}

#[tokio::test]
async fn openapi_documents_paging() {
    let api = TestApi::in_memory().await;
    let doc = api
        .admin("GET", "/openapi.json", None, StatusCode::OK)
        .await;
    for path in [
        "/api/v1/devices",
        "/api/v1/applications",
        "/api/v1/gateways",
    ] {
        let get = &doc["paths"][path]["get"];
        let params = get["parameters"].as_array().unwrap();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
        };
        assert_eq!(param("limit")["in"], "query");
        assert_eq!(param("limit")["schema"]["minimum"], 1);
        assert_eq!(param("limit")["schema"]["maximum"], 1000);
        assert_eq!(param("continue")["in"], "query");
        assert_eq!(param("labelSelector")["in"], "query");
        assert!(
            get["responses"]["200"]["headers"]["X-Continue"].is_object(),
            "{path}"
        );
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "array"
        );
    }
}
