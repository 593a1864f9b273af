//! `wasmbed gateway` and `wasmbed api` under a low open-files limit (set
//! with util-linux's `prlimit`): the soft limit is raised to the hard one
//! at start, and the gateway's admission limits, derived from it, refuse
//! surplus device connections before descriptors run out, so `/healthz`
//! keeps answering.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmbed_gateway::limits::admission_limits;

const WASMBED: &str = env!("CARGO_BIN_EXE_wasmbed");

struct Running {
    child: Child,
    /// The JSON log lines of its stderr.
    log: mpsc::Receiver<Value>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `wasmbed ARGS` with `prlimit --nofile=NOFILE`.
    fn start(nofile: &str, args: &[&str]) -> Running {
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={nofile}"))
            .arg(WASMBED)
            .args(["--log-level", "info", "--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run prlimit (util-linux)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Running { child, log }
    }

    /// The first log line whose message is `message`; its fields.
    fn wait_for_log(&self, message: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?}"));
            if line["fields"]["message"] == message {
                return line["fields"].clone();
            }
        }
    }

    /// The soft and hard "Max open files" of the process.
    fn open_files_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("/proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("an open files line");
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `GET /healthz` on a new connection, over TLS trusting the installation
/// `pki`'s gateway CA when given (a gateway's HTTP port); the status line,
/// or why not.
fn healthz(port: u16, pki: Option<&Path>) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    let read = match pki {
        None => {
            write!(stream, "{request}").map_err(|e| e.to_string())?;
            stream.read_to_string(&mut answer)
        }
        Some(pki) => {
            let ca = wasmbed_pki::load_certificate(&pki.join("gateway-ca.pem"))
                .map_err(|e| e.to_string())?;
            let config = wasmbed_pki::anonymous_client_config(&ca).map_err(|e| e.to_string())?;
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let connection =
                rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
            let mut tls = rustls::StreamOwned::new(connection, stream);
            write!(tls, "{request}").map_err(|e| e.to_string())?;
            tls.read_to_string(&mut answer)
        }
    };
    // A server that closes without close_notify still sent its answer.
    if answer.is_empty() {
        read.map_err(|e| e.to_string())?;
    }
    answer
        .lines()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| "empty answer".to_owned())
}

fn wait_healthy(port: u16, pki: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match healthz(port, pki) {
            Ok(status) if status.contains(" 200 ") => return,
            other => assert!(Instant::now() < deadline, "/healthz: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the peer has closed `stream` (without waiting).
fn is_closed(mut stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// A TCP connection to `127.0.0.1:port` from the loopback address `source`.
fn connect_from(source: std::net::Ipv4Addr, port: u16) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    socket.into()
}

fn certs_init(dir: &Path) {
    let init = Command::new(WASMBED)
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .output()
        .expect("certs init");
    assert!(init.status.success(), "{init:?}");
}

#[test]
fn under_256_open_files_surplus_devices_are_refused_and_healthz_still_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    certs_init(&pki);
    let devices_port = free_port();
    let http_port = free_port();
    let db = dir.path().join("gateway.db");
    let gateway = Running::start(
        "256:256",
        &[
            "gateway",
            "--pki",
            pki.to_str().expect("path"),
            "--db",
            db.to_str().expect("path"),
            "--listen",
            &format!("127.0.0.1:{devices_port}"),
            "--http",
            &format!("127.0.0.1:{http_port}"),
            // Idle connections are held, not timed out, during the test.
            "--handshake-timeout",
            "120s",
            "--hello-timeout",
            "120s",
        ],
    );
    let expected = admission_limits(256, None);
    let limits = gateway.wait_for_log("connection limits");
    assert_eq!(limits["open_files"], 256, "{limits}");
    assert_eq!(
        limits["max_connections"], expected.max_connections,
        "{limits}"
    );
    wait_healthy(http_port, Some(&pki));

    // More idle device connections than the limit admits, from four
    // loopback addresses (one address may hold only half of them).
    let surplus = 100;
    let held: Vec<TcpStream> = (0..expected.max_connections + surplus)
        .map(|i| {
            let source = [127, 0, 0, 1 + u8::try_from(i % 4).expect("small")];
            let stream = connect_from(source.into(), devices_port);
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut closed;
    loop {
        closed = held.iter().filter(|s| is_closed(s)).count();
        if closed >= surplus || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        closed, surplus,
        "the gateway closes the connections beyond its limit of {}",
        expected.max_connections
    );
    // While they are held, the HTTP port answers ...
    for _ in 0..5 {
        let status = healthz(http_port, Some(&pki)).expect("/healthz answers");
        assert!(status.contains(" 200 "), "{status}");
    }
    // ... and the device port still accepts (and refuses) new ones.
    let mut another = TcpStream::connect(("127.0.0.1", devices_port)).expect("connect");
    another
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(
        matches!(another.read(&mut byte), Ok(0) | Err(_)),
        "closed at once"
    );
    let still_open = held.iter().filter(|s| !is_closed(s)).count();
    assert_eq!(still_open, expected.max_connections);
    drop(held);
}

#[test]
fn a_soft_open_files_limit_below_the_hard_one_is_raised_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    certs_init(&pki);
    let http_port = free_port();
    let db = dir.path().join("gateway.db");
    let gateway = Running::start(
        "256:2048",
        &[
            "gateway",
            "--pki",
            pki.to_str().expect("path"),
            "--db",
            db.to_str().expect("path"),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--http",
            &format!("127.0.0.1:{http_port}"),
        ],
    );
    let raised = gateway.wait_for_log("open-files limit raised");
    assert_eq!(
        (&raised["from"], &raised["to"]),
        (&256.into(), &2048.into()),
        "{raised}"
    );
    let limits = gateway.wait_for_log("connection limits");
    assert_eq!(
        limits["max_connections"],
        admission_limits(2048, None).max_connections,
        "{limits}"
    );
    wait_healthy(http_port, Some(&pki));
    assert_eq!(gateway.open_files_limits(), (2048, 2048));

    let api_port = free_port();
    let api = Running::start(
        "256:2048",
        &[
            "api",
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--db",
            dir.path().join("api.db").to_str().expect("path"),
        ],
    );
    let raised = api.wait_for_log("open-files limit raised");
    assert_eq!(raised["to"], 2048, "{raised}");
    wait_healthy(api_port, None);
    assert_eq!(api.open_files_limits(), (2048, 2048));
}
