//! `wasmbed-bench scale` (what `cargo xtask bench scale` runs): sessions
//! per box. For each fleet size N, one release `wasmbed gateway` with its
//! own heartbeat settings (a heartbeat every 10 s, unreachable after 3
//! missed) holds N device sessions from this process, spread over
//! loopback source addresses, for `--hold-secs`, and the run prints:
//!
//! - gateway memory per session (VmRSS over N, after connecting and at
//!   the end of the hold);
//! - gateway CPU per 1,000 heartbeats over the hold;
//! - heartbeat-to-acknowledgement latency, median and p99, as the devices
//!   see it (both processes share the machine: this is end to end);
//! - spurious `unreachable` transitions: sessions the gateway closed for
//!   missed heartbeats while every device was heartbeating, and sessions
//!   the devices lost.
//!
//! The devices are the lightweight sessions of the memory phase
//! (`sessions.rs`), registered in the gateway's database before it starts.
//! The open-files soft limit is raised to the hard limit first; the
//! gateway raises its own.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::http::Metrics;
use crate::identity;
use crate::report::{Row, progress, thousands};
use crate::sessions::{Clients, settle};
use crate::sut::{Env, GatewayProcess};

/// Target of the issue, KiB of gateway memory per idle session.
const TARGET_SESSION_KIB: f64 = 12.0;
/// The gateway's count of sessions it closed for missed heartbeats.
const TIMED_OUT: &str = r#"wasmbed_gateway_sessions_closed_total{reason="timeout"}"#;
const HEARTBEATS: &str = "wasmbed_gateway_heartbeats_total";

#[derive(Debug, clap::Args)]
pub(crate) struct ScaleArgs {
    /// The `wasmbed` binary (release build); default: `wasmbed` next to
    /// this program.
    #[arg(long)]
    pub(crate) wasmbed: Option<std::path::PathBuf>,
    /// Fleet sizes, each held by a fresh gateway (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000])]
    pub(crate) sessions: Vec<usize>,
    /// Seconds each fleet is held, heartbeating (the issue's run: 600).
    #[arg(long, default_value_t = 600.0)]
    pub(crate) hold_secs: f64,
    /// Environment variable for every gateway process, `KEY=VALUE`
    /// (repeatable), e.g. `MALLOC_ARENA_MAX=1`.
    #[arg(long = "gateway-env", value_name = "KEY=VALUE", value_parser = crate::parse_env)]
    pub(crate) gateway_env: Vec<(String, String)>,
}

pub(crate) async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    match wasmbed_httpd::open_files::raise_to_hard_limit() {
        Ok(Some(raised)) if raised.now > raised.before => progress(&format!(
            "open-files limit raised from {} to {} (the hard limit)",
            raised.before, raised.now
        )),
        Ok(Some(raised)) => progress(&format!(
            "open-files limit {}, the hard limit: at most about {} sessions (raising the hard \
             limit needs CAP_SYS_RESOURCE, e.g. root's `ulimit -Hn`)",
            raised.now,
            raised.now.saturating_sub(1024)
        )),
        Ok(None) | Err(_) => {}
    }
    let largest = args.sessions.iter().copied().max().unwrap_or(0).max(1);
    let env = Env::prepare_for(
        args.wasmbed.as_deref(),
        largest,
        "--sessions",
        &args.gateway_env,
    )?;
    progress(&format!(
        "scale: issuing {} device certificates with the installation's device CA",
        thousands(largest as f64)
    ));
    let identities = identity::make(&env.installation, largest)?;
    let hold = Duration::from_secs_f64(args.hold_secs.max(1.0));
    let mut rows = Vec::new();
    for &n in &args.sessions {
        rows.extend(hold_fleet(&env, &identities[..n.max(1)], hold).await?);
    }
    println!(
        "wasmbed gateway sessions per box: {:?} sessions, {:.0} s each",
        args.sessions,
        hold.as_secs_f64()
    );
    crate::report::table(&rows);
    crate::report::footer(&env);
    Ok(())
}

/// One gateway holding `identities` for `hold`; its rows.
async fn hold_fleet(
    env: &Env,
    identities: &[identity::Identity],
    hold: Duration,
) -> anyhow::Result<Vec<Row>> {
    let n = identities.len();
    let label = thousands(n as f64);
    let db = env.path(&format!("scale-{n}.db"));
    identity::register(&db, identities)?;
    let gateway =
        GatewayProcess::start_with(env, &format!("gateway-scale-{n}"), &db, false, &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = gateway.child.rss_kib()?;
    let mut devices = Clients::new(gateway.devices);
    let started = Instant::now();
    devices.connect(identities);
    devices
        .wait_established(n as u64, Duration::from_secs(1800))
        .await?;
    let connected = settle(&gateway, n).await?;
    progress(&format!(
        "scale {label}: connected in {:.1} s; gateway VmRSS {idle} KiB idle, {connected} KiB with the sessions; holding for {:.0} s",
        started.elapsed().as_secs_f64(),
        hold.as_secs_f64()
    ));

    let metrics = || Metrics::fetch(&gateway.client, gateway.http);
    let before = metrics().await?;
    let cpu_before = gateway.child.cpu()?;
    let lost_before = devices
        .counters
        .lost
        .load(std::sync::atomic::Ordering::Relaxed);
    devices.counters.take_latencies();
    let hold_started = Instant::now();
    while hold_started.elapsed() < hold {
        let left = hold.saturating_sub(hold_started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
        let now = metrics().await?;
        progress(&format!(
            "scale {label}: {:.0} s held, {} connected, {} heartbeats, {} timed out",
            hold_started.elapsed().as_secs_f64(),
            now.get("wasmbed_gateway_connected_devices"),
            thousands(now.get(HEARTBEATS) - before.get(HEARTBEATS)),
            now.get(TIMED_OUT) - before.get(TIMED_OUT),
        ));
    }
    let after = metrics().await?;
    let cpu = gateway.child.cpu()?.saturating_sub(cpu_before);
    let held = gateway.child.rss_kib()?;
    let lost = devices
        .counters
        .lost
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(lost_before);
    let mut latencies = devices.counters.take_latencies();
    let heartbeats = after.get(HEARTBEATS) - before.get(HEARTBEATS);
    let timed_out = after.get(TIMED_OUT) - before.get(TIMED_OUT);
    if lost > 0 {
        progress(&format!(
            "scale {label}: warning: {lost} sessions ended: {}",
            devices.counters.lost_summary()
        ));
    }
    devices.stop().await;
    gateway.stop().await;
    std::fs::remove_file(&db).with_context(|| format!("removing {}", db.display()))?;

    latencies.sort_unstable();
    // Milliseconds at `permille`/1000 of the sorted latencies.
    let quantile = |permille: usize| -> f64 {
        match latencies.len() {
            0 => f64::NAN,
            len => f64::from(latencies[(len - 1) * permille / 1000]) / 1000.0,
        }
    };
    let per_session = |rss: u64| rss.saturating_sub(idle) as f64 / n as f64;
    let spurious = timed_out + lost as f64;
    Ok(vec![
        Row::new(
            format!("{label} sessions: gateway memory per session, connected"),
            format!("{:.1} KiB", per_session(connected)),
        )
        .target(
            format!("<= {TARGET_SESSION_KIB:.0} KiB"),
            per_session(connected) <= TARGET_SESSION_KIB,
        ),
        Row::new(
            format!("  after {:.0} s of heartbeats", hold.as_secs_f64()),
            format!("{:.1} KiB", per_session(held)),
        ),
        Row::new(
            format!("{label} sessions: gateway CPU per 1,000 heartbeats"),
            format!(
                "{:.1} ms",
                1000.0 * cpu.as_secs_f64() * 1000.0 / heartbeats.max(1.0)
            ),
        ),
        Row::new(
            format!(
                "  heartbeats processed ({:.0}/s)",
                heartbeats / hold.as_secs_f64()
            ),
            thousands(heartbeats),
        ),
        Row::new(
            format!("{label} sessions: heartbeat-ack latency p99 (median)"),
            format!("{:.1} ms ({:.1} ms)", quantile(990), quantile(500)),
        ),
        Row::new(
            format!("{label} sessions: spurious unreachable transitions"),
            format!("{spurious:.0}"),
        )
        .target("0", spurious == 0.0),
    ])
}
