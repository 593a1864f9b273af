//! `wasmbed gateway --api`: a gateway registers itself with the API server,
//! even when the API server is down when the gateway starts and comes up
//! later; the API server's controller then finds it reachable. A gateway
//! that comes back on another port has its registration updated. The
//! gateway holds a gateway token for its own name, not the admin token.
//!
//! On the store `WASMBED_TEST_STORE` names: SQLite (the default) or
//! Kubernetes, a fake API server that outlives both API servers (see
//! `common`).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ApiStore;
use wasmbed_api::model::Kind;

const WASMBED: &str = env!("CARGO_BIN_EXE_wasmbed");

struct Running(Child);

impl Running {
    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts `wasmbed api` managing the gateways of the installation `pki`,
/// its resources in `store`, and returns it with the admin token, if
/// printed.
fn api(port: u16, db: &Path, pki: &Path, store: &ApiStore) -> (Running, Option<String>) {
    let mut command = Command::new(WASMBED);
    command
        .args([
            "api",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--reconcile-interval",
            "200ms",
            "--db",
        ])
        .arg(db)
        .arg("--pki")
        .arg(pki);
    store.configure(&mut command);
    let child = command
        .env("WASMBED_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wasmbed api");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut token = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("API server output");
        if let Some(rest) = line.strip_prefix("admin token: ") {
            token = Some(rest.trim().to_owned());
        }
        if line.starts_with("API server on ") {
            return (child, token);
        }
    }
}

/// `GET path` with the token; the status line and the body.
fn get(port: u16, path: &str, token: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

#[test]
fn a_gateway_registers_itself_once_the_api_server_comes_up() {
    let store = ApiStore::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let api_port = free_port();
    let db = dir.path().join("api.db");
    let pki = dir.path().join("pki");
    let init = Command::new(WASMBED)
        .args(["certs", "init", "--dir"])
        .arg(&pki)
        .output()
        .expect("certs init");
    assert!(init.status.success());
    // First start: learn the admin token, make the gateway's token, then
    // stop the API server.
    let (mut first, token) = api(api_port, &db, &pki, &store);
    let token = token.expect("an admin token on first start");
    let made = Command::new(WASMBED)
        .args(["token", "create", "--name", "edge-1", "--role", "gateway"])
        .args(["--gateway", "edge-1", "--api"])
        .arg(format!("http://127.0.0.1:{api_port}"))
        .env("WASMBED_TOKEN", &token)
        .output()
        .expect("token create");
    assert!(made.status.success(), "{made:?}");
    let gateway_token = String::from_utf8(made.stdout).expect("UTF-8");
    let gateway_token = gateway_token.trim().to_owned();
    first.interrupt();

    let start_gateway = |http_port: u16| {
        let gateway = Command::new(WASMBED)
            .arg("gateway")
            .arg("--pki")
            .arg(&pki)
            .arg("--db")
            .arg(dir.path().join("gateway.db"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args([
                "--api",
                &format!("http://127.0.0.1:{api_port}"),
                "--name",
                "edge-1",
            ])
            .args(["--api-token", &gateway_token])
            // The admin token an operator's shell may hold is not used.
            .env("WASMBED_TOKEN", "wbd_admin_must_not_be_used")
            .env("WASMBED_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start wasmbed gateway");
        Running(gateway)
    };
    let http_port = free_port();
    let mut gateway = start_gateway(http_port);
    // The API server is down: the gateway retries.
    std::thread::sleep(Duration::from_millis(1500));

    let (_api, again) = api(api_port, &db, &pki, &store);
    assert_eq!(
        again, None,
        "the admin token is printed once, on first start"
    );
    wait_registered(api_port, &token, http_port);

    // The gateway comes back on another port: its registration follows.
    gateway.interrupt();
    let moved_port = free_port();
    let _gateway = start_gateway(moved_port);
    wait_registered(api_port, &token, moved_port);
    if let Some(cluster) = store.cluster() {
        assert_eq!(cluster.names(Kind::Gateway), ["edge-1"]);
    }
}

/// Waits until edge-1 is registered with `http_port` and found reachable.
fn wait_registered(api_port: u16, token: &str, http_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = get(api_port, "/api/v1/gateways/edge-1", token);
        if let Some((status, body)) = &found {
            let registered =
                status.contains("200") && body.contains(&format!("https://127.0.0.1:{http_port}"));
            if registered && body.contains("\"reachable\":true") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "edge-1 not registered at port {http_port} and reachable: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
