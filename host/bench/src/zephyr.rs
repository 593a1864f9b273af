//! `wasmbed-bench zephyr`: the Zephyr + WAMR image beside the bare-metal
//! Rust firmware on the same emulated board, against the same gateway (in
//! this process), interleaved round by round:
//!
//! 1. boot to enrolled, wall time, from QEMU starting a fresh device;
//! 2. the TLS handshake (claim and device certificate) in guest
//!    instructions: under `-icount shift=0` one busy microsecond the device
//!    reports is exactly 1,000 instructions;
//! 3. the `primes` sample (primes below 10,000) in guest instructions under
//!    WAMR and under wasmi: the result's `duration_us` × 1,000 under
//!    `-icount shift=0`, with both results checked (1229, 9973).
//!
//! Flash and RAM by part come from `cargo xtask bench zephyr`, which reads
//! both images before running this.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::firmware::{BootFigures, Image, Rig, boot_once, enrolled_id, fmt_ms};
use crate::report::{Row, median, progress, table, thousands};

const WAIT: std::time::Duration = std::time::Duration::from_secs(180);

#[derive(Debug, clap::Args)]
pub(crate) struct ZephyrArgs {
    /// The bare-metal firmware (board mps2-an385).
    #[arg(long)]
    rust: PathBuf,
    /// The Zephyr image (board mps2-an385-zephyr).
    #[arg(long)]
    zephyr: PathBuf,
    /// The primes module (`cargo xtask apps`).
    #[arg(long, default_value = "target/apps/primes.wasm")]
    primes: PathBuf,
    /// Fresh boots of each image, interleaved.
    #[arg(long, default_value_t = 3)]
    boots: usize,
    /// Runs of primes on each image, interleaved.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// What one image gave.
#[derive(Default)]
struct Figures {
    boots: Vec<BootFigures>,
    primes_instructions: Vec<f64>,
}

/// Runs primes(10000) `runs` times on a fresh device under `-icount 0`;
/// returns the guest instructions of each run.
async fn primes_runs(
    rig: &Rig,
    image: &Image,
    name: &str,
    module: &[u8],
    runs: usize,
) -> anyhow::Result<Vec<f64>> {
    let (device, _) = rig.boot(image, name, Some(0)).await?;
    let enrolled = device.wait_for("agent: enrolled as device", WAIT).await?;
    let id = enrolled_id(&enrolled.text)?;
    device.wait_for("agent: session established", WAIT).await?;
    let mut instructions = Vec::new();
    for _ in 0..runs {
        let (_, result) = rig
            .deploy_for_result(&id, module, json!([{"i32": 10_000}]))
            .await
            .with_context(|| format!("{name}: {}", device.console().tail(12).join("\n")))?;
        check_primes(name, &result)?;
        let duration_us = result["duration_us"].as_f64().context("duration_us")?;
        instructions.push(duration_us * 1e3);
    }
    rig.manager.stop(name).await?;
    Ok(instructions)
}

fn check_primes(name: &str, result: &Value) -> anyhow::Result<()> {
    let expected = json!([{"i32": 1229}, {"i32": 9973}]);
    if result["returned"] != expected {
        bail!("{name}: primes returned {result}, expected {expected}");
    }
    Ok(())
}

pub(crate) async fn run(args: ZephyrArgs) -> anyhow::Result<()> {
    for path in [&args.rust, &args.zephyr, &args.primes] {
        if !path.is_file() {
            bail!(
                "{} is missing (cargo xtask firmware / zephyr / apps)",
                path.display()
            );
        }
    }
    let module = std::fs::read(&args.primes)?;
    let images = [
        (
            "Rust + wasmi",
            Image {
                elf: args.rust.clone(),
                board: "mps2-an385",
            },
        ),
        (
            "Zephyr + WAMR",
            Image {
                elf: args.zephyr.clone(),
                board: "mps2-an385-zephyr",
            },
        ),
    ];
    println!("wasmbed firmware beside firmware: Zephyr + WAMR and bare-metal Rust + wasmi");
    println!(
        "  machine: {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::proc::load_average()
    );
    let rig = Rig::start().await?;
    let mut figures: [Figures; 2] = Default::default();
    for round in 0..args.boots {
        for (i, (label, image)) in images.iter().enumerate() {
            let boot = boot_once(&rig, image, &format!("boot-{i}-{round}"), Some(0)).await?;
            progress(&format!(
                "{label} boot {}: enrolled after {:.0} ms, claim handshake {} instructions",
                round + 1,
                boot.to_enrolled.as_secs_f64() * 1e3,
                thousands(boot.claim_handshake.1 * 1e3)
            ));
            figures[i].boots.push(boot);
        }
    }
    for (i, (label, image)) in images.iter().enumerate() {
        figures[i].primes_instructions =
            primes_runs(&rig, image, &format!("primes-{i}"), &module, args.runs).await?;
        progress(&format!(
            "{label}: primes(10000) in {} instructions (median of {})",
            thousands(median(&figures[i].primes_instructions)),
            args.runs
        ));
    }
    rig.manager.stop_all().await;

    let boots = |i: usize, f: &dyn Fn(&BootFigures) -> f64| -> f64 {
        median(&figures[i].boots.iter().map(f).collect::<Vec<_>>())
    };
    let row = |name: &str, f: &dyn Fn(usize) -> f64, show: &dyn Fn(f64) -> String| {
        let (rust, zephyr) = (f(0), f(1));
        Row::new(format!("{name}: Zephyr + WAMR"), show(zephyr))
            .baseline(format!("{} (Rust + wasmi)", show(rust)), zephyr / rust)
    };
    let count = |v: f64| thousands(v);
    let rows = vec![
        row(
            "boot to enrolled (-icount 0), median",
            &|i| boots(i, &|b| b.to_enrolled.as_secs_f64() * 1e3),
            &fmt_ms,
        ),
        row(
            "TLS handshake, claim certificate, guest instructions",
            &|i| boots(i, &|b| b.claim_handshake.1 * 1e3),
            &count,
        ),
        row(
            "TLS handshake, device certificate, guest instructions",
            &|i| boots(i, &|b| b.device_handshake.1 * 1e3),
            &count,
        ),
        row(
            "primes below 10,000, guest instructions",
            &|i| median(&figures[i].primes_instructions),
            &count,
        ),
    ];
    println!();
    table(&rows);
    println!();
    println!(
        "  ratios are Zephyr / Rust; medians over {} boots and {} runs",
        args.boots, args.runs
    );
    Ok(())
}
