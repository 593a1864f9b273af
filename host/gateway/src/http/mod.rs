//! The gateway's HTTP/JSON interface, for the API server and operators.
//!
//! Served over TLS with the gateway's certificate; every route but
//! `/healthz` and `/openapi.json` needs a client certificate of the
//! installation's control CA ([`auth`]). The OpenAPI document at
//! `/openapi.json` ([`openapi`]) describes every route:
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness (open) |
//! | `GET /openapi.json` | the OpenAPI 3.1 document (open) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/devices`, `GET /v1/devices/{id}` | enrolled devices and their live state |
//! | `DELETE /v1/devices/{id}` | revoke: the key is refused from now on, the record and deployments go |
//! | `GET /v1/pairing`, `PUT /v1/pairing` | whether devices may enroll: `{"open": true, "duration_s": 600}` opens a window that closes by itself |
//! | `POST /v1/preauthorized` | allow one public key to enroll while pairing is closed |
//! | `POST /v1/deployments` | deploy a module to devices |
//! | `GET /v1/deployments[?device=ID]`, `GET /v1/deployments/{id}` | deployment status |
//! | `POST /v1/deployments/{id}/stop`, `DELETE /v1/deployments/{id}` | stop, remove |
//! | `GET /v1/results[?deployment=ID&limit=N]` | execution results, newest first |
//!
//! Errors are `{"code": ..., "message": ...}` ([`ErrorBody`]).

mod auth;
mod deployments;
mod devices;
mod error;
pub mod openapi;

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

pub use auth::InProcessCaller;
pub use devices::{Preauthorize, parse_device_id};
pub use error::ApiError;
pub use wasmbed_gateway_api::SetPairing;
pub use wasmbed_gateway_api::{
    AppView, DeployRequest, DeploymentState, DeploymentView, Desired, DeviceView, ErrorBody,
    LimitsJson, Presence, ResultView, RuntimeView, ValueJson,
};

use crate::Shared;

/// Largest module accepted, before base64.
pub const MAX_MODULE_SIZE: usize = 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/devices", get(devices::list_devices))
        .route(
            "/v1/devices/{id}",
            get(devices::get_device).delete(devices::revoke_device),
        )
        .route(
            "/v1/pairing",
            get(devices::get_pairing).put(devices::set_pairing),
        )
        .route("/v1/preauthorized", post(devices::preauthorize))
        .route(
            "/v1/deployments",
            get(deployments::list_deployments).post(deployments::create_deployments),
        )
        .route(
            "/v1/deployments/{id}",
            get(deployments::get_deployment).delete(deployments::remove_deployment),
        )
        .route(
            "/v1/deployments/{id}/stop",
            post(deployments::stop_deployment),
        )
        .route(
            "/v1/deployments/{id}/forget",
            post(deployments::forget_deployment),
        )
        .route("/v1/results", get(deployments::list_results))
        .route_layer(axum::middleware::from_fn(auth::require_control_client));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(2 * MAX_MODULE_SIZE))
        .with_state(shared)
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "the metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody),
    ),
)]
pub(crate) async fn metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}
