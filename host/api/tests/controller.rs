//! The controller against a real gateway on loopback with simulated
//! devices running the real agent.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_sim::{Fleet, SimConfig, Simulation};

const WAIT: Duration = Duration::from_secs(30);

/// The devices, sorted and once each, with a result that returned `values`.
fn devices_returning(results: &Value, values: Value) -> Vec<String> {
    let mut devices: Vec<String> = results
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["returned"] == values)
        .map(|r| r["device"].as_str().unwrap_or_default().to_owned())
        .collect();
    devices.sort();
    devices.dedup();
    devices
}

/// Polls `check` until it holds; panics after `within`.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, Value)>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (done, last) = check().await;
        if done {
            return last;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("waited {WAIT:?} for {what}; last: {last:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast_controller() -> ControllerConfig {
    ControllerConfig {
        interval: Duration::from_millis(100),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        request_timeout: Duration::from_secs(5),
        gateway_tls: Some(gateway_tls()),
        ..ControllerConfig::default()
    }
}

fn spawn_controller(api: &TestApi) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = Controller::new(&api.state.store, fast_controller());
    tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_reaches_the_selected_simulated_devices_and_leaves_on_delete() {
    let (gateway, fleet) = connected_fleet(3).await;
    let ids: Vec<String> = fleet
        .devices()
        .iter()
        .map(|d| d.device_id().unwrap().to_string())
        .collect();

    let api = TestApi::in_memory().await;
    let _controller = spawn_controller(&api);
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body(
            "gw",
            &gateway.base(),
            &gateway.devices.to_string(),
        )),
        StatusCode::CREATED,
    )
    .await;
    for (i, id) in ids.iter().enumerate() {
        api.admin(
            "POST",
            "/api/v1/devices",
            Some(device_body(
                &format!("sim-{i}"),
                json!({ "site": "lab" }),
                Some(id.clone()),
            )),
            StatusCode::CREATED,
        )
        .await;
    }
    // Not selected: another site.
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("elsewhere", json!({ "site": "home" }), None)),
        StatusCode::CREATED,
    )
    .await;
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body(
            "doubler",
            &doubler(),
            json!({ "match_labels": { "site": "lab" } }),
        )),
        StatusCode::CREATED,
    )
    .await;

    let app = eventually("the application on three devices with results", || async {
        let app = api
            .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
            .await;
        let deployments = app["status"]["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = deployments.len() == 3
            && deployments.iter().all(|d| {
                matches!(
                    d["phase"].as_str(),
                    Some("Installed" | "Running" | "Stopped")
                ) && d["results"].as_u64() >= Some(1)
            });
        (done, app)
    })
    .await;
    assert_eq!(app["status"]["results"], 3);
    let mut placed: Vec<String> = app["status"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap().to_owned())
        .collect();
    placed.sort();
    assert_eq!(placed, ["sim-0", "sim-1", "sim-2"]);
    let gateway_ids: Vec<u64> = app["status"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["gateway_deployment_id"].as_u64().unwrap())
        .collect();
    for id in &gateway_ids {
        let (_, results) = gateway.get(&format!("/v1/results?deployment={id}")).await;
        assert_eq!(results[0]["returned"][0], json!({ "i32": 42 }));
    }
    // The results themselves, through the API, for each device.
    let results = eventually("results of every device through the API", || async {
        let results = api
            .admin(
                "GET",
                "/api/v1/applications/doubler/results",
                None,
                StatusCode::OK,
            )
            .await;
        let devices = devices_returning(&results, json!([{ "i32": 42 }]));
        (devices == ["sim-0", "sim-1", "sim-2"], results)
    })
    .await;
    for result in results.as_array().unwrap() {
        assert_eq!(result["trap"], Value::Null, "{result}");
        assert!(result["fuel_used"].as_u64().unwrap() > 0, "{result}");
        assert!(result["received_at"].as_u64().unwrap() > 0, "{result}");
        assert!(
            gateway_ids.contains(&result["gateway_deployment_id"].as_u64().unwrap()),
            "{result}"
        );
    }
    let received: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["received_at"].as_u64().unwrap())
        .collect();
    assert!(received.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Device statuses: presence from the gateway, the placement.
    let device = eventually("device status", || async {
        let device = api
            .admin("GET", "/api/v1/devices/sim-0", None, StatusCode::OK)
            .await;
        // The simulated devices run the agent with wasmi, as the Rust firmware does.
        let done = device["status"]["presence"] == "connected"
            && device["status"]["last_heartbeat"].is_u64()
            && device["status"]["runtime"] == json!({"kind": "wasmi", "version": "2.0.0"})
            && device["status"]["deployments"][0]["application"] == "doubler";
        (done, device)
    })
    .await;
    assert_eq!(device["status"]["deployments"].as_array().unwrap().len(), 1);
    let other = api
        .admin("GET", "/api/v1/devices/elsewhere", None, StatusCode::OK)
        .await;
    assert_eq!(other["status"]["deployments"], json!([]));
    let gw = api
        .admin("GET", "/api/v1/gateways/gw", None, StatusCode::OK)
        .await;
    assert_eq!(gw["status"]["reachable"], true);
    assert!(gw["status"]["last_seen"].is_u64());

    // A device relabelled out of the selector loses the application.
    api.replace_retrying("/api/v1/devices/sim-2", |sim2| {
        json!({
            "metadata": { "labels": { "site": "home" }, "resource_version": sim2["metadata"]["resource_version"] },
            "spec": sim2["spec"],
        })
    })
    .await;
    let sim2_deployment = app["status"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "sim-2")
        .unwrap()["gateway_deployment_id"]
        .as_u64()
        .unwrap();
    eventually("the application on two devices", || async {
        let app = api
            .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
            .await;
        let done = app["status"]["deployments"].as_array().map(Vec::len) == Some(2);
        (done, app)
    })
    .await;
    eventually("the relabelled device's deployment removed", || async {
        let (_, deployment) = gateway
            .get(&format!("/v1/deployments/{sim2_deployment}"))
            .await;
        (deployment["state"] == "removed", deployment)
    })
    .await;

    // Deleting: the controller removes the deployments, then the resource.
    let deleting = api
        .admin(
            "DELETE",
            "/api/v1/applications/doubler",
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    assert!(
        deleting["metadata"]["deletion_timestamp"]
            .as_u64()
            .is_some(),
        "{deleting:#}"
    );
    assert_eq!(
        deleting["metadata"]["finalizers"],
        json!(["wasmbed.io/undeploy"])
    );
    eventually("the application gone", || async {
        let (status, _, json) = api
            .call(
                "GET",
                "/api/v1/applications/doubler",
                Some(&api.admin),
                None,
            )
            .await;
        (status == StatusCode::NOT_FOUND, json)
    })
    .await;
    for id in &gateway_ids {
        eventually("the deployment removed from its device", || async {
            let (_, deployment) = gateway.get(&format!("/v1/deployments/{id}")).await;
            (deployment["state"] == "removed", deployment)
        })
        .await;
    }
    eventually("device statuses without the application", || async {
        let device = api
            .admin("GET", "/api/v1/devices/sim-0", None, StatusCode::OK)
            .await;
        (device["status"]["deployments"] == json!([]), device)
    })
    .await;
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.installs, 3);
    assert_eq!(stats.errors.total(), 0, "{}", stats.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_reported_and_retried() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let api = TestApi::in_memory().await;
    let _controller = spawn_controller(&api);
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body(
            "gw",
            &format!("https://{addr}"),
            "127.0.0.1:40029",
        )),
        StatusCode::CREATED,
    )
    .await;
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body(
            "d1",
            json!({}),
            Some("00112233445566778899aabbccddeeff".into()),
        )),
        StatusCode::CREATED,
    )
    .await;
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body("a1", &doubler(), json!({ "names": ["d1"] }))),
        StatusCode::CREATED,
    )
    .await;
    let gw = eventually("the gateway unreachable", || async {
        let gw = api
            .admin("GET", "/api/v1/gateways/gw", None, StatusCode::OK)
            .await;
        let done = gw["status"]["reachable"] == false && gw["status"]["reason"].is_string();
        (done, gw)
    })
    .await;
    assert!(
        !gw["status"].to_string().contains(&addr.to_string()),
        "no URL in statuses"
    );
    let app = eventually("the reason in the application", || async {
        let app = api
            .admin("GET", "/api/v1/applications/a1", None, StatusCode::OK)
            .await;
        let done = app["status"]["deployments"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gw"));
        (done, app)
    })
    .await;
    assert_eq!(app["status"]["deployments"][0]["phase"], "Pending");
    assert_eq!(
        app["status"]["deployments"][0]["gateway_deployment_id"],
        Value::Null
    );
    // Nothing was placed: deleting is immediate.
    api.admin(
        "DELETE",
        "/api/v1/applications/a1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

/// The deployment entry of `device` in an application's status.
fn entry_of(app: &Value, device: &str) -> Vec<Value> {
    app["status"]["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["device"] == device)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_or_deleted_device_loses_its_deployment_at_the_gateway_that_holds_it() {
    let (holding, fleet) = connected_fleet(2).await;
    let other = start_gateway().await;
    let ids: Vec<String> = fleet
        .devices()
        .iter()
        .map(|d| d.device_id().unwrap().to_string())
        .collect();

    let api = TestApi::in_memory().await;
    let _controller = spawn_controller(&api);
    for (name, gateway) in [("gw", &holding), ("gw-b", &other)] {
        api.admin(
            "POST",
            "/api/v1/gateways",
            Some(gateway_body(
                name,
                &gateway.base(),
                &gateway.devices.to_string(),
            )),
            StatusCode::CREATED,
        )
        .await;
    }
    for (i, id) in ids.iter().enumerate() {
        api.admin(
            "POST",
            "/api/v1/devices",
            Some(device_body(
                &format!("sim-{i}"),
                json!({}),
                Some(id.clone()),
            )),
            StatusCode::CREATED,
        )
        .await;
    }
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body(
            "doubler",
            &doubler(),
            json!({ "names": ["sim-0", "sim-1"] }),
        )),
        StatusCode::CREATED,
    )
    .await;
    let app = eventually("the application on both devices with results", || async {
        let app = api
            .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
            .await;
        let deployments = app["status"]["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done =
            deployments.len() == 2 && deployments.iter().all(|d| d["results"].as_u64() >= Some(1));
        (done, app)
    })
    .await;
    let placed: Vec<(String, u64)> = ["sim-0", "sim-1"]
        .iter()
        .zip(&ids)
        .map(|(name, id)| {
            let entry = &entry_of(&app, name)[0];
            assert_eq!(entry["gateway"], "gw", "{entry}");
            assert_eq!(
                entry["device_id"].as_str(),
                wasmbed_api::http::devices::normalize_device_id(id).as_deref(),
                "{entry}"
            );
            (
                (*name).to_owned(),
                entry["gateway_deployment_id"].as_u64().unwrap(),
            )
        })
        .collect();

    // sim-0's spec names the other gateway, but the device stays connected
    // where it is: work follows where a device is (its status), so its
    // deployment stays there.
    let sim0 = api
        .admin("GET", "/api/v1/devices/sim-0", None, StatusCode::OK)
        .await;
    assert_eq!(sim0["status"]["gateway"], "gw", "{sim0:#}");
    api.replace_retrying("/api/v1/devices/sim-0", |sim0| {
        let mut moved_spec = sim0["spec"].clone();
        moved_spec["gateway"] = json!("gw-b");
        json!({
            "metadata": { "labels": {}, "resource_version": sim0["metadata"]["resource_version"] },
            "spec": moved_spec,
        })
    })
    .await;
    let (_, first) = &placed[0];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, deployment) = holding.get(&format!("/v1/deployments/{first}")).await;
    assert_eq!(deployment["desired"], "running", "{deployment}");
    let app = api
        .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
        .await;
    let entries = entry_of(&app, "sim-0");
    assert_eq!(entries.len(), 1, "{app:#}");
    assert_eq!(entries[0]["gateway"], "gw", "{app:#}");
    assert_eq!(entries[0]["gateway_deployment_id"], *first, "{app:#}");
    assert_eq!(entry_of(&app, "sim-1").len(), 1, "{app:#}");

    // sim-1 is deleted: its deployment is removed too.
    api.admin(
        "DELETE",
        "/api/v1/devices/sim-1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (_, second) = &placed[1];
    eventually("the deleted device's deployment removed", || async {
        let (_, deployment) = holding.get(&format!("/v1/deployments/{second}")).await;
        (deployment["state"] == "removed", deployment)
    })
    .await;
    eventually("the deleted device out of the status", || async {
        let app = api
            .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
            .await;
        (entry_of(&app, "sim-1").is_empty(), app)
    })
    .await;
    fleet.shutdown(Duration::from_secs(5)).await;
}

/// A broken gateway (with the gateway's certificate) answering every
/// request with an endless chunked body.
async fn endless_gateway() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixtures = wasmbed_pki::test_fixtures();
    let tls = wasmbed_pki::gateway_http_server_config(&fixtures.installation, &fixtures.control_ca)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_gateway_answer_is_cut_off_and_reported() {
    let addr = endless_gateway().await;
    let api = TestApi::in_memory().await;
    let _controller = spawn_controller(&api);
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body(
            "gw",
            &format!("https://{addr}"),
            "127.0.0.1:40029",
        )),
        StatusCode::CREATED,
    )
    .await;
    let gw = eventually("the gateway reported unreachable", || async {
        let gw = api
            .admin("GET", "/api/v1/gateways/gw", None, StatusCode::OK)
            .await;
        let done = gw["status"]["reachable"] == false && gw["status"]["reason"].is_string();
        (done, gw)
    })
    .await;
    let reason = gw["status"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&wasmbed_api::controller::MAX_GATEWAY_ANSWER.to_string()),
        "{reason}"
    );
    // The API server still answers.
    api.admin("GET", "/api/v1/devices", None, StatusCode::OK)
        .await;
}

/// A gateway (with the gateway's certificate) answering every request
/// with `body`.
async fn scripted_gateway(body: Value) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixtures = wasmbed_pki::test_fixtures();
    let tls = wasmbed_pki::gateway_http_server_config(&fixtures.installation, &fixtures.control_ca)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = body.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_a_gateway_reports_reaches_the_device_status_when_a_device_could_have_sent_it()
{
    let zephyr = "00112233445566778899aabbccddeeff";
    let forged = "ffeeddccbbaa99887766554433221100";
    // Devices as the gateway's contract (`wasmbed_gateway_api::DeviceView`) has them.
    let device = |id: &str, heartbeat: u64, version: String| {
        json!({"id": id, "public_key": "04", "board": "b", "firmware_version": "f",
               "enrolled_at_ms": 1, "last_seen_ms": null, "presence": "connected",
               "last_heartbeat_ms": heartbeat, "uptime_ms": null, "free_memory": null,
               "apps": [], "runtime": {"kind": "wamr", "version": version}})
    };
    let addr = scripted_gateway(json!([
        device(zephyr, 7, "2.4.3".to_owned()),
        device(forged, 8, "9".repeat(1000)),
    ]))
    .await;
    let api = TestApi::in_memory().await;
    let _controller = spawn_controller(&api);
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body(
            "gw",
            &format!("https://{addr}"),
            "127.0.0.1:40029",
        )),
        StatusCode::CREATED,
    )
    .await;
    for (name, id) in [("zephyr", zephyr), ("forged", forged)] {
        api.admin(
            "POST",
            "/api/v1/devices",
            Some(device_body(name, json!({}), Some(id.to_owned()))),
            StatusCode::CREATED,
        )
        .await;
    }
    eventually("the Zephyr device's runtime", || async {
        let device = api
            .admin("GET", "/api/v1/devices/zephyr", None, StatusCode::OK)
            .await;
        let done = device["status"]["runtime"] == json!({"kind": "wamr", "version": "2.4.3"});
        (done, device)
    })
    .await;
    // The implausible one is ignored; the rest of its status is taken.
    let forged = eventually("the other device's heartbeat", || async {
        let device = api
            .admin("GET", "/api/v1/devices/forged", None, StatusCode::OK)
            .await;
        (device["status"]["last_heartbeat"] == 8, device)
    })
    .await;
    assert!(forged["status"].get("runtime").is_none(), "{forged:#}");
}

/// A module that triples its argument.
fn tripler() -> Vec<u8> {
    wat::parse_str(
        r#"(module (func (export "main") (param i32) (result i32)
            (i32.mul (local.get 0) (i32.const 3))))"#,
    )
    .unwrap()
}

/// Each device's gateway deployment id in an application's status.
fn placements(app: &Value) -> Vec<(String, Option<u64>)> {
    let mut placed: Vec<(String, Option<u64>)> = app["status"]["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_owned(),
                d["gateway_deployment_id"].as_u64(),
            )
        })
        .collect();
    placed.sort();
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_replaces_the_old_one_on_every_device_and_a_new_selector_does_not() {
    use base64::Engine as _;
    let (gateway, fleet, api, _controller) = registered_fleet(2).await;
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body(
            "calc",
            &doubler(),
            json!({ "names": ["sim-0", "sim-1"] }),
        )),
        StatusCode::CREATED,
    )
    .await;
    let settled = |app: &Value| {
        let deployments = app["status"]["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        deployments.len() == 2
            && deployments.iter().all(|d| {
                d["revision"] == app["status"]["revision"] && d["results"].as_u64() >= Some(1)
            })
    };
    let first = eventually("the first revision on both devices", || async {
        let app = api
            .admin("GET", "/api/v1/applications/calc", None, StatusCode::OK)
            .await;
        (settled(&app), app)
    })
    .await;
    let first_placements = placements(&first);

    let spec = |module: &[u8], selector: Value| {
        json!({
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "limits": first["spec"]["limits"],
            "selector": selector,
        })
    };
    // The same module under a selector that picks the same devices: the
    // revision stays and nothing is redeployed.
    let reselected = api
        .admin(
            "PUT",
            "/api/v1/applications/calc",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": first["metadata"]["resource_version"] },
                "spec": spec(&doubler(), json!({ "match_labels": { "site": "lab" } })),
            })),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        reselected["status"]["revision"],
        first["status"]["revision"]
    );
    // Several controller passes (100 ms apart).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let app = api
        .admin("GET", "/api/v1/applications/calc", None, StatusCode::OK)
        .await;
    assert_eq!(placements(&app), first_placements, "{app:#}");

    // A new module: a new revision replaces the old one on both devices.
    let revised = api
        .admin(
            "PUT",
            "/api/v1/applications/calc",
            Some(json!({
                "metadata": { "labels": {}, "resource_version": app["metadata"]["resource_version"] },
                "spec": spec(&tripler(), json!({ "match_labels": { "site": "lab" } })),
            })),
            StatusCode::OK,
        )
        .await;
    assert_ne!(revised["spec"]["module"], first["spec"]["module"]);
    let second = eventually("the second revision on both devices", || async {
        let app = api
            .admin("GET", "/api/v1/applications/calc", None, StatusCode::OK)
            .await;
        let done = app["status"]["revision"] != first["status"]["revision"] && settled(&app);
        (done, app)
    })
    .await;
    for ((device, old), (_, new)) in first_placements.iter().zip(placements(&second)) {
        assert_ne!(Some(*old), Some(new), "{device} got a new deployment");
        let old = old.unwrap();
        eventually("the old revision removed", || async {
            let (_, deployment) = gateway.get(&format!("/v1/deployments/{old}")).await;
            (deployment["state"] == "removed", deployment)
        })
        .await;
    }
    eventually("the new module's results from both devices", || async {
        let results = api
            .admin(
                "GET",
                "/api/v1/applications/calc/results",
                None,
                StatusCode::OK,
            )
            .await;
        let devices = devices_returning(&results, json!([{ "i32": 63 }]));
        (devices == ["sim-0", "sim-1"], results)
    })
    .await;
    fleet.shutdown(Duration::from_secs(5)).await;
}

/// A gateway with pairing open and `n` simulated devices connected to it.
async fn connected_fleet(n: usize) -> (TestGateway, Fleet) {
    let gateway = start_gateway().await;
    let pairing = gateway_client()
        .put(gateway.url("/v1/pairing"))
        .json(&json!({ "open": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(pairing.status(), 200);
    let sim = SimConfig::new(gateway.devices)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
    let fleet = Fleet::start(Simulation::new(sim, installation()).unwrap(), n, None).unwrap();
    eventually("connected devices", || async {
        let connected = fleet.devices().iter().all(|d| d.snapshot().connected);
        (connected, Value::Null)
    })
    .await;
    (gateway, fleet)
}

/// A gateway with `n` connected simulated devices, an API with a running
/// controller, the gateway registered as `gw` and the devices as `sim-i`
/// labelled `site=lab`.
async fn registered_fleet(n: usize) -> (TestGateway, Fleet, TestApi, oneshot::Sender<()>) {
    let (gateway, fleet) = connected_fleet(n).await;
    let api = TestApi::in_memory().await;
    let controller = spawn_controller(&api);
    api.admin(
        "POST",
        "/api/v1/gateways",
        Some(gateway_body(
            "gw",
            &gateway.base(),
            &gateway.devices.to_string(),
        )),
        StatusCode::CREATED,
    )
    .await;
    for (i, device) in fleet.devices().iter().enumerate() {
        api.admin(
            "POST",
            "/api/v1/devices",
            Some(device_body(
                &format!("sim-{i}"),
                json!({ "site": "lab" }),
                Some(device.device_id().unwrap().to_string()),
            )),
            StatusCode::CREATED,
        )
        .await;
    }
    (gateway, fleet, api, controller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_run_is_the_reason_shown_for_its_deployment() {
    let (_gateway, fleet, api, _controller) = registered_fleet(1).await;
    let trapping =
        wat::parse_str(r#"(module (func (export "main") (param i32) (result i32) unreachable))"#)
            .unwrap();
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body("broken", &trapping, json!({ "names": ["sim-0"] }))),
        StatusCode::CREATED,
    )
    .await;
    let app = eventually("the trap as the deployment's reason", || async {
        let app = api
            .admin("GET", "/api/v1/applications/broken", None, StatusCode::OK)
            .await;
        let reason = app["status"]["deployments"][0]["reason"].clone();
        (reason == "the last run trapped: Unreachable", app)
    })
    .await;
    assert_eq!(app["status"]["results"], 1, "{app:#}");
    fleet.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_refused_by_its_gateway_and_gets_no_application() {
    let (gateway, fleet, api, _controller) = registered_fleet(2).await;
    api.admin(
        "POST",
        "/api/v1/applications",
        Some(app_body(
            "doubler",
            &doubler(),
            json!({ "match_labels": { "site": "lab" } }),
        )),
        StatusCode::CREATED,
    )
    .await;
    eventually("results from both devices", || async {
        let results = api
            .admin(
                "GET",
                "/api/v1/applications/doubler/results",
                None,
                StatusCode::OK,
            )
            .await;
        let devices = devices_returning(&results, json!([{ "i32": 42 }]));
        (devices == ["sim-0", "sim-1"], results)
    })
    .await;
    let revoked_id = fleet.devices()[0].device_id().unwrap().to_string();

    let device = api
        .admin(
            "POST",
            "/api/v1/devices/sim-0/revoke",
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(device["spec"]["revoked"], true, "{device:#}");
    eventually("the revocation confirmed", || async {
        let device = api
            .admin("GET", "/api/v1/devices/sim-0", None, StatusCode::OK)
            .await;
        (device["status"]["revoked"] == true, device)
    })
    .await;
    // The gateway forgot it, and refuses its certificate.
    let (status, _) = gateway.get(&format!("/v1/devices/{revoked_id}")).await;
    assert_eq!(status, 404);
    eventually("the revoked device refused at the handshake", || async {
        let (_, metrics) = gateway.get_text("/metrics").await;
        let refused = metrics.contains(r#"handshake_failures_total{reason="revoked"}"#);
        (refused, Value::Null)
    })
    .await;
    // It holds no application any more; the other device keeps its own.
    let app = eventually("the revoked device out of the application", || async {
        let app = api
            .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
            .await;
        (
            entry_of(&app, "sim-0").is_empty() && entry_of(&app, "sim-1").len() == 1,
            app,
        )
    })
    .await;
    assert_eq!(entry_of(&app, "sim-1")[0]["results"], 1, "{app:#}");
    // Revocation cannot be undone with a PUT.
    let device = api
        .admin("GET", "/api/v1/devices/sim-0", None, StatusCode::OK)
        .await;
    let mut spec = device["spec"].clone();
    spec["revoked"] = json!(false);
    let body = json!({
        "metadata": { "labels": device["metadata"]["labels"], "resource_version": device["metadata"]["resource_version"] },
        "spec": spec,
    });
    api.admin(
        "PUT",
        "/api/v1/devices/sim-0",
        Some(body),
        StatusCode::CONFLICT,
    )
    .await;
    fleet.shutdown(Duration::from_secs(5)).await;
}
