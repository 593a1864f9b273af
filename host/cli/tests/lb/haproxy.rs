//! Debian's HAProxy as the TCP load balancer in front of the gateways'
//! device ports.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use super::process::Process;

/// Where Debian's `haproxy` package installs the program.
pub(crate) const HAPROXY: &str = "/usr/sbin/haproxy";

/// Whether this test can run: HAProxy is installed. Without it the test
/// fails when `CI` is set (the CI installs it) and otherwise says it is
/// skipped (never a silent pass), on the test process's own standard
/// error: libtest does not capture it, so `cargo test` shows it.
pub(crate) fn installed_or_skip() -> bool {
    if Path::new(HAPROXY).is_file() {
        return true;
    }
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("load_balanced");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {HAPROXY} is missing (apt-get install haproxy; cargo xtask setup names it)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: load_balanced: haproxy not installed ({test}; apt-get install haproxy)"
    );
    false
}

/// The configuration: TCP mode, a frontend on `frontend`, every gateway
/// a server checked every 300 ms (down after 2 failed checks, up after 1
/// good one), an operator socket at `socket`. A new connection goes to the
/// server with the fewest (sessions are long: a gateway that comes back
/// empty gets the next ones). A connection to a server that refuses is
/// retried, the last time on another server; client and server timeouts
/// are far above the devices' 10 s heartbeat, so that an idle session is
/// never cut here.
pub(crate) fn config(frontend: u16, servers: &[(String, u16)], socket: &Path) -> String {
    let socket = socket.display();
    let mut config = format!(
        "global
    log stderr format raw local0 info
    maxconn 4096
    stats socket {socket} mode 600 level operator

defaults
    mode tcp
    log global
    option tcplog
    option redispatch
    retries 3
    timeout connect 1s
    timeout client 5m
    timeout server 5m

frontend devices
    bind 127.0.0.1:{frontend}
    default_backend gateways

backend gateways
    balance leastconn
"
    );
    for (name, port) in servers {
        let _ = writeln!(
            config,
            "    server {name} 127.0.0.1:{port} check inter 300ms fall 2 rise 1"
        );
    }
    config
}

/// Writes the configuration into `dir/haproxy.cfg`, checks it, and starts
/// HAProxy in the foreground with its log in `log`.
pub(crate) fn start(dir: &Path, config: &str, log: &Path) -> Process {
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).expect("write haproxy.cfg");
    let check = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "haproxy refused its configuration:\n{}{}\n{config}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    Process::spawn(
        "haproxy",
        Command::new(HAPROXY).arg("-f").arg(&file).arg("-db"),
        log,
        log,
    )
}

/// The state HAProxy sees server `server` of the gateways' backend in
/// (`UP`, `DOWN`, ...), asked on its operator socket; `None` when it
/// does not answer.
pub(crate) fn server_status(socket: &Path, server: &str) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.write_all(b"show stat\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    // CSV: proxy name, server name, ... the status is the 18th field.
    answer.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        (fields.first() == Some(&"gateways") && fields.get(1) == Some(&server))
            .then(|| fields.get(17).map(|status| (*status).to_owned()))
            .flatten()
    })
}
