//! `wasmbed-bench api` (what `cargo xtask bench api` runs): the API server
//! over a real loopback socket with its SQLite store.
//!
//! 1. `GET /api/v1/devices` with 10,000 devices stored, and its first
//!    page `?limit=100`, from N concurrent keep-alive clients, in requests
//!    per second, against `GET /healthz` on the same server (the baseline:
//!    routing, HTTP and the socket, no store and no JSON), interleaved
//!    round by round, as medians; and, from one client, the time to walk
//!    the whole list page by page (`?limit=500`, following `X-Continue`)
//!    against one unpaged `GET`;
//! 2. the time from `POST /api/v1/applications` to results from 1,000
//!    simulated devices (`wasmbed-sim`, the real agent) through the
//!    controller and a real gateway: all results stored at the gateway,
//!    and the application's status counting them all.
//!
//! The API server, its controller and the gateway run in this process on
//! a runtime of their own; the clients and devices on another.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::http::{AppState, Auth, app};
use wasmbed_api::model::{Device, DeviceSpec, DeviceStatus, Gateway, GatewaySpec, ObjectMeta};
use wasmbed_api::store::{SqliteStore, Store};
use wasmbed_gateway::store::Store as GatewayStore;
use wasmbed_gateway::{Gateway as GatewayServer, GatewayConfig};
use wasmbed_httpd::HttpServerConfig;
use wasmbed_pki::{Installation, InstallationOptions};
use wasmbed_sim::{Fleet, SimConfig, Simulation};

use crate::report::{Row, list, median, progress, thousands};
use crate::{http, wasm};

/// Longest wait for a fleet to come up, and for a deployment.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// Devices in the store for the listing.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) devices: usize,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,
    /// Rounds; each measures the listing and the baseline once, in
    /// alternating order.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
    /// Seconds of each measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) round_secs: f64,
    /// Items of the first page measured (`?limit=`).
    #[arg(long, default_value_t = 100)]
    pub(crate) page_limit: usize,
    /// Items per page when walking the whole list.
    #[arg(long, default_value_t = 500)]
    pub(crate) walk_limit: usize,
    /// Walks, and unpaged GETs, from one client per round.
    #[arg(long, default_value_t = 3)]
    pub(crate) walks: usize,
    /// Simulated devices an application is deployed to (0: no deployment).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) deploy_devices: usize,
    /// Deployments measured, each with a fresh store, gateway and fleet.
    #[arg(long, default_value_t = 3)]
    pub(crate) deploy_runs: usize,
    /// Size of the deployed module, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub(crate) module_size: usize,
}

/// The servers' own runtime, so that clients and servers do not share
/// worker threads.
struct System {
    runtime: Option<tokio::runtime::Runtime>,
}

impl System {
    fn new() -> anyhow::Result<System> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("system")
            .build()?;
        Ok(System {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .unwrap_or_else(tokio::runtime::Handle::current)
    }

    /// Serves the API on a loopback port; the admin token.
    async fn serve_api(&self, store: Store) -> anyhow::Result<(SocketAddr, String)> {
        let (auth, token) = Auth::bootstrap(&store).await?;
        let token = token.context("a new store makes an admin token")?;
        let addr = self
            .handle()
            .spawn(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                tokio::spawn(async move {
                    let router = app(AppState::new(store, auth));
                    let config = HttpServerConfig::default();
                    let _ = wasmbed_httpd::serve(
                        listener,
                        router,
                        None,
                        config,
                        std::future::pending(),
                    )
                    .await;
                });
                anyhow::Ok(addr)
            })
            .await??;
        Ok((addr, token))
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn sqlite_store(dir: &std::path::Path) -> anyhow::Result<Store> {
    Ok(Store::sqlite(SqliteStore::open(&dir.join("api.db"))?))
}

fn device(name: String, device_id: Option<String>) -> Device {
    Device {
        metadata: ObjectMeta {
            name,
            labels: BTreeMap::from([("bench".to_owned(), "yes".to_owned())]),
            ..ObjectMeta::default()
        },
        spec: DeviceSpec {
            board: "wasmbed-sim".into(),
            gateway: "gw".into(),
            device_id,
            emulated: true,
            revoked: false,
        },
        status: DeviceStatus::default(),
    }
}

pub(crate) async fn run(args: ApiArgs) -> anyhow::Result<()> {
    progress("");
    let argv: Vec<String> = std::env::args().collect();
    println!("wasmbed API server benchmark");
    println!("  runs:     {}", argv.join(" "));
    println!(
        "  machine:  {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::proc::load_average()
    );
    println!(
        "  listing:  {} devices stored (SQLite), {} keep-alive clients, {} rounds x {} s x 3 sides \
         (all, ?limit={}, /healthz), {} walks by ?limit={} per round; \
         deploy: {} bytes to {} devices, {} runs",
        args.devices,
        args.clients,
        args.rounds,
        args.round_secs,
        args.page_limit,
        args.walks,
        args.walk_limit,
        args.module_size,
        args.deploy_devices,
        args.deploy_runs
    );
    let mut rows = listing(&args).await?;
    if args.deploy_devices > 0 && args.deploy_runs > 0 {
        rows.extend(deploy(&args).await?);
    }
    crate::report::table(&rows);
    println!();
    println!("load average {} at the end", crate::proc::load_average());
    Ok(())
}

async fn listing(args: &ApiArgs) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::Builder::new()
        .prefix("wasmbed-bench-api-")
        .tempdir()?;
    let store = sqlite_store(dir.path())?;
    progress(&format!("listing: storing {} devices", args.devices));
    let started = Instant::now();
    for i in 0..args.devices {
        store
            .create(&device(
                format!("dev-{i:05}"),
                Some(format!("{:032x}", i + 1)),
            ))
            .await?;
    }
    progress(&format!(
        "listing: {} devices stored in {:.1} s ({:.0} creates/s, each durable)",
        args.devices,
        started.elapsed().as_secs_f64(),
        args.devices as f64 / started.elapsed().as_secs_f64()
    ));
    let system = System::new()?;
    let (addr, token) = system.serve_api(store).await?;

    let first = get(addr, "/api/v1/devices", &token).await?;
    let listed = serde_json::from_slice::<serde_json::Value>(&first)?
        .as_array()
        .map_or(0, Vec::len);
    if listed != args.devices {
        bail!(
            "GET /api/v1/devices listed {listed} devices, not {}",
            args.devices
        );
    }
    let page_path = format!("/api/v1/devices?limit={}", args.page_limit);
    let page = get(addr, &page_path, &token).await?;
    let paged = serde_json::from_slice::<serde_json::Value>(&page)?
        .as_array()
        .map_or(0, Vec::len);
    if paged != args.page_limit.min(args.devices) {
        bail!("GET {page_path} listed {paged} devices");
    }
    let pages = check_walk(addr, &token, args.walk_limit, args.devices).await?;
    let window = Duration::from_secs_f64(args.round_secs);
    let mut list_rates = Vec::new();
    let mut page_rates = Vec::new();
    let mut health_rates = Vec::new();
    let mut walk_ms = Vec::new();
    let mut whole_ms = Vec::new();
    for round in 0..args.rounds {
        let mut order = [Side::All, Side::Page, Side::Health];
        order.rotate_left(round % 3);
        for side in order {
            let path = match side {
                Side::All => "/api/v1/devices",
                Side::Page => page_path.as_str(),
                Side::Health => "/healthz",
            };
            let rate = load(addr, path, &token, args.clients, window).await?;
            match side {
                Side::All => list_rates.push(rate),
                Side::Page => page_rates.push(rate),
                Side::Health => health_rates.push(rate),
            }
        }
        for _ in 0..args.walks {
            walk_ms.push(walk(addr, &token, args.walk_limit).await?.0 * 1e3);
            let started = Instant::now();
            get(addr, "/api/v1/devices", &token).await?;
            whole_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        progress(&format!(
            "listing: round {}: devices {:.1}/s, first page {:.0}/s, healthz {:.0}/s; \
             walk {:.0} ms, one GET {:.0} ms",
            round + 1,
            list_rates[round],
            page_rates[round],
            health_rates[round],
            median(&walk_ms[round * args.walks..]),
            median(&whole_ms[round * args.walks..]),
        ));
    }
    let ratios: Vec<f64> = list_rates
        .iter()
        .zip(&health_rates)
        .map(|(l, h)| l / h)
        .collect();
    println!(
        "  GET /api/v1/devices per second: {}",
        list_rates
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  GET {page_path} per second: {}", list(&page_rates));
    println!("  GET /healthz per second:        {}", list(&health_rates));
    let ms = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  walk by ?limit={} ({pages} pages), one client (ms): {}",
        args.walk_limit,
        ms(&walk_ms)
    );
    println!("  one unpaged GET, one client (ms):  {}", ms(&whole_ms));
    let listing = median(&list_rates);
    let devices_per_s = listing * args.devices as f64;
    let page_ratios: Vec<f64> = page_rates
        .iter()
        .zip(&health_rates)
        .map(|(p, h)| p / h)
        .collect();
    let walk_ratios: Vec<f64> = walk_ms.iter().zip(&whole_ms).map(|(w, o)| w / o).collect();
    Ok(vec![
        Row::new(
            format!(
                "GET /api/v1/devices ({} devices, {} KiB), requests/s",
                thousands(args.devices as f64),
                first.len() / 1024
            ),
            format!("{listing:.1}"),
        )
        .baseline(
            format!("{} (/healthz)", thousands(median(&health_rates))),
            median(&ratios),
        ),
        Row::new("  devices listed per second", thousands(devices_per_s)),
        Row::new(
            "  one listing costs as many /healthz requests as",
            thousands(1.0 / median(&ratios)),
        ),
        Row::new(
            format!(
                "GET /api/v1/devices?limit={} (first page, {} KiB), requests/s",
                args.page_limit,
                page.len() / 1024
            ),
            format!("{:.1}", median(&page_rates)),
        )
        .baseline(
            format!("{} (/healthz)", thousands(median(&health_rates))),
            median(&page_ratios),
        ),
        Row::new(
            format!(
                "walk {} devices by ?limit={} ({pages} pages), one client",
                thousands(args.devices as f64),
                args.walk_limit
            ),
            format!("{:.0} ms", median(&walk_ms)),
        )
        .baseline(
            format!("{:.0} ms (one unpaged GET)", median(&whole_ms)),
            median(&walk_ratios),
        ),
    ])
}

/// The sides of a listing round.
#[derive(Debug, Clone, Copy)]
enum Side {
    All,
    Page,
    Health,
}

/// Walks the device list by `?limit=`, following `X-Continue`, on one
/// keep-alive connection; the seconds and the bodies.
async fn walk(addr: SocketAddr, token: &str, limit: usize) -> anyhow::Result<(f64, Vec<Vec<u8>>)> {
    let first = format!("/api/v1/devices?limit={limit}");
    let started = Instant::now();
    let mut connection = Connection::open(addr, &first, token).await?;
    let mut bodies = Vec::new();
    loop {
        bodies.push(connection.request().await?);
        match connection.next.take() {
            Some(next) => connection.set_path(&format!("{first}&continue={next}")),
            None => return Ok((started.elapsed().as_secs_f64(), bodies)),
        }
    }
}

/// Checks that a walk lists every device once, by name; the pages.
async fn check_walk(
    addr: SocketAddr,
    token: &str,
    limit: usize,
    devices: usize,
) -> anyhow::Result<usize> {
    let (_, bodies) = walk(addr, token, limit).await?;
    let mut names = Vec::with_capacity(devices);
    for body in &bodies {
        let page: Vec<serde_json::Value> = serde_json::from_slice(body)?;
        if page.len() > limit {
            bail!("a page of {} devices with ?limit={limit}", page.len());
        }
        for device in page {
            let name = device["metadata"]["name"].as_str().unwrap_or_default();
            names.push(name.to_owned());
        }
    }
    if names.len() != devices || names.windows(2).any(|w| w[0] >= w[1]) {
        bail!(
            "walking by ?limit={limit} listed {} devices, not {devices} in name order",
            names.len()
        );
    }
    Ok(bodies.len())
}

/// `GET path` once, on its own connection; the body.
async fn get(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<Vec<u8>> {
    let mut connection = Connection::open(addr, path, token).await?;
    connection.request().await
}

/// One keep-alive connection sending the same request again and again.
struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    request: Vec<u8>,
    line: String,
    addr: SocketAddr,
    token: String,
    /// The `X-Continue` header of the last answer.
    next: Option<String>,
}

impl Connection {
    async fn open(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (reader, writer) = tcp.into_split();
        Ok(Connection {
            reader: BufReader::with_capacity(256 * 1024, reader),
            writer,
            request: request(addr, path, token),
            line: String::new(),
            addr,
            token: token.to_owned(),
            next: None,
        })
    }

    /// Requests `path` from now on.
    fn set_path(&mut self, path: &str) {
        self.request = request(self.addr, path, &self.token);
    }

    /// Sends the request and reads the answer, which must be a 200 with
    /// a `Content-Length`; the body.
    async fn request(&mut self) -> anyhow::Result<Vec<u8>> {
        self.writer.write_all(&self.request).await?;
        let mut status = None;
        let mut length = None;
        self.next = None;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await? == 0 {
                bail!("the server closed the connection");
            }
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("x-continue") {
                    self.next = Some(value.trim().to_owned());
                }
            }
        }
        let length = length.context("an answer without Content-Length")?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        if status != Some(200) {
            bail!(
                "status {status:?}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        Ok(body)
    }
}

/// A keep-alive `GET path`.
fn request(addr: SocketAddr, path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// Requests per second over `window` from `clients` keep-alive clients.
async fn load(
    addr: SocketAddr,
    path: &str,
    token: &str,
    clients: usize,
    window: Duration,
) -> anyhow::Result<f64> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(addr, path, token).await?);
    }
    let started = Instant::now();
    let stop = started + window;
    let mut tasks = Vec::with_capacity(clients);
    for mut connection in connections {
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < stop {
                connection.request().await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn deploy(args: &ApiArgs) -> anyhow::Result<Vec<Row>> {
    let n = args.deploy_devices;
    let options = InstallationOptions::default();
    let installation = Installation::create(&options)?;
    let control = wasmbed_pki::ControlCa::create(&options)?;
    let pki = Pki {
        api_client: control.issue_client("api-server", &options)?,
        control,
        installation,
    };
    let mut to_gateway = Vec::new();
    let mut to_status = Vec::new();
    for run in 0..args.deploy_runs {
        let (gateway, status) = deploy_once(args, &pki, run).await?;
        to_gateway.push(gateway);
        to_status.push(status);
    }
    let what = format!(
        "POST application ({} KiB) to results from {} devices",
        args.module_size / 1024,
        thousands(n as f64)
    );
    let secs = |values: &[f64]| format!("{:.2} s", median(values));
    println!(
        "  deploy, all results at the gateway (s): {}",
        to_gateway
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  deploy, all results in the application's status (s): {}",
        to_status
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(vec![
        Row::new(format!("{what}: at the gateway"), secs(&to_gateway)),
        Row::new(format!("{what}: in the API status"), secs(&to_status)),
    ])
}

/// An installation with its control PKI, in memory.
struct Pki {
    installation: Installation,
    control: wasmbed_pki::ControlCa,
    /// The API server's certificate for calling the gateway.
    api_client: wasmbed_pki::Credential,
}

impl Pki {
    fn gateway_tls(&self) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
        Ok(wasmbed_pki::control_client_config(
            self.installation.gateway_ca(),
            &self.api_client,
        )?)
    }
}

/// The in-process gateway of one deployment run.
struct BenchGateway {
    /// Its HTTP port.
    http: SocketAddr,
    /// A client of that port.
    client: http::GatewayClient,
    /// The controller's TLS configuration for it.
    controller_tls: std::sync::Arc<rustls::ClientConfig>,
}

/// One deployment through the controller; the seconds until the gateway
/// stored every result, and until the application's status counted them.
async fn deploy_once(args: &ApiArgs, pki: &Pki, run: usize) -> anyhow::Result<(f64, f64)> {
    let installation = &pki.installation;
    let n = args.deploy_devices;
    let dir = tempfile::Builder::new()
        .prefix("wasmbed-bench-api-deploy-")
        .tempdir()?;
    let system = System::new()?;
    progress(&format!(
        "deploy {}: a gateway (pairing open) and {n} simulated devices",
        run + 1
    ));
    let gateway = GatewayServer::new(
        GatewayConfig {
            // The simulated fleet enrolls from one address, all at once.
            enroll_rate_per_source: wasmbed_gateway::rate::RateLimit::UNLIMITED,
            enroll_rate_total: wasmbed_gateway::rate::RateLimit::UNLIMITED,
            ..GatewayConfig::default()
        }
        .with_control_ca(installation, pki.control.cert())?,
        installation,
        GatewayStore::open(&dir.path().join("gateway.db"))?,
    )?;
    let (devices_addr, gateway_http) = system
        .handle()
        .spawn(async move {
            let devices = TcpListener::bind("127.0.0.1:0").await?;
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let addrs = (devices.local_addr()?, http.local_addr()?);
            tokio::spawn(async move {
                let _ = gateway.serve(devices, http, std::future::pending()).await;
            });
            anyhow::Ok(addrs)
        })
        .await??;
    let client = http::GatewayClient::new(installation.gateway_ca(), &pki.api_client)?;
    let pairing = client
        .call(
            gateway_http,
            "PUT",
            "/v1/pairing",
            Some(br#"{"open":true}"#),
        )
        .await?;
    if pairing.status != 200 {
        bail!("PUT /v1/pairing: status {}", pairing.status);
    }
    let mut config = SimConfig::new(devices_addr);
    config.connect_rate = Some(500.0);
    config.max_module_size = u32::try_from(args.module_size)
        .unwrap_or(u32::MAX)
        .max(config.max_module_size);
    let fleet = Fleet::start(Simulation::new(config, installation)?, n, None)
        .context("starting the simulated devices")?;
    let result = deploy_fleet(
        args,
        &system,
        &fleet,
        dir.path(),
        &BenchGateway {
            http: gateway_http,
            client: client.clone(),
            controller_tls: pki.gateway_tls()?,
        },
        devices_addr,
    )
    .await;
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    if stats.errors.total() > 0 {
        progress(&format!("deploy: device errors: {}", stats.errors));
    }
    drop(system);
    result
}

async fn deploy_fleet(
    args: &ApiArgs,
    system: &System,
    fleet: &Fleet,
    dir: &std::path::Path,
    gateway: &BenchGateway,
    devices_addr: SocketAddr,
) -> anyhow::Result<(f64, f64)> {
    let (gateway_http, client) = (gateway.http, &gateway.client);
    let n = args.deploy_devices;
    let deadline = Instant::now() + PATIENCE;
    while fleet.stats().connected < n as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {n} devices connected", fleet.stats().connected);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids = fleet
        .devices()
        .iter()
        .map(|d| d.device_id().map(|id| id.to_string()))
        .collect::<Option<Vec<_>>>()
        .context("a connected device has no id")?;

    // The API server and controller, the gateway and devices registered.
    let store = sqlite_store(dir)?;
    store
        .create(&Gateway {
            metadata: ObjectMeta {
                name: "gw".into(),
                ..ObjectMeta::default()
            },
            spec: GatewaySpec {
                http_endpoint: format!("https://{gateway_http}"),
                device_endpoint: devices_addr.to_string(),
            },
            status: Default::default(),
        })
        .await?;
    for (i, id) in ids.into_iter().enumerate() {
        store
            .create(&device(format!("sim-{i:04}"), Some(id)))
            .await?;
    }
    let (addr, token) = system.serve_api(store.clone()).await?;
    let controller = Controller::new(
        &store,
        ControllerConfig {
            gateway_tls: Some(gateway.controller_tls.clone()),
            ..ControllerConfig::default()
        },
    );
    let controller = system
        .handle()
        .spawn(controller.run(std::future::pending()));
    // Let the controller's first pass and the last sessions settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let module = wasm::module(args.module_size);
    let body = serde_json::json!({
        "metadata": { "name": "bench" },
        "spec": {
            "module": base64::engine::general_purpose::STANDARD.encode(&module),
            "limits": { "fuel": 1_000_000, "memory_pages": 1, "entry": wasm::ENTRY, "args": [{ "i32": 1 }] },
            "selector": { "match_labels": { "bench": "yes" } },
        }
    })
    .to_string();
    let t0 = Instant::now();
    let created = post(addr, "/api/v1/applications", &token, body.as_bytes()).await?;
    if created != 201 {
        bail!("POST /api/v1/applications: status {created}");
    }
    let mut at_gateway = None;
    let mut in_status = None;
    let mut next_report = Instant::now() + Duration::from_secs(2);
    let mut api = Connection::open(addr, "/api/v1/applications/bench", &token).await?;
    while at_gateway.is_none() || in_status.is_none() {
        let stored = if n <= 1000 {
            client
                .get_json(gateway_http, &format!("/v1/results?limit={n}"))
                .await?
                .as_array()
                .map_or(0, Vec::len)
        } else {
            usize::try_from(fleet.stats().results).unwrap_or(usize::MAX)
        };
        if at_gateway.is_none() && stored >= n {
            at_gateway = Some(t0.elapsed().as_secs_f64());
        }
        let application: serde_json::Value = serde_json::from_slice(&api.request().await?)?;
        let counted = application["status"]["results"].as_u64().unwrap_or(0);
        if in_status.is_none() && counted >= n as u64 {
            in_status = Some(t0.elapsed().as_secs_f64());
        }
        if fleet.stats().deploy_failures > 0 {
            bail!("deployments failed on the devices: {}", fleet.stats());
        }
        if t0.elapsed() > PATIENCE {
            bail!("after {PATIENCE:?}: {stored} results at the gateway, {counted} in the status");
        }
        if Instant::now() >= next_report {
            progress(&format!(
                "deploy: {:.1} s: {stored} results at the gateway, {counted} in the status",
                t0.elapsed().as_secs_f64()
            ));
            next_report += Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    let (gateway, status) = (
        at_gateway.unwrap_or_default(),
        in_status.unwrap_or_default(),
    );
    progress(&format!(
        "deploy: all results at the gateway after {gateway:.2} s, in the status after {status:.2} s"
    ));
    Ok((gateway, status))
}

/// `POST path` with a JSON body; the status.
async fn post(addr: SocketAddr, path: &str, token: &str, body: &[u8]) -> anyhow::Result<u16> {
    let mut tcp = TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_keep_alive_client_reads_answers_and_refuses_errors() -> anyhow::Result<()> {
        let system = System::new()?;
        let store = Store::in_memory();
        store.create(&device("d1".into(), None)).await?;
        let (addr, token) = system.serve_api(store).await?;
        let body = get(addr, "/api/v1/devices", &token).await?;
        let devices: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(devices[0]["metadata"]["name"], "d1");
        // Several answers on one connection.
        let mut connection = Connection::open(addr, "/healthz", &token).await?;
        for _ in 0..3 {
            assert_eq!(connection.request().await?, b"ok");
        }
        let rate = load(addr, "/healthz", &token, 2, Duration::from_millis(100)).await?;
        assert!(rate > 0.0);
        // Walking follows X-Continue to the end.
        let store2 = Store::in_memory();
        for i in 0..5 {
            store2.create(&device(format!("d{i}"), None)).await?;
        }
        let (addr2, token2) = system.serve_api(store2).await?;
        assert_eq!(check_walk(addr2, &token2, 2, 5).await?, 3);
        assert_eq!(check_walk(addr2, &token2, 5, 5).await?, 1);
        assert!(check_walk(addr2, &token2, 2, 6).await.is_err());
        // A refused request is an error, not a measurement.
        assert!(get(addr, "/api/v1/devices", "wbd_wrong").await.is_err());
        assert!(
            load(
                addr,
                "/api/v1/devices",
                "wbd_wrong",
                2,
                Duration::from_millis(50)
            )
            .await
            .is_err()
        );
        Ok(())
    }
}
