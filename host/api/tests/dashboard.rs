//! The dashboard and the event stream: over HTTP, and in a real headless
//! Chromium driven through the Chrome DevTools Protocol against a real
//! gateway with simulated devices.
//!
//! The browser test is skipped (with a message) when `chromium` is not on
//! `PATH`, unless `WASMBED_REQUIRE_BROWSER` is set: then it fails.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod browser;
mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use browser::{Browser, find_on_path, js};
use common::*;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::model::{Device, DeviceRuntime, Presence};
use wasmbed_sim::{Fleet, SimConfig, Simulation};

const WAIT: Duration = Duration::from_secs(60);

// --- over HTTP ---------------------------------------------------------------

/// Reads the event stream until `needle` shows up; returns all it read.
async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream; read: {text}"))
            .unwrap()
            .unwrap_or_else(|| panic!("stream ended before {needle:?}; read: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn the_dashboard_is_static_and_events_need_a_token() {
    let api = TestApi::in_memory().await;
    let addr = api.serve().await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    for (path, content_type, marker) in [
        ("/", "text/html", "deploy-form"),
        ("/dashboard/app.js", "text/javascript", "EventSource"),
        ("/dashboard/style.css", "text/css", "#chart"),
    ] {
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {headers:?}"
        );
        assert!(headers.contains_key("content-security-policy"));
        assert!(response.text().await.unwrap().contains(marker), "{path}");
    }

    // No token, a wrong one: problem documents.
    for path in ["/api/v1/events", "/api/v1/events?access_token=wbd_nope"] {
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
    }
    // The query token is for the event stream only.
    let response = client
        .get(url(&format!("/api/v1/devices?access_token={}", api.admin)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A header token works too.
    let response = client
        .get(url("/api/v1/events"))
        .bearer_auth(&api.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    // A read-only token in the query: a stream of changes.
    let mut events = client
        .get(url(&format!("/api/v1/events?access_token={}", api.reader)))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    read_until(&mut events, "event: ready").await;
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("d1", json!({ "site": "lab" }), None)),
        StatusCode::CREATED,
    )
    .await;
    let text = read_until(&mut events, "\"name\":\"d1\"").await;
    assert!(text.contains("event: change"), "{text}");
    assert!(
        text.contains(r#"{"kind":"Device","name":"d1","type":"created","resource_version":"#),
        "{text}"
    );
    // Status writes (the controller's) are seen too.
    api.state
        .store
        .modify_status::<Device>("d1", |d| {
            d.status.presence = Presence::Connected;
            true
        })
        .await
        .unwrap();
    read_until(&mut events, r#""name":"d1","type":"updated""#).await;
    api.admin("DELETE", "/api/v1/devices/d1", None, StatusCode::NO_CONTENT)
        .await;
    read_until(&mut events, r#""name":"d1","type":"deleted""#).await;
}

// --- a real gateway and simulated devices --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_and_deploys_a_module_in_chromium() {
    let Some(chromium) = find_on_path("chromium") else {
        if std::env::var_os("WASMBED_REQUIRE_BROWSER").is_some() {
            panic!("WASMBED_REQUIRE_BROWSER is set but chromium is not on PATH");
        }
        println!(
            "SKIPPED the_dashboard_shows_the_fleet_and_deploys_a_module_in_chromium: \
             chromium is not on PATH (apt-get install chromium; set WASMBED_REQUIRE_BROWSER to fail instead)"
        );
        return;
    };
    let started = Instant::now();

    let gateway = start_gateway().await;
    gateway_client()
        .put(gateway.url("/v1/pairing"))
        .json(&json!({ "open": true }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let sim = SimConfig::new(gateway.devices)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
    let fleet = Fleet::start(Simulation::new(sim, installation()).unwrap(), 3, None).unwrap();
    let deadline = Instant::now() + WAIT;
    while !fleet.devices().iter().all(|d| d.snapshot().connected) {
        assert!(
            Instant::now() < deadline,
            "the simulated devices never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let api = TestApi::in_memory().await;
    let (_stop_controller, stopped) = oneshot::channel::<()>();
    let controller = Controller::new(
        &api.state.store,
        ControllerConfig {
            interval: Duration::from_millis(200),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            request_timeout: Duration::from_secs(5),
            gateway_tls: Some(gateway_tls()),
            ..ControllerConfig::default()
        },
    );
    tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    let addr = api.serve().await;
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
    let module_dir = tempfile::tempdir().unwrap();
    let module_path = module_dir.path().join("doubler.wasm");
    std::fs::write(&module_path, doubler()).unwrap();

    let browser = Browser::launch(&chromium).await;
    let launched = started.elapsed();
    browser
        .call("Page.navigate", json!({ "url": format!("http://{addr}/") }))
        .await;
    browser
        .wait_for(
            "the page",
            "document.readyState === 'complete' && !!document.getElementById('token-form')",
        )
        .await;
    // Without a token nothing is fetched and the stream is off.
    assert_eq!(
        browser
            .eval("document.getElementById('live-status').dataset.state")
            .await,
        "offline"
    );

    // A wrong token: a clear error.
    browser
        .eval(
            "document.getElementById('token').value = 'wbd_wrong'; \
             document.getElementById('token-save').click(); true",
        )
        .await;
    browser
        .wait_for(
            "the unauthorized error",
            "!document.getElementById('error').hidden && \
             document.getElementById('error').innerText.includes('Unauthorized')",
        )
        .await;

    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('token-save').click(); true",
            js(&api.admin)
        ))
        .await;
    browser
        .wait_for(
            "the live stream",
            "document.getElementById('live-status').dataset.state === 'live'",
        )
        .await;
    assert_eq!(
        browser
            .eval(&format!(
                "localStorage.getItem('wasmbed.token') === {}",
                js(&api.admin)
            ))
            .await,
        true
    );
    // The devices are registered while the page watches: their rows and
    // presence arrive through the event stream.
    assert_eq!(
        browser
            .eval("document.querySelectorAll('[data-testid=device-row]').length")
            .await,
        0
    );
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
    let connected = browser
        .wait_for(
            "three connected devices",
            "document.querySelectorAll('[data-testid=device-row][data-presence=connected]').length === 3",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('[data-testid=gateway-row][data-name=gw]') !== null")
            .await,
        true
    );
    // Each row shows the runtime its device reported, which tells its
    // firmware: the simulated devices run the agent with wasmi.
    browser
        .wait_for(
            "the devices' runtime",
            "[...document.querySelectorAll('[data-testid=device-runtime]')] \
               .filter(c => c.innerText === 'wasmi 2.0.0' && c.dataset.runtime === 'wasmi') \
               .length === 3",
        )
        .await;
    // A device's text is shown as text, never run as markup.
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("markup", json!({}), None)),
        StatusCode::CREATED,
    )
    .await;
    api.state
        .store
        .modify_status::<Device>("markup", |d| {
            d.status.runtime = Some(DeviceRuntime {
                kind: "wamr".into(),
                version: "<img src=x onerror=alert(1)>".into(),
            });
            true
        })
        .await
        .unwrap();
    browser
        .wait_for(
            "the markup shown as text",
            "(() => { \
               const row = document.querySelector('[data-testid=device-row][data-name=markup]'); \
               return !!row && row.querySelector('img') === null && \
                 row.querySelector('[data-testid=device-runtime]').textContent === \
                   'wamr <img src=x onerror=alert(1)>'; \
             })()",
        )
        .await;

    // Deploy through the form, the module from a file; first with an entry
    // point the module does not export, which the form shows refused with
    // the reason.
    browser
        .eval(
            "document.getElementById('deploy-name').value = 'doubler'; \
             document.getElementById('deploy-selector').value = 'site=lab'; \
             document.getElementById('deploy-fuel').value = '100000'; \
             document.getElementById('deploy-entry').value = 'start'; \
             document.getElementById('deploy-args').value = '21'; true",
        )
        .await;
    let input = browser
        .call(
            "Runtime.evaluate",
            json!({ "expression": "document.getElementById('deploy-module')" }),
        )
        .await;
    browser
        .call(
            "DOM.setFileInputFiles",
            json!({
                "files": [module_path.to_str().unwrap()],
                "objectId": input["result"]["objectId"],
            }),
        )
        .await;
    browser
        .eval("document.getElementById('deploy-submit').click(); true")
        .await;
    browser
        .wait_for(
            "the refusal and its reason",
            "!document.getElementById('error').hidden && \
             document.getElementById('error-title').innerText === 'Unprocessable Entity' && \
             document.getElementById('error-detail').innerText.includes('entry function `start` not exported') && \
             document.getElementById('deploy-status').innerText === 'Not deployed.'",
        )
        .await;
    browser
        .eval(
            "document.getElementById('deploy-entry').value = 'main'; \
             document.getElementById('deploy-submit').click(); true",
        )
        .await;
    let deployed = browser
        .wait_for(
            "the application on three devices with results",
            "(() => { \
               const row = document.querySelector('[data-testid=application-row][data-name=doubler]'); \
               if (!row) return false; \
               const ds = [...row.querySelectorAll('[data-testid=deployment]')]; \
               return ds.length === 3 && ds.every(d => \
                 ['Installed', 'Running', 'Stopped'].includes(d.dataset.phase) && \
                 Number(d.dataset.results) >= 1); \
             })()",
        )
        .await;
    let status = browser
        .eval("document.getElementById('deploy-status').innerText")
        .await;
    assert!(
        status.as_str().unwrap().contains("doubler created"),
        "{status}"
    );
    browser
        .wait_for(
            "the results list, the devices' applications and the chart",
            "[...document.querySelectorAll('[data-testid=result-row][data-application=doubler]')] \
               .filter(r => r.querySelector('[data-testid=result-outcome]').innerText === 'i32:42').length >= 3 && \
             document.querySelectorAll('#devices-body .phase-Stopped, #devices-body .phase-Running, #devices-body .phase-Installed').length === 3 && \
             document.querySelector('#chart path[data-series=connected]') !== null && \
             document.getElementById('chart-summary').innerText.includes('Connected devices 3')",
        )
        .await;

    // The server's results agree with the page.
    let app = api
        .admin("GET", "/api/v1/applications/doubler", None, StatusCode::OK)
        .await;
    assert_eq!(app["status"]["results"], 3);
    // So does the revision, which every device runs.
    let revision = app["status"]["revision"].as_str().unwrap().to_owned();
    let shown = browser
        .eval(
            "(() => { \
               const row = document.querySelector('[data-testid=application-row][data-name=doubler]'); \
               const ds = [...row.querySelectorAll('[data-testid=deployment]')]; \
               return row.dataset.revision + ' ' + ds.filter(d => d.dataset.current === 'true').length + ' ' + row.innerText.includes('revision ' + row.dataset.revision); \
             })()",
        )
        .await;
    assert_eq!(shown, json!(format!("{revision} 3 true")));
    let results = api
        .admin(
            "GET",
            "/api/v1/applications/doubler/results",
            None,
            StatusCode::OK,
        )
        .await;
    let shown = browser
        .eval(
            "JSON.stringify([...document.querySelectorAll('[data-testid=result-row][data-application=doubler]')] \
               .map(r => [r.dataset.device, r.dataset.outcome]).sort())",
        )
        .await;
    let mut expected: Vec<(String, String)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device"].as_str().unwrap().to_owned(),
                "returned".to_owned(),
            )
        })
        .collect();
    expected.sort();
    let shown: Vec<(String, String)> = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    assert_eq!(shown, expected);

    // Deploying the same name again: the problem document is shown.
    browser
        .eval("document.getElementById('deploy-submit').click(); true")
        .await;
    browser
        .wait_for(
            "the conflict error",
            "!document.getElementById('error').hidden && \
             document.getElementById('error').innerText.includes('Conflict') && \
             document.getElementById('error').innerText.includes('already exists')",
        )
        .await;
    // A change elsewhere refetches the lists; the error of what the user
    // did stays until they act again or dismiss it.
    api.admin(
        "POST",
        "/api/v1/devices",
        Some(device_body("late", json!({}), None)),
        StatusCode::CREATED,
    )
    .await;
    browser
        .wait_for(
            "the new device after the error",
            "document.querySelectorAll('[data-testid=device-row][data-name=late]').length === 1",
        )
        .await;
    let still = browser
        .eval(
            "!document.getElementById('error').hidden && \
             document.getElementById('error').innerText.includes('already exists')",
        )
        .await;
    assert_eq!(
        still,
        json!(true),
        "a background refetch hid the user's error"
    );
    let errors: Vec<String> = browser
        .console
        .lock()
        .unwrap()
        .iter()
        .filter(|l| {
            // Expected: the wrong token's 401s, the refused module's 422
            // and the second deploy's 409.
            let expected = [
                "401",
                "409",
                "422",
                "Unauthorized",
                "Conflict",
                "Unprocessable Entity",
            ];
            !expected.iter().any(|e| l.contains(e))
        })
        .cloned()
        .collect();
    assert!(errors.is_empty(), "unexpected console output: {errors:#?}");

    println!(
        "browser test: chromium up after {launched:?}, devices connected on the page in {connected:?}, \
         deployment shown in {deployed:?}, {:?} in all",
        started.elapsed()
    );
    if let Some(path) = std::env::var_os("WASMBED_DASHBOARD_SCREENSHOT") {
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": 1280, "height": 2200, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
        let shot = browser
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(&path, png).unwrap();
    }
    browser.close().await;
    fleet.shutdown(Duration::from_secs(5)).await;
}
