//! A minimal Chrome DevTools Protocol client driving headless Chromium:
//! enough to open a page, evaluate JavaScript, set a file input and wait
//! for a condition. Shared by the dashboard tests of `host/api` and
//! `host/cli` (which includes this file by path).
#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

// --- a minimal Chrome DevTools Protocol client -------------------------------

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Headless Chromium and one page of it.
pub(crate) struct Browser {
    child: tokio::process::Child,
    commands: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: std::sync::atomic::AtomicU64,
    session: String,
    /// Console messages, exceptions and log entries of the page.
    pub(crate) console: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
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
    pub(crate) async fn launch(chromium: &Path) -> Browser {
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
    pub(crate) async fn call(&self, method: &str, params: Value) -> Value {
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
    pub(crate) async fn eval(&self, expression: &str) -> Value {
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
    pub(crate) async fn dump(&self) -> String {
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
    pub(crate) async fn wait_for(&self, what: &str, expression: &str) -> Duration {
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

    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call("Browser.close", json!({})),
        )
        .await;
        let _ = self.child.kill().await;
    }
}

/// `text` as a JavaScript string literal.
pub(crate) fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}
