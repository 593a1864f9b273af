//! The dashboard and the event stream: over HTTP, and in a real headless
//! Chromium driven through the Chrome DevTools Protocol against a real
//! gateway with simulated devices.
//!
//! The browser test is skipped (with a message) when `chromium` is not on
//! `PATH`, unless `WASMBED_REQUIRE_BROWSER` is set: then it fails.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::model::{Device, Presence};
use wasmbed_gateway::store::Store as GatewayStore;
use wasmbed_gateway::{Gateway, GatewayConfig};
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
    let api = TestApi::in_memory();
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
    // Writes that do not notify (the controller's) are seen too.
    api.state
        .store
        .quiet()
        .modify::<Device>("d1", |d| {
            d.status.presence = Presence::Connected;
            true
        })
        .unwrap();
    read_until(&mut events, r#""name":"d1","type":"updated""#).await;
    api.admin("DELETE", "/api/v1/devices/d1", None, StatusCode::NO_CONTENT)
        .await;
    read_until(&mut events, r#""name":"d1","type":"deleted""#).await;
}

// --- a minimal Chrome DevTools Protocol client -------------------------------

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Headless Chromium and one page of it.
struct Browser {
    child: tokio::process::Child,
    commands: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: std::sync::atomic::AtomicU64,
    session: String,
    /// Console messages, exceptions and log entries of the page.
    console: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn console_line(method: &str, params: &Value) -> Option<String> {
    match method {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    a.get("value")
                        .map(|v| v.to_string())
                        .or_else(|| a["description"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            Some(format!(
                "console.{}: {}",
                params["type"].as_str().unwrap_or("?"),
                args.join(" ")
            ))
        }
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            params["exceptionDetails"]["exception"]["description"]
                .as_str()
                .unwrap_or_else(|| params["exceptionDetails"]["text"].as_str().unwrap_or("?"))
        )),
        "Log.entryAdded" => Some(format!(
            "log.{}: {} {}",
            params["entry"]["level"].as_str().unwrap_or("?"),
            params["entry"]["text"].as_str().unwrap_or(""),
            params["entry"]["url"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

impl Browser {
    async fn launch(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
                    return url.to_owned();
                }
                seen.push(line);
            }
            panic!("chromium exited: {}", seen.join("\n"));
        })
        .await
        .expect("chromium did not print its DevTools address in 30 s");
        // Keep draining its stderr, or it blocks once the pipe is full.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        let (mut sink, mut stream) = socket.split();
        let (commands, mut outgoing) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let console: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let pending = pending.clone();
            let console = console.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = value["id"].as_u64() {
                        if let Some(reply) = pending.lock().unwrap().remove(&id) {
                            let _ = reply.send(value);
                        }
                    } else if let Some(method) = value["method"].as_str() {
                        if let Some(line) = console_line(method, &value["params"]) {
                            console.lock().unwrap().push(line);
                        }
                    }
                }
            });
        }
        let mut browser = Browser {
            child,
            commands,
            pending,
            next_id: 1.into(),
            session: String::new(),
            console,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Page.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// One command (to the page once attached); its `result`.
    async fn call(&self, method: &str, params: Value) -> Value {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut command = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        let (reply, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, reply);
        self.commands
            .send(Message::text(command.to_string()))
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} in 30 s"))
            .unwrap();
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Evaluates `expression` in the page (awaiting promises); its value.
    async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// What a person would see, and what the page logged.
    async fn dump(&self) -> String {
        let text = self
            .eval("document.body ? document.body.innerText : '(no body)'")
            .await;
        let console = self.console.lock().unwrap().join("\n");
        format!(
            "--- page text ---\n{}\n--- console ---\n{console}",
            text.as_str().unwrap_or("")
        )
    }

    /// Polls `expression` until it is `true`; panics with the page's text
    /// and console after [`WAIT`].
    async fn wait_for(&self, what: &str, expression: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(expression).await == json!(true) {
                return start.elapsed();
            }
            if start.elapsed() > WAIT {
                panic!("waited {WAIT:?} for {what}\n{}", self.dump().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call("Browser.close", json!({})),
        )
        .await;
        let _ = self.child.kill().await;
    }
}

// --- a real gateway and simulated devices --------------------------------------

fn installation() -> &'static wasmbed_pki::Installation {
    &wasmbed_pki::test_fixtures().installation
}

struct TestGateway {
    devices: SocketAddr,
    http: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_gateway() -> TestGateway {
    let mut config = GatewayConfig {
        chunk_size: 512,
        transfer_window: 2048,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = 250;
    config.session.missed_heartbeats = 12;
    let gateway = Gateway::new(config, installation(), GatewayStore::in_memory().unwrap()).unwrap();
    let devices = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let test = TestGateway {
        devices: devices.local_addr().unwrap(),
        http: http.local_addr().unwrap(),
        _stop: stop,
    };
    tokio::spawn(async move {
        gateway
            .serve(devices, http, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    test
}

fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

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
    reqwest::Client::new()
        .put(format!("http://{}/v1/pairing", gateway.http))
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

    let api = TestApi::in_memory();
    let (_stop_controller, stopped) = oneshot::channel::<()>();
    let controller = Controller::new(
        &api.state.store,
        ControllerConfig {
            interval: Duration::from_millis(200),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            request_timeout: Duration::from_secs(5),
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
            &format!("http://{}", gateway.http),
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

    // Deploy through the form, the module from a file.
    browser
        .eval(
            "document.getElementById('deploy-name').value = 'doubler'; \
             document.getElementById('deploy-selector').value = 'site=lab'; \
             document.getElementById('deploy-fuel').value = '100000'; \
             document.getElementById('deploy-entry').value = 'main'; \
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
    let errors: Vec<String> = browser
        .console
        .lock()
        .unwrap()
        .iter()
        .filter(|l| {
            // Expected: the wrong token's 401s and the second deploy's 409.
            let expected = ["401", "409", "Unauthorized", "Conflict"];
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
