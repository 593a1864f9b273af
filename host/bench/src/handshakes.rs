//! Phase 1: mutually authenticated TLS 1.3 handshakes per second, through
//! the gateway and through the bare accept loop, interleaved round by
//! round in the same run.
//!
//! Each client loops: TCP connect, the full handshake with the
//! installation's claim certificate (a real client certificate, verified
//! against the claim CA), then waits for the server's first message (the
//! gateway's enrollment challenge, the baseline's greeting) and resets the
//! connection. Waiting for that message matters: a TLS 1.3 client is done
//! with the handshake before the server has verified the client's
//! certificate and Finished, so a client that hung up right away would let
//! the server skip the most expensive half of its work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use rustls::ClientConfig;
use tokio::io::AsyncReadExt;

use crate::GatewayArgs;
use crate::client;
use crate::http::Metrics;
use crate::proc::Child;
use crate::report::{Row, list, median, progress, thousands};
use crate::sut::{BareProcess, Env, GatewayProcess};

/// Handshakes before each window is measured, to reach a steady state.
const WARMUP: Duration = Duration::from_millis(500);
/// Target (issue 12): the gateway does at least 90 % of the baseline.
const TARGET_RATIO: f64 = 0.9;

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Handshakes per wall-clock second.
    rate: f64,
    /// Handshakes per CPU-second of the server process.
    per_cpu_second: f64,
    /// Handshakes per CPU-second of this process (the clients).
    client_per_cpu_second: f64,
    failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Gateway,
    Baseline,
}

pub(crate) async fn run(env: &Env, args: &GatewayArgs) -> anyhow::Result<Vec<Row>> {
    progress("handshakes: starting the gateway and the bare TLS baseline");
    let mut gateway =
        GatewayProcess::start(env, "gateway-handshakes", &env.path("handshakes.db"), false).await?;
    let mut bare = BareProcess::start(env).await?;
    let config = wasmbed_pki::client_config_claim(&env.installation)?;
    let window = Duration::from_secs_f64(args.handshake_secs.max(0.1));
    let mut gateway_samples = Vec::new();
    let mut baseline_samples = Vec::new();
    for round in 0..args.handshake_rounds.max(1) {
        let order = if round % 2 == 0 {
            [Side::Gateway, Side::Baseline]
        } else {
            [Side::Baseline, Side::Gateway]
        };
        for side in order {
            let (addr, child) = match side {
                Side::Gateway => (gateway.devices, &mut gateway.child),
                Side::Baseline => (bare.addr, &mut bare.child),
            };
            let sample = measure(addr, child, &config, args.concurrency, window).await?;
            child.check_alive()?;
            progress(&format!(
                "handshakes: round {} {:<8} {:>7}/s  {:>7} per server CPU-s  ({:>7} per client CPU-s){}",
                round + 1,
                match side {
                    Side::Gateway => "gateway",
                    Side::Baseline => "baseline",
                },
                thousands(sample.rate),
                thousands(sample.per_cpu_second),
                thousands(sample.client_per_cpu_second),
                if sample.failures > 0 {
                    format!("  ({} failed)", sample.failures)
                } else {
                    String::new()
                }
            ));
            match side {
                Side::Gateway => gateway_samples.push(sample),
                Side::Baseline => baseline_samples.push(sample),
            }
        }
    }
    let metrics = Metrics::fetch(&gateway.client, gateway.http).await?;
    progress(&format!(
        "handshakes: the gateway counted {} handshakes, {} failed before a session",
        thousands(metrics.get("wasmbed_gateway_handshakes_total")),
        thousands(
            [
                "timeout",
                "io",
                "tls",
                "bad_client_certificate",
                "no_client_certificate"
            ]
            .iter()
            .map(|r| metrics.get(&format!(
                "wasmbed_gateway_handshake_failures_total{{reason=\"{r}\"}}"
            )))
            .sum()
        )
    ));
    gateway.stop().await;
    drop(bare);
    Ok(rows(&gateway_samples, &baseline_samples))
}

fn rows(gateway: &[Sample], baseline: &[Sample]) -> Vec<Row> {
    let rates = |s: &[Sample]| s.iter().map(|s| s.rate).collect::<Vec<_>>();
    let cpu = |s: &[Sample]| s.iter().map(|s| s.per_cpu_second).collect::<Vec<_>>();
    let ratios = |f: fn(&Sample) -> f64| {
        gateway
            .iter()
            .zip(baseline)
            .map(|(g, b)| f(g) / f(b))
            .collect::<Vec<_>>()
    };
    let wall_ratios = ratios(|s| s.rate);
    let cpu_ratios = ratios(|s| s.per_cpu_second);
    progress(&format!(
        "handshakes: per round gateway/s [{}] baseline/s [{}] ratios [{}]",
        list(&rates(gateway)),
        list(&rates(baseline)),
        wall_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let wall_ratio = median(&wall_ratios);
    let cpu_ratio = median(&cpu_ratios);
    let n = gateway.len();
    vec![
        Row::new(
            format!("mTLS handshakes/s (median of {n})"),
            format!("{}/s", thousands(median(&rates(gateway)))),
        )
        .baseline(
            format!("{}/s", thousands(median(&rates(baseline)))),
            wall_ratio,
        )
        .target(
            format!(">= {TARGET_RATIO:.2} x baseline"),
            wall_ratio >= TARGET_RATIO,
        ),
        Row::new(
            format!("handshakes per server CPU-second (median of {n})"),
            thousands(median(&cpu(gateway))),
        )
        .baseline(thousands(median(&cpu(baseline))), cpu_ratio)
        .target(
            format!(">= {TARGET_RATIO:.2} x baseline"),
            cpu_ratio >= TARGET_RATIO,
        ),
    ]
}

/// Handshakes against `addr` by `concurrency` clients, over `window`
/// after a warm-up.
async fn measure(
    addr: SocketAddr,
    server: &Child,
    config: &Arc<ClientConfig>,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<Sample> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            tokio::spawn(worker(
                addr,
                config.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    let (n0, f0, cpu0, client0, t0) = (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        server.cpu()?,
        crate::proc::self_cpu()?,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (n1, f1, cpu1, client1, t1) = (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        server.cpu()?,
        crate::proc::self_cpu()?,
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let handshakes = (n1 - n0) as f64;
    if handshakes == 0.0 {
        bail!("no handshake completed against {addr} ({} failed)", f1 - f0);
    }
    let cpu = (cpu1 - cpu0).as_secs_f64();
    let client = (client1 - client0).as_secs_f64();
    Ok(Sample {
        client_per_cpu_second: if client > 0.0 {
            handshakes / client
        } else {
            f64::NAN
        },
        rate: handshakes / (t1 - t0).as_secs_f64(),
        per_cpu_second: if cpu > 0.0 {
            handshakes / cpu
        } else {
            f64::NAN
        },
        failures: f1 - f0,
    })
}

async fn worker(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let mut first = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        let attempt = async {
            let mut tls = client::tls(addr, config.clone()).await?;
            match tls.read(&mut first).await? {
                0 => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                _ => Ok(()),
            }
            // Dropped here: reset (SO_LINGER 0), no close_notify.
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(())) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
