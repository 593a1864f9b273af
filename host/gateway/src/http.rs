//! The gateway's HTTP/JSON interface, for the API server and operators.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/devices`, `GET /v1/devices/{id}` | enrolled devices and their live state |
//! | `DELETE /v1/devices/{id}` | revoke: the key is refused from now on, the record and deployments go |
//! | `GET /v1/pairing`, `PUT /v1/pairing` | whether devices may enroll: `{"open": true, "duration_s": 600}` opens a window that closes by itself |
//! | `POST /v1/preauthorized` | allow one public key to enroll while pairing is closed |
//! | `POST /v1/deployments` | deploy a module to devices |
//! | `GET /v1/deployments[?device=ID]`, `GET /v1/deployments/{id}` | deployment status |
//! | `POST /v1/deployments/{id}/stop`, `DELETE /v1/deployments/{id}` | stop, remove |
//! | `GET /v1/results[?deployment=ID&limit=N]` | execution results, newest first |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;
use wasmbed_protocol::*;

use crate::Shared;
use crate::fleet::{Command, Presence};
use crate::pairing::{self, PairingStatus};
use crate::store::{DeploymentRecord, DeploymentState, Desired, DeviceRecord, StoreError};

/// Largest module accepted, before base64.
pub const MAX_MODULE_SIZE: usize = 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{id}", get(get_device).delete(revoke_device))
        .route("/v1/pairing", get(get_pairing).put(set_pairing))
        .route("/v1/preauthorized", post(preauthorize))
        .route(
            "/v1/deployments",
            get(list_deployments).post(create_deployments),
        )
        .route(
            "/v1/deployments/{id}",
            get(get_deployment).delete(remove_deployment),
        )
        .route("/v1/deployments/{id}/stop", post(stop_deployment))
        .route("/v1/results", get(list_results))
        .layer(axum::extract::DefaultBodyLimit::max(2 * MAX_MODULE_SIZE))
        .with_state(shared)
}

/// An error answer: a status, a stable code and a message without internals.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        warn!(error = %e, "store failed while serving HTTP");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the gateway log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

/// A device as the HTTP interface shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceView {
    pub id: String,
    pub public_key: String,
    pub board: String,
    pub firmware_version: String,
    pub enrolled_at_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub presence: String,
    pub last_heartbeat_ms: Option<u64>,
    pub uptime_ms: Option<u64>,
    pub free_memory: Option<u32>,
    pub apps: Vec<AppView>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AppView {
    pub deployment: u64,
    pub application: u64,
    pub state: String,
}

fn device_view(shared: &Shared, record: DeviceRecord) -> DeviceView {
    let live = shared.fleet.get(record.id);
    let presence = live.as_ref().map_or(Presence::Disconnected, |l| l.presence);
    DeviceView {
        id: record.id.to_string(),
        public_key: hex::encode(&record.public_key),
        board: record.board,
        firmware_version: record.firmware_version,
        enrolled_at_ms: record.enrolled_at_ms,
        last_seen_ms: record.last_seen_ms,
        presence: serde_json::to_value(presence)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        last_heartbeat_ms: live.as_ref().and_then(|l| l.last_heartbeat_ms),
        uptime_ms: live.as_ref().and_then(|l| l.uptime_ms),
        free_memory: live.as_ref().and_then(|l| l.free_memory),
        apps: live
            .map(|l| {
                l.apps
                    .iter()
                    .map(|a| AppView {
                        deployment: a.deployment.0,
                        application: a.application.0,
                        state: format!("{:?}", a.state).to_lowercase(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Parses a device id as printed by the gateway (hex, dashes optional).
pub fn parse_device_id(text: &str) -> Option<DeviceId> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(hex).ok()?;
    <[u8; 16]>::try_from(bytes).ok().map(DeviceId)
}

fn device_id_param(text: &str) -> ApiResult<DeviceId> {
    parse_device_id(text).ok_or_else(|| ApiError::bad_request(format!("not a device id: {text}")))
}

async fn list_devices(State(shared): State<Arc<Shared>>) -> ApiResult<Json<Vec<DeviceView>>> {
    let records = shared.store.devices()?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| device_view(&shared, r))
            .collect(),
    ))
}

async fn get_device(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let id = device_id_param(&id)?;
    let record = shared
        .store
        .device(id)?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(Json(device_view(&shared, record)))
}

/// Revokes a device: its certificate is refused at the TLS handshake and
/// its key may not enroll again; its record, deployments and results go,
/// and an open session is closed.
async fn revoke_device(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = device_id_param(&id)?;
    let record = shared
        .store
        .revoke_device(id)?
        .ok_or_else(|| ApiError::not_found("device"))?;
    shared.revocations.add(&record.public_key);
    shared
        .metrics
        .revoked_devices
        .set(i64::try_from(shared.revocations.len()).unwrap_or(i64::MAX));
    shared.fleet.remove(id);
    tracing::info!(device = %id, key = %hex::encode(&record.public_key), "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/pairing`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetPairing {
    pub open: bool,
    /// How long the window stays open, in seconds (default 600, at most
    /// 604800); ignored when closing.
    #[serde(default)]
    pub duration_s: Option<u64>,
}

async fn get_pairing(State(shared): State<Arc<Shared>>) -> Json<PairingStatus> {
    Json(shared.pairing.status())
}

async fn set_pairing(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<SetPairing>,
) -> ApiResult<Json<PairingStatus>> {
    if request.open {
        let duration = match request.duration_s {
            None => pairing::DEFAULT_WINDOW,
            Some(0) => return Err(ApiError::bad_request("duration_s must be at least 1")),
            Some(s) if Duration::from_secs(s) > pairing::MAX_WINDOW => {
                return Err(ApiError::bad_request(format!(
                    "duration_s must be at most {}",
                    pairing::MAX_WINDOW.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        shared.pairing.open(Some(duration));
        tracing::info!(for_s = duration.as_secs(), "pairing opened");
    } else {
        shared.pairing.close();
        tracing::info!("pairing closed");
    }
    Ok(Json(shared.pairing.status()))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Preauthorize {
    /// SEC1 uncompressed P-256 public key, hex.
    pub public_key: String,
}

async fn preauthorize(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Preauthorize>,
) -> ApiResult<StatusCode> {
    let key = hex::decode(body.public_key.trim())
        .map_err(|_| ApiError::bad_request("public_key is not hex"))?;
    if p256::PublicKey::from_sec1_bytes(&key).is_err() || key.len() != PUBLIC_KEY_LEN {
        return Err(ApiError::bad_request(
            "public_key is not an uncompressed P-256 point (65 bytes, 04 || x || y)",
        ));
    }
    shared.store.preauthorize(&key)?;
    Ok(StatusCode::CREATED)
}

/// A WebAssembly value in JSON: `{"i32": 5}`, `{"f64": 1.5}`, ...
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ValueJson {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

impl From<ValueJson> for Value {
    fn from(v: ValueJson) -> Value {
        match v {
            ValueJson::I32(x) => Value::I32(x),
            ValueJson::I64(x) => Value::I64(x),
            ValueJson::F32(x) => Value::F32(x),
            ValueJson::F64(x) => Value::F64(x),
        }
    }
}

impl From<Value> for ValueJson {
    fn from(v: Value) -> ValueJson {
        match v {
            Value::I32(x) => ValueJson::I32(x),
            Value::I64(x) => ValueJson::I64(x),
            Value::F32(x) => ValueJson::F32(x),
            Value::F64(x) => ValueJson::F64(x),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LimitsJson {
    pub fuel: u64,
    pub memory_pages: u16,
    pub entry: String,
    #[serde(default)]
    pub args: Vec<ValueJson>,
}

/// `POST /v1/deployments`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRequest {
    pub application_id: u64,
    /// The module, base64 (standard alphabet).
    pub module: String,
    pub devices: Vec<String>,
    pub limits: LimitsJson,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DeploymentView {
    pub id: u64,
    pub device: String,
    pub application_id: u64,
    pub module_sha256: String,
    pub module_size: u32,
    pub desired: String,
    pub state: DeploymentState,
    pub reason: Option<String>,
    pub bytes_acked: u32,
    pub updated_at_ms: u64,
}

fn deployment_view(record: DeploymentRecord) -> DeploymentView {
    DeploymentView {
        id: record.id.0,
        device: record.device.to_string(),
        application_id: record.application.0,
        module_sha256: hex::encode(record.module_sha256),
        module_size: record.module_size,
        desired: format!("{:?}", record.desired).to_lowercase(),
        state: record.state,
        reason: record.reason,
        bytes_acked: record.bytes_acked,
        updated_at_ms: record.updated_at_ms,
    }
}

fn limits_from_json(json: &LimitsJson) -> ApiResult<Limits> {
    let entry = heapless::String::try_from(json.entry.as_str())
        .map_err(|_| ApiError::bad_request(format!("entry longer than {ENTRY_LEN} bytes")))?;
    if json.entry.is_empty() {
        return Err(ApiError::bad_request("entry is empty"));
    }
    let mut args = heapless::Vec::new();
    for arg in &json.args {
        args.push(Value::from(*arg))
            .map_err(|_| ApiError::bad_request(format!("more than {MAX_ARGS} args")))?;
    }
    Ok(Limits {
        fuel: json.fuel,
        memory_pages: json.memory_pages,
        entry,
        args,
    })
}

async fn create_deployments(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<DeployRequest>,
) -> ApiResult<(StatusCode, Json<Vec<DeploymentView>>)> {
    let module = base64::engine::general_purpose::STANDARD
        .decode(request.module.trim())
        .map_err(|_| ApiError::bad_request("module is not base64"))?;
    if module.is_empty() || module.len() > MAX_MODULE_SIZE {
        return Err(ApiError::bad_request(format!(
            "module must be 1..={MAX_MODULE_SIZE} bytes"
        )));
    }
    if request.devices.is_empty() {
        return Err(ApiError::bad_request("devices is empty"));
    }
    let limits = limits_from_json(&request.limits)?;
    let (module, limits) = check_module(module, limits).await?;
    let mut devices = Vec::with_capacity(request.devices.len());
    for text in &request.devices {
        let id = device_id_param(text)?;
        if shared.store.device(id)?.is_none() {
            return Err(ApiError::not_found(&format!("device {text}")));
        }
        // Removals still to confirm are not new work for the device: they
        // do not count, so a device that stays away cannot block deployments.
        let pending = shared
            .store
            .unfinished_deployments(id)?
            .iter()
            .filter(|record| record.desired != Desired::Removed)
            .count();
        if pending >= shared.config.max_pending_deployments {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                format!("device {text} already has {pending} unfinished deployments"),
            ));
        }
        devices.push(id);
    }
    let sha256: [u8; 32] = Sha256::digest(&module).into();
    let size =
        u32::try_from(module.len()).map_err(|_| ApiError::bad_request("module too large"))?;
    shared.store.put_module(&sha256, &module)?;
    let ids = shared.store.create_deployments(
        &devices,
        ApplicationId(request.application_id),
        &sha256,
        size,
        &limits,
    )?;
    let mut views = Vec::with_capacity(ids.len());
    for (id, device) in ids.into_iter().zip(&devices) {
        shared.fleet.notify(*device, Command::Sync);
        if let Some(record) = shared.store.deployment(id)? {
            views.push(deployment_view(record));
        }
    }
    tracing::info!(
        application = request.application_id,
        devices = views.len(),
        size,
        "deployment created"
    );
    Ok((StatusCode::CREATED, Json(views)))
}

/// Refuses with 422 a module every device would refuse to install under
/// `limits` (the agent's own checks, `docs/host-api.md`), with the reason;
/// on a blocking thread, as a large module takes a while to validate.
async fn check_module(module: Vec<u8>, limits: Limits) -> ApiResult<(Vec<u8>, Limits)> {
    let (module, limits, checked) = tokio::task::spawn_blocking(move || {
        let checked = wasmbed_agent::runtime::check_module(&module, &limits)
            .map(drop)
            .map_err(|rejection| rejection.to_string());
        (module, limits, checked)
    })
    .await
    .map_err(|e| {
        warn!(error = %e, "the module check did not finish");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the gateway log",
        )
    })?;
    match checked {
        Ok(()) => Ok((module, limits)),
        Err(reason) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
            format!("devices would refuse this module: {reason}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct DeploymentFilter {
    device: Option<String>,
}

async fn list_deployments(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<DeploymentFilter>,
) -> ApiResult<Json<Vec<DeploymentView>>> {
    let records = match filter.device {
        Some(device) => shared.store.deployments_of(device_id_param(&device)?)?,
        None => shared.store.deployments()?,
    };
    Ok(Json(records.into_iter().map(deployment_view).collect()))
}

async fn get_deployment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
) -> ApiResult<Json<DeploymentView>> {
    let record = shared
        .store
        .deployment(DeploymentId(id))?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    Ok(Json(deployment_view(record)))
}

async fn change_desired(
    shared: &Shared,
    id: u64,
    desired: Desired,
) -> ApiResult<Json<DeploymentView>> {
    let id = DeploymentId(id);
    let record = shared
        .store
        .deployment(id)?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    shared.store.set_desired(id, desired)?;
    let connected = shared.fleet.notify(record.device, Command::Sync);
    tracing::info!(deployment = id.0, ?desired, connected, "deployment changed");
    let record = shared
        .store
        .deployment(id)?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    Ok(Json(deployment_view(record)))
}

async fn stop_deployment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
) -> ApiResult<Json<DeploymentView>> {
    change_desired(&shared, id, Desired::Stopped).await
}

async fn remove_deployment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
) -> ApiResult<Json<DeploymentView>> {
    change_desired(&shared, id, Desired::Removed).await
}

#[derive(Debug, Deserialize)]
struct ResultFilter {
    deployment: Option<u64>,
    limit: Option<u32>,
}

/// An execution result as JSON.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ResultView {
    pub deployment: u64,
    pub device: String,
    pub invocation: u32,
    /// Returned values, when the invocation returned.
    pub returned: Option<Vec<ValueJson>>,
    /// The trap, when it trapped (e.g. `OutOfFuel`).
    pub trap: Option<String>,
    pub fuel_used: u64,
    pub duration_us: u64,
    pub logs: Vec<String>,
    pub logs_truncated: bool,
    pub received_at_ms: u64,
}

async fn list_results(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<ResultFilter>,
) -> ApiResult<Json<Vec<ResultView>>> {
    let limit = filter.limit.unwrap_or(100).min(1000);
    let records = shared
        .store
        .results(filter.deployment.map(DeploymentId), limit)?;
    let mut views = Vec::with_capacity(records.len());
    for record in records {
        let Ok(result) = minicbor::decode::<ExecutionResult<'_>>(&record.result_cbor) else {
            warn!(
                deployment = record.deployment.0,
                "stored result does not decode"
            );
            continue;
        };
        let (returned, trap) = match &result.outcome {
            Outcome::Returned(values) => (
                Some(values.iter().copied().map(ValueJson::from).collect()),
                None,
            ),
            Outcome::Trapped(code) => (None, Some(format!("{code:?}"))),
        };
        views.push(ResultView {
            deployment: record.deployment.0,
            device: record.device.to_string(),
            invocation: record.invocation,
            returned,
            trap,
            fuel_used: result.fuel_used,
            duration_us: result.duration_us,
            logs: result.logs.iter().map(|l| l.as_str().to_owned()).collect(),
            logs_truncated: result.logs_truncated,
            received_at_ms: record.received_at_ms,
        });
    }
    Ok(Json(views))
}
