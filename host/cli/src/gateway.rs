//! `wasmbed gateway`: the device gateway as a long-running process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::Installation;

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Installation directory made by `wasmbed certs init`.
    #[arg(long, default_value = "wasmbed-pki", env = "WASMBED_PKI")]
    pki: PathBuf,
    /// SQLite database file; created if missing.
    #[arg(long, default_value = "wasmbed-gateway.db", env = "WASMBED_GATEWAY_DB")]
    db: PathBuf,
    /// Address devices connect to (TLS 1.3).
    #[arg(long, default_value = "0.0.0.0:40029")]
    listen: SocketAddr,
    /// Address of the HTTP/JSON interface and /metrics (the API server
    /// has 8080).
    #[arg(long, default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// Interval devices are told to send heartbeats at.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Heartbeat intervals without a message before a device is unreachable.
    #[arg(long, default_value_t = 3)]
    missed_heartbeats: u32,
    /// A TLS handshake slower than this is dropped.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Most connections from one source address.
    #[arg(long, default_value_t = 20_000)]
    max_connections_per_ip: usize,
    /// Open pairing at start, so new devices may enroll.
    #[arg(long)]
    open_pairing: bool,
    /// Register this gateway with the API server at this URL, e.g.
    /// `http://127.0.0.1:8080`; retried until it succeeds, so the API
    /// server may start later or restart.
    #[arg(long, env = "WASMBED_API")]
    api: Option<String>,
    /// A gateway token of the API server for this gateway's --name, made
    /// with `wasmbed token create --role gateway --gateway NAME --name NAME`:
    /// it may only register and update this gateway. (An admin token also
    /// works, but gives the gateway far more than it needs.)
    #[arg(long, env = "WASMBED_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// This gateway's name in the API server.
    #[arg(long, default_value = "gateway")]
    name: String,
    /// The HTTP URL the API server reaches this gateway at (default: from
    /// --http).
    #[arg(long)]
    advertise_http: Option<String>,
    /// The address devices reach this gateway at (default: from --listen).
    #[arg(long)]
    advertise_devices: Option<String>,
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let installation = Installation::load(&args.pki).with_context(|| {
        format!(
            "loading the installation in {} (create one with `wasmbed certs init --dir {}`)",
            args.pki.display(),
            args.pki.display()
        )
    })?;
    let store = Store::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    if args.open_pairing {
        store.set_pairing_open(true)?;
    }
    let mut config = GatewayConfig {
        handshake_timeout: args.handshake_timeout,
        max_connections_per_ip: args.max_connections_per_ip,
        ..GatewayConfig::default()
    };
    config.session.heartbeat_interval_ms = u32::try_from(args.heartbeat_interval.as_millis())
        .context("--heartbeat-interval is too long")?;
    config.session.missed_heartbeats = args.missed_heartbeats;
    let gateway = Gateway::new(config, &installation, store)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let devices = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the device port {}", args.listen))?;
        let http = TcpListener::bind(args.http)
            .await
            .with_context(|| format!("binding the HTTP port {}", args.http))?;
        if let Some(api) = &args.api {
            let registration = crate::register::Registration {
                api: api.clone(),
                token: args.api_token.clone(),
                name: args.name.clone(),
                http_endpoint: args.advertise_http.clone().unwrap_or_else(|| {
                    format!("http://{}", http.local_addr().unwrap_or(args.http))
                }),
                device_endpoint: args
                    .advertise_devices
                    .clone()
                    .unwrap_or_else(|| args.listen.to_string()),
            };
            tokio::spawn(registration.run());
        }
        gateway
            .serve(devices, http, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })
}
