//! `wasmbed device ...` and `wasmbed app ...`: the API server's Device and
//! Application resources, from a terminal.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::{ApiClient, ApiError, DEFAULT_API, segment};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned tables and short messages.
    Text,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Where the API server is and how to talk to it.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// Base URL of the API server.
    #[arg(long, global = true, env = "WASMBED_API", default_value = DEFAULT_API)]
    api: String,
    /// Bearer token: the admin token `wasmbed api` or `wasmbed up` prints at
    /// first start, or one made with `wasmbed token create`.
    #[arg(long, global = true, env = "WASMBED_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for an https:// API server, e.g. the
    /// installation's control-ca.pem when it serves api-server.pem.
    #[arg(long, global = true, env = "WASMBED_API_CA")]
    api_ca: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// List the devices: their presence, the WebAssembly runtime they
    /// reported (which tells their firmware: wasmi for the bare-metal Rust
    /// one, wamr for the Zephyr one) and their applications.
    List {
        /// Only devices with these labels: k=v[,k=v].
        #[arg(long, short = 'l')]
        selector: Option<String>,
    },
    /// Show one device.
    Get { name: String },
    /// Create a device resource.
    Create {
        name: String,
        /// Board name, e.g. mps2-an385.
        #[arg(long)]
        board: String,
        /// Name of the Gateway resource the device connects to.
        #[arg(long)]
        gateway: String,
        /// A label, k=v (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// The id the gateway gave the device at enrollment (32 hex digits).
        #[arg(long)]
        device_id: Option<String>,
        /// The device runs in an emulator.
        #[arg(long)]
        emulated: bool,
    },
    /// Delete a device resource.
    Delete { name: String },
    /// Revoke a device: its gateway refuses its certificate and key from
    /// now on and deletes its records and deployments; no application is
    /// placed on it. Cannot be undone. Waits (up to --wait) until the
    /// gateway confirmed.
    Revoke {
        name: String,
        /// How long to wait for the gateway's confirmation (0s: do not wait).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AppArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    /// Upload a WebAssembly module as an application and have it deployed
    /// to the devices it selects; with --replace, a new revision of an
    /// existing application.
    Deploy(DeployArgs),
    /// List the applications.
    List,
    /// Show one application.
    Get { name: String },
    /// Delete an application (its deployments are removed first).
    Delete { name: String },
    /// Without a name, each application's phase and result count per
    /// device; with one, that application's latest execution results
    /// (returned values or trap, fuel, duration, first log line).
    Results {
        /// Show this application's execution results.
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The module, a .wasm file.
    file: PathBuf,
    /// The application's name.
    #[arg(long)]
    name: String,
    /// Devices with all these labels: k=v[,k=v].
    #[arg(long, value_parser = parse_selector)]
    selector: Option<BTreeMap<String, String>>,
    /// Only this device (repeatable); with --selector, the device must
    /// also match it.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Instructions the module may execute per invocation.
    #[arg(long, default_value_t = 20_000_000)]
    fuel: u64,
    /// Linear memory pages (64 KiB) the module may have.
    #[arg(long, default_value_t = 1)]
    memory_pages: u16,
    /// Exported function to call.
    #[arg(long, default_value = "run")]
    entry: String,
    /// An argument, TYPE:VALUE with TYPE one of i32, i64, f32, f64 (repeatable).
    #[arg(long = "arg", value_parser = parse_wasm_value)]
    args: Vec<Value>,
    /// A label of the application, k=v (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// If the application exists, replace its module, limits, selector
    /// and labels: devices running the old module or limits get the new
    /// ones in its place.
    #[arg(long)]
    replace: bool,
}

/// `k=v`.
pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

/// `k=v[,k=v]`.
pub(crate) fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for term in text.split(',').filter(|t| !t.trim().is_empty()) {
        let (k, v) = parse_label(term)?;
        labels.insert(k, v);
    }
    if labels.is_empty() {
        return Err("an empty selector selects no device".into());
    }
    Ok(labels)
}

/// `i32:7` as the API's `{"i32": 7}`.
pub(crate) fn parse_wasm_value(text: &str) -> Result<Value, String> {
    let (kind, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not TYPE:VALUE (e.g. i32:7)"))?;
    let bad = |e: &dyn std::fmt::Display| format!("{text:?}: {e}");
    let number = match kind {
        "i32" => json!(value.parse::<i32>().map_err(|e| bad(&e))?),
        "i64" => json!(value.parse::<i64>().map_err(|e| bad(&e))?),
        "f32" => json!(value.parse::<f32>().map_err(|e| bad(&e))?),
        "f64" => json!(value.parse::<f64>().map_err(|e| bad(&e))?),
        _ => return Err(format!("{text:?}: TYPE must be i32, i64, f32 or f64")),
    };
    Ok(json!({ kind: number }))
}

/// The body of `POST /api/v1/applications`.
pub(crate) fn application_body(
    name: &str,
    labels: &BTreeMap<String, String>,
    module: &[u8],
    limits: Value,
    match_labels: &BTreeMap<String, String>,
    names: &[String],
) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "module": base64::engine::general_purpose::STANDARD.encode(module),
            "limits": limits,
            "selector": {"match_labels": match_labels, "names": names},
        }
    })
}

/// The HTTP status of an API server's refusal.
fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ApiError>().map(|e| e.status)
}

/// `PUT`s `body` (a creation body) over the existing application, at the
/// version just read; retried when something else changed it meanwhile.
async fn replace_application(api: &ApiClient, name: &str, body: &Value) -> anyhow::Result<Value> {
    let path = format!("/api/v1/applications/{}", segment(name));
    let mut attempts = 0;
    loop {
        let current = api.get(&path).await?;
        let update = json!({
            "metadata": {
                "labels": body["metadata"]["labels"],
                "resource_version": current["metadata"]["resource_version"],
            },
            "spec": body["spec"],
        });
        match api.put(&path, &update).await {
            Err(e) if status_of(&e) == Some(409) && attempts < 5 => attempts += 1,
            other => return other,
        }
    }
}

/// The body of `POST /api/v1/devices`.
pub(crate) fn device_body(
    name: &str,
    labels: &BTreeMap<String, String>,
    board: &str,
    gateway: &str,
    device_id: Option<&str>,
    emulated: bool,
) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"board": board, "gateway": gateway, "device_id": device_id, "emulated": emulated},
    })
}

pub(crate) fn client(args: &ApiArgs) -> anyhow::Result<ApiClient> {
    ApiClient::new(&args.api, args.token.clone(), args.api_ca.as_deref())
}

impl ApiArgs {
    /// The output format asked for.
    pub(crate) fn output(&self) -> Output {
        self.output
    }
}

pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

pub(crate) fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    say(&serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn run_device(args: DeviceArgs) -> anyhow::Result<()> {
    let api = client(&args.api)?;
    let output = args.api.output;
    block_on(async move {
        match args.command {
            DeviceCommand::List { selector } => {
                let path = match selector {
                    Some(s) => format!("/api/v1/devices?labelSelector={}", segment(&s)),
                    None => "/api/v1/devices".to_owned(),
                };
                let devices = api.get_all(&path).await?;
                match output {
                    Output::Json => print_json(&devices),
                    Output::Text => {
                        say(&device_table(&devices));
                        Ok(())
                    }
                }
            }
            DeviceCommand::Get { name } => {
                let device = api
                    .get(&format!("/api/v1/devices/{}", segment(&name)))
                    .await?;
                match output {
                    Output::Json => print_json(&device),
                    Output::Text => {
                        say(&device_details(&device));
                        Ok(())
                    }
                }
            }
            DeviceCommand::Create {
                name,
                board,
                gateway,
                labels,
                device_id,
                emulated,
            } => {
                let labels: BTreeMap<String, String> = labels.into_iter().collect();
                let body = device_body(
                    &name,
                    &labels,
                    &board,
                    &gateway,
                    device_id.as_deref(),
                    emulated,
                );
                let created = api.post("/api/v1/devices", &body).await?;
                match output {
                    Output::Json => print_json(&created),
                    Output::Text => {
                        say(&format!("device {name} created"));
                        Ok(())
                    }
                }
            }
            DeviceCommand::Revoke { name, wait } => {
                let path = format!("/api/v1/devices/{}", segment(&name));
                let mut device = api
                    .request(reqwest::Method::POST, &format!("{path}/revoke"), None)
                    .await?;
                let deadline = tokio::time::Instant::now() + wait;
                while device["status"]["revoked"] != true && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    device = api.get(&path).await?;
                }
                let confirmed = device["status"]["revoked"] == true;
                match output {
                    Output::Json => print_json(&device),
                    Output::Text if confirmed => {
                        say(&format!(
                            "device {name} revoked: its gateway refuses it from now on"
                        ));
                        Ok(())
                    }
                    Output::Text => {
                        let reason = device["status"]["reason"]
                            .as_str()
                            .unwrap_or("no answer yet");
                        say(&format!(
                            "device {name} marked revoked; its gateway has not confirmed yet ({reason}); the API server keeps trying"
                        ));
                        Ok(())
                    }
                }
            }
            DeviceCommand::Delete { name } => {
                let answer = api
                    .delete(&format!("/api/v1/devices/{}", segment(&name)))
                    .await?;
                match output {
                    Output::Json => print_json(&answer),
                    Output::Text => {
                        say(&format!("device {name} deleted"));
                        Ok(())
                    }
                }
            }
        }
    })
}

pub(crate) fn run_app(args: AppArgs) -> anyhow::Result<()> {
    let api = client(&args.api)?;
    let output = args.api.output;
    block_on(async move {
        match args.command {
            AppCommand::Deploy(deploy) => {
                let module = std::fs::read(&deploy.file)
                    .with_context(|| format!("reading {}", deploy.file.display()))?;
                if !module.starts_with(b"\0asm") {
                    bail!("{} is not a WebAssembly module", deploy.file.display());
                }
                let match_labels = deploy.selector.unwrap_or_default();
                if match_labels.is_empty() && deploy.devices.is_empty() {
                    bail!("say which devices run it: --selector k=v and/or --device NAME");
                }
                let limits = json!({
                    "fuel": deploy.fuel,
                    "memory_pages": deploy.memory_pages,
                    "entry": deploy.entry,
                    "args": deploy.args,
                });
                let labels: BTreeMap<String, String> = deploy.labels.into_iter().collect();
                let body = application_body(
                    &deploy.name,
                    &labels,
                    &module,
                    limits,
                    &match_labels,
                    &deploy.devices,
                );
                let (application, verb) = match api.post("/api/v1/applications", &body).await {
                    Err(e) if deploy.replace && status_of(&e) == Some(409) => (
                        replace_application(&api, &deploy.name, &body).await?,
                        "replaced",
                    ),
                    Err(e) if status_of(&e) == Some(409) => {
                        return Err(e.context(format!(
                            "application {} exists; add --replace to deploy this module in its place",
                            deploy.name
                        )));
                    }
                    other => (other?, "created"),
                };
                match output {
                    Output::Json => print_json(&application),
                    Output::Text => {
                        say(&format!(
                            "application {} {verb} ({} bytes); see `wasmbed app results {}`",
                            deploy.name,
                            module.len(),
                            deploy.name
                        ));
                        Ok(())
                    }
                }
            }
            AppCommand::List => {
                let apps = api.get("/api/v1/applications").await?;
                match output {
                    Output::Json => print_json(&apps),
                    Output::Text => {
                        say(&application_table(&apps));
                        Ok(())
                    }
                }
            }
            AppCommand::Get { name } => {
                let app = api
                    .get(&format!("/api/v1/applications/{}", segment(&name)))
                    .await?;
                match output {
                    Output::Json => print_json(&app),
                    Output::Text => {
                        say(&application_details(&app));
                        Ok(())
                    }
                }
            }
            AppCommand::Delete { name } => {
                let answer = api
                    .delete(&format!("/api/v1/applications/{}", segment(&name)))
                    .await?;
                match output {
                    Output::Json => print_json(&answer),
                    Output::Text if answer.is_null() => {
                        say(&format!("application {name} deleted"));
                        Ok(())
                    }
                    Output::Text => {
                        say(&format!(
                            "application {name}: deletion under way (its deployments are being removed)"
                        ));
                        Ok(())
                    }
                }
            }
            AppCommand::Results { name: Some(name) } => {
                let results = api
                    .get(&format!("/api/v1/applications/{}/results", segment(&name)))
                    .await?;
                match output {
                    Output::Json => print_json(&results),
                    Output::Text if list(&results).is_empty() => {
                        say(&format!("application {name} has no results yet"));
                        Ok(())
                    }
                    Output::Text => {
                        say(&executions_table(&results));
                        Ok(())
                    }
                }
            }
            AppCommand::Results { name: None } => {
                let apps = api.get("/api/v1/applications").await?;
                match output {
                    Output::Json => {
                        let statuses: Vec<Value> = list(&apps)
                            .iter()
                            .map(|a| json!({"name": a["metadata"]["name"], "status": a["status"]}))
                            .collect();
                        print_json(&Value::Array(statuses))
                    }
                    Output::Text => {
                        say(&results_table(&apps));
                        Ok(())
                    }
                }
            }
        }
    })
}

pub(crate) fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn labels(value: &Value) -> String {
    let pairs: Vec<String> = value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(",")
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    for row in rows {
        lines.push(line(&mut row.iter().map(String::as_str)));
    }
    lines.join("\n")
}

/// A device's WebAssembly runtime, e.g. `wamr 2.4.3`, which tells its
/// firmware; `-` before its first session.
fn runtime_text(runtime: &Value) -> String {
    match (runtime["kind"].as_str(), runtime["version"].as_str()) {
        (Some(kind), Some("")) => kind.to_owned(),
        (Some(kind), Some(version)) => format!("{kind} {version}"),
        (Some(kind), None) => kind.to_owned(),
        (None, _) => "-".to_owned(),
    }
}

pub(crate) fn device_table(devices: &Value) -> String {
    let rows: Vec<Vec<String>> = list(devices)
        .iter()
        .map(|d| {
            let apps = list(&d["status"]["deployments"]).len();
            vec![
                text(&d["metadata"]["name"]),
                text(&d["spec"]["board"]),
                text(&d["spec"]["gateway"]),
                text(&d["spec"]["device_id"]),
                text(&d["status"]["presence"]),
                runtime_text(&d["status"]["runtime"]),
                apps.to_string(),
                labels(&d["metadata"]["labels"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "BOARD",
            "GATEWAY",
            "DEVICE ID",
            "PRESENCE",
            "RUNTIME",
            "APPS",
            "LABELS",
        ],
        &rows,
    )
}

fn device_details(d: &Value) -> String {
    let mut lines = vec![
        format!("name:       {}", text(&d["metadata"]["name"])),
        format!("uid:        {}", text(&d["metadata"]["uid"])),
        format!("labels:     {}", labels(&d["metadata"]["labels"])),
        format!("board:      {}", text(&d["spec"]["board"])),
        format!("gateway:    {}", text(&d["spec"]["gateway"])),
        format!("device id:  {}", text(&d["spec"]["device_id"])),
        format!("emulated:   {}", text(&d["spec"]["emulated"])),
        format!("presence:   {}", text(&d["status"]["presence"])),
        format!("heartbeat:  {}", text(&d["status"]["last_heartbeat"])),
        format!("runtime:    {}", runtime_text(&d["status"]["runtime"])),
    ];
    let deployments = list(&d["status"]["deployments"]);
    if deployments.is_empty() {
        lines.push("apps:       -".into());
    } else {
        lines.push("apps:".into());
        for deployment in deployments {
            lines.push(format!(
                "  {} {}",
                text(&deployment["application"]),
                text(&deployment["phase"])
            ));
        }
    }
    lines.join("\n")
}

fn selector_text(selector: &Value) -> String {
    let mut parts = Vec::new();
    let match_labels = labels(&selector["match_labels"]);
    if match_labels != "-" {
        parts.push(match_labels);
    }
    let names: Vec<String> = list(&selector["names"]).iter().map(text).collect();
    if !names.is_empty() {
        parts.push(format!("names={}", names.join("|")));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

pub(crate) fn application_table(apps: &Value) -> String {
    let rows: Vec<Vec<String>> = list(apps)
        .iter()
        .map(|a| {
            let sha = text(&a["spec"]["module"]["sha256"]);
            let mut state = format!("{}", list(&a["status"]["deployments"]).len());
            if a["metadata"]["deleting"].as_bool() == Some(true) {
                state.push_str(" (deleting)");
            }
            vec![
                text(&a["metadata"]["name"]),
                sha.chars().take(12).collect(),
                text(&a["spec"]["module"]["size"]),
                text(&a["spec"]["limits"]["entry"]),
                selector_text(&a["spec"]["selector"]),
                state,
                text(&a["status"]["results"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "MODULE", "SIZE", "ENTRY", "SELECTOR", "DEVICES", "RESULTS",
        ],
        &rows,
    )
}

fn application_details(a: &Value) -> String {
    let args: Vec<String> = list(&a["spec"]["limits"]["args"])
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.iter().map(|(k, v)| format!("{k}:{v}")))
        .collect();
    let mut lines = vec![
        format!("name:      {}", text(&a["metadata"]["name"])),
        format!("uid:       {}", text(&a["metadata"]["uid"])),
        format!("labels:    {}", labels(&a["metadata"]["labels"])),
        format!(
            "module:    sha256 {} ({} bytes)",
            text(&a["spec"]["module"]["sha256"]),
            text(&a["spec"]["module"]["size"])
        ),
        format!(
            "entry:     {}({})",
            text(&a["spec"]["limits"]["entry"]),
            args.join(", ")
        ),
        format!("fuel:      {}", text(&a["spec"]["limits"]["fuel"])),
        format!(
            "memory:    {} pages",
            text(&a["spec"]["limits"]["memory_pages"])
        ),
        format!("selector:  {}", selector_text(&a["spec"]["selector"])),
        format!("results:   {}", text(&a["status"]["results"])),
    ];
    if a["metadata"]["deleting"].as_bool() == Some(true) {
        lines.push("deleting:  yes".into());
    }
    lines.push(String::new());
    lines.push(results_table(&Value::Array(vec![a.clone()])));
    lines.join("\n")
}

pub(crate) fn results_table(apps: &Value) -> String {
    let mut rows = Vec::new();
    for a in list(apps) {
        for d in list(&a["status"]["deployments"]) {
            rows.push(vec![
                text(&a["metadata"]["name"]),
                text(&d["device"]),
                text(&d["phase"]),
                text(&d["results"]),
                text(&d["reason"]),
            ]);
        }
    }
    table(
        &["APPLICATION", "DEVICE", "PHASE", "RESULTS", "REASON"],
        &rows,
    )
}

/// What an execution came to: its returned values (`i32:1229`) or its trap.
fn outcome_text(result: &Value) -> String {
    if let Some(trap) = result["trap"].as_str() {
        return format!("trap {trap}");
    }
    let values: Vec<String> = list(&result["returned"])
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.iter().map(|(k, v)| format!("{k}:{v}")))
        .collect();
    if values.is_empty() {
        "returned".to_owned()
    } else {
        values.join(", ")
    }
}

/// An application's execution results, one a line.
pub(crate) fn executions_table(results: &Value) -> String {
    let rows: Vec<Vec<String>> = list(results)
        .iter()
        .map(|r| {
            let mut log = list(&r["logs"])
                .first()
                .map(text)
                .unwrap_or_else(|| "-".to_owned());
            if list(&r["logs"]).len() > 1 || r["logs_truncated"].as_bool() == Some(true) {
                log.push_str(" ...");
            }
            vec![
                text(&r["device"]),
                text(&r["invocation"]),
                outcome_text(r),
                text(&r["fuel_used"]),
                format!("{}us", text(&r["duration_us"])),
                log,
            ]
        })
        .collect();
    table(
        &["DEVICE", "INVOCATION", "OUTCOME", "FUEL", "DURATION", "LOG"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_selectors_and_values() {
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_label("ab").is_err());
        assert!(parse_label("=b").is_err());
        let selector = parse_selector("demo=true, board=mps2").expect("selector");
        assert_eq!(selector.len(), 2);
        assert_eq!(selector["board"], "mps2");
        assert!(parse_selector(",").is_err());
        assert_eq!(parse_wasm_value("i32:7"), Ok(json!({"i32": 7})));
        assert_eq!(parse_wasm_value("i64:-9"), Ok(json!({"i64": -9})));
        assert_eq!(parse_wasm_value("f64:1.5"), Ok(json!({"f64": 1.5})));
        assert!(parse_wasm_value("i32:x").is_err());
        assert!(parse_wasm_value("i32:4294967296").is_err());
        assert!(parse_wasm_value("u8:1").is_err());
        assert!(parse_wasm_value("7").is_err());
    }

    #[test]
    fn tables_align_their_columns() {
        let out = table(
            &["NAME", "PHASE"],
            &[
                vec!["a".into(), "Running".into()],
                vec!["longer-name".into(), "Stopped".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME         PHASE\na            Running\nlonger-name  Stopped"
        );
    }

    #[test]
    fn devices_show_the_runtime_they_reported() {
        let devices = json!([
            {"metadata": {"name": "qemu-0"}, "spec": {"board": "mps2-an385", "gateway": "gw"},
             "status": {"presence": "connected", "runtime": {"kind": "wamr", "version": "2.4.3"}}},
            {"metadata": {"name": "new"}, "spec": {"board": "mps2-an385", "gateway": "gw"},
             "status": {"presence": "unknown"}},
        ]);
        let out = device_table(&devices);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    BOARD       GATEWAY  DEVICE ID  PRESENCE   RUNTIME     APPS  LABELS"
        );
        assert_eq!(
            lines[1],
            "qemu-0  mps2-an385  gw       -          connected  wamr 2.4.3  0     -"
        );
        assert_eq!(
            lines[2],
            "new     mps2-an385  gw       -          unknown    -           0     -"
        );
        let details = device_details(&devices[0]);
        assert!(details.contains("\nruntime:    wamr 2.4.3\n"), "{details}");
        assert!(device_details(&devices[1]).contains("\nruntime:    -\n"));
    }

    #[test]
    fn results_show_every_device_of_every_application() {
        let apps = json!([{
            "metadata": {"name": "primes"},
            "status": {"results": 3, "deployments": [
                {"device": "qemu-0", "phase": "Stopped", "results": 2, "reason": null},
                {"device": "qemu-1", "phase": "Pending", "results": 1, "reason": "waiting"},
            ]}
        }]);
        let out = results_table(&apps);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].starts_with("primes       qemu-0  Stopped  2"),
            "{out}"
        );
        assert!(lines[2].ends_with("waiting"), "{out}");
    }

    #[test]
    fn executions_show_values_traps_and_the_first_log_line() {
        let results = json!([
            {"device": "qemu-0", "invocation": 2, "returned": [{"i32": 1229}], "trap": null,
             "fuel_used": 500, "duration_us": 70, "logs": ["largest prime 9973", "done"],
             "logs_truncated": false},
            {"device": "qemu-1", "invocation": 1, "returned": null, "trap": "OutOfFuel",
             "fuel_used": 1000, "duration_us": 9, "logs": [], "logs_truncated": false},
        ]);
        let out = executions_table(&results);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("DEVICE"), "{out}");
        assert!(lines[1].contains("i32:1229"), "{out}");
        assert!(lines[1].ends_with("largest prime 9973 ..."), "{out}");
        assert!(lines[1].contains("70us"), "{out}");
        assert!(lines[2].contains("trap OutOfFuel"), "{out}");
        assert!(lines[2].ends_with('-'), "{out}");
    }

    #[test]
    fn request_bodies_have_the_api_shape() {
        let mut l = BTreeMap::new();
        l.insert("demo".to_owned(), "true".to_owned());
        let body = application_body(
            "primes",
            &BTreeMap::new(),
            b"\0asm\x01\0\0\0",
            json!({"fuel": 1, "memory_pages": 1, "entry": "run", "args": []}),
            &l,
            &[],
        );
        assert_eq!(body["spec"]["module"], "AGFzbQEAAAA=");
        assert_eq!(body["spec"]["selector"]["match_labels"]["demo"], "true");
        let device = device_body("d", &l, "mps2-an385", "gw", None, true);
        assert_eq!(device["spec"]["device_id"], Value::Null);
        assert_eq!(device["metadata"]["labels"]["demo"], "true");
    }
}
