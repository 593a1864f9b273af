//! `wasmbed up`: a whole local installation in one process. Creates the
//! installation's certificates when missing, runs a gateway and the API
//! server, boots emulated devices, registers them and deploys the sample
//! application to them; runs until Ctrl-C, then stops everything.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use wasmbed_api::controller::ControllerConfig;
use wasmbed_api::model::{
    Device, DeviceSpec as ApiDeviceSpec, DeviceStatus, Gateway, GatewaySpec, GatewayStatus,
    ObjectMeta,
};
use wasmbed_api::server::{ApiServer, ApiServerConfig};
use wasmbed_emulator::console::Pattern;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, DeviceHandle, DeviceSpec, EmulatorManager, ProvisionOptions,
    provision,
};
use wasmbed_httpd::HttpServerConfig;
use wasmbed_pki::{Installation, InstallationOptions, private_file};

use crate::client::ApiClient;

/// The firmware image `cargo xtask firmware` builds.
pub(crate) const DEFAULT_FIRMWARE: &str =
    "firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2";
/// The Zephyr image `cargo xtask zephyr` builds.
pub(crate) const ZEPHYR_FIRMWARE: &str = "zephyr-workspace/build/mps2_an385/zephyr/zephyr.elf";

/// Which firmware the devices run: `rust` (the bare-metal firmware, on
/// the board with a link UART), `zephyr` (the Zephyr + WAMR application,
/// on the board with Ethernet) or the path of an image for the board given
/// with `--board`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Firmware {
    Rust,
    Zephyr,
    Image(PathBuf),
}

impl std::str::FromStr for Firmware {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Firmware, Self::Err> {
        Ok(match s {
            "rust" => Firmware::Rust,
            "zephyr" => Firmware::Zephyr,
            path => Firmware::Image(PathBuf::from(path)),
        })
    }
}

impl Firmware {
    /// The image and the board file it runs on (`board` for an image).
    fn resolve(&self, board: Option<&str>) -> (PathBuf, String) {
        match self {
            Firmware::Rust => (PathBuf::from(DEFAULT_FIRMWARE), BOARD.to_owned()),
            Firmware::Zephyr => (PathBuf::from(ZEPHYR_FIRMWARE), ZEPHYR_BOARD.to_owned()),
            Firmware::Image(path) => (path.clone(), board.unwrap_or(BOARD).to_owned()),
        }
    }

    /// The image.
    fn image(&self) -> PathBuf {
        self.resolve(None).0
    }

    /// How to build the image when it is missing.
    fn build_hint(&self) -> &'static str {
        match self {
            Firmware::Zephyr => {
                "build it with `cargo xtask zephyr` (see README: Zephyr + WAMR device)"
            }
            _ => "build it with `cargo xtask firmware` (or run `cargo xtask up`)",
        }
    }
}
/// The sample module `cargo xtask apps` builds.
pub(crate) const DEFAULT_APP: &str = "target/apps/primes.wasm";
/// The gateway resource `up` registers.
const GATEWAY_NAME: &str = "local";
/// The board every device is.
const BOARD: &str = "mps2-an385";
/// The same board's description for the Zephyr firmware (Ethernet link).
const ZEPHYR_BOARD: &str = "mps2-an385-zephyr";
/// The file keeping the admin token of DIR/api.db.
const TOKEN_FILE: &str = "admin-token";

#[derive(Debug, Args)]
#[command(after_long_help = "\
Everything lives in DIR: the certificates (DIR/pki), the gateway's and the \
API server's databases (DIR/gateway.db, DIR/api.db), the admin token \
(DIR/admin-token) and one state directory per device (DIR/devices/qemu-N, \
with its console.log). A second run reuses them: devices come back as \
themselves.

Progress lines start with `up:`; logs go to stderr. Ctrl-C stops the \
devices, the gateway and the API server and exits 0.

Needs qemu-system-arm, the firmware (`cargo xtask firmware`, or with \
`--firmware zephyr` the Zephyr + WAMR image of `cargo xtask zephyr`) and the \
sample modules (`cargo xtask apps`); `cargo xtask up` builds them and runs \
this.")]
pub(crate) struct UpArgs {
    /// Number of emulated devices.
    #[arg(long, short = 'n', default_value_t = 3)]
    devices: usize,
    /// Directory of the installation; created if missing.
    #[arg(long, default_value = "wasmbed-up")]
    dir: PathBuf,
    /// The firmware every device runs: `rust` (the bare-metal firmware,
    /// `cargo xtask firmware`), `zephyr` (the Zephyr + WAMR image,
    /// `cargo xtask zephyr`) or the path of an ELF image for `--board`.
    #[arg(long, env = "WASMBED_FIRMWARE", default_value = "rust")]
    firmware: Firmware,
    /// The board description for a firmware given as a path (default:
    /// mps2-an385).
    #[arg(long)]
    board: Option<String>,
    /// The WebAssembly module deployed as the sample application.
    #[arg(long, default_value = DEFAULT_APP)]
    app: PathBuf,
    /// Exported function of the module to call.
    #[arg(long, default_value = "run")]
    entry: String,
    /// The i32 argument it is called with.
    #[arg(long, default_value_t = 10_000)]
    arg: i32,
    /// Address of the API server (and its dashboard).
    #[arg(long, default_value = wasmbed_api::server::DEFAULT_LISTEN)]
    api_listen: SocketAddr,
    /// A Host name the API server and dashboard also answer to (beside
    /// loopback names), e.g. the one a port forward reaches them by:
    /// `name` (any port) or `name:port`. Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Address devices connect to; a free loopback port when it is taken.
    #[arg(long, default_value = "127.0.0.1:40029")]
    device_listen: SocketAddr,
    /// Directory of board descriptions (default: the repository's boards/).
    #[arg(long, env = "WASMBED_BOARDS")]
    boards: Option<PathBuf>,
    /// How long to wait for devices to enroll and for their results.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Prints a progress line and flushes it at once.
pub(crate) fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "up: {line}");
    let _ = stdout.flush();
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let qemu = Backend::Qemu.implementation();
    if !qemu.available() {
        bail!("qemu-system-arm not found: install it with `apt-get install qemu-system-arm`");
    }
    let (firmware, board_name) = args.firmware.resolve(args.board.as_deref());
    if !firmware.is_file() {
        bail!(
            "no firmware at {}: {}",
            firmware.display(),
            args.firmware.build_hint()
        );
    }
    let module = std::fs::read(&args.app).with_context(|| {
        format!(
            "reading the sample module {} (build it with `cargo xtask apps`)",
            args.app.display()
        )
    })?;
    let board = match &args.boards {
        Some(dir) => Board::find_in(dir, &board_name),
        None => Board::find(&board_name),
    }?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let installation = installation(&args.dir.join("pki"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(up(args, installation, board, module))
}

/// Loads DIR/pki, or creates it when there is none; adds the control PKI
/// (who may call the gateway's HTTP interface) to one made before it
/// existed.
fn installation(dir: &Path) -> anyhow::Result<Installation> {
    let installation = if dir.exists() {
        Installation::load(dir).with_context(|| format!("loading {}", dir.display()))?
    } else {
        let installation = Installation::create(&InstallationOptions::default())
            .context("creating certificates")?;
        installation
            .save(dir, false)
            .with_context(|| format!("writing {}", dir.display()))?;
        say(&format!(
            "created the installation's certificates in {}",
            dir.display()
        ));
        installation
    };
    wasmbed_pki::ensure_control_pki(dir, &InstallationOptions::default())
        .with_context(|| format!("writing the control PKI to {}", dir.display()))?;
    Ok(installation)
}

async fn bind_or_free(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) => {
            say(&format!("{addr} is not available ({e}); using a free port"));
            Ok(TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?)
        }
    }
}

/// Makes DIR/admin-token hold the admin token: the new one, or the one
/// saved when the database was made. The file is readable by its owner
/// only (0600); one that others could read is tightened, with a warning.
fn admin_token(dir: &Path, new: Option<&str>) -> anyhow::Result<String> {
    let path = dir.join(TOKEN_FILE);
    let warn_if_loose = |loose: Option<u32>| {
        if let Some(mode) = loose {
            tracing::warn!(
                path = %path.display(),
                was = format_args!("{mode:o}"),
                "the admin token file could be read by other users; its mode is now 0600"
            );
        }
    };
    if let Some(token) = new {
        let loose = private_file::write(&path, token.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        warn_if_loose(loose);
        return Ok(token.to_owned());
    }
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is missing and the API database already has an admin token; \
             delete {} to start over",
            path.display(),
            dir.join("api.db").display()
        )
    })?;
    let loose = private_file::tighten(&path)
        .with_context(|| format!("making {} private", path.display()))?;
    warn_if_loose(loose);
    Ok(token.trim().to_owned())
}

async fn up(
    args: UpArgs,
    installation: Installation,
    board: Board,
    module: Vec<u8>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Connection limits: the API server's HTTP cap first, the gateway's
    // limits from the descriptors it leaves.
    let open_files = crate::open_files::raise().unwrap_or(u64::MAX);
    let api_http = HttpServerConfig {
        max_connections: wasmbed_api::server::http_max_connections_for(open_files),
        extra_allowed_hosts: args.allowed_hosts.clone(),
        ..HttpServerConfig::default()
    };
    let api_share = u64::try_from(api_http.max_connections).unwrap_or(u64::MAX);
    let pki = args.dir.join("pki");
    let control_ca =
        wasmbed_pki::load_certificate(&pki.join(wasmbed_pki::control_file_names::CONTROL_CA))?;
    let gateway_config =
        wasmbed_gateway::GatewayConfig::for_open_files(open_files.saturating_sub(api_share))
            .with_control_ca(&installation, &control_ca)?;

    // The gateway, pairing open.
    let gateway_store = wasmbed_gateway::store::Store::open(&args.dir.join("gateway.db"))
        .context("opening the gateway's database")?;
    let gateway = wasmbed_gateway::Gateway::new(gateway_config, &installation, gateway_store)?;
    // A local installation: devices created later must enroll too, so the
    // window stays open while `up` runs (and closes with it).
    gateway.pairing().open(None);
    let devices_listener = bind_or_free(args.device_listen).await?;
    let device_addr = devices_listener.local_addr()?;
    let gateway_http = TcpListener::bind("127.0.0.1:0").await?;
    let gateway_http_addr = gateway_http.local_addr()?;
    let gateway_task =
        tokio::spawn(gateway.serve(devices_listener, gateway_http, stopped(stop_rx.clone())));
    say(&format!(
        "gateway: devices on {device_addr}, HTTP on https://{gateway_http_addr}/ (mutual TLS), pairing open"
    ));

    // The API server.
    let config = ApiServerConfig {
        listen: args.api_listen,
        db: args.dir.join("api.db"),
        controller: ControllerConfig {
            interval: Duration::from_secs(1),
            gateway_tls: Some(crate::api::gateway_client_tls(&pki)?),
            ..ControllerConfig::default()
        },
        http: api_http,
        // The gateway here signs its own enrollments; the API server can
        // too, for gateways added with `--enroll-via-api`.
        device_issuer: Some(std::sync::Arc::new(installation.device_issuer()?)),
        ..ApiServerConfig::default()
    };
    let server = ApiServer::open(&config).await?;
    let store = server.store().clone();
    let token = admin_token(&args.dir, server.admin_token())?;
    if server.admin_token().is_some() {
        crate::api::announce_admin_token(&token);
    }
    let api_listener = TcpListener::bind(args.api_listen).await.with_context(|| {
        format!(
            "binding the API server to {} (pass --api-listen for another address)",
            args.api_listen
        )
    })?;
    let api_addr = api_listener.local_addr()?;
    let api_task = tokio::spawn(server.serve(api_listener, stopped(stop_rx.clone())));
    let api_url = format!("http://{api_addr}");
    say(&format!("API server on {api_url}/"));

    let manager = std::sync::Arc::new(EmulatorManager::new());
    let board_for_api = board.clone();
    let outcome = tokio::select! {
        outcome = start(&args, &manager, &store, &installation, board.clone(), &module, device_addr, gateway_http_addr, &api_url, &token) => outcome,
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            say("interrupted");
            Ok(false)
        }
    };
    let wait = match &outcome {
        Ok(true) => {
            say(&format!("dashboard: {api_url}/"));
            say(&format!("admin token: {token}"));
            say("running; Ctrl-C stops the devices, the gateway and the API server");
            true
        }
        _ => false,
    };
    if wait {
        // From now on, devices created through the API with `emulated`
        // boot here too.
        let (emulated_stop, emulated_stopped) = watch::channel(false);
        let emulated = crate::emulated::Emulated {
            manager: std::sync::Arc::clone(&manager),
            store: store.clone(),
            claim: ClaimMaterial::from_installation(&installation)?,
            board: board_for_api,
            firmware: args.firmware.image(),
            devices_dir: args.dir.join("devices"),
            gateway: device_addr.to_string(),
        };
        let emulated_task = tokio::spawn(emulated.run(emulated_stopped));
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        let _ = emulated_stop.send(true);
        let _ = emulated_task.await;
    }
    say("stopping the devices");
    manager.stop_all().await;
    say("stopping the gateway and the API server");
    let _ = stop_tx.send(true);
    gateway_task.await.context("gateway task")??;
    api_task.await.context("API server task")??;
    say("stopped");
    outcome.map(|_| ())
}

/// Registers the gateway, boots and registers the devices, deploys the
/// application and waits for its results. `Ok(true)` when it got that far.
#[allow(clippy::too_many_arguments)]
async fn start(
    args: &UpArgs,
    manager: &EmulatorManager,
    store: &wasmbed_api::store::Store,
    installation: &Installation,
    board: Board,
    module: &[u8],
    device_addr: SocketAddr,
    gateway_http: SocketAddr,
    api_url: &str,
    token: &str,
) -> anyhow::Result<bool> {
    register_gateway(store, device_addr, gateway_http).await?;
    say(&format!(
        "registered gateway {GATEWAY_NAME} (https://{gateway_http})"
    ));

    let claim = ClaimMaterial::from_installation(installation)?;
    let mut devices: Vec<DeviceHandle> = Vec::new();
    for i in 0..args.devices {
        let name = format!("qemu-{i}");
        let state_dir = args.dir.join("devices").join(&name);
        provision(
            &state_dir,
            &ProvisionOptions {
                claim: claim.clone(),
                server_name: "localhost".into(),
                device_name: name.clone(),
                overwrite: false,
            },
        )?;
        let device = manager
            .start(DeviceSpec {
                name: name.clone(),
                board: board.clone(),
                firmware: args.firmware.image(),
                state_dir: state_dir.clone(),
                gateway: device_addr.to_string(),
                backend: Backend::Qemu,
                icount: None,
            })
            .await?;
        say(&format!(
            "{name}: booting (pid {}, console in {})",
            device.pid().unwrap_or(0),
            state_dir.join("console.log").display()
        ));
        devices.push(device);
    }

    let deadline = Instant::now() + args.timeout;
    let pattern = Pattern::regex(r"(enrolled|session established) as device [0-9a-fA-F-]+")?;
    let mut ids = Vec::new();
    for device in &devices {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = device
            .wait_for(pattern.clone(), left)
            .await
            .with_context(|| format!("{} did not enroll", device.name()))?;
        let id =
            device_id(&line.text).with_context(|| format!("no device id in {:?}", line.text))?;
        say(&format!("{}: enrolled as device {id}", device.name()));
        register_device(store, device.name(), &id).await?;
        ids.push(id);
    }
    say(&format!(
        "registered {} devices (labels board={BOARD}, demo=true)",
        ids.len()
    ));

    let client = ApiClient::new(api_url, Some(token.to_owned()), None)?;
    let app_name = args
        .app
        .file_stem()
        .and_then(|s| s.to_str())
        .map(sanitize)
        .unwrap_or_else(|| "sample".into());
    let mut match_labels = BTreeMap::new();
    match_labels.insert("demo".to_owned(), "true".to_owned());
    let body = crate::resources::application_body(
        &app_name,
        &BTreeMap::new(),
        module,
        json!({"fuel": 20_000_000u64, "memory_pages": 1, "entry": args.entry, "args": [{"i32": args.arg}]}),
        &match_labels,
        &[],
    );
    match client.post("/api/v1/applications", &body).await {
        Ok(_) => say(&format!(
            "application {app_name} created: {} on every device with demo=true",
            args.app.display()
        )),
        Err(e)
            if e.downcast_ref::<crate::client::ApiError>()
                .is_some_and(|e| e.status == 409) =>
        {
            say(&format!("application {app_name} exists; keeping it"));
        }
        Err(e) => return Err(e.context("creating the application")),
    }

    let names: Vec<String> = devices.iter().map(|d| d.name().to_owned()).collect();
    wait_for_results(&client, &app_name, &names, deadline).await?;
    Ok(true)
}

/// A DNS-label-like name made of `text`.
fn sanitize(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "sample".into()
    } else {
        name
    }
}

/// The id in "... as device <id> ...".
pub(crate) fn device_id(line: &str) -> Option<String> {
    line.split_once("as device ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
}

async fn register_gateway(
    store: &wasmbed_api::store::Store,
    device_addr: SocketAddr,
    http: SocketAddr,
) -> anyhow::Result<()> {
    let spec = GatewaySpec {
        http_endpoint: format!("https://{http}"),
        device_endpoint: device_addr.to_string(),
    };
    if store.get::<Gateway>(GATEWAY_NAME).await?.is_some() {
        store
            .modify::<Gateway>(GATEWAY_NAME, |g| {
                let change = g.spec != spec;
                g.spec = spec.clone();
                change
            })
            .await?;
    } else {
        store
            .create(&Gateway {
                metadata: ObjectMeta {
                    name: GATEWAY_NAME.into(),
                    ..ObjectMeta::default()
                },
                spec,
                status: GatewayStatus::default(),
            })
            .await?;
    }
    Ok(())
}

async fn register_device(
    store: &wasmbed_api::store::Store,
    name: &str,
    device_id: &str,
) -> anyhow::Result<()> {
    let mut labels = BTreeMap::new();
    labels.insert("board".to_owned(), BOARD.to_owned());
    labels.insert("demo".to_owned(), "true".to_owned());
    let spec = ApiDeviceSpec {
        board: BOARD.into(),
        gateway: GATEWAY_NAME.into(),
        device_id: Some(device_id.to_owned()),
        emulated: true,
        revoked: false,
    };
    if store.get::<Device>(name).await?.is_some() {
        store
            .modify::<Device>(name, |d| {
                let change = d.spec != spec || d.metadata.labels != labels;
                d.spec = spec.clone();
                d.metadata.labels = labels.clone();
                change
            })
            .await?;
    } else {
        store
            .create(&Device {
                metadata: ObjectMeta {
                    name: name.into(),
                    labels,
                    ..ObjectMeta::default()
                },
                spec,
                status: DeviceStatus::default(),
            })
            .await?;
    }
    Ok(())
}

/// One device's deployment as the application status shows it.
fn deployment_of<'a>(app: &'a Value, device: &str) -> Option<&'a Value> {
    app["status"]["deployments"]
        .as_array()?
        .iter()
        .find(|d| d["device"] == device)
}

/// Prints each device's phase as it changes, until every device has a
/// result (or failed) or the deadline passes.
async fn wait_for_results(
    client: &ApiClient,
    app: &str,
    devices: &[String],
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let status = client.get(&format!("/api/v1/applications/{app}")).await?;
        let mut done = 0;
        for device in devices {
            let (phase, results) = match deployment_of(&status, device) {
                Some(d) => (
                    d["phase"].as_str().unwrap_or("?").to_owned(),
                    d["results"].as_u64().unwrap_or(0),
                ),
                None => ("waiting for the controller".to_owned(), 0),
            };
            if results > 0 || phase == "Failed" {
                done += 1;
            }
            let text = format!("{phase}, {results} results");
            if shown.get(device) != Some(&text) {
                say(&format!("{app} on {device}: {text}"));
                shown.insert(device.clone(), text);
            }
        }
        if done == devices.len() {
            let summary: Vec<String> = devices
                .iter()
                .map(|d| {
                    let n = deployment_of(&status, d)
                        .and_then(|d| d["results"].as_u64())
                        .unwrap_or(0);
                    format!("{d}={n}")
                })
                .collect();
            say(&format!("results from every device: {}", summary.join(" ")));
            return Ok(());
        }
        if Instant::now() >= deadline {
            say(&format!(
                "no results from every device yet; still running (see `wasmbed app results {app}`)"
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_names_pick_image_and_board() {
        let zephyr: Firmware = "zephyr".parse().expect("infallible");
        assert_eq!(
            zephyr.resolve(None),
            (PathBuf::from(ZEPHYR_FIRMWARE), ZEPHYR_BOARD.to_owned())
        );
        let rust: Firmware = "rust".parse().expect("infallible");
        assert_eq!(rust.resolve(Some("ignored")).1, BOARD);
        let image: Firmware = "/tmp/fw.elf".parse().expect("infallible");
        assert_eq!(
            image.resolve(Some("mps2-an385-zephyr")),
            (PathBuf::from("/tmp/fw.elf"), "mps2-an385-zephyr".to_owned())
        );
        assert_eq!(image.resolve(None).1, BOARD);
        for name in [BOARD, ZEPHYR_BOARD] {
            Board::find(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn reads_the_device_id_of_both_console_lines() {
        assert_eq!(
            device_id("agent: enrolled as device 0123abcd").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(
            device_id("agent: session established as device ab-cd (heartbeat every 10000 ms)")
                .as_deref(),
            Some("ab-cd")
        );
        assert_eq!(device_id("agent: heartbeat"), None);
    }

    #[test]
    fn application_names_are_dns_labels() {
        assert_eq!(sanitize("primes"), "primes");
        assert_eq!(sanitize("My_App.v2"), "my-app-v2");
        assert_eq!(sanitize("__"), "sample");
    }

    #[test]
    fn the_admin_token_is_kept_and_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(admin_token(dir.path(), None).is_err());
        assert_eq!(admin_token(dir.path(), Some("wbd_1"))?, "wbd_1");
        assert_eq!(admin_token(dir.path(), None)?, "wbd_1");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn the_admin_token_file_is_readable_by_its_owner_only() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(TOKEN_FILE);
        let mode = || -> anyhow::Result<u32> {
            Ok(std::fs::metadata(&path)?.permissions().mode() & 0o777)
        };
        admin_token(dir.path(), Some("wbd_1"))?;
        assert_eq!(mode()?, 0o600);
        // A file others could read is tightened, when written or read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        admin_token(dir.path(), Some("wbd_2"))?;
        assert_eq!(mode()?, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert_eq!(admin_token(dir.path(), None)?, "wbd_2");
        assert_eq!(mode()?, 0o600);
        Ok(())
    }
}
