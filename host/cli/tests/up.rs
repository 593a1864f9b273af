//! `wasmbed up` end to end: two emulated devices in QEMU running the real
//! firmware, the gateway and the API server in one process; the sample
//! application's results come back through the API, and Ctrl-C stops it
//! all. Skipped (with a message) without qemu-system-arm or the firmware.

#[path = "../../api/tests/browser/mod.rs"]
mod browser;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WASMBED: &str = env!("CARGO_BIN_EXE_wasmbed");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// The firmware and the sample module, or why the test cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    if !on_path("qemu-system-arm") {
        return Err("qemu-system-arm is not installed (apt-get install qemu-system-arm)".into());
    }
    let firmware = std::env::var_os("WASMBED_FIRMWARE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root().join("firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2")
        });
    if !firmware.is_file() {
        return Err(format!(
            "no firmware at {} (cargo xtask firmware)",
            firmware.display()
        ));
    }
    let apps = std::env::var_os("WASMBED_APPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/apps"));
    let app = apps.join("primes.wasm");
    if !app.is_file() {
        return Err(format!("no module at {} (cargo xtask apps)", app.display()));
    }
    Ok((firmware, app))
}

/// Kills the child if the test fails before it stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Ctrl-C first, so that it stops its emulators; SIGKILL after 20 s.
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `wasmbed` with the API address and token; returns its JSON output.
fn wasmbed_json(api: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(WASMBED)
        .args(args)
        .args(["--api", api, "--token", token, "--output", "json"])
        .output()
        .expect("run wasmbed");
    assert!(
        out.status.success(),
        "wasmbed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn value_after<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
}

#[test]
fn up_runs_a_fleet_with_the_sample_application_and_stops_on_ctrl_c() {
    let (firmware, app) = match prerequisites() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("skipping up_runs_a_fleet: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(WASMBED)
        .args(["up", "--devices", "2", "--api-listen", "127.0.0.1:0"])
        .args(["--device-listen", "127.0.0.1:0", "--timeout", "150s"])
        .arg("--dir")
        .arg(dir.path().join("up"))
        .arg("--firmware")
        .arg(&firmware)
        .arg("--app")
        .arg(&app)
        .env("WASMBED_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wasmbed up");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            eprintln!("| {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(200);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("up: results from every device");
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(e) => panic!(
                "no results line ({e}); output so far:\n{}",
                lines.join("\n")
            ),
        }
    }
    let api = value_after(&lines, "up: API server on ")
        .expect("the API address")
        .trim_end_matches('/')
        .to_owned();
    let token = value_after(&lines, "admin token: ")
        .expect("the admin token")
        .to_owned();
    assert!(token.starts_with("wbd_"), "{token}");
    let qemu_pids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split_once("(pid ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(qemu_pids.len(), 2, "{lines:?}");

    let devices = wasmbed_json(&api, &token, &["device", "list"]);
    let devices = devices.as_array().expect("a list");
    assert_eq!(devices.len(), 2, "{devices:?}");
    for device in devices {
        assert_eq!(device["metadata"]["labels"]["demo"], "true");
        assert_eq!(device["spec"]["gateway"], "local");
        assert!(device["spec"]["device_id"].is_string(), "{device}");
        // The Rust firmware runs its modules with wasmi, and says so.
        assert_eq!(
            device["status"]["runtime"],
            serde_json::json!({"kind": "wasmi", "version": "2.0.0"}),
            "{device}"
        );
    }
    let application = wasmbed_json(&api, &token, &["app", "get", "primes"]);
    let deployments = application["status"]["deployments"]
        .as_array()
        .expect("deployments");
    assert_eq!(deployments.len(), 2, "{application}");
    for deployment in deployments {
        assert!(
            deployment["results"].as_u64().unwrap_or(0) >= 1,
            "{deployment}"
        );
    }

    // The results themselves: primes below 10000 returns 1229 and 9973 on
    // every device.
    let deadline = Instant::now() + Duration::from_secs(30);
    let results = loop {
        let results = wasmbed_json(&api, &token, &["app", "results", "primes"]);
        let mut devices: Vec<String> = results
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["returned"] == serde_json::json!([{"i32": 1229}, {"i32": 9973}]))
            .filter_map(|r| r["device"].as_str().map(str::to_owned))
            .collect();
        devices.sort();
        devices.dedup();
        if devices.len() == 2 {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "no results with 1229 from both devices: {results}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let first = &results[0];
    assert!(
        first["logs"][0]
            .as_str()
            .is_some_and(|l| l.starts_with("primes below 10000: 1229")),
        "{first}"
    );
    let out = Command::new(WASMBED)
        .args(["app", "results", "primes", "--api", &api, "--token", &token])
        .output()
        .expect("run wasmbed");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(rows.len() >= 2, "{text}");
    for row in rows {
        assert!(row.contains("i32:1229, i32:9973"), "{text}");
        assert!(row.contains("primes below 10000: 1229"), "{text}");
    }

    // A device created through the API as emulated boots, enrolls and gets
    // the application like the others.
    wasmbed_json(
        &api,
        &token,
        &[
            "device",
            "create",
            "extra",
            "--board",
            "mps2-an385",
            "--gateway",
            "local",
            "--label",
            "demo=true",
            "--emulated",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let device = wasmbed_json(&api, &token, &["device", "get", "extra"]);
        let application = wasmbed_json(&api, &token, &["app", "get", "primes"]);
        let got_results = application["status"]["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["device"] == "extra" && d["results"].as_u64().unwrap_or(0) >= 1);
        if device["spec"]["device_id"].is_string() && got_results {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the emulated device created through the API did not get the application: {device} {application}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    dashboard_deploys_to_the_fleet(&api, &token, dir.path());

    // Deleting it through the API stops its emulator (the Device
    // controller's cleanup).
    let extra_dir = dir.path().join("up").join("devices").join("extra");
    assert!(
        !processes_in(&extra_dir).is_empty(),
        "no emulator runs with {}",
        extra_dir.display()
    );
    let out = Command::new(WASMBED)
        .args([
            "device", "delete", "extra", "--api", &api, "--token", &token,
        ])
        .output()
        .expect("run wasmbed");
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_in(&extra_dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the emulator of the deleted device still runs: {:?}",
            processes_in(&extra_dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let pid = child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let stopped_by = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < stopped_by,
            "still running 20 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    for pid in qemu_pids {
        assert!(
            !Path::new("/proc").join(&pid).exists(),
            "qemu (pid {pid}) is still running"
        );
    }
}

/// The pids of the processes running in directory `dir` (an emulator runs
/// in its device's state directory).
fn processes_in(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The dashboard of the running `wasmbed up`, in headless Chromium: it
/// shows the three devices connected, deploys `fib` through its form and
/// shows the result from every device. Skipped without `chromium` unless
/// `WASMBED_REQUIRE_BROWSER` is set.
fn dashboard_deploys_to_the_fleet(api: &str, token: &str, dir: &Path) {
    let Some(chromium) = browser::find_on_path("chromium") else {
        assert!(
            std::env::var_os("WASMBED_REQUIRE_BROWSER").is_none(),
            "WASMBED_REQUIRE_BROWSER is set but chromium is not on PATH"
        );
        eprintln!(
            "skipping the dashboard part: chromium is not on PATH (apt-get install chromium)"
        );
        return;
    };
    let fib = root().join("apps/wat/fib.wat");
    let module = dir.join("fib.wasm");
    std::fs::write(&module, wat_to_wasm(&fib)).expect("write fib.wasm");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let page = browser::Browser::launch(&chromium).await;
        page.call("Page.navigate", serde_json::json!({ "url": format!("{api}/") }))
            .await;
        page.wait_for("the page", "document.readyState === 'complete' && !!document.getElementById('token-form')")
            .await;
        page.eval(&format!(
            "document.getElementById('token').value = {}; document.getElementById('token-save').click(); true",
            browser::js(token)
        ))
        .await;
        page.wait_for(
            "three connected devices",
            "document.querySelectorAll('[data-testid=device-row][data-presence=connected]').length === 3",
        )
        .await;
        page.eval(
            "document.getElementById('deploy-name').value = 'fib'; \
             document.getElementById('deploy-selector').value = 'demo=true'; \
             document.getElementById('deploy-fuel').value = '20000000'; \
             document.getElementById('deploy-entry').value = 'run'; \
             document.getElementById('deploy-args').value = 'i64:20'; true",
        )
        .await;
        let input = page
            .call(
                "Runtime.evaluate",
                serde_json::json!({ "expression": "document.getElementById('deploy-module')" }),
            )
            .await;
        page.call(
            "DOM.setFileInputFiles",
            serde_json::json!({
                "files": [module.to_str().expect("UTF-8 path")],
                "objectId": input["result"]["objectId"],
            }),
        )
        .await;
        page.eval("document.getElementById('deploy-submit').click(); true")
            .await;
        page.wait_for(
            "fib's result from the three emulated devices",
            "[...document.querySelectorAll('[data-testid=result-row][data-application=fib]')] \
               .filter(r => r.querySelector('[data-testid=result-outcome]').innerText === 'i64:6765').length >= 3",
        )
        .await;
        page.close().await;
    });
}

/// A WAT file as WebAssembly.
fn wat_to_wasm(path: &Path) -> Vec<u8> {
    wat::parse_file(path).expect("valid WAT")
}
