//! `/api/v1/gateways`. A gateway token may register, read and update
//! only the gateway it is bound to ([`Caller::check_gateway`]).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::devices::UpdateMetadata;
use super::{
    ApiJson, ApiQuery, ApiResult, AppState, ListQuery, NewMetadata, Page, Problem, object_meta,
    path_name, validate_metadata,
};
use crate::model::{Gateway, GatewaySpec, GatewayStatus};

/// `POST /api/v1/gateways`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateGateway {
    pub metadata: NewMetadata,
    pub spec: GatewaySpec,
}

/// `PUT /api/v1/gateways/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateGateway {
    pub metadata: UpdateMetadata,
    pub spec: GatewaySpec,
}

fn validate_spec(spec: &GatewaySpec) -> ApiResult<()> {
    let url = reqwest::Url::parse(&spec.http_endpoint).ok();
    let http_ok = url.is_some_and(|u| {
        u.scheme() == "https" && u.host().is_some() && u.query().is_none() && u.fragment().is_none()
    });
    if !http_ok {
        return Err(Problem::bad_request(
            "invalid_spec",
            "http_endpoint must be an https:// URL without query or fragment \
             (gateways serve their HTTP interface over mutual TLS)",
        ));
    }
    let device_ok = spec
        .device_endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !device_ok || spec.device_endpoint.len() > 255 {
        return Err(Problem::bad_request(
            "invalid_spec",
            "device_endpoint must be host:port",
        ));
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/api/v1/gateways", tag = "gateways",
    request_body = CreateGateway,
    responses(
        (status = 201, body = Gateway),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it, or a gateway token names another gateway", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateGateway>,
) -> ApiResult<(StatusCode, Json<Gateway>)> {
    caller.check_gateway(&body.metadata.name)?;
    validate_metadata(&body.metadata)?;
    validate_spec(&body.spec)?;
    let gateway = Gateway {
        metadata: object_meta(body.metadata),
        spec: body.spec,
        status: GatewayStatus::default(),
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create(&gateway).await?),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/gateways", tag = "gateways",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Gateway>, headers(("X-Continue" = String, description = "The `continue` token of the next page; only when `limit` was given and more items remain"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it, or a gateway token names another gateway", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Page<Gateway>> {
    query.page::<Gateway>(&state.store).await
}

#[utoipa::path(
    get, path = "/api/v1/gateways/{name}", tag = "gateways",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Gateway),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it, or a gateway token names another gateway", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Gateway>> {
    caller.check_gateway(&name)?;
    path_name(&name)?;
    Ok(Json(state.store.fetch::<Gateway>(&name).await?))
}

/// Replaces labels and spec, e.g. when a gateway comes back on other
/// ports; the status is kept. Refused with 409 when the gateway changed
/// since `metadata.resource_version`.
#[utoipa::path(
    put, path = "/api/v1/gateways/{name}", tag = "gateways",
    params(("name" = String, Path)),
    request_body = UpdateGateway,
    responses(
        (status = 200, body = Gateway),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it, or a gateway token names another gateway", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateGateway>,
) -> ApiResult<Json<Gateway>> {
    caller.check_gateway(&name)?;
    path_name(&name)?;
    validate_metadata(&NewMetadata {
        name: name.clone(),
        labels: body.metadata.labels.clone(),
    })?;
    validate_spec(&body.spec)?;
    let mut gateway: Gateway = state.store.fetch(&name).await?;
    gateway.metadata.labels = body.metadata.labels;
    gateway.metadata.resource_version = body.metadata.resource_version;
    gateway.spec = body.spec;
    Ok(Json(state.store.replace(&gateway).await?))
}

/// Forgets a gateway. Its devices keep their deployments there; the
/// controller stops polling them.
#[utoipa::path(
    delete, path = "/api/v1/gateways/{name}", tag = "gateways",
    params(("name" = String, Path)),
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role does not allow it, or a gateway token names another gateway", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name(&name)?;
    state.store.delete::<Gateway>(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
