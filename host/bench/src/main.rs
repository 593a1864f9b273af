//! `wasmbed-bench`: benchmarks of the real gateway over real TLS.
//!
//! `wasmbed-bench gateway` (what `cargo xtask bench gateway` runs) starts
//! the release `wasmbed gateway` as a child process, drives it from this
//! process over loopback and prints, from one run:
//!
//! 1. mutually authenticated TLS 1.3 handshakes per second, interleaved
//!    round by round with a bare tokio-rustls accept loop on the same
//!    certificates and server configuration (`wasmbed-bench bare-tls`,
//!    also a child process), as medians and the median of the per-round
//!    ratios, wall-clock and per server CPU-second;
//! 2. the gateway's resident memory per idle authenticated session, with
//!    10,000 device sessions open;
//! 3. heartbeats the gateway processes per CPU-second (per core), one
//!    heartbeat per TLS record from 2,000 devices, against the bare TLS
//!    server echoing records of the same size over as many connections
//!    (interleaved round by round), and pipelined;
//! 4. the time to deploy a 64 KiB module to 1,000 simulated devices (the
//!    real agent, `wasmbed-sim`), until all installed and all results are
//!    stored.
//!
//! Memory and CPU time of the system under test are read from
//! `/proc/<pid>/status` and `/proc/<pid>/stat`, so this runs on Linux.
#![allow(clippy::print_stdout)] // a benchmark prints its report by design

mod api;
mod bare;
mod client;
mod deploy;
mod firmware;
mod handshakes;
mod http;
mod identity;
mod proc;
mod report;
mod scale;
mod sessions;
mod sut;
mod wasm;
mod zephyr;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks of the Wasmbed gateway over real TLS.
#[derive(Debug, Parser)]
#[command(name = "wasmbed-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway benchmark (what `cargo xtask bench gateway` runs).
    Gateway(Box<GatewayArgs>),
    /// The baseline server: a bare tokio-rustls accept loop with the
    /// gateway's exact server configuration. After each handshake it sends
    /// one short message, then echoes what it reads until the client goes away.
    BareTls(bare::BareArgs),
    /// The firmware in QEMU against the real gateway: boot to enrolled,
    /// the TLS handshake in the device (wall time and guest instructions),
    /// and deploying a 16 KiB module (what `cargo xtask bench firmware` runs).
    Firmware(firmware::FirmwareArgs),
    /// The Zephyr + WAMR image beside the bare-metal firmware on the same
    /// board: boot to enrolled, TLS handshakes and primes in guest
    /// instructions (what `cargo xtask bench zephyr` runs).
    Zephyr(zephyr::ZephyrArgs),
    /// The API server over a real socket with a SQLite store: the device
    /// listing against /healthz, and deploying through the controller to
    /// simulated devices (what `cargo xtask bench api` runs).
    Api(api::ApiArgs),
    /// Sessions per box: one gateway holding N heartbeating device
    /// sessions for a while, per fleet size: memory per session, CPU per
    /// 1,000 heartbeats, heartbeat-ack latency and spurious unreachable
    /// transitions (what `cargo xtask bench scale` runs).
    Scale(scale::ScaleArgs),
}

/// The phases of `wasmbed-bench gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Phase {
    Handshakes,
    Memory,
    Heartbeats,
    Deploy,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// The `wasmbed` binary (release build); default: `wasmbed` next to
    /// this program.
    #[arg(long)]
    pub(crate) wasmbed: Option<PathBuf>,
    /// Phases to run (comma-separated); heartbeats need memory's sessions
    /// and run it too.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Handshakes, Phase::Memory, Phase::Heartbeats, Phase::Deploy])]
    pub(crate) phases: Vec<Phase>,
    /// Handshake rounds; each measures the gateway and the baseline once,
    /// in alternating order.
    #[arg(long, default_value_t = 5)]
    pub(crate) handshake_rounds: usize,
    /// Seconds of each handshake measurement window.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) handshake_secs: f64,
    /// Concurrent handshaking clients.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Idle device sessions for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) idle_devices: usize,
    /// Heartbeat rounds; each measures the gateway (one heartbeat per
    /// record, then pipelined) and the echo baseline once.
    #[arg(long, default_value_t = 5)]
    pub(crate) heartbeat_rounds: usize,
    /// Seconds of each heartbeat measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) heartbeat_secs: f64,
    /// Sessions sending one heartbeat per TLS record (one in flight
    /// each); as many echo connections load the baseline.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) record_sessions: usize,
    /// Sessions sending pipelined heartbeats.
    #[arg(long, default_value_t = 200)]
    pub(crate) pipelined_sessions: usize,
    /// Pipelined heartbeats written at once (one TLS record).
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: u32,
    /// Most unacknowledged pipelined heartbeats per session.
    #[arg(long, default_value_t = 128)]
    pub(crate) window: u32,
    /// Simulated devices the module is deployed to.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) deploy_devices: usize,
    /// Size of the deployed module, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub(crate) module_size: usize,
    /// Environment variable for every gateway process, `KEY=VALUE`
    /// (repeatable), e.g. `MALLOC_ARENA_MAX=1`, or heaptrack's
    /// `LD_PRELOAD=...libheaptrack_preload.so` with
    /// `DUMP_HEAPTRACK_OUTPUT=FILE` to profile it.
    #[arg(long = "gateway-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub(crate) gateway_env: Vec<(String, String)>,
    /// Keep the temporary directory (installation, databases, gateway
    /// logs) and print where it is.
    #[arg(long)]
    pub(crate) keep: bool,
}

pub(crate) fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wasmbed-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Gateway(args) => runtime.block_on(run_gateway(*args)),
        Command::BareTls(args) => runtime.block_on(bare::serve(args)),
        Command::Firmware(args) => runtime.block_on(firmware::run(args)),
        Command::Zephyr(args) => runtime.block_on(zephyr::run(args)),
        Command::Api(args) => runtime.block_on(api::run(args)),
        Command::Scale(args) => runtime.block_on(scale::run(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmbed-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let env = sut::Env::prepare(&args)?;
    report::header(&env, &args);
    let mut rows = Vec::new();
    if args.phases.contains(&Phase::Handshakes) {
        rows.extend(handshakes::run(&env, &args).await?);
    }
    if args.phases.contains(&Phase::Memory) || args.phases.contains(&Phase::Heartbeats) {
        rows.extend(sessions::run(&env, &args).await?);
    }
    if args.phases.contains(&Phase::Deploy) {
        rows.extend(deploy::run(&env, &args).await?);
    }
    report::table(&rows);
    report::footer(&env);
    if args.keep {
        let dir = env.into_kept_dir();
        println!("kept {}", dir.display());
    }
    Ok(())
}
