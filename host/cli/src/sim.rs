//! `wasmbed sim`: a fleet of simulated devices running the real agent.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use wasmbed_pki::Installation;
use wasmbed_sim::{ErrorKind, Fleet, FleetSnapshot, SimConfig, Simulation};

/// How long devices get to say goodbye when the simulation stops.
const GOODBYE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
#[command(after_long_help = "\
Each device runs Wasmbed's real device agent (the firmware's no_std agent and \
its wasmi runtime) over TCP and TLS 1.3: it enrolls with the installation's \
claim certificate, reconnects with the certificate the gateway issued, sends \
heartbeats, installs and runs the modules deployed to it and reports their \
results, and reconnects with backoff when the connection is lost.

New devices can only enroll while the gateway's pairing is open: start the \
gateway with `wasmbed gateway --open-pairing`, or open it over HTTP with \
`PUT /v1/pairing {\"open\": true}`.

Example, against a local gateway:
  wasmbed certs init --dir pki
  wasmbed gateway --pki pki --open-pairing &
  wasmbed sim --pki pki --devices 1000 --connect-rate 200 --duration 60s

Ctrl-C stops the simulation: established sessions say goodbye first.")]
pub(crate) struct SimArgs {
    /// Number of simulated devices.
    #[arg(long, short = 'n', default_value_t = 1)]
    devices: usize,
    /// The gateway's device address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:40029")]
    gateway: String,
    /// Installation directory made by `wasmbed certs init`: devices trust
    /// its gateway CA and enroll with its claim certificate.
    #[arg(long, default_value = "wasmbed-pki", env = "WASMBED_PKI")]
    pki: PathBuf,
    /// Name the gateway's certificate must carry (the installation's
    /// gateway DNS name).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Most connection attempts per second, over the whole fleet (first
    /// connections and reconnections); 0 for no limit.
    #[arg(long, default_value_t = 100.0)]
    connect_rate: f64,
    /// Stop after this long (e.g. `90s`, `10m`); without it, run until
    /// Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Keep each device's identity and modules in DIR/device-NNNNN/, so
    /// that the next run reuses the enrolled devices. Without it devices
    /// live in memory and enroll anew on every run.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Application slots per device.
    #[arg(long, default_value_t = 4)]
    app_slots: usize,
    /// Interval of the status line.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    status_interval: Duration,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

pub(crate) fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let installation = Installation::load(&args.pki).with_context(|| {
        format!(
            "loading the installation in {} (the one the gateway uses; see `wasmbed certs init`)",
            args.pki.display()
        )
    })?;
    let gateway = resolve(&args.gateway)?;
    let mut config = SimConfig::new(gateway);
    config.server_name.clone_from(&args.server_name);
    config.connect_rate = (args.connect_rate > 0.0).then_some(args.connect_rate);
    config.app_slots = args.app_slots;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(simulate(args, config, installation))
}

fn resolve(gateway: &str) -> anyhow::Result<SocketAddr> {
    gateway
        .to_socket_addrs()
        .with_context(|| format!("resolving --gateway {gateway} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("--gateway {gateway} resolves to no address"))
}

async fn simulate(
    args: SimArgs,
    config: SimConfig,
    installation: Installation,
) -> anyhow::Result<()> {
    let gateway = config.gateway;
    let sim = Simulation::new(config, &installation)?;
    let baseline = resident_memory();
    let fleet = Fleet::start(sim, args.devices, args.state_dir.as_deref())
        .context("creating the devices")?;
    println!(
        "simulating {} devices against {gateway} (server name {}){}",
        args.devices,
        args.server_name,
        args.state_dir
            .as_ref()
            .map(|d| format!(", state in {}", d.display()))
            .unwrap_or_default()
    );
    let started = Instant::now();
    let mut hints = Hints::new(gateway);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + args.status_interval,
        args.status_interval.max(Duration::from_millis(100)),
    );
    let end = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let stats = fleet.stats();
                println!("[{:>6}] {stats}{}", elapsed(started), memory(baseline, args.devices));
                hints.show(&stats);
            }
            () = &mut end => break,
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                println!("stopping: devices say goodbye...");
                break;
            }
        }
    }
    let memory = memory(baseline, args.devices);
    let stats = fleet.shutdown(GOODBYE_GRACE).await;
    summary(&stats, started.elapsed(), &memory);
    hints.show(&stats);
    Ok(())
}

fn summary(stats: &FleetSnapshot, elapsed: Duration, memory: &str) {
    let secs = elapsed.as_secs_f64().max(0.001);
    println!(
        "summary after {}:",
        humantime::format_duration(round(elapsed))
    );
    println!(
        "  devices {} (enrolled {}, {} enrollments this run){memory}",
        stats.devices, stats.enrolled, stats.enrollments
    );
    println!(
        "  connections {} ({} reconnections), sessions {}",
        stats.connects, stats.reconnects, stats.sessions
    );
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = stats.heartbeats as f64 / secs;
    println!("  heartbeats {} ({rate:.1}/s)", stats.heartbeats);
    println!(
        "  transfers {} ({} resumed), installs {}, failed deployments {}",
        stats.transfers, stats.transfers_resumed, stats.installs, stats.deploy_failures
    );
    println!(
        "  results {} ({} trapped)",
        stats.results, stats.results_trapped
    );
    println!("  errors {}", stats.errors);
}

/// Hints for the likely mistakes, each shown once.
struct Hints {
    gateway: SocketAddr,
    pairing: bool,
    unreachable: bool,
    handshake: bool,
    slow: bool,
}

impl Hints {
    fn new(gateway: SocketAddr) -> Self {
        Hints {
            gateway,
            pairing: false,
            unreachable: false,
            handshake: false,
            slow: false,
        }
    }

    fn show(&mut self, stats: &FleetSnapshot) {
        let errors = &stats.errors;
        if !self.pairing && errors.get(ErrorKind::PairingClosed) > 0 {
            self.pairing = true;
            println!(
                "hint: the gateway refused {} enrollments because pairing is closed; devices keep \
                 retrying. Start the gateway with `wasmbed gateway --open-pairing`, open pairing \
                 with `PUT /v1/pairing {{\"open\": true}}` on its HTTP port, or pre-authorize the \
                 device keys (`POST /v1/preauthorized`).",
                errors.get(ErrorKind::PairingClosed)
            );
        }
        if !self.unreachable && stats.sessions == 0 && errors.get(ErrorKind::Connect) > 0 {
            self.unreachable = true;
            println!(
                "hint: nothing accepts connections at {}; is the gateway running, and is \
                 --gateway its device port (`wasmbed gateway --listen`)?",
                self.gateway
            );
        }
        let never_connected = stats.sessions == 0 && stats.enrollments == 0;
        if !self.handshake && never_connected && errors.get(ErrorKind::Handshake) > 0 {
            self.handshake = true;
            println!(
                "hint: TLS handshakes fail; --pki must be the gateway's installation and \
                 --server-name a DNS name of its certificate (see `wasmbed certs init --dns`)."
            );
        }
        if !self.slow && errors.get(ErrorKind::ConnectTimeout) > 0 {
            self.slow = true;
            println!(
                "hint: connections time out: the gateway (or this machine) cannot keep up with \
                 the connection rate; try a lower --connect-rate."
            );
        }
    }
}

fn elapsed(started: Instant) -> String {
    format!("{}s", started.elapsed().as_secs())
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// ` | rss X MiB (Y KiB/device)`, where the process's resident memory can
/// be read (Linux).
fn memory(baseline: Option<u64>, devices: usize) -> String {
    let Some(rss) = resident_memory() else {
        return String::new();
    };
    #[allow(clippy::cast_precision_loss)] // sizes for people to read
    let mib = rss as f64 / (1024.0 * 1024.0);
    match baseline {
        #[allow(clippy::cast_precision_loss)]
        Some(base) if devices > 0 => {
            let per_device = rss.saturating_sub(base) as f64 / devices as f64 / 1024.0;
            format!(" | rss {mib:.1} MiB ({per_device:.1} KiB/device)")
        }
        _ => format!(" | rss {mib:.1} MiB"),
    }
}

/// The process's resident set size in bytes (Linux `/proc/self/status`).
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn arguments_parse_with_their_defaults() {
        let parsed = Command::try_parse_from([
            "sim",
            "--devices",
            "250",
            "--duration",
            "90s",
            "--connect-rate",
            "0",
        ])
        .expect("valid arguments");
        let args = parsed.sim;
        assert_eq!(args.devices, 250);
        assert_eq!(args.duration, Some(Duration::from_secs(90)));
        assert_eq!(args.connect_rate, 0.0);
        assert_eq!(args.server_name, "localhost");
        assert_eq!(args.status_interval, Duration::from_secs(5));
        assert!(args.state_dir.is_none());
        assert!(Command::try_parse_from(["sim", "--devices", "many"]).is_err());
    }

    #[test]
    fn gateway_addresses_resolve() {
        assert_eq!(
            resolve("127.0.0.1:40029").expect("an address"),
            SocketAddr::from(([127, 0, 0, 1], 40029))
        );
        assert!(resolve("no port").is_err());
    }
}
