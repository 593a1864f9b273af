//! Phase 4: the time to deploy a 64 KiB module to 1,000 connected
//! simulated devices, each running the real agent (`wasmbed-sim`): from
//! the operator's `POST /v1/deployments` until the gateway has recorded
//! every device's install and stored every device's execution result.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use wasmbed_gateway::store::unix_ms;
use wasmbed_sim::{Fleet, SimConfig, Simulation};

use crate::GatewayArgs;
use crate::http::Metrics;
use crate::report::{Row, progress, thousands};
use crate::sut::{Env, GatewayProcess};
use crate::wasm;

/// How fast simulated devices (re)connect while the fleet comes up.
const CONNECT_RATE: f64 = 500.0;
/// Longest wait for the fleet to come up, and for the deployment.
const PATIENCE: Duration = Duration::from_secs(300);
/// Most results `GET /v1/results` returns at once.
const RESULTS_PAGE: usize = 1000;

pub(crate) async fn run(env: &Env, args: &GatewayArgs) -> anyhow::Result<Vec<Row>> {
    let n = args.deploy_devices.max(1);
    progress(&format!(
        "deploy: starting the gateway (pairing open) and {n} simulated devices (real agent)"
    ));
    let gateway =
        GatewayProcess::start(env, "gateway-deploy", &env.path("deploy.db"), true).await?;
    let mut config = SimConfig::new(gateway.devices);
    config.connect_rate = Some(CONNECT_RATE);
    config.max_module_size = u32::try_from(args.module_size)
        .unwrap_or(u32::MAX)
        .max(config.max_module_size);
    let fleet = Fleet::start(Simulation::new(config, &env.installation)?, n, None)
        .context("starting the simulated devices")?;
    let result = deploy(&gateway, &fleet, n, args.module_size).await;
    let stats = fleet.shutdown(Duration::from_secs(5)).await;
    if stats.errors.total() > 0 {
        progress(&format!("deploy: device errors: {}", stats.errors));
    }
    gateway.stop().await;
    result
}

async fn deploy(
    gateway: &GatewayProcess,
    fleet: &Fleet,
    n: usize,
    module_size: usize,
) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    let deadline = started + PATIENCE;
    let mut next_report = started + Duration::from_secs(3);
    loop {
        let stats = fleet.stats();
        if stats.connected >= n as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} simulated devices connected: {stats}",
                stats.connected
            );
        }
        if Instant::now() >= next_report {
            progress(&format!("deploy: {stats}"));
            next_report += Duration::from_secs(3);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress(&format!(
        "deploy: {n} devices enrolled and connected in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let devices = fleet
        .devices()
        .iter()
        .map(|status| status.device_id().map(|id| id.to_string()))
        .collect::<Option<Vec<_>>>()
        .context("a connected device has no id")?;
    let module = wasm::module(module_size);
    let body = serde_json::json!({
        "application_id": 1,
        "module": base64::engine::general_purpose::STANDARD.encode(&module),
        "devices": devices,
        "limits": { "fuel": 1_000_000, "memory_pages": 1, "entry": wasm::ENTRY, "args": [{ "i32": 1 }] },
    })
    .to_string();
    // Let the last sessions' setup finish before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t0 = Instant::now();
    let t0_ms = unix_ms();
    let response = gateway
        .client
        .call(
            gateway.http,
            "POST",
            "/v1/deployments",
            Some(body.as_bytes()),
        )
        .await?;
    let answered = t0.elapsed();
    if response.status != 201 {
        bail!(
            "POST /v1/deployments: status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let created = response.json()?.as_array().map_or(0, Vec::len);
    if created != n {
        bail!("POST /v1/deployments created {created} deployments, not {n}");
    }
    progress(&format!(
        "deploy: POST /v1/deployments ({} KiB of JSON) answered in {:.3} s",
        body.len() / 1024,
        answered.as_secs_f64()
    ));

    let installed_series = "wasmbed_gateway_deployments_total{state=\"installed\"}";
    let mut installed = None;
    let mut devices_ran = None;
    let deadline = t0 + PATIENCE;
    let mut next_report = Instant::now() + Duration::from_secs(2);
    while installed.is_none() || devices_ran.is_none() {
        let metrics = Metrics::fetch(&gateway.client, gateway.http).await?;
        let stats = fleet.stats();
        if installed.is_none() && metrics.get(installed_series) >= n as f64 {
            installed = Some(t0.elapsed());
        }
        if devices_ran.is_none() && stats.results >= n as u64 {
            devices_ran = Some(t0.elapsed());
        }
        if stats.deploy_failures > 0 {
            bail!(
                "{} deployments failed on the devices: {stats}",
                stats.deploy_failures
            );
        }
        if Instant::now() > deadline {
            bail!(
                "after {PATIENCE:?}: the gateway recorded {} installs; devices: {stats}",
                metrics.get(installed_series)
            );
        }
        if Instant::now() >= next_report {
            progress(&format!(
                "deploy: {:.1} s: gateway recorded {} installs; devices: {} installed, {} results",
                t0.elapsed().as_secs_f64(),
                metrics.get(installed_series),
                stats.installs,
                stats.results
            ));
            next_report += Duration::from_secs(2);
        }
        // `/metrics` is cheap: poll often, for a fine-grained time.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let installed = installed.unwrap_or_default();

    // Every result stored by the gateway, and when the last one was.
    let last_result = if n <= RESULTS_PAGE {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let results = gateway
                .client
                .get_json(gateway.http, &format!("/v1/results?limit={n}"))
                .await?;
            let results = results.as_array().cloned().unwrap_or_default();
            if results.len() >= n {
                let last_ms = results
                    .iter()
                    .filter_map(|r| r["received_at_ms"].as_u64())
                    .max()
                    .unwrap_or(t0_ms);
                break Some(Duration::from_millis(last_ms.saturating_sub(t0_ms)));
            }
            if Instant::now() > deadline {
                bail!("the gateway stored {} of {n} results", results.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        None
    };
    let deployments = gateway
        .client
        .get_json(gateway.http, "/v1/deployments")
        .await?;
    let failed = deployments.as_array().map_or(0, |all| {
        all.iter().filter(|d| d["state"] == "failed").count()
    });
    if failed > 0 {
        bail!("{failed} deployments failed");
    }

    let what = format!(
        "deploy {} KiB module to {} devices",
        module_size / 1024,
        thousands(n as f64)
    );
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mut rows = vec![
        Row::new(format!("{what}: POST answered"), secs(answered)),
        Row::new(format!("{what}: all installed (gateway)"), secs(installed)),
    ];
    if let Some(last) = last_result {
        rows.push(Row::new(
            format!("{what}: all results stored (gateway)"),
            secs(last),
        ));
    }
    if let Some(ran) = devices_ran {
        progress(&format!(
            "deploy: devices had run the module everywhere after {:.2} s",
            ran.as_secs_f64()
        ));
    }
    let mib = (n * module_size) as f64 / (1024.0 * 1024.0);
    rows.push(Row::new(
        "  module bytes delivered per second, to installed",
        format!("{:.1} MiB/s", mib / installed.as_secs_f64()),
    ));
    Ok(rows)
}
