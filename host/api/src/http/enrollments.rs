//! Enrollment signed in one place: gateways forward the enrollments whose
//! proof of possession they checked (`POST /api/v1/enrollments`, gateway
//! tokens), and this server decides and signs them with the device CA of
//! its `--pki` installation. The fleet's enrolled keys, pre-authorised
//! keys and pairing window live in its [`EnrollmentStore`], which every
//! replica shares: a device that re-enrolls through another gateway gets
//! the id it had, and pairing is opened once for the whole fleet
//! (`GET`/`PUT /api/v1/pairing`, `POST /api/v1/preauthorized`).
//!
//! A refusal is a problem document whose `code` names the protocol's
//! refusal (`pairing_closed`, `key_revoked`, `invalid_key`, ...): the
//! gateway passes it on to the device.
//!
//! [`EnrollmentStore`]: crate::store::EnrollmentStore

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmbed_gateway_api::{
    EnrollmentAnswer, EnrollmentOutcome, EnrollmentRequest, PairingStatus, SetPairing, refusal_code,
};
use wasmbed_pki::{DeviceIssuer, DevicePublicKey};
use wasmbed_protocol::{EnrollRefusal, NAME_LEN, PUBLIC_KEY_LEN};

use super::auth::Caller;
use super::devices::normalize_device_id;
use super::{ApiJson, ApiResult, AppState, Problem};
use crate::model::{Device, now_ms};
use crate::store::{EnrollmentRecord, PairingWindow};

/// The device CA this server signs enrollments with, if it has one.
pub type Signer = Option<Arc<DeviceIssuer>>;

/// The problem that refuses an enrollment for `reason`.
fn refused(reason: EnrollRefusal, detail: &str) -> Problem {
    let status = match reason {
        EnrollRefusal::InvalidKey | EnrollRefusal::BadProof => StatusCode::BAD_REQUEST,
        EnrollRefusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        EnrollRefusal::Internal | EnrollRefusal::Unknown(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::FORBIDDEN,
    };
    Problem::new(status, refusal_code(reason), detail)
}

/// A public key as hex: an uncompressed P-256 point on the curve.
fn parse_key(text: &str) -> ApiResult<[u8; PUBLIC_KEY_LEN]> {
    let invalid = || {
        refused(
            EnrollRefusal::InvalidKey,
            "public_key is not an uncompressed P-256 point in hex (130 digits, 04 || x || y)",
        )
    };
    let mut key = [0u8; PUBLIC_KEY_LEN];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| invalid())?;
    DevicePublicKey::from_sec1(&key).map_err(|_| invalid())?;
    Ok(key)
}

/// Whether a Device resource names `device_id` and is revoked.
async fn is_revoked(state: &AppState, device_id: &str) -> ApiResult<bool> {
    let devices = state.store.list::<Device>().await?;
    Ok(devices.iter().any(|device| {
        device.spec.revoked
            && device
                .spec
                .device_id
                .as_deref()
                .and_then(normalize_device_id)
                .is_some_and(|id| id == device_id)
    }))
}

/// The certificate for `device_id` (32 hex digits) and `key`.
fn certificate(issuer: &DeviceIssuer, device_id: &str, key: &[u8]) -> ApiResult<String> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(device_id, &mut id).map_err(|_| {
        tracing::error!(
            device_id,
            "a stored enrollment has an id that is not 32 hex digits"
        );
        Problem::internal()
    })?;
    let der = issuer.issue(id, key).map_err(|e| {
        tracing::error!(error = %e, "issuing a device certificate failed");
        refused(
            EnrollRefusal::Internal,
            "the device certificate could not be issued",
        )
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(der))
}

/// Decides and signs one enrollment a gateway forwards.
#[utoipa::path(
    post, path = "/api/v1/enrollments", tag = "enrollment",
    request_body = EnrollmentRequest,
    responses(
        (status = 200, description = "enrolled, or enrolled again with the same id", body = EnrollmentAnswer),
        (status = 400, description = "`invalid_key`, or a malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`pairing_closed`, `key_revoked`, or a token that is no gateway's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "this server has no device CA key (started without --pki)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enroll(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<EnrollmentRequest>,
) -> ApiResult<Json<EnrollmentAnswer>> {
    let Some(issuer) = state.device_issuer.clone() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_device_ca",
            "this API server signs no enrollments: start it with --pki DIR, an installation \
             holding the device CA key (device-ca-key.pem), or let gateways sign themselves",
        ));
    };
    let key = parse_key(&body.public_key)?;
    for (field, text) in [
        ("board", &body.board),
        ("firmware_version", &body.firmware_version),
    ] {
        if text.len() > NAME_LEN {
            return Err(Problem::bad_request(
                "invalid_body",
                format!("{field} is longer than {NAME_LEN} bytes"),
            ));
        }
        // Logged and stored: no line breaks or escapes from a peer.
        if text.chars().any(char::is_control) {
            return Err(Problem::bad_request(
                "invalid_body",
                format!("{field} holds control characters"),
            ));
        }
    }
    let key_hex = hex::encode(key);
    let gateway = caller.gateway.as_deref().unwrap_or("-");
    let enrollments = state.store.enrollments();
    if let Some(known) = enrollments.enrollment(&key_hex).await? {
        return reissue(&state, &issuer, &known, &key, gateway).await;
    }
    let window = enrollments.pairing().await?;
    if !window.is_open_at(now_ms()) && !enrollments.is_preauthorized(&key_hex).await? {
        tracing::info!(gateway, key = %key_hex, "enrollment refused: pairing is closed");
        return Err(refused(
            EnrollRefusal::PairingClosed,
            "pairing is closed and the key is not pre-authorised",
        ));
    }
    let new = EnrollmentRecord {
        public_key: key_hex,
        device_id: hex::encode(rand::random::<[u8; 16]>()),
        board: body.board,
        firmware_version: body.firmware_version,
        enrolled_at: now_ms(),
    };
    // Recorded before it is signed: an answer lost on its way is asked
    // for again and gets the same id.
    let stored = enrollments.enroll(&new).await?;
    if stored.device_id != new.device_id {
        // Another gateway enrolled the same key meanwhile.
        return reissue(&state, &issuer, &stored, &key, gateway).await;
    }
    let certificate = certificate(&issuer, &stored.device_id, &key)?;
    tracing::info!(gateway, device = %stored.device_id, board = %stored.board, outcome = "accepted", "device enrolled");
    Ok(Json(EnrollmentAnswer {
        device_id: stored.device_id,
        certificate,
        outcome: EnrollmentOutcome::Accepted,
    }))
}

/// A fresh certificate for an enrolled key, with the id it has, unless
/// its device was revoked.
async fn reissue(
    state: &AppState,
    issuer: &DeviceIssuer,
    known: &EnrollmentRecord,
    key: &[u8],
    gateway: &str,
) -> ApiResult<Json<EnrollmentAnswer>> {
    if is_revoked(state, &known.device_id).await? {
        tracing::info!(gateway, device = %known.device_id, "enrollment refused: the device was revoked");
        return Err(refused(
            EnrollRefusal::KeyRevoked,
            "the device with this key was revoked",
        ));
    }
    let certificate = certificate(issuer, &known.device_id, key)?;
    tracing::info!(gateway, device = %known.device_id, outcome = "reissued", "device enrolled again");
    Ok(Json(EnrollmentAnswer {
        device_id: known.device_id.clone(),
        certificate,
        outcome: EnrollmentOutcome::Reissued,
    }))
}

/// The pairing window as the API answers it.
fn pairing_status(window: PairingWindow, now: u64) -> PairingStatus {
    let open = window.is_open_at(now);
    PairingStatus {
        open,
        closes_at_ms: window.until.filter(|_| open),
    }
}

/// Whether devices may enroll now, through any gateway that forwards
/// enrollments.
#[utoipa::path(
    get, path = "/api/v1/pairing", tag = "enrollment",
    responses(
        (status = 200, body = PairingStatus),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_pairing(State(state): State<AppState>) -> ApiResult<Json<PairingStatus>> {
    let window = state.store.enrollments().pairing().await?;
    Ok(Json(pairing_status(window, now_ms())))
}

/// Opens a fleet-wide pairing window that closes by itself, or closes
/// pairing.
#[utoipa::path(
    put, path = "/api/v1/pairing", tag = "enrollment",
    request_body = SetPairing,
    responses(
        (status = 200, body = PairingStatus),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_pairing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<SetPairing>,
) -> ApiResult<Json<PairingStatus>> {
    let now = now_ms();
    // Checked when closing too: one contract with a gateway's pairing.
    let secs = body
        .duration_secs()
        .map_err(|why| Problem::bad_request("invalid_body", why))?;
    let window = if body.open {
        PairingWindow {
            open: true,
            until: Some(now.saturating_add(secs.saturating_mul(1000))),
        }
    } else {
        PairingWindow::default()
    };
    state.store.enrollments().set_pairing(window).await?;
    tracing::info!(token = %caller.token_id, open = window.open, until = ?window.until, "fleet-wide pairing set");
    Ok(Json(pairing_status(window, now)))
}

/// `POST /api/v1/preauthorized`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preauthorize {
    /// SEC1 uncompressed P-256 public key, hex (130 digits).
    pub public_key: String,
}

/// Lets one public key enroll, through any gateway, while pairing is
/// closed.
#[utoipa::path(
    post, path = "/api/v1/preauthorized", tag = "enrollment",
    request_body = Preauthorize,
    responses(
        (status = 201, description = "the key may enroll"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn preauthorize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Preauthorize>,
) -> ApiResult<StatusCode> {
    let key = parse_key(&body.public_key).map_err(|_| {
        Problem::bad_request(
            "invalid_key",
            "public_key is not an uncompressed P-256 point in hex (130 digits, 04 || x || y)",
        )
    })?;
    let key_hex = hex::encode(key);
    state
        .store
        .enrollments()
        .preauthorize(&key_hex, now_ms())
        .await?;
    tracing::info!(key = %key_hex, "key pre-authorised to enroll");
    Ok(StatusCode::CREATED)
}
