//! `/api/v1/devices`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    ApiJson, ApiQuery, ApiResult, AppState, ListQuery, NewMetadata, Page, Problem, object_meta,
    path_name, validate_metadata, validate_name,
};
use crate::model::{Device, DeviceSpec, DeviceStatus};

/// `POST /api/v1/devices`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateDevice {
    pub metadata: NewMetadata,
    pub spec: DeviceSpec,
}

/// `PUT /api/v1/devices/{name}`: new labels and spec, for the version read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateDevice {
    pub metadata: UpdateMetadata,
    pub spec: DeviceSpec,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateMetadata {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The `resource_version` the change was based on; a stale one is a
    /// conflict. Opaque text (a number is taken too, as older clients sent).
    #[serde(deserialize_with = "version_text")]
    pub resource_version: String,
}

/// A resource version given as text or, as older clients did, a number.
fn version_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Version {
        Text(String),
        Number(u64),
    }
    Ok(match Version::deserialize(deserializer)? {
        Version::Text(text) => text,
        Version::Number(number) => number.to_string(),
    })
}

/// A device id as the gateway prints it: 32 hex digits, dashes anywhere.
pub fn normalize_device_id(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn validate_spec(spec: &DeviceSpec) -> ApiResult<()> {
    if spec.board.is_empty()
        || spec.board.len() > 32
        || !spec.board.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Problem::bad_request(
            "invalid_spec",
            "board must be 1 to 32 printable ASCII characters",
        ));
    }
    validate_name(&spec.gateway)?;
    if let Some(id) = &spec.device_id {
        if normalize_device_id(id).is_none() {
            return Err(Problem::bad_request(
                "invalid_spec",
                "device_id must be 32 hex digits (dashes allowed)",
            ));
        }
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/api/v1/devices", tag = "devices",
    request_body = CreateDevice,
    responses(
        (status = 201, body = Device),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateDevice>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    validate_metadata(&body.metadata)?;
    validate_spec(&body.spec)?;
    let device = Device {
        metadata: object_meta(body.metadata),
        spec: body.spec,
        status: DeviceStatus::default(),
    };
    let created = state.store.create(&device).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get, path = "/api/v1/devices", tag = "devices",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Device>, headers(("X-Continue" = String, description = "The `continue` token of the next page; only when `limit` was given and more items remain"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Page<Device>> {
    query.page::<Device>(&state.store).await
}

#[utoipa::path(
    get, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Device),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Device>> {
    path_name(&name)?;
    Ok(Json(state.store.fetch::<Device>(&name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path)),
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name(&name)?;
    state.store.delete::<Device>(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces labels and spec (e.g. to set `device_id` once the device
/// enrolled); the status is kept. Refused with 409 when the device changed
/// since `metadata.resource_version`.
#[utoipa::path(
    put, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path)),
    request_body = UpdateDevice,
    responses(
        (status = 200, body = Device),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateDevice>,
) -> ApiResult<Json<Device>> {
    path_name(&name)?;
    validate_metadata(&NewMetadata {
        name: name.clone(),
        labels: body.metadata.labels.clone(),
    })?;
    validate_spec(&body.spec)?;
    let mut device: Device = state.store.fetch(&name).await?;
    if device.spec.revoked && !body.spec.revoked {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "revoked",
            "a revoked device stays revoked; delete it and create it again",
        ));
    }
    device.metadata.labels = body.metadata.labels;
    device.metadata.resource_version = body.metadata.resource_version;
    device.spec = body.spec;
    Ok(Json(state.store.replace(&device).await?))
}

/// Revokes a device (sets `spec.revoked`): the controller has its gateway
/// refuse the device's certificate and key from now on and delete its
/// records there, and places no application on it. Answered at once;
/// `status.revoked` turns true when the gateway confirmed. Revoking a
/// revoked device changes nothing.
#[utoipa::path(
    post, path = "/api/v1/devices/{name}/revoke", tag = "devices",
    params(("name" = String, Path)),
    responses(
        (status = 202, body = Device),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    path_name(&name)?;
    let device = state
        .store
        .modify::<Device>(&name, |device| {
            let change = !device.spec.revoked;
            device.spec.revoked = true;
            change
        })
        .await?;
    tracing::info!(device = %name, "device revocation requested");
    Ok((StatusCode::ACCEPTED, Json(device)))
}
