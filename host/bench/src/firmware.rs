//! `wasmbed-bench firmware`: the real firmware in QEMU against the real
//! gateway (in this process), and the figures only a device can give:
//!
//! 1. boot to enrolled: from QEMU starting a fresh device (no identity) to
//!    its "enrolled" console line, and to its first session;
//! 2. the TLS handshake inside the device: wall time, and busy time under
//!    `-icount shift=0`, where one busy microsecond is exactly 1,000 guest
//!    instructions (repeatable whatever the host is doing); the claim
//!    handshake (enrollment) and the device-certificate handshake;
//! 3. the time to deploy a 16 KiB module, from `POST /v1/deployments` to
//!    the result stored, side by side with a 170-byte module (the baseline
//!    is everything but the transfer), interleaved.
//!
//! Flash and RAM are printed by `cargo xtask size`, which `cargo xtask
//! bench firmware` runs first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;
use wasmbed_emulator::board::default_boards_dir;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, DeviceHandle, DeviceSpec, EmulatorManager, ProvisionOptions,
    provision,
};
use wasmbed_gateway::store::Store;
use wasmbed_gateway::{Gateway, GatewayConfig};
use wasmbed_pki::{Installation, InstallationOptions};

use crate::report::{Row, median, progress, table, thousands};
use crate::wasm::{section, uleb};

const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub(crate) struct FirmwareArgs {
    /// The firmware image (default: the release build of firmware/mps2).
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// Fresh devices booted (each gives one boot-to-enrolled time and two
    /// handshakes), with and without -icount.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Deployments of each module size, interleaved.
    #[arg(long, default_value_t = 5)]
    deploys: usize,
    /// Size of the large module, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    module_size: usize,
}

/// A firmware image and the board description it boots on.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) elf: PathBuf,
    pub(crate) board: &'static str,
}

/// The gateway, in this process.
pub(crate) struct Rig {
    gateway: Gateway,
    addr: SocketAddr,
    installation: Installation,
    dir: tempfile::TempDir,
    pub(crate) manager: EmulatorManager,
}

impl Rig {
    pub(crate) async fn start() -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir()?;
        let installation = Installation::create(&InstallationOptions::default())?;
        let store = Store::open(&dir.path().join("gateway.db"))?;
        let mut config = GatewayConfig::default();
        config.session.heartbeat_interval_ms = 5_000;
        let gateway = Gateway::new(config, &installation, store)?;
        gateway.pairing().open(None);
        let devices = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let addr = devices.local_addr()?;
        let server = gateway.clone();
        tokio::spawn(async move {
            let _ = server.serve(devices, http, std::future::pending()).await;
        });
        Ok(Rig {
            gateway,
            addr,
            installation,
            dir,
            manager: EmulatorManager::new(),
        })
    }

    pub(crate) async fn boot(
        &self,
        image: &Image,
        name: &str,
        icount: Option<u8>,
    ) -> anyhow::Result<(DeviceHandle, Instant)> {
        let state_dir = self.dir.path().join(name);
        provision(
            &state_dir,
            &ProvisionOptions {
                claim: ClaimMaterial::from_installation(&self.installation)?,
                server_name: "localhost".to_owned(),
                device_name: name.to_owned(),
                overwrite: false,
            },
        )?;
        let spec = DeviceSpec {
            name: name.to_owned(),
            board: Board::find_in(&default_boards_dir(), image.board)?,
            firmware: image.elf.clone(),
            state_dir,
            gateway: self.addr.to_string(),
            backend: Backend::Qemu,
            icount,
        };
        let started = Instant::now();
        let device = self.manager.start(spec).await?;
        Ok((device, started))
    }

    async fn http(&self, method: &str, uri: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))?;
        request
            .extensions_mut()
            .insert(wasmbed_gateway::http::InProcessCaller("firmware benchmark"));
        let response = self.gateway.router().oneshot(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {uri}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Deploys and waits for the result; returns the wall time.
    async fn deploy(&self, device: &str, module: &[u8], args: Value) -> anyhow::Result<Duration> {
        self.deploy_for_result(device, module, args)
            .await
            .map(|(took, _)| took)
    }

    /// Deploys and waits for the result; returns the wall time and the
    /// result.
    pub(crate) async fn deploy_for_result(
        &self,
        device: &str,
        module: &[u8],
        args: Value,
    ) -> anyhow::Result<(Duration, Value)> {
        let body = json!({
            "application_id": 1,
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "devices": [device],
            "limits": {"fuel": 10_000_000, "memory_pages": 1, "entry": "run", "args": args},
        });
        let started = Instant::now();
        let created = self.http("POST", "/v1/deployments", Some(body)).await?;
        let id = created[0]["id"].as_u64().context("deployment id")?;
        loop {
            let results = self.http("GET", "/v1/results", None).await?;
            let found = results
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["deployment"] == id)
                .cloned();
            if let Some(result) = found {
                let elapsed = started.elapsed();
                // Free the slot for the next round.
                self.http("DELETE", &format!("/v1/deployments/{id}"), None)
                    .await?;
                return Ok((elapsed, result));
            }
            if started.elapsed() > WAIT {
                bail!("deployment {id} to {device}: no result after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The device id in an "agent: enrolled as device ID" line.
pub(crate) fn enrolled_id(line: &str) -> anyhow::Result<String> {
    Ok(line
        .rsplit("device ")
        .next()
        .context("device id")?
        .trim()
        .to_owned())
}

/// `(wall µs, busy µs)` from a line like
/// "[  0.096] tls: handshake done in 95917 us, 77607 us busy (stack ...)".
fn handshake_figures(line: &str) -> anyhow::Result<(f64, f64)> {
    let at = line.find("done in").context("not a handshake line")?;
    let numbers: Vec<f64> = line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match numbers.as_slice() {
        [wall, busy, ..] => Ok((*wall, *busy)),
        _ => Err(anyhow!("cannot read {line:?}")),
    }
}

pub(crate) struct BootFigures {
    pub(crate) to_enrolled: Duration,
    pub(crate) to_session: Duration,
    /// `(wall µs, busy µs)`.
    pub(crate) claim_handshake: (f64, f64),
    pub(crate) device_handshake: (f64, f64),
}

pub(crate) async fn boot_once(
    rig: &Rig,
    image: &Image,
    name: &str,
    icount: Option<u8>,
) -> anyhow::Result<BootFigures> {
    let (device, started) = rig.boot(image, name, icount).await?;
    let enrolled = device.wait_for("agent: enrolled as device", WAIT).await?;
    let session = device.wait_for("agent: session established", WAIT).await?;
    let handshakes: Vec<String> = device
        .console()
        .lines()
        .into_iter()
        .filter(|l| l.text.contains("tls: handshake done"))
        .map(|l| l.text)
        .collect();
    rig.manager.stop(name).await?;
    let [claim, own, ..] = handshakes.as_slice() else {
        bail!("{name}: expected two handshakes, saw {handshakes:?}");
    };
    Ok(BootFigures {
        to_enrolled: enrolled.at.into_std().duration_since(started),
        to_session: session.at.into_std().duration_since(started),
        claim_handshake: handshake_figures(claim)?,
        device_handshake: handshake_figures(own)?,
    })
}

/// A module of exactly `size` bytes: a function summing 512 bytes of a
/// data segment, and a custom section filling the rest, as debug names and
/// producer sections fill real modules. The whole module is transferred,
/// hashed and stored; the runtime skips the custom section, so the run fits
/// next to the 64 KiB page in the device's RAM (a module with 16 KiB of
/// code or data does not: see docs/firmware.md).
fn padded_module(size: usize) -> (Vec<u8>, i64) {
    let data: Vec<u8> = (0..512).map(|i| ((i * 7919 + 13) % 251) as u8).collect();
    let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 0) "{escaped}")
          (func (export "run") (result i64)
            (local $i i32) (local $sum i64)
            (block $done (loop $next
              (br_if $done (i32.ge_u (local.get $i) (i32.const 512)))
              (local.set $sum (i64.add (local.get $sum) (i64.load8_u (local.get $i))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next)))
            (local.get $sum)))"#
    );
    let mut module = wat::parse_str(wat).unwrap_or_default();
    // A custom section (id 0): the name, then filler bytes up to `size`.
    let name = b"padding";
    let mut contents = Vec::new();
    uleb(name.len() as u64, &mut contents);
    contents.extend_from_slice(name);
    let mut section_len = size.saturating_sub(module.len());
    loop {
        let mut header = Vec::new();
        uleb(section_len as u64, &mut header);
        let filler = section_len.saturating_sub(contents.len());
        if 1 + header.len() + contents.len() + filler <= size.saturating_sub(module.len())
            || section_len == 0
        {
            contents.resize(contents.len() + filler, 0x5A);
            break;
        }
        section_len -= 1;
    }
    section(0, &contents, &mut module);
    let sum = data.iter().map(|&b| i64::from(b)).sum();
    (module, sum)
}

pub(crate) fn fmt_ms(d: f64) -> String {
    format!("{d:.0} ms")
}

pub(crate) async fn run(args: FirmwareArgs) -> anyhow::Result<()> {
    let firmware = match args.firmware {
        Some(path) => path,
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2"),
    };
    if !firmware.exists() {
        bail!(
            "{} is missing: run `cargo xtask firmware`",
            firmware.display()
        );
    }
    if !Backend::Qemu.available() {
        bail!("qemu-system-arm is not on PATH: apt-get install qemu-system-arm");
    }
    println!("wasmbed firmware benchmark");
    println!("  firmware: {}", firmware.display());
    println!(
        "  machine:  {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::proc::load_average()
    );
    let image = Image {
        elf: firmware,
        board: "mps2-an385",
    };
    let rig = Rig::start().await?;

    let mut wall = Vec::new();
    let mut icount = Vec::new();
    for round in 0..args.boots {
        // Interleaved: the wall-clock and the instruction-counted device.
        wall.push(boot_once(&rig, &image, &format!("wall-{round}"), None).await?);
        icount.push(boot_once(&rig, &image, &format!("icount-{round}"), Some(0)).await?);
        progress(&format!(
            "boot {}: enrolled after {:.0} ms; claim handshake {} us wall, {} us busy under icount",
            round + 1,
            wall[round].to_enrolled.as_secs_f64() * 1e3,
            thousands(wall[round].claim_handshake.0),
            thousands(icount[round].claim_handshake.1),
        ));
    }
    let ms = |f: &dyn Fn(&BootFigures) -> Duration, v: &[BootFigures]| {
        median(
            &v.iter()
                .map(|b| f(b).as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
        )
    };
    let series = |f: &dyn Fn(&BootFigures) -> f64, v: &[BootFigures]| -> Vec<f64> {
        v.iter().map(f).collect()
    };
    let claim_instr = series(&|b| b.claim_handshake.1 * 1e3, &icount);
    let device_instr = series(&|b| b.device_handshake.1 * 1e3, &icount);
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (hi - lo) / median(v) * 100.0
    };

    // Deployments: one device, the large module and a tiny one, interleaved.
    let (device, _) = rig.boot(&image, "deploy", None).await?;
    let enrolled = device.wait_for("agent: enrolled as device", WAIT).await?;
    let id = enrolled
        .text
        .rsplit("device ")
        .next()
        .context("device id")?
        .trim()
        .to_owned();
    device.wait_for("agent: session established", WAIT).await?;
    let (large, expected_sum) = padded_module(args.module_size);
    let small =
        wat::parse_str(r#"(module (func (export "run") (param i64) (result i64) local.get 0))"#)?;
    let mut large_ms = Vec::new();
    let mut small_ms = Vec::new();
    let console_tail = || {
        format!(
            "the device's console ended with:\n{}",
            device.console().tail(12).join("\n")
        )
    };
    for round in 0..args.deploys {
        let large_time = rig.deploy(&id, &large, json!([])).await;
        large_ms.push(large_time.with_context(console_tail)?.as_secs_f64() * 1e3);
        let small_time = rig.deploy(&id, &small, json!([{"i64": 7}])).await;
        small_ms.push(small_time.with_context(console_tail)?.as_secs_f64() * 1e3);
        progress(&format!(
            "deploy {}: {} B in {:.0} ms, {} B in {:.0} ms",
            round + 1,
            large.len(),
            large_ms[round],
            small.len(),
            small_ms[round]
        ));
    }
    let results = rig.http("GET", "/v1/results", None).await?;
    let sums_ok = results
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["returned"] == json!([{"i64": expected_sum}]))
        .count();
    if sums_ok != args.deploys {
        bail!(
            "the large module returned the right checksum ({expected_sum}) {sums_ok} times of {}: \
             {results}\n{}",
            args.deploys,
            console_tail()
        );
    }
    let executed = device
        .console()
        .lines()
        .into_iter()
        .rev()
        .find(|l| l.text.contains(&format!("Returned([I64({expected_sum})])")))
        .map(|l| l.text)
        .unwrap_or_default();

    let large_median = median(&large_ms);
    let small_median = median(&small_ms);
    let transfer_bytes_per_s = large.len() as f64 / ((large_median - small_median).max(1.0) / 1e3);
    let rows = vec![
        Row::new(
            "boot to enrolled (fresh device), median",
            fmt_ms(ms(&|b| b.to_enrolled, &wall)),
        ),
        Row::new(
            "boot to first session (enrolled, reconnected)",
            fmt_ms(ms(&|b| b.to_session, &wall)),
        ),
        Row::new(
            "TLS handshake in the device, claim certificate, wall",
            format!(
                "{} us",
                thousands(median(&series(&|b| b.claim_handshake.0, &wall)))
            ),
        ),
        Row::new(
            "TLS handshake in the device, device certificate, wall",
            format!(
                "{} us",
                thousands(median(&series(&|b| b.device_handshake.0, &wall)))
            ),
        ),
        Row::new(
            "TLS handshake, claim certificate, guest instructions (-icount 0)",
            format!(
                "{} (spread {:.2}%)",
                thousands(median(&claim_instr)),
                spread(&claim_instr)
            ),
        ),
        Row::new(
            "TLS handshake, device certificate, guest instructions (-icount 0)",
            format!(
                "{} (spread {:.2}%)",
                thousands(median(&device_instr)),
                spread(&device_instr)
            ),
        ),
        Row::new(
            format!("deploy a {} B module: POST to result stored", large.len()),
            fmt_ms(large_median),
        )
        .baseline(
            format!("{} ({} B module)", fmt_ms(small_median), small.len()),
            large_median / small_median,
        ),
        Row::new(
            "link throughput implied (UART bridged to TCP)",
            format!("{} B/s", thousands(transfer_bytes_per_s)),
        ),
    ];
    println!();
    table(&rows);
    println!();
    println!("  large module, last run on the device: {executed}");
    println!(
        "  wall-clock series (ms): enrolled {:?}",
        wall.iter()
            .map(|b| b.to_enrolled.as_millis())
            .collect::<Vec<_>>()
    );
    println!(
        "  instruction series (claim): {}",
        crate::report::list(&claim_instr)
    );
    println!("  deploy series (ms): large {large_ms:.0?} small {small_ms:.0?}");
    rig.manager.stop_all().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_padded_module_has_the_asked_size_and_returns_its_checksum() {
        use wasmbed_agent::runtime::{Runtime, WasmiConfig, WasmiRuntime};
        use wasmbed_protocol::{Limits, Outcome, Value};
        for size in [1_000, 16_384, 20_000] {
            let (module, sum) = super::padded_module(size);
            assert_eq!(module.len(), size);
            let limits = Limits {
                fuel: 100_000,
                memory_pages: 1,
                entry: "run".try_into().unwrap_or_default(),
                args: heapless::Vec::new(),
            };
            let mut runtime =
                WasmiRuntime::new(WasmiConfig::default(), wasmbed_sim::SimClock::new());
            assert_eq!(runtime.validate(&module, &limits), Ok(()), "size {size}");
            let outcome = runtime.invoke(module, &limits).outcome;
            let expected = heapless::Vec::from_slice(&[Value::I64(sum)]).unwrap_or_default();
            assert_eq!(outcome, Outcome::Returned(expected), "size {size}");
        }
    }

    #[test]
    fn handshake_lines_are_read() {
        let line = "[     0.096] tls: handshake done in 95917 us, 77607 us busy (stack peak 18184 B, heap 3105 B)";
        assert_eq!(
            super::handshake_figures(line).ok(),
            Some((95_917.0, 77_607.0))
        );
        assert!(super::handshake_figures("[ 0.1] agent: heartbeat").is_err());
    }
}
