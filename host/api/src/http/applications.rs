//! `/api/v1/applications`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wasmbed_protocol::Value;

use super::devices::UpdateMetadata;
use super::{
    ApiJson, ApiQuery, ApiResult, AppState, ListQuery, MAX_MODULE_SIZE, NewMetadata, Page, Problem,
    object_meta, path_name, validate_label, validate_metadata, validate_name,
};
use crate::model::{
    Application, ApplicationSpec, ApplicationStatus, ExecutionResult, Limits, ModuleRef, Selector,
    UNDEPLOY_FINALIZER, WasmValue,
};
use crate::store::{Deletion, StoreError};

/// Most fuel an invocation may be given.
pub const MAX_FUEL: u64 = 1 << 40;
/// Most linear memory pages (64 KiB each) a module may be given.
pub const MAX_MEMORY_PAGES: u16 = 16;
/// Longest entry point name, in bytes.
pub const MAX_ENTRY_LEN: usize = 32;
/// Most arguments of the entry point.
pub const MAX_ARGS: usize = 8;

/// `POST /api/v1/applications`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateApplication {
    pub metadata: NewMetadata,
    pub spec: NewApplicationSpec,
}

/// `PUT /api/v1/applications/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateApplication {
    pub metadata: UpdateMetadata,
    pub spec: NewApplicationSpec,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewApplicationSpec {
    /// The WebAssembly module, base64 (standard alphabet, padded).
    pub module: String,
    pub limits: Limits,
    pub selector: Selector,
}

fn decode_module(text: &str) -> ApiResult<Vec<u8>> {
    let module = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Problem::bad_request("invalid_module", "module is not base64"))?;
    if module.len() > MAX_MODULE_SIZE {
        return Err(Problem::bad_request(
            "invalid_module",
            format!("module is larger than {MAX_MODULE_SIZE} bytes"),
        ));
    }
    Ok(module)
}

/// `limits` as devices get them; `validate_limits` has bounded the entry
/// point's name and the number of arguments to what they hold.
fn device_limits(limits: &Limits) -> ApiResult<wasmbed_protocol::Limits> {
    let too_long = || Problem::bad_request("invalid_limits", "entry or args too long");
    let mut args = heapless::Vec::new();
    for arg in &limits.args {
        args.push(match *arg {
            WasmValue::I32(v) => Value::I32(v),
            WasmValue::I64(v) => Value::I64(v),
            WasmValue::F32(v) => Value::F32(v),
            WasmValue::F64(v) => Value::F64(v),
        })
        .map_err(|_| too_long())?;
    }
    Ok(wasmbed_protocol::Limits {
        fuel: limits.fuel,
        memory_pages: limits.memory_pages,
        entry: heapless::String::try_from(limits.entry.as_str()).map_err(|_| too_long())?,
        args,
    })
}

/// Refuses with 422 a module that devices would refuse to install under
/// `limits` (`docs/host-api.md`, "Install-time checks"), with the reason.
/// Runs on a blocking thread: a large module takes a while to validate.
async fn check_module(module: Vec<u8>, limits: &Limits) -> ApiResult<Vec<u8>> {
    let limits = device_limits(limits)?;
    let (module, checked) = tokio::task::spawn_blocking(move || {
        let checked = wasmbed_agent::runtime::check_module(&module, &limits).map(|_| ());
        (module, checked.map_err(|rejection| rejection.to_string()))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the module check did not finish");
        Problem::internal()
    })?;
    match checked {
        Ok(()) => Ok(module),
        Err(reason) => {
            tracing::info!(%reason, "module refused");
            Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_module",
                format!("devices would refuse this module: {reason}"),
            ))
        }
    }
}

fn validate_limits(limits: &Limits) -> ApiResult<()> {
    let bad = |detail: String| Err(Problem::bad_request("invalid_limits", detail));
    if limits.fuel == 0 || limits.fuel > MAX_FUEL {
        return bad(format!("fuel must be 1..={MAX_FUEL}"));
    }
    if limits.memory_pages > MAX_MEMORY_PAGES {
        return bad(format!("memory_pages must be 0..={MAX_MEMORY_PAGES}"));
    }
    if limits.entry.is_empty()
        || limits.entry.len() > MAX_ENTRY_LEN
        || limits.entry.chars().any(char::is_control)
    {
        return bad(format!(
            "entry must be 1 to {MAX_ENTRY_LEN} bytes without control characters"
        ));
    }
    if limits.args.len() > MAX_ARGS {
        return bad(format!("at most {MAX_ARGS} args"));
    }
    Ok(())
}

fn validate_selector(selector: &Selector) -> ApiResult<()> {
    for (key, value) in &selector.match_labels {
        validate_label(key, value)?;
    }
    for name in &selector.names {
        validate_name(name)?;
    }
    if selector.names.len() > 1000 {
        return Err(Problem::bad_request(
            "invalid_selector",
            "at most 1000 names",
        ));
    }
    Ok(())
}

/// Checks a spec and stores its module; returns the spec to keep.
async fn accept_spec(state: &AppState, spec: NewApplicationSpec) -> ApiResult<ApplicationSpec> {
    let module = decode_module(&spec.module)?;
    validate_limits(&spec.limits)?;
    validate_selector(&spec.selector)?;
    let module = check_module(module, &spec.limits).await?;
    let sha256 = hex::encode(Sha256::digest(&module));
    let size = u32::try_from(module.len())
        .map_err(|_| Problem::bad_request("invalid_module", "module too large"))?;
    state.store.put_blob(&sha256, &module).await?;
    Ok(ApplicationSpec {
        module: ModuleRef { sha256, size },
        limits: spec.limits,
        selector: spec.selector,
    })
}

/// Creates an application. Its module is checked as devices check one
/// before they install it (`docs/host-api.md`, "Install-time checks"): a
/// module they would refuse is answered 422 `invalid_module` with the
/// reason, and nothing is stored.
#[utoipa::path(
    post, path = "/api/v1/applications", tag = "applications",
    request_body = CreateApplication,
    responses(
        (status = 201, body = Application),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "devices would refuse the module (`invalid_module`; `docs/host-api.md`, \"Install-time checks\"); the detail says why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateApplication>,
) -> ApiResult<(StatusCode, Json<Application>)> {
    validate_metadata(&body.metadata)?;
    if state
        .store
        .get::<Application>(&body.metadata.name)
        .await?
        .is_some()
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("Application {} already exists", body.metadata.name),
        ));
    }
    let spec = accept_spec(&state, body.spec).await?;
    let size = spec.module.size;
    let mut metadata = object_meta(body.metadata);
    metadata.finalizers.push(UNDEPLOY_FINALIZER.to_owned());
    let application = Application {
        metadata,
        spec,
        status: ApplicationStatus::default(),
    };
    let created = state.store.create(&application).await?;
    tracing::info!(application = %created.metadata.name, size, "application created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Replaces labels and spec; the status is kept. A new module or new
/// limits make a new revision, which the controller deploys in place of
/// the old one on every device; a new selector only moves the application
/// between devices. Refused with 409 when the application changed since
/// `metadata.resource_version` or is being deleted, and with 422 when
/// devices would refuse the module, as for a new application.
#[utoipa::path(
    put, path = "/api/v1/applications/{name}", tag = "applications",
    params(("name" = String, Path)),
    request_body = UpdateApplication,
    responses(
        (status = 200, body = Application),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "devices would refuse the module (`invalid_module`; `docs/host-api.md`, \"Install-time checks\"); the detail says why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateApplication>,
) -> ApiResult<Json<Application>> {
    path_name(&name)?;
    validate_metadata(&NewMetadata {
        name: name.clone(),
        labels: body.metadata.labels.clone(),
    })?;
    let mut application: Application = state.store.fetch(&name).await?;
    if application.metadata.deleting() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("Application {name} is being deleted"),
        ));
    }
    let spec = accept_spec(&state, body.spec).await?;
    let before = application.spec.revision();
    application.metadata.labels = body.metadata.labels;
    application.metadata.resource_version = body.metadata.resource_version;
    application.spec = spec;
    let updated = state.store.replace(&application).await?;
    let revision = updated.spec.revision();
    if revision != before {
        tracing::info!(application = %name, %before, %revision, "application revised");
    }
    Ok(Json(updated))
}

#[utoipa::path(
    get, path = "/api/v1/applications", tag = "applications",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Application>, headers(("X-Continue" = String, description = "The `continue` token of the next page; only when `limit` was given and more items remain"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Page<Application>> {
    query.page::<Application>(&state.store).await
}

#[utoipa::path(
    get, path = "/api/v1/applications/{name}", tag = "applications",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Application),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Application>> {
    path_name(&name)?;
    Ok(Json(state.store.fetch::<Application>(&name).await?))
}

/// The latest execution results of an application (the last ten per
/// device), newest first.
#[utoipa::path(
    get, path = "/api/v1/applications/{name}/results", tag = "applications",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Vec<ExecutionResult>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn results(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ExecutionResult>>> {
    path_name(&name)?;
    let application: Application = state.store.fetch(&name).await?;
    Ok(Json(state.store.results(&application.metadata.uid).await?))
}

/// Deletes at once when nothing was deployed; otherwise marks the
/// application (its `deletion_timestamp`, 202) and the controller removes
/// its gateway deployments, then its finalizer, and the store deletes it.
#[utoipa::path(
    delete, path = "/api/v1/applications/{name}", tag = "applications",
    params(("name" = String, Path)),
    responses(
        (status = 202, description = "deletion under way", body = Application),
        (status = 204, description = "deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    path_name(&name)?;
    let uid = state.store.fetch::<Application>(&name).await?.metadata.uid;
    let mut application = match state.store.delete::<Application>(&name, None).await? {
        Deletion::Deleted => {
            state.store.delete_results(&uid).await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Deletion::Pending(application) => application,
    };
    loop {
        let deployed = application
            .status
            .deployments
            .iter()
            .any(|d| d.gateway_deployment_id.is_some());
        let only_ours = application
            .metadata
            .finalizers
            .iter()
            .all(|f| f == UNDEPLOY_FINALIZER);
        if deployed || !only_ours {
            return Ok((StatusCode::ACCEPTED, Json(application)).into_response());
        }
        // Nothing to take back: the finalizer goes now, and so does the
        // application.
        let mut done = application.clone();
        done.metadata.finalizers.clear();
        match state.store.replace(&done).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                state.store.delete_results(&uid).await?;
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(StoreError::Conflict { .. }) => match state.store.get(&name).await? {
                Some(again) => application = again,
                None => return Ok(StatusCode::NO_CONTENT.into_response()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}
