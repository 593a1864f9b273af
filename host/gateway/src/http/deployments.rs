//! Deployments of modules to devices, and their execution results.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;
use utoipa::IntoParams;
use wasmbed_gateway_api::{
    DeployRequest, DeploymentView, FLEET_DEPLOYMENT_IDS, ForgetRequest, LimitsJson, ResultView,
    ValueJson,
};
use wasmbed_protocol::*;

use super::MAX_MODULE_SIZE;
use super::devices::device_id_param;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::Shared;
use crate::fleet::Command;
use crate::store::{DeploymentRecord, Desired, FleetDeployment, Forget};

fn deployment_view(record: DeploymentRecord) -> DeploymentView {
    DeploymentView {
        id: record.id.0,
        device: record.device.to_string(),
        application_id: record.application.0,
        module_sha256: hex::encode(record.module_sha256),
        module_size: record.module_size,
        desired: record.desired,
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

/// Deploys a module to devices: one deployment per device. A module every
/// device would refuse (not WebAssembly, imports outside the host API, no
/// entry point taking the args) is refused with 422 and the reason.
#[utoipa::path(
    post, path = "/v1/deployments", tag = "deployments",
    request_body = DeployRequest,
    responses(
        (status = 200, description = "the fleet-wide deployment_id is held here already, as it stands", body = Vec<DeploymentView>),
        (status = 201, body = Vec<DeploymentView>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "a device is not enrolled", body = ErrorBody),
        (status = 409, description = "the deployment_id is another device's or application's here", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "devices would refuse the module", body = ErrorBody),
        (status = 429, description = "a device has too many unfinished deployments", body = ErrorBody),
    ),
)]
pub(crate) async fn create_deployments(
    State(shared): State<Arc<Shared>>,
    ApiJson(request): ApiJson<DeployRequest>,
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
    if let Some(id) = request.deployment_id {
        if !FLEET_DEPLOYMENT_IDS.contains(&id) {
            return Err(ApiError::bad_request(format!(
                "deployment_id must be within {FLEET_DEPLOYMENT_IDS:?}"
            )));
        }
        if request.devices.len() != 1 {
            return Err(ApiError::bad_request(
                "a deployment_id is for exactly one device",
            ));
        }
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
    if let (Some(id), [device]) = (request.deployment_id, devices.as_slice()) {
        return create_fleet_deployment(
            &shared,
            DeploymentId(id),
            *device,
            &request,
            &sha256,
            size,
            &limits,
        );
    }
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

/// Creates (201) the deployment the API server numbered fleet-wide, or
/// answers it as this gateway holds it (200): the device may have run it
/// at another gateway already, and runs it once.
fn create_fleet_deployment(
    shared: &Shared,
    id: DeploymentId,
    device: DeviceId,
    request: &DeployRequest,
    sha256: &[u8; 32],
    size: u32,
    limits: &Limits,
) -> ApiResult<(StatusCode, Json<Vec<DeploymentView>>)> {
    let application = ApplicationId(request.application_id);
    let created =
        shared
            .store
            .create_fleet_deployment(id, device, application, sha256, size, limits)?;
    let status = match created {
        FleetDeployment::Created => StatusCode::CREATED,
        FleetDeployment::Existing => StatusCode::OK,
        FleetDeployment::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "deployment_id_taken",
                format!(
                    "deployment {} is another device's or application's here",
                    id.0
                ),
            ));
        }
    };
    shared.fleet.notify(device, Command::Sync);
    let record = shared
        .store
        .deployment(id)?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    tracing::info!(application = request.application_id, deployment = id.0, device = %device, new = created == FleetDeployment::Created, "fleet deployment placed");
    Ok((status, Json(vec![deployment_view(record)])))
}

/// Drops a deployment that moved with its device to another gateway, and
/// its results, which the caller collected: the device is told nothing.
/// Refused (409) while the device is connected here, or when the number of
/// results differs from the caller's (one arrived since it collected them).
#[utoipa::path(
    post, path = "/v1/deployments/{id}/forget", tag = "deployments",
    params(("id" = u64, Path)),
    request_body = ForgetRequest,
    responses(
        (status = 204, description = "forgotten"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody),
    ),
)]
pub(crate) async fn forget_deployment(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(request): ApiJson<ForgetRequest>,
) -> ApiResult<StatusCode> {
    let id = DeploymentId(id);
    let record = shared
        .store
        .deployment(id)?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    if shared.fleet.is_connected(record.device) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "device_connected_here",
            format!("device {} is connected to this gateway", record.device),
        ));
    }
    match shared.store.forget_deployment(id, request.results)? {
        Forget::Forgotten => {
            tracing::info!(deployment = id.0, device = %record.device, "deployment forgotten: it moved with its device");
            Ok(StatusCode::NO_CONTENT)
        }
        Forget::NotFound => Err(ApiError::not_found("deployment")),
        Forget::ResultsDiffer { held } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "results_arrived",
            format!(
                "this gateway holds {held} results of deployment {}, not {}: collect them first",
                id.0, request.results
            ),
        )),
    }
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
        ApiError::internal()
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

/// `?device=ID`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeploymentFilter {
    /// Only the deployments of this device.
    device: Option<String>,
}

/// Deployments, of one device or all.
#[utoipa::path(
    get, path = "/v1/deployments", tag = "deployments",
    params(DeploymentFilter),
    responses(
        (status = 200, body = Vec<DeploymentView>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
)]
pub(crate) async fn list_deployments(
    State(shared): State<Arc<Shared>>,
    ApiQuery(filter): ApiQuery<DeploymentFilter>,
) -> ApiResult<Json<Vec<DeploymentView>>> {
    let records = match filter.device {
        Some(device) => shared.store.deployments_of(device_id_param(&device)?)?,
        None => shared.store.deployments()?,
    };
    Ok(Json(records.into_iter().map(deployment_view).collect()))
}

/// One deployment.
#[utoipa::path(
    get, path = "/v1/deployments/{id}", tag = "deployments",
    params(("id" = u64, Path)),
    responses(
        (status = 200, body = DeploymentView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(crate) async fn get_deployment(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<u64>,
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

/// Stops a deployment on its device (it stays installed).
#[utoipa::path(
    post, path = "/v1/deployments/{id}/stop", tag = "deployments",
    params(("id" = u64, Path)),
    responses(
        (status = 200, body = DeploymentView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(crate) async fn stop_deployment(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<DeploymentView>> {
    change_desired(&shared, id, Desired::Stopped).await
}

/// Removes a deployment from its device (frees its slot).
#[utoipa::path(
    delete, path = "/v1/deployments/{id}", tag = "deployments",
    params(("id" = u64, Path)),
    responses(
        (status = 200, body = DeploymentView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(crate) async fn remove_deployment(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<DeploymentView>> {
    change_desired(&shared, id, Desired::Removed).await
}

/// `?deployment=ID&limit=N`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultFilter {
    /// Only the results of this deployment.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    deployment: Option<u64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Execution results, newest first.
#[utoipa::path(
    get, path = "/v1/results", tag = "deployments",
    params(ResultFilter),
    responses(
        (status = 200, body = Vec<ResultView>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
)]
pub(crate) async fn list_results(
    State(shared): State<Arc<Shared>>,
    ApiQuery(filter): ApiQuery<ResultFilter>,
) -> ApiResult<Json<Vec<ResultView>>> {
    // Ids are stored as SQLite integers: none is above i64::MAX.
    if filter
        .deployment
        .is_some_and(|id| i64::try_from(id).is_err())
    {
        return Err(ApiError::bad_request("not a deployment id"));
    }
    let limit = match filter.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return Err(ApiError::bad_request("limit must be 1 to 1000")),
    };
    let records = shared
        .store
        .results(filter.deployment.map(DeploymentId), limit)?;
    // Read by the API server (or an operator): a stopping gateway need not
    // wait for these.
    shared.store.mark_collected(&records)?;
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
            Outcome::Trapped(code) => (None, Some(*code)),
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
