//! Devices, pairing and pre-authorized keys.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmbed_protocol::{DeviceId, PUBLIC_KEY_LEN};

use wasmbed_gateway_api::{AppView, DeviceView, RuntimeView, SetPairing};

use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::Shared;
use crate::fleet::Presence;
use crate::pairing::PairingStatus;
use crate::store::{DeviceRecord, RuntimeRecord};

impl From<RuntimeRecord> for RuntimeView {
    fn from(record: RuntimeRecord) -> Self {
        RuntimeView {
            kind: record.kind,
            version: record.version,
        }
    }
}

fn device_view(shared: &Shared, record: DeviceRecord) -> DeviceView {
    let live = shared.fleet.get(record.id);
    let presence = live.as_ref().map_or(Presence::Disconnected, |l| l.presence);
    DeviceView {
        id: record.id.to_string(),
        public_key: hex::encode(&record.public_key),
        board: record.board,
        firmware_version: record.firmware_version,
        runtime: record.runtime.map(RuntimeView::from),
        enrolled_at_ms: record.enrolled_at_ms,
        last_seen_ms: record.last_seen_ms,
        presence,
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
                        state: a.state,
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

pub(crate) fn device_id_param(text: &str) -> ApiResult<DeviceId> {
    parse_device_id(text).ok_or_else(|| ApiError::bad_request(format!("not a device id: {text}")))
}

/// Every enrolled device with its live state.
#[utoipa::path(
    get, path = "/v1/devices", tag = "devices",
    responses(
        (status = 200, body = Vec<DeviceView>),
        (status = 401, body = ErrorBody),
    ),
)]
pub(crate) async fn list_devices(
    State(shared): State<Arc<Shared>>,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let records = shared.store.devices()?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| device_view(&shared, r))
            .collect(),
    ))
}

/// One device.
#[utoipa::path(
    get, path = "/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "the device id, 32 hex digits (dashes allowed)")),
    responses(
        (status = 200, body = DeviceView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(crate) async fn get_device(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
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
/// and an open session is closed. Cannot be undone; revoking it again
/// answers 204 too.
#[utoipa::path(
    delete, path = "/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "the device id, 32 hex digits (dashes allowed)")),
    responses(
        (status = 204, description = "revoked (now or before)"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(crate) async fn revoke_device(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id = device_id_param(&id)?;
    let Some(record) = shared.store.device(id)? else {
        return if shared.store.was_revoked(id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found("device"))
        };
    };
    // Refused from now on, before the records go: a session starting
    // meanwhile cannot slip through. (Should the store fail, the key stays
    // refused until a restart, and the caller retries.)
    shared.revocations.add(&record.public_key);
    shared.store.revoke_device(id)?;
    shared.count_revocations();
    shared.fleet.remove(id);
    tracing::info!(device = %id, key = %hex::encode(&record.public_key), "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// 409 when the fleet's signer decides enrollments (`--enroll-via-api`):
/// pairing and pre-authorised keys are the API server's then.
fn refuse_when_fleet_wide(shared: &Shared) -> ApiResult<()> {
    match shared.signing {
        crate::signer::Signing::Local(_) => Ok(()),
        crate::signer::Signing::Fleet(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "fleet_wide",
            "this gateway forwards enrollments: open pairing and pre-authorise keys at the \
             API server (PUT /api/v1/pairing, POST /api/v1/preauthorized)",
        )),
    }
}

/// Whether devices may enroll now.
#[utoipa::path(
    get, path = "/v1/pairing", tag = "pairing",
    responses(
        (status = 200, body = PairingStatus),
        (status = 401, body = ErrorBody),
    ),
)]
pub(crate) async fn get_pairing(State(shared): State<Arc<Shared>>) -> Json<PairingStatus> {
    Json(shared.pairing.status())
}

/// Opens a pairing window that closes by itself, or closes pairing.
#[utoipa::path(
    put, path = "/v1/pairing", tag = "pairing",
    request_body = SetPairing,
    responses(
        (status = 200, body = PairingStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "the gateway forwards enrollments: pairing is the API server's", body = ErrorBody),
        (status = 415, body = ErrorBody),
    ),
)]
pub(crate) async fn set_pairing(
    State(shared): State<Arc<Shared>>,
    ApiJson(request): ApiJson<SetPairing>,
) -> ApiResult<Json<PairingStatus>> {
    refuse_when_fleet_wide(&shared)?;
    let duration = Duration::from_secs(request.duration_secs().map_err(ApiError::bad_request)?);
    if request.open {
        shared.pairing.open(Some(duration));
        tracing::info!(for_s = duration.as_secs(), "pairing opened");
    } else {
        shared.pairing.close();
        tracing::info!("pairing closed");
    }
    Ok(Json(shared.pairing.status()))
}

/// `POST /v1/preauthorized`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preauthorize {
    /// SEC1 uncompressed P-256 public key, hex (130 digits).
    pub public_key: String,
}

/// Lets one public key enroll while pairing is closed.
#[utoipa::path(
    post, path = "/v1/preauthorized", tag = "pairing",
    request_body = Preauthorize,
    responses(
        (status = 201, description = "the key may enroll"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "the gateway forwards enrollments: pre-authorised keys are the API server's", body = ErrorBody),
        (status = 415, body = ErrorBody),
    ),
)]
pub(crate) async fn preauthorize(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<Preauthorize>,
) -> ApiResult<StatusCode> {
    refuse_when_fleet_wide(&shared)?;
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
