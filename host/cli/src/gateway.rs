//! `wasmbed gateway`: the device gateway as a long-running process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tracing::{info, warn};
use wasmbed_gateway::limits::{AdmissionLimits, admission_limits, per_source_default};
use wasmbed_gateway::rate::RateLimit;
use wasmbed_gateway::signer::ApiSigner;
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::Installation;

use crate::open_files;

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Installation directory made by `wasmbed certs init`. Its device CA
    /// key (device-ca-key.pem) signs enrollments, unless --enroll-via-api.
    #[arg(long, default_value = "wasmbed-pki", env = "WASMBED_PKI")]
    pki: PathBuf,
    /// SQLite database file; created if missing.
    #[arg(long, default_value = "wasmbed-gateway.db", env = "WASMBED_GATEWAY_DB")]
    db: PathBuf,
    /// Address devices connect to (TLS 1.3).
    #[arg(long, default_value = "0.0.0.0:40029")]
    listen: SocketAddr,
    /// Address of the HTTP/JSON interface and /metrics (the API server
    /// has 8080), served over TLS with the gateway certificate: every route
    /// but /healthz and /openapi.json needs a client certificate of the
    /// installation's control CA (control-ca.pem; the API server has
    /// api-client.pem, `wasmbed certs issue-client` makes more). On a
    /// loopback address it also answers only requests whose Host is a
    /// loopback name (or an --http-allowed-host).
    #[arg(long, default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// Interval devices are told to send heartbeats at.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Heartbeat intervals without a message before a device is unreachable.
    #[arg(long, default_value_t = 3)]
    missed_heartbeats: u32,
    /// Heartbeats a device may send back to back; beyond them one per half
    /// interval, and sooner ones are refused `rate-limited`.
    #[arg(long, default_value_t = GatewayConfig::default().session.heartbeat_burst)]
    heartbeat_burst: u32,
    /// A TLS handshake slower than this is dropped.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// A device connection that sends nothing (no TLS ClientHello) for
    /// this long is dropped.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// Open a pairing window at start, so new devices may enroll: for 10
    /// minutes, for DURATION (`--open-pairing=1h`), or until closed over
    /// HTTP or the gateway stops (`--open-pairing=always`). Pairing never
    /// survives a restart by itself.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true,
          default_missing_value = "10m", value_parser = parse_pairing_window)]
    open_pairing: Option<PairingWindow>,
    /// Enrollments allowed from one source address: N a second, in bursts
    /// of up to B (`N/s,B`); more are refused `rate-limited`.
    #[arg(long, value_name = "N/s,B", default_value_t = GatewayConfig::default().enroll_rate_per_source)]
    enroll_limit: RateLimit,
    /// Enrollments allowed from all sources together (`N/s,B`).
    #[arg(long, value_name = "N/s,B", default_value_t = GatewayConfig::default().enroll_rate_total)]
    enroll_limit_total: RateLimit,
    /// Most open device connections; more are closed at once [default:
    /// what the open-files limit leaves after a reserve for the process and
    /// the HTTP port, at most 50000].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most device connections from one source address (an IPv6 /64)
    /// [default: half of --max-connections, at most 20000].
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Most open connections to the HTTP port; more are answered 503
    /// [default: 512, at most a quarter of the open-files limit].
    #[arg(long)]
    http_max_connections: Option<usize>,
    /// A Host name the HTTP port also answers to when bound to loopback,
    /// e.g. the one a port forward reaches it by: `name` (any port) or
    /// `name:port`. Repeatable.
    #[arg(long = "http-allowed-host", value_name = "HOST")]
    http_allowed_hosts: Vec<String>,
    /// Register this gateway with the API server at this URL, e.g.
    /// `http://127.0.0.1:8080`; retried until it succeeds, so the API
    /// server may start later or restart.
    #[arg(long, env = "WASMBED_API")]
    api: Option<String>,
    /// A gateway token of the API server for this gateway's --name, made
    /// with `wasmbed token create --role gateway --gateway NAME --name NAME`:
    /// it may only register and update this gateway, and forward
    /// enrollments (--enroll-via-api). (An admin token also
    /// works, but gives the gateway far more than it needs.)
    #[arg(long, env = "WASMBED_GATEWAY_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// A CA certificate (PEM) to trust for an https:// --api, e.g. the
    /// installation's control-ca.pem.
    #[arg(long, env = "WASMBED_API_CA")]
    api_ca: Option<PathBuf>,
    /// Forward enrollments to the API server (--api, with the gateway
    /// token --api-token and --api-ca) instead of signing them here: the
    /// API server signs with its device CA, so a device keeps its id
    /// whichever gateway it enrolls through, and pairing (PUT
    /// /api/v1/pairing) and pre-authorised keys are fleet-wide. This
    /// gateway then needs no device-ca-key.pem in --pki, and its own
    /// pairing (--open-pairing, /v1/pairing) has no effect. Without it
    /// (the default, and `wasmbed up`) the gateway signs enrollments with
    /// the device CA key in --pki.
    #[arg(long, requires = "api", conflicts_with = "open_pairing")]
    enroll_via_api: bool,
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
    /// When stopped (Ctrl-C, SIGTERM), once its devices have been told to
    /// reconnect elsewhere, keep the HTTP interface up this long at most
    /// for the API server to collect the results not read yet. Default:
    /// 60s with --api, 0s without.
    #[arg(long, value_parser = humantime::parse_duration)]
    collect_grace: Option<Duration>,
}

/// How long a gateway registered with an API server waits at stop for its
/// results to be collected, by default.
const DEFAULT_COLLECT_GRACE: Duration = Duration::from_secs(60);

/// The connection limits: the flags given, the rest derived from the
/// open-files limit ([`admission_limits`]); warns about flags above what
/// the limit allows.
fn connection_limits(open_files: Option<u64>, args: &GatewayArgs) -> AdmissionLimits {
    let derived = admission_limits(open_files.unwrap_or(u64::MAX), args.http_max_connections);
    let max_connections = args.max_connections.unwrap_or(derived.max_connections);
    let limits = AdmissionLimits {
        max_connections,
        max_connections_per_ip: args
            .max_connections_per_ip
            .unwrap_or(per_source_default(max_connections)),
        ..derived
    };
    if let Some(open_files) = open_files {
        if derived.device_fd_budget == 0 {
            warn!(
                "--http-max-connections {} leaves no file descriptors for device connections \
                 under the open-files limit of {open_files}",
                derived.http_max_connections
            );
        }
        let room = derived.device_fd_budget;
        open_files::warn_if_above("--max-connections", args.max_connections, room, open_files);
        open_files::warn_if_above(
            "--max-connections-per-ip",
            args.max_connections_per_ip,
            room,
            open_files,
        );
    }
    info!(
        open_files,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        http_max_connections = limits.http_max_connections,
        "connection limits"
    );
    limits
}

/// How long the gateway waits for the API server to sign an enrollment
/// before it tells the device to retry.
const ENROLL_VIA_API_TIMEOUT: Duration = Duration::from_secs(10);

/// The API server as this gateway's enrollment signer (`--enroll-via-api`).
fn api_signer(args: &GatewayArgs) -> anyhow::Result<ApiSigner> {
    let api = args
        .api
        .as_deref()
        .context("--enroll-via-api needs --api")?;
    let token = args.api_token.clone().context(
        "--enroll-via-api needs --api-token, a gateway token of the API server \
         (`wasmbed token create --role gateway --gateway NAME`)",
    )?;
    let ca = args
        .api_ca
        .as_deref()
        .map(|path| {
            std::fs::read(path).with_context(|| format!("reading --api-ca {}", path.display()))
        })
        .transpose()?;
    Ok(ApiSigner::new(
        api,
        token,
        ca.as_deref(),
        ENROLL_VIA_API_TIMEOUT,
    )?)
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let load = if args.enroll_via_api {
        Installation::load_without_device_ca_key
    } else {
        Installation::load
    };
    let installation = load(&args.pki).with_context(|| {
        format!(
            "loading the installation in {} (create one with `wasmbed certs init --dir {}`)",
            args.pki.display(),
            args.pki.display()
        )
    })?;
    let control_ca = wasmbed_pki::load_certificate(
        &args.pki.join(wasmbed_pki::control_file_names::CONTROL_CA),
    )
    .with_context(|| {
        format!(
            "loading the control CA, which says who may call this gateway's HTTP interface \
             (an installation made before it existed gets one with `wasmbed certs control --dir {}`)",
            args.pki.display()
        )
    })?;
    let store = Store::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    let limits = connection_limits(open_files::raise(), &args);
    let mut config = GatewayConfig {
        handshake_timeout: args.handshake_timeout,
        hello_timeout: args.hello_timeout,
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        enroll_rate_per_source: args.enroll_limit,
        enroll_rate_total: args.enroll_limit_total,
        collect_grace: args.collect_grace.unwrap_or(if args.api.is_some() {
            DEFAULT_COLLECT_GRACE
        } else {
            Duration::ZERO
        }),
        ..GatewayConfig::default()
    }
    .with_control_ca(&installation, &control_ca)?;
    config.http.max_connections = limits.http_max_connections;
    config.http.extra_allowed_hosts = args.http_allowed_hosts.clone();
    config.session.heartbeat_interval_ms = u32::try_from(args.heartbeat_interval.as_millis())
        .context("--heartbeat-interval is too long")?;
    config.session.missed_heartbeats = args.missed_heartbeats;
    config.session.heartbeat_burst = args.heartbeat_burst;
    let gateway = if args.enroll_via_api {
        let signer = api_signer(&args)?;
        info!(api = ?args.api, "enrollments are forwarded to the API server, which signs them");
        Gateway::with_fleet_signer(config, &installation, store, Arc::new(signer))?
    } else {
        Gateway::new(config, &installation, store)?
    };
    match args.open_pairing {
        Some(PairingWindow::For(duration)) => {
            gateway.pairing().open(Some(duration));
            tracing::info!(for_ = %humantime::format_duration(duration), "pairing open");
        }
        Some(PairingWindow::Always) => {
            gateway.pairing().open(None);
            tracing::warn!(
                "pairing open until closed: any device with the claim certificate may enroll"
            );
        }
        None => {}
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let devices = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the device port {}", args.listen))?;
        let http = TcpListener::bind(args.http)
            .await
            .with_context(|| format!("binding the HTTP port {}", args.http))?;
        if let Some(api) = &args.api {
            let bound = http.local_addr().unwrap_or(args.http);
            anyhow::ensure!(
                args.advertise_http.is_some() || !bound.ip().is_unspecified(),
                "--http {bound} listens on every address: tell the API server which one reaches \
                 this gateway with --advertise-http https://NAME:{} (NAME one of the gateway \
                 certificate's names)",
                bound.port()
            );
            let registration = crate::register::Registration {
                api: api.clone(),
                token: args.api_token.clone(),
                name: args.name.clone(),
                api_ca: args.api_ca.clone(),
                http_endpoint: args.advertise_http.clone().unwrap_or_else(|| {
                    format!("https://{}", http.local_addr().unwrap_or(args.http))
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

/// How long `--open-pairing` opens pairing for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairingWindow {
    For(Duration),
    Always,
}

fn parse_pairing_window(text: &str) -> Result<PairingWindow, String> {
    if text == "always" {
        return Ok(PairingWindow::Always);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (write e.g. 10m, 2h, or always)"))?;
    if duration.is_zero() || duration > wasmbed_gateway::pairing::MAX_WINDOW {
        return Err(format!(
            "a pairing window lasts from 1s to {}",
            humantime::format_duration(wasmbed_gateway::pairing::MAX_WINDOW)
        ));
    }
    Ok(PairingWindow::For(duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn pairing_windows_parse() {
        assert_eq!(
            parse_pairing_window("90s"),
            Ok(PairingWindow::For(Duration::from_secs(90)))
        );
        assert_eq!(parse_pairing_window("always"), Ok(PairingWindow::Always));
        assert!(parse_pairing_window("0s").is_err());
        assert!(parse_pairing_window("30d").is_err());
        assert!(parse_pairing_window("soon").is_err());
    }

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        args: GatewayArgs,
    }

    fn limits(open_files: Option<u64>, flags: &[&str]) -> AdmissionLimits {
        let command =
            Command::try_parse_from(std::iter::once("gateway").chain(flags.iter().copied()))
                .expect("flags parse");
        connection_limits(open_files, &command.args)
    }

    #[test]
    fn enrolling_via_the_api_needs_the_api_and_is_not_paired_here() {
        let parse = |flags: &[&str]| {
            Command::try_parse_from(std::iter::once("gateway").chain(flags.iter().copied()))
        };
        assert!(parse(&["--enroll-via-api"]).is_err(), "needs --api");
        assert!(
            parse(&["--enroll-via-api", "--api", "http://a", "--open-pairing"]).is_err(),
            "pairing is the API server's"
        );
        let command = parse(&["--enroll-via-api", "--api", "http://a"]).expect("parses");
        assert!(command.args.enroll_via_api);
        let error = api_signer(&command.args).expect_err("no token");
        assert!(format!("{error:#}").contains("--api-token"), "{error:#}");
        let command =
            parse(&["--enroll-via-api", "--api", "http://a", "--api-token", "t"]).expect("parses");
        assert!(api_signer(&command.args).is_ok());
        assert!(
            !parse(&[]).expect("parses").args.enroll_via_api,
            "local by default"
        );
    }

    #[test]
    fn without_flags_the_limits_come_from_the_open_files_limit() {
        let derived = limits(Some(1024), &[]);
        assert_eq!(
            (
                derived.max_connections,
                derived.max_connections_per_ip,
                derived.http_max_connections
            ),
            (720, 360, 240)
        );
        let unknown = limits(None, &[]);
        assert_eq!(
            (unknown.max_connections, unknown.max_connections_per_ip),
            (50_000, 20_000)
        );
    }

    #[test]
    fn flags_override_the_derived_limits() {
        let given = limits(Some(1024), &["--max-connections", "100"]);
        assert_eq!(
            (given.max_connections, given.max_connections_per_ip),
            (100, 50)
        );
        // Above what the descriptors allow: kept (with a warning).
        let given = limits(
            Some(1024),
            &[
                "--max-connections",
                "5000",
                "--max-connections-per-ip",
                "10",
            ],
        );
        assert_eq!(
            (given.max_connections, given.max_connections_per_ip),
            (5000, 10)
        );
        let given = limits(Some(1024), &["--http-max-connections", "100"]);
        assert_eq!(
            (given.http_max_connections, given.max_connections),
            (100, 860)
        );
    }
}
