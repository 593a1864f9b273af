//! `wasmbed api` as a process and the client commands against it: devices
//! and applications created, listed, shown and deleted; errors reported
//! from the problem documents with a non-zero exit; Ctrl-C stops it.
//!
//! On the store `WASMBED_TEST_STORE` names: SQLite (the default) or
//! Kubernetes, a fake API server (see `common`).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ApiStore;
use wasmbed_api::model::Kind;

const WASMBED: &str = env!("CARGO_BIN_EXE_wasmbed");

/// Stops the server (Ctrl-C, then SIGKILL) if the test fails first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Api {
    url: String,
    token: String,
}

impl Api {
    /// The same server, with another token.
    fn with_token(&self, token: &str) -> Api {
        Api {
            url: self.url.clone(),
            token: token.to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(WASMBED)
            .args(args)
            .env("WASMBED_API", &self.url)
            .env("WASMBED_TOKEN", &self.token)
            .env_remove("WASMBED_LOG")
            .output()
            .expect("run wasmbed")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "wasmbed {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "wasmbed {args:?} succeeded");
        String::from_utf8(out.stderr).expect("UTF-8")
    }
}

/// `POST path` with a JSON body, as the admin; the status.
fn post(api: &Api, path: &str, body: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let host = api.url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(host).expect("connect");
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        api.token,
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("answer");
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Starts `wasmbed api` on a free port with a database in `dir` and its
/// resources in `store`; the process, the client of its admin token and
/// the lines it printed.
fn start_api(dir: &std::path::Path, store: &ApiStore) -> (Running, Api, Vec<String>) {
    let mut command = Command::new(WASMBED);
    command
        .args(["api", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("api.db"));
    store.configure(&mut command);
    let (child, url, token, lines) = spawn_api(command);
    let api = Api {
        url,
        token: token.expect("an admin token before the address"),
    };
    (child, api, lines)
}

/// Starts `command` (a `wasmbed api`) and reads its output up to its
/// address: the server, its URL, the admin token it printed if any, and
/// the lines read.
fn spawn_api(mut command: Command) -> (Running, String, Option<String>, Vec<String>) {
    let child = command
        .env("WASMBED_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wasmbed api");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut token = None;
    let mut url = None;
    let mut lines = Vec::new();
    while url.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}; output: {lines:?}"));
        if let Some(rest) = line.strip_prefix("admin token: ") {
            token = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("API server on ") {
            url = Some(rest.trim().trim_end_matches('/').to_owned());
        }
        lines.push(line);
    }
    (child, url.expect("url"), token, lines)
}

/// Waits up to 10 s for `check` to hold.
fn within_10_s(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two `wasmbed api` replicas on one (fake) cluster sharing one `--data`
/// directory, as on a ReadWriteMany volume: the second finds the first's
/// admin token, a token made or revoked at one counts at the other within
/// `--token-reload`, and one of them holds the controller's Lease.
#[test]
fn replicas_sharing_data_share_tokens_and_one_reconciles() {
    let store = ApiStore::kubernetes();
    let data = tempfile::tempdir().expect("temp dir");
    let replica = |name: &str| {
        let mut command = Command::new(WASMBED);
        command
            .args(["api", "--listen", "127.0.0.1:0", "--token-reload", "200ms"])
            .arg("--data")
            .arg(data.path())
            .env("POD_NAME", name);
        store.configure(&mut command);
        spawn_api(command)
    };
    let (_a, url_a, admin, _) = replica("replica-a");
    let (_b, url_b, none, lines) = replica("replica-b");
    let admin = admin.expect("the first replica made the admin token");
    assert_eq!(none, None, "the second made another admin token: {lines:?}");
    let a = Api {
        url: url_a,
        token: admin.clone(),
    };
    let b = Api {
        url: url_b,
        token: admin,
    };
    b.ok(&["device", "list"]);

    let made = a.ok(&[
        "token", "create", "--name", "ops", "--role", "operator", "--output", "json",
    ]);
    let made: serde_json::Value = serde_json::from_str(&made).expect("JSON");
    let operator = b.with_token(made["token"].as_str().expect("the token"));
    within_10_s("the operator token at the other replica", || {
        operator.run(&["device", "list"]).status.success()
    });
    a.ok(&["token", "revoke", made["id"].as_str().expect("its id")]);
    within_10_s("the revocation at the other replica", || {
        !operator.run(&["device", "list"]).status.success()
    });

    let cluster = store.cluster().expect("a fake cluster");
    let holder = cluster.lease_holder();
    assert!(
        matches!(holder.as_deref(), Some("replica-a" | "replica-b")),
        "{holder:?}"
    );
}

#[test]
fn client_commands_manage_devices_and_applications() {
    let store = ApiStore::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, api, lines) = start_api(dir.path(), &store);
    assert!(
        lines.iter().any(|l| l.contains("save this token")),
        "{lines:?}"
    );

    // No token: 401 with the problem's title and a hint.
    let out = Command::new(WASMBED)
        .args(["device", "list", "--api", &api.url])
        .env_remove("WASMBED_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthorized (401)"), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");

    assert_eq!(
        api.ok(&["device", "list"]).trim(),
        "NAME  BOARD  GATEWAY  DEVICE ID  PRESENCE  RUNTIME  APPS  LABELS"
    );
    api.ok(&[
        "device",
        "create",
        "dev-1",
        "--board",
        "mps2-an385",
        "--gateway",
        "gw",
        "--label",
        "demo=true",
        "--device-id",
        "00112233445566778899aabbccddeeff",
    ]);
    api.ok(&[
        "device",
        "create",
        "dev-2",
        "--board",
        "wasmbed-sim",
        "--gateway",
        "gw",
    ]);
    if let Some(cluster) = store.cluster() {
        assert_eq!(cluster.names(Kind::Device), ["dev-1", "dev-2"]);
        // The only replica took the controller's Lease.
        assert!(cluster.lease_holder().is_some(), "no one holds the Lease");
    }
    let list = api.ok(&["device", "list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 3, "{list}");
    assert!(
        rows[1].starts_with(
            "dev-1  mps2-an385   gw       00112233445566778899aabbccddeeff  unknown   -        0"
        ),
        "{list}"
    );
    assert!(rows[1].ends_with("demo=true"), "{list}");
    let selected = api.ok(&["device", "list", "--selector", "demo=true"]);
    assert_eq!(selected.lines().count(), 2, "{selected}");

    let json: serde_json::Value =
        serde_json::from_str(&api.ok(&["device", "get", "dev-1", "--output", "json"]))
            .expect("JSON");
    assert_eq!(
        json["spec"]["device_id"],
        "00112233445566778899aabbccddeeff"
    );
    assert!(
        api.ok(&["device", "get", "dev-2"])
            .contains("board:      wasmbed-sim")
    );

    let err = api.fails(&["device", "get", "nope"]);
    assert!(err.contains("Not Found (404)"), "{err}");
    let err = api.fails(&[
        "device",
        "create",
        "dev-1",
        "--board",
        "b",
        "--gateway",
        "gw",
    ]);
    assert!(err.contains("Conflict (409)"), "{err}");

    // A module devices would refuse (it exports no `run`) is refused with
    // the reason.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x01\0\0\0").expect("write module");
    let err = api.fails(&[
        "app",
        "deploy",
        empty.to_str().expect("UTF-8 path"),
        "--name",
        "demo",
        "--selector",
        "demo=true",
    ]);
    assert!(
        err.contains(
            "Unprocessable Entity (422): devices would refuse this module: \
             entry function `run` not exported"
        ),
        "{err}"
    );
    let module = dir.path().join("m.wasm");
    let wasm = wat::parse_str(r#"(module (func (export "run") (param i32)))"#).expect("WAT");
    std::fs::write(&module, &wasm).expect("write module");
    let module = module.to_str().expect("UTF-8 path");
    let out = api.ok(&[
        "app",
        "deploy",
        module,
        "--name",
        "demo",
        "--selector",
        "demo=true",
        "--arg",
        "i32:6",
        "--fuel",
        "500",
    ]);
    let created = format!("application demo created ({} bytes)", wasm.len());
    assert!(out.contains(&created), "{out}");
    let err = api.fails(&["app", "deploy", module, "--name", "none"]);
    assert!(err.contains("--selector"), "{err}");
    // Deploying under a taken name needs --replace, which keeps the
    // application and swaps its module and limits (checked below: 7 and
    // 1000 are the replacement's).
    let err = api.fails(&[
        "app",
        "deploy",
        module,
        "--name",
        "demo",
        "--selector",
        "demo=true",
    ]);
    assert!(err.contains("--replace"), "{err}");
    let before: serde_json::Value =
        serde_json::from_str(&api.ok(&["app", "get", "demo", "--output", "json"])).expect("JSON");
    let out = api.ok(&[
        "app",
        "deploy",
        module,
        "--name",
        "demo",
        "--selector",
        "demo=true",
        "--arg",
        "i32:7",
        "--fuel",
        "1000",
        "--replace",
    ]);
    let replaced = format!("application demo replaced ({} bytes)", wasm.len());
    assert!(out.contains(&replaced), "{out}");
    let after: serde_json::Value =
        serde_json::from_str(&api.ok(&["app", "get", "demo", "--output", "json"])).expect("JSON");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(before["spec"]["limits"]["fuel"], 500);
    assert!(
        after["metadata"]["resource_version"] != before["metadata"]["resource_version"],
        "{after}"
    );
    let apps = api.ok(&["app", "list"]);
    assert!(
        apps.lines().nth(1).is_some_and(|l| l.starts_with("demo ")),
        "{apps}"
    );
    let app: serde_json::Value =
        serde_json::from_str(&api.ok(&["app", "get", "demo", "--output", "json"])).expect("JSON");
    assert_eq!(app["spec"]["limits"]["args"][0]["i32"], 7);
    assert_eq!(app["spec"]["limits"]["fuel"], 1000);
    assert_eq!(app["spec"]["selector"]["match_labels"]["demo"], "true");
    // No gateway is registered: the controller records why dev-1 waits.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let results = api.ok(&["app", "results"]);
        if results.contains("dev-1") {
            assert!(
                results
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.contains("Pending")),
                "{results}"
            );
            assert!(!results.contains("dev-2"), "{results}");
            break;
        }
        assert!(Instant::now() < until, "no deployment status: {results}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its execution results: none, as no gateway ran it.
    let out = api.ok(&["app", "results", "demo"]);
    assert!(out.contains("application demo has no results yet"), "{out}");
    let out = api.ok(&["app", "results", "demo", "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("JSON"),
        serde_json::json!([])
    );
    assert!(api.fails(&["app", "results", "nope"]).contains("404"));
    if let Some(cluster) = store.cluster() {
        assert_eq!(cluster.names(Kind::Application), ["demo"]);
    }
    let out = api.ok(&["app", "delete", "demo"]);
    assert!(out.contains("application demo deleted"), "{out}");
    assert!(api.fails(&["app", "get", "demo"]).contains("404"));
    assert!(api.ok(&["device", "delete", "dev-2"]).contains("deleted"));
    if let Some(cluster) = store.cluster() {
        // Deleted (after the controller's finalizer, if any, is removed).
        let until = Instant::now() + Duration::from_secs(20);
        while !cluster.names(Kind::Application).is_empty() {
            assert!(Instant::now() < until, "demo still in the cluster");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(cluster.names(Kind::Device), ["dev-1"]);
    }

    // A fleet larger than a page (500): listed whole, once, by name.
    for i in 0..1050 {
        let labels = if i % 2 == 0 {
            r#"{"half":"yes"}"#
        } else {
            "{}"
        };
        let body = format!(
            r#"{{"metadata":{{"name":"bulk-{i:04}","labels":{labels}}},"spec":{{"board":"b","gateway":"gw"}}}}"#
        );
        assert_eq!(post(&api, "/api/v1/devices", &body), 201, "bulk-{i:04}");
    }
    let list = api.ok(&["device", "list"]);
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    let mut expected: Vec<String> = (0..1050).map(|i| format!("bulk-{i:04}")).collect();
    expected.push("dev-1".into());
    assert_eq!(names, expected);
    let selected = api.ok(&["device", "list", "--selector", "half=yes"]);
    assert_eq!(selected.lines().count(), 1 + 525, "{selected}");
    assert!(selected.lines().skip(1).all(|l| l.ends_with("half=yes")));
    let json: serde_json::Value =
        serde_json::from_str(&api.ok(&["device", "list", "--output", "json"])).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(1051));
    if let Some(cluster) = store.cluster() {
        assert_eq!(cluster.names(Kind::Device).len(), 1051);
    }

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < until, "still running after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn token_commands_create_list_and_revoke() {
    let store = ApiStore::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_child, api, _) = start_api(dir.path(), &store);

    // The token alone on stdout; what it is, and a warning, on stderr.
    let out = api.run(&["token", "create", "--name", "ci", "--role", "read-only"]);
    assert!(out.status.success(), "{out:?}");
    let reader = String::from_utf8(out.stdout).expect("UTF-8");
    let reader = reader.trim();
    assert!(
        reader.starts_with("wbd_") && !reader.contains(' '),
        "{reader}"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("never expires"), "{said}");
    assert!(said.contains("shown only once"), "{said}");
    let reader_api = api.with_token(reader);
    reader_api.ok(&["device", "list"]);
    let err = reader_api.fails(&["device", "create", "d", "--board", "b", "--gateway", "gw"]);
    assert!(err.contains("Forbidden (403)"), "{err}");
    let err = reader_api.fails(&["token", "list"]);
    assert!(err.contains("Forbidden (403)"), "{err}");

    let out = api.run(&[
        "token",
        "create",
        "--name",
        "edge-1",
        "--role",
        "gateway",
        "--gateway",
        "edge-1",
        "--expires-in",
        "30d",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let gateway: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(gateway["role"], "gateway");
    assert_eq!(gateway["gateway"], "edge-1");
    assert!(
        gateway["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("wbd_"))
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("never expires"));
    // --role gateway needs --gateway.
    let err = api.fails(&["token", "create", "--name", "x", "--role", "gateway"]);
    assert!(err.contains("--gateway"), "{err}");

    let list = api.ok(&["token", "list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 4, "{list}");
    assert!(rows[0].starts_with("ID"), "{list}");
    assert!(
        rows[1].contains("admin") && rows[1].ends_with("never"),
        "{list}"
    );
    let edge: Vec<&str> = rows[3].split_whitespace().collect();
    assert_eq!(edge[1..4], ["edge-1", "gateway", "edge-1"], "{list}");
    assert!(!list.contains("wbd_"), "no token in a list: {list}");
    let tokens: serde_json::Value =
        serde_json::from_str(&api.ok(&["token", "list", "--output", "json"])).expect("JSON");
    let id_of = |name: &str| {
        tokens
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name))
            .and_then(|t| t["id"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no token {name}: {tokens}"))
    };

    let out = api.ok(&["token", "revoke", &id_of("ci")]);
    assert!(out.contains("revoked"), "{out}");
    let err = reader_api.fails(&["device", "list"]);
    assert!(err.contains("Unauthorized (401)"), "{err}");
    let err = api.fails(&["token", "revoke", &id_of("admin")]);
    assert!(err.contains("Conflict (409)"), "{err}");
    assert!(err.contains("last admin token"), "{err}");
}
