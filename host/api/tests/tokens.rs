//! Tokens: roles (admin, operator, read-only, gateway), listing,
//! revocation (at once, never the last admin token) and expiry.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use wasmbed_api::http::auth::{NewToken, token_sha256};
use wasmbed_api::http::{AppState, Auth, app};
use wasmbed_api::model::now_ms;
use wasmbed_api::store::{DirStore, Role, SqliteStore, Store, TokenRecord};

/// The status of `GET uri` without reading the body (an event stream
/// that is let in never ends).
async fn status_only(api: &TestApi, uri: &str, token: Option<&str>) -> StatusCode {
    let mut request = axum::http::Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(axum::body::Body::empty()).unwrap();
    app(api.state.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

/// Makes a token as the admin; the answer.
async fn create_token(api: &TestApi, body: Value) -> Value {
    api.admin("POST", "/api/v1/tokens", Some(body), StatusCode::CREATED)
        .await
}

fn list_item<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|t| t["id"] == id)
}

fn assert_code(json: &Value, status: StatusCode, code: &str) {
    assert_eq!(json["status"], status.as_u16(), "{json}");
    assert_eq!(json["code"], code, "{json}");
}

#[tokio::test]
async fn tokens_are_listed_without_their_secret_and_revoked_at_once() {
    let api = TestApi::in_memory().await;
    let created = create_token(
        &api,
        json!({ "name": "dashboard", "role": "read_only", "expires_in_s": 3600 }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["role"], "read_only");
    assert_eq!(created["gateway"], Value::Null);
    assert_eq!(created["expired"], false);
    assert_eq!(
        created["expires_at"].as_u64().unwrap(),
        created["created_at"].as_u64().unwrap() + 3_600_000
    );
    assert_eq!(id.len(), 16);
    assert!(!token.contains(&id), "the id is not part of the secret");

    let list = api
        .admin("GET", "/api/v1/tokens", None, StatusCode::OK)
        .await;
    let text = list.to_string();
    assert!(!text.contains(&token), "a list never shows a token: {text}");
    assert!(!text.contains("\"token\""), "{text}");
    let listed = list_item(&list, &id).unwrap();
    for field in [
        "name",
        "role",
        "gateway",
        "created_at",
        "expires_at",
        "expired",
    ] {
        assert_eq!(listed[field], created[field], "{field}");
    }
    let admin = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "admin")
        .unwrap();
    assert_eq!(admin["expires_at"], Value::Null);

    assert_eq!(
        status_only(&api, "/api/v1/devices", Some(&token)).await,
        StatusCode::OK
    );
    api.admin(
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    // Refused from the next request on, the event stream included.
    let (status, _, json) = api.call("GET", "/api/v1/devices", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_code(&json, status, "unauthorized");
    for uri in [
        "/api/v1/events".to_owned(),
        format!("/api/v1/events?access_token={token}"),
    ] {
        let header = (!uri.contains("access_token")).then_some(token.as_str());
        assert_eq!(
            status_only(&api, &uri, header).await,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    let list = api
        .admin("GET", "/api/v1/tokens", None, StatusCode::OK)
        .await;
    assert!(list_item(&list, &id).is_none());
    let (status, _, json) = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_code(&json, status, "not_found");
}

#[tokio::test]
async fn a_revocation_is_in_the_store_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.db");
    let open = || Store::sqlite(SqliteStore::open(&path).unwrap());
    let api = TestApi::new(open()).await;
    let id = api
        .state
        .auth
        .tokens()
        .into_iter()
        .find(|t| t.name == "reader")
        .unwrap()
        .id;
    api.admin(
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    // After a restart: still revoked, the others still valid.
    let (auth, new_admin) = Auth::bootstrap(&open()).await.unwrap();
    assert_eq!(new_admin, None);
    assert_eq!(auth.role_of(&api.reader), None);
    assert_eq!(auth.role_of(&api.admin), Some(Role::Admin));
    assert!(auth.tokens().iter().all(|t| t.id != id));
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let api = TestApi::in_memory().await;
    let list = api
        .admin("GET", "/api/v1/tokens", None, StatusCode::OK)
        .await;
    let first = list.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, content_type, json) = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{first}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(content_type, "application/problem+json");
    assert_code(&json, status, "last_admin_token");

    // With a second admin token, the first may go; then the second is the last.
    let second = create_token(&api, json!({ "name": "ops", "role": "admin" })).await;
    let second_token = second["token"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{first}"),
            Some(second_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        status_only(&api, "/api/v1/tokens", Some(&api.admin)).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, json) = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{second_id}"),
            Some(second_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_code(&json, status, "last_admin_token");
}

/// A stored token that expired a second ago.
fn expired(secret: &str, role: Role, id: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        sha256: token_sha256(secret),
        name: "old".into(),
        role,
        gateway: None,
        created_at: 1,
        expires_at: Some(now_ms() - 1000),
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_with_a_problem_saying_so() {
    let store = common::test_store();
    store
        .tokens()
        .put_token(&expired("wbd_expired", Role::ReadOnly, "00000000000000ee"))
        .await
        .unwrap();
    let api = TestApi::new(store).await;
    for uri in ["/api/v1/devices", "/api/v1/gateways/gw"] {
        let (status, content_type, json) = api.call("GET", uri, Some("wbd_expired"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(content_type, "application/problem+json");
        assert_code(&json, status, "token_expired");
        assert!(
            json["detail"].as_str().unwrap().contains("expired"),
            "{json}"
        );
    }
    assert_eq!(
        status_only(&api, "/api/v1/events?access_token=wbd_expired", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.state.auth.role_of("wbd_expired"), None);
    let list = api
        .admin("GET", "/api/v1/tokens", None, StatusCode::OK)
        .await;
    let listed = list_item(&list, "00000000000000ee").unwrap();
    assert_eq!(listed["expired"], true);
    // Still listed, so that it can be revoked.
    api.admin(
        "DELETE",
        "/api/v1/tokens/00000000000000ee",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

#[tokio::test]
async fn a_short_lived_token_stops_working_when_it_expires() {
    let api = TestApi::in_memory().await;
    let created = create_token(&api, json!({ "name": "ci", "expires_in_s": 1 })).await;
    let token = created["token"].as_str().unwrap();
    assert_eq!(
        status_only(&api, "/api/v1/devices", Some(token)).await,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, json) = api.call("GET", "/api/v1/devices", Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_code(&json, status, "token_expired");
}

#[tokio::test]
async fn expired_admin_tokens_do_not_count_and_a_start_makes_a_new_one() {
    let store = common::test_store();
    store
        .tokens()
        .put_token(&expired("wbd_old_admin", Role::Admin, "00000000000000aa"))
        .await
        .unwrap();
    let (auth, new_admin) = Auth::bootstrap(&store).await.unwrap();
    let new_admin = new_admin.expect("a new admin token when every one has expired");
    assert_eq!(auth.role_of(&new_admin), Some(Role::Admin));
    assert_eq!(auth.role_of("wbd_old_admin"), None);
    // The expired one may be revoked; the new one is the last.
    let api = TestApi {
        state: AppState::new(store, auth.clone()),
        admin: new_admin,
        reader: String::new(),
    };
    api.admin(
        "DELETE",
        "/api/v1/tokens/00000000000000aa",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let id = auth.tokens()[0].id.clone();
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn token_requests_are_checked() {
    let api = TestApi::in_memory().await;
    for body in [
        json!({ "name": "gw", "role": "gateway" }),
        json!({ "name": "gw", "role": "gateway", "gateway": "Not A Name" }),
        json!({ "name": "ci", "role": "read_only", "gateway": "edge-1" }),
        json!({ "name": "ci", "role": "admin", "gateway": "edge-1" }),
        json!({ "name": "ci", "expires_in_s": 0 }),
        json!({ "name": "ci", "expires_in_s": 315_360_001u64 }),
        json!({ "name": "ci", "expires_in_s": -5 }),
        json!({ "name": "ci", "role": "root" }),
        json!({ "name": "Bad Name" }),
        json!({ "role": "admin" }),
    ] {
        let (status, content_type, json) = api
            .call(
                "POST",
                "/api/v1/tokens",
                Some(&api.admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(content_type, "application/problem+json");
    }
    assert_eq!(api.state.auth.tokens().len(), 2, "nothing made");
    // Without a role: read-only, as before roles were chosen.
    let created = create_token(&api, json!({ "name": "ci" })).await;
    assert_eq!(created["role"], "read_only");
    assert_eq!(created["expires_at"], Value::Null);
}

#[tokio::test]
async fn only_admin_tokens_manage_tokens() {
    let api = TestApi::in_memory().await;
    let id = api.state.auth.tokens()[0].id.clone();
    let gateway = api.state.auth.issue("edge-1", Role::Gateway).await.unwrap();
    let operator = api
        .state
        .auth
        .issue("deployer", Role::Operator)
        .await
        .unwrap();
    for token in [&api.reader, &operator, &gateway] {
        for (method, uri, body) in [
            ("GET", "/api/v1/tokens".to_owned(), None),
            (
                "POST",
                "/api/v1/tokens".to_owned(),
                Some(json!({ "name": "x", "role": "admin" })),
            ),
            ("DELETE", format!("/api/v1/tokens/{id}"), None),
        ] {
            let (status, content_type, json) = api.call(method, &uri, Some(token), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_eq!(content_type, "application/problem+json");
            assert_code(&json, status, "forbidden");
        }
    }
    assert_eq!(api.state.auth.tokens().len(), 4, "nothing made or revoked");
}

#[tokio::test]
async fn gateway_tokens_register_and_update_only_their_own_gateway() {
    let api = TestApi::in_memory().await;
    let created = create_token(
        &api,
        json!({ "name": "edge-1-registration", "role": "gateway", "gateway": "edge-1" }),
    )
    .await;
    assert_eq!(created["gateway"], "edge-1");
    let token = created["token"].as_str().unwrap().to_owned();
    let call = |method: &'static str, uri: String, body: Option<Value>| {
        let token = token.clone();
        let api = &api;
        async move { api.call(method, &uri, Some(&token), body).await }
    };

    // Its own gateway: registered, read, updated.
    let (status, _, registered) = call(
        "POST",
        "/api/v1/gateways".into(),
        Some(gateway_body("edge-1", "https://127.0.0.1:1", "127.0.0.1:2")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let (status, _, read) = call("GET", "/api/v1/gateways/edge-1".into(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, registered);
    let (status, _, updated) = call(
        "PUT",
        "/api/v1/gateways/edge-1".into(),
        Some(json!({
            "metadata": { "labels": {}, "resource_version": read["metadata"]["resource_version"] },
            "spec": { "http_endpoint": "https://127.0.0.1:3", "device_endpoint": "127.0.0.1:4" }
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["spec"]["http_endpoint"], "https://127.0.0.1:3");
    // Registering again is a conflict, as for anyone (then it updates).
    let (status, _, _) = call(
        "POST",
        "/api/v1/gateways".into(),
        Some(gateway_body("edge-1", "https://127.0.0.1:1", "127.0.0.1:2")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Another gateway, existing or not: refused, and nothing changes.
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body("edge-2", "https://127.0.0.1:5", "127.0.0.1:6")),
        StatusCode::CREATED,
    )
    .await;
    let edge_2 = api
        .admin("GET", "/api/v1/gateways/edge-2", None, StatusCode::OK)
        .await;
    let other_update = json!({
        "metadata": { "labels": {}, "resource_version": edge_2["metadata"]["resource_version"] },
        "spec": { "http_endpoint": "https://10.0.0.1:1", "device_endpoint": "10.0.0.1:2" }
    });
    let mut refused: Vec<(&'static str, String, Option<Value>)> = vec![
        (
            "POST",
            "/api/v1/gateways".into(),
            Some(gateway_body("edge-3", "https://127.0.0.1:1", "127.0.0.1:2")),
        ),
        ("GET", "/api/v1/gateways/edge-2".into(), None),
        ("GET", "/api/v1/gateways/nope".into(), None),
        (
            "PUT",
            "/api/v1/gateways/edge-2".into(),
            Some(other_update.clone()),
        ),
        ("DELETE", "/api/v1/gateways/edge-2".into(), None),
        // Not even its own may it forget, nor list the others.
        ("DELETE", "/api/v1/gateways/edge-1".into(), None),
        ("GET", "/api/v1/gateways".into(), None),
        ("GET", "/openapi.json".into(), None),
        ("GET", "/api/v1/tokens".into(), None),
        (
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({ "name": "x", "role": "gateway", "gateway": "edge-2" })),
        ),
    ];
    // Devices and applications, every route.
    refused.extend([
        ("GET", "/api/v1/devices".into(), None),
        (
            "POST",
            "/api/v1/devices".into(),
            Some(device_body("d1", json!({}), None)),
        ),
        ("GET", "/api/v1/devices/d1".into(), None),
        ("DELETE", "/api/v1/devices/d1".into(), None),
        ("GET", "/api/v1/applications".into(), None),
        (
            "POST",
            "/api/v1/applications".into(),
            Some(app_body("a1", &doubler(), json!({ "names": ["d1"] }))),
        ),
        ("GET", "/api/v1/applications/a1".into(), None),
        ("GET", "/api/v1/applications/a1/results".into(), None),
        ("DELETE", "/api/v1/applications/a1".into(), None),
    ]);
    for (method, uri, body) in refused {
        let (status, content_type, json) = call(method, uri.clone(), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {json}");
        assert_eq!(content_type, "application/problem+json");
        assert_code(&json, status, "forbidden");
    }
    // Nor the event stream, by header or by query.
    assert_eq!(
        status_only(&api, "/api/v1/events", Some(&token)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_only(&api, &format!("/api/v1/events?access_token={token}"), None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.admin("GET", "/api/v1/gateways/edge-2", None, StatusCode::OK)
            .await,
        edge_2
    );
    let gateways = api
        .admin("GET", "/api/v1/gateways", None, StatusCode::OK)
        .await;
    assert_eq!(gateways.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn operator_tokens_change_devices_and_applications_only() {
    let api = TestApi::in_memory().await;
    let operator = api
        .state
        .auth
        .create(NewToken {
            name: "deployer".into(),
            role: Role::Operator,
            gateway: None,
            expires_at: None,
        })
        .await
        .unwrap()
        .1;
    let call = |method: &'static str, uri: &'static str, body: Option<Value>| {
        let api = &api;
        let operator = operator.clone();
        async move { api.call(method, uri, Some(&operator), body).await.0 }
    };
    assert_eq!(
        call(
            "POST",
            "/api/v1/devices",
            Some(device_body("d1", json!({}), None))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/applications",
            Some(app_body("a1", &doubler(), json!({ "names": ["d1"] })))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call("DELETE", "/api/v1/applications/a1", None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call("DELETE", "/api/v1/devices/d1", None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(call("GET", "/api/v1/gateways", None).await, StatusCode::OK);
    assert_eq!(call("GET", "/openapi.json", None).await, StatusCode::OK);
    assert_eq!(
        call(
            "POST",
            "/api/v1/gateways",
            Some(gateway_body("gw", "https://127.0.0.1:1", "127.0.0.1:2"))
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("DELETE", "/api/v1/gateways/gw", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_only(&api, "/api/v1/events", Some(&operator)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn openapi_documents_the_token_routes_and_every_refusal() {
    let api = TestApi::in_memory().await;
    let doc = api
        .admin("GET", "/openapi.json", None, StatusCode::OK)
        .await;
    let tokens = &doc["paths"]["/api/v1/tokens"];
    for (operation, codes) in [
        (&tokens["post"], &["201", "400", "401", "403", "415"][..]),
        (&tokens["get"], &["200", "401", "403"][..]),
        (
            &doc["paths"]["/api/v1/tokens/{id}"]["delete"],
            &["204", "401", "403", "404", "409"][..],
        ),
    ] {
        for code in codes {
            assert!(
                operation["responses"][code].is_object(),
                "{code}: {operation:#}"
            );
        }
    }
    let role = &doc["components"]["schemas"]["Role"];
    assert_eq!(
        role["enum"],
        json!(["admin", "operator", "read_only", "gateway"])
    );
    // Every operation that needs a token says it may be refused (401)
    // and refused to its role (403).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for code in ["401", "403"] {
                assert!(
                    operation["responses"][code]["content"]["application/problem+json"].is_object(),
                    "{method} {path} does not document {code}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_open_event_streams() {
    let api = TestApi::in_memory().await;
    let created = api
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({ "name": "dashboard", "role": "read_only" })),
            StatusCode::CREATED,
        )
        .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let addr = api.serve().await;
    let mut stream = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("ready"),
        "{first:?}"
    );

    api.admin(
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    // The stream ends at its next look at the store (every 500 ms).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while stream.chunk().await.unwrap_or(None).is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream of a revoked token stayed open");
}

/// The pods of a StatefulSet share one Secret: a gateway token bound to
/// `prefix*` registers every gateway whose name starts with the prefix,
/// and no other.
#[tokio::test]
async fn a_gateway_token_bound_to_a_prefix_registers_the_gateways_it_names() {
    let api = TestApi::in_memory().await;
    for bad in ["*", "-x*", "Edge*", "edge_*", "edge-*-*"] {
        let (status, _, json) = api
            .call(
                "POST",
                "/api/v1/tokens",
                Some(&api.admin),
                Some(json!({ "name": "pods", "role": "gateway", "gateway": bad })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
    }
    let created = create_token(
        &api,
        json!({ "name": "pods", "role": "gateway", "gateway": "wasmbed-gateway-*" }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    for (name, wanted) in [
        ("wasmbed-gateway-0", StatusCode::CREATED),
        ("wasmbed-gateway-17", StatusCode::CREATED),
        ("wasmbed-gateway", StatusCode::FORBIDDEN),
        ("wasmbed-gateways-0", StatusCode::FORBIDDEN),
        ("edge-1", StatusCode::FORBIDDEN),
    ] {
        let (status, _, json) = api
            .call(
                "POST",
                "/api/v1/gateways",
                Some(&token),
                Some(gateway_body(name, "https://127.0.0.1:1", "127.0.0.1:2")),
            )
            .await;
        assert_eq!(status, wanted, "{name}: {json}");
    }
    let names: Vec<String> = api
        .admin("GET", "/api/v1/gateways", None, StatusCode::OK)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["wasmbed-gateway-0", "wasmbed-gateway-17"]);
}

/// Two API servers sharing one token directory (replicas on one volume):
/// a token made at one is let in by the other once it reads the tokens
/// again, and one revoked at one is refused by the other from then on.
#[tokio::test]
async fn replicas_sharing_a_token_directory_see_each_others_tokens_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let replica = || {
        let files = std::sync::Arc::new(DirStore::open(dir.path()).unwrap());
        let resources = std::sync::Arc::new(SqliteStore::in_memory().unwrap());
        Store::beside(resources, files)
    };
    let (a, admin) = Auth::bootstrap(&replica()).await.unwrap();
    let (b, second_admin) = Auth::bootstrap(&replica()).await.unwrap();
    assert!(admin.is_some());
    assert_eq!(
        second_admin, None,
        "the second finds the first's admin token"
    );
    assert_eq!(b.authenticate(&admin.unwrap()).unwrap().role, Role::Admin);

    let (record, token) = a
        .create(NewToken {
            name: "ops".into(),
            role: Role::Operator,
            gateway: None,
            expires_at: None,
        })
        .await
        .unwrap();
    assert!(b.authenticate(&token).is_err(), "not read yet");
    b.reload().await.unwrap();
    assert_eq!(b.authenticate(&token).unwrap().role, Role::Operator);

    a.revoke(&record.id).await.unwrap();
    assert!(b.authenticate(&token).is_ok(), "not read yet");
    b.reload().await.unwrap();
    assert!(b.authenticate(&token).is_err());
    assert!(!b.still_valid(&record.id));
}
