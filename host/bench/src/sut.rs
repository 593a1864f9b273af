//! The systems under test as child processes: the release `wasmbed
//! gateway` and the bare TLS baseline, on loopback, in a temporary
//! installation made by `wasmbed certs init`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmbed_pki::Installation;

use crate::GatewayArgs;
use crate::http;
use crate::proc::Child;

/// Interval the gateway tells devices to heartbeat at: long, so that idle
/// sessions stay idle for the whole run.
pub(crate) const HEARTBEAT_INTERVAL: &str = "60s";

/// Where and with what the benchmark runs.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) wasmbed: PathBuf,
    pub(crate) bench: PathBuf,
    dir: tempfile::TempDir,
    pub(crate) pki: PathBuf,
    pub(crate) installation: Installation,
    gateway_env: Vec<(String, String)>,
}

impl Env {
    /// Finds the binaries and creates the installation.
    pub(crate) fn prepare(args: &GatewayArgs) -> anyhow::Result<Env> {
        Env::prepare_for(
            args.wasmbed.as_deref(),
            args.idle_devices,
            "--idle-devices",
            &args.gateway_env,
        )
    }

    /// Finds the binaries (`wasmbed` given, or next to this program),
    /// checks the open-files limit allows `sessions` device sockets (the
    /// flag that sets them named in the error), and creates the
    /// installation.
    pub(crate) fn prepare_for(
        wasmbed: Option<&Path>,
        sessions: usize,
        sessions_flag: &str,
        gateway_env: &[(String, String)],
    ) -> anyhow::Result<Env> {
        let bench = std::env::current_exe().context("locating this program")?;
        let wasmbed = match wasmbed {
            Some(path) => path.to_owned(),
            None => bench.with_file_name("wasmbed"),
        };
        if !wasmbed.is_file() {
            bail!(
                "{} not found: build it (`cargo build --release -p wasmbed-cli`) or pass --wasmbed; \
                 `cargo xtask bench gateway` does both",
                wasmbed.display()
            );
        }
        let need = u64::try_from(sessions)
            .unwrap_or(u64::MAX)
            .saturating_add(1024);
        if crate::proc::open_files_limit().is_some_and(|limit| limit < need) {
            bail!(
                "the open-files limit is below {need} (one socket per simulated device in this \
                 process and in the gateway): raise it with `ulimit -n {need}` or pass a smaller \
                 {sessions_flag}"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmbed-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let pki = dir.path().join("pki");
        let out = Command::new(&wasmbed)
            .args(["certs", "init", "--dir"])
            .arg(&pki)
            .output()
            .with_context(|| format!("running {} certs init", wasmbed.display()))?;
        if !out.status.success() {
            bail!(
                "`wasmbed certs init` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let installation = Installation::load(&pki)
            .with_context(|| format!("loading the installation in {}", pki.display()))?;
        Ok(Env {
            wasmbed,
            bench,
            dir,
            pki,
            installation,
            gateway_env: gateway_env.to_vec(),
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Keeps the temporary directory on disk and returns it.
    pub(crate) fn into_kept_dir(self) -> PathBuf {
        self.dir.keep()
    }
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A running `wasmbed gateway`.
#[derive(Debug)]
pub(crate) struct GatewayProcess {
    pub(crate) child: Child,
    /// The device (TLS) port.
    pub(crate) devices: SocketAddr,
    /// The HTTP/JSON port (mutual TLS).
    pub(crate) http: SocketAddr,
    /// A client of that port, with the installation's API server
    /// certificate.
    pub(crate) client: http::GatewayClient,
}

impl GatewayProcess {
    /// Starts `wasmbed gateway` on the database `db` and waits until it
    /// answers `/healthz`. Its log goes to `<name>.log`.
    pub(crate) async fn start(
        env: &Env,
        name: &str,
        db: &Path,
        open_pairing: bool,
    ) -> anyhow::Result<GatewayProcess> {
        let bench_settings = [
            "--heartbeat-interval".to_owned(),
            HEARTBEAT_INTERVAL.to_owned(),
            // The heartbeat benchmark floods heartbeats to measure what each
            // costs: the gateway must not pace them.
            format!("--heartbeat-burst={}", u32::MAX),
        ];
        GatewayProcess::start_with(env, name, db, open_pairing, &bench_settings).await
    }

    /// Starts `wasmbed gateway` as [`start`](Self::start) does, with the
    /// gateway's own heartbeat settings unless `settings` gives others.
    pub(crate) async fn start_with(
        env: &Env,
        name: &str,
        db: &Path,
        open_pairing: bool,
        settings: &[String],
    ) -> anyhow::Result<GatewayProcess> {
        let devices = free_port()?;
        let http = free_port()?;
        let mut command = Command::new(&env.wasmbed);
        command
            .args(["--log-level", "info", "gateway", "--pki"])
            .arg(&env.pki)
            .arg("--db")
            .arg(db)
            .args(["--listen", &devices.to_string()])
            .args(["--http", &http.to_string()])
            .args(settings);
        if open_pairing {
            // The simulated fleet enrolls from one address, all at once.
            command.args([
                "--open-pairing=1h",
                "--enroll-limit=1000000/s",
                "--enroll-limit-total=1000000/s",
            ]);
        }
        command.envs(env.gateway_env.iter().map(|(k, v)| (k, v)));
        let mut child = Child::spawn(name, &mut command, &env.path(&format!("{name}.log")))?;
        let client = http::GatewayClient::from_pki(&env.pki)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            child.check_alive()?;
            if let Ok(response) = client.call(http, "GET", "/healthz", None).await {
                if response.status == 200 {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer /healthz within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::report::progress(&format!(
            "{name}: pid {}, devices {devices}, http {http}",
            child.pid()
        ));
        Ok(GatewayProcess {
            child,
            devices,
            http,
            client,
        })
    }

    /// Stops the gateway as Ctrl-C would (it says goodbye to every device),
    /// or kills it after a few seconds.
    pub(crate) async fn stop(self) {
        self.child.stop(Duration::from_secs(10)).await;
    }
}

/// A running bare TLS baseline (`wasmbed-bench bare-tls`).
#[derive(Debug)]
pub(crate) struct BareProcess {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl BareProcess {
    pub(crate) async fn start(env: &Env) -> anyhow::Result<BareProcess> {
        let addr = free_port()?;
        let mut command = Command::new(&env.bench);
        command
            .args(["bare-tls", "--pki"])
            .arg(&env.pki)
            .args(["--listen", &addr.to_string()]);
        let mut child = Child::spawn("bare-tls", &mut command, &env.path("bare-tls.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            child.check_alive()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("bare-tls did not listen within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(BareProcess { child, addr })
    }
}
