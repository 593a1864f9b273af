//! The OpenAPI 3 document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{applications, auth, devices, gateways, problem};
use crate::model;

#[derive(OpenApi)]
#[openapi(
    info(title = "Wasmbed API", description = "Devices, applications and gateways of a Wasmbed installation."),
    paths(
        auth::create_token,
        devices::create, devices::list, devices::get_one, devices::update, devices::delete,
        applications::create, applications::list, applications::get_one, applications::update, applications::delete,
        applications::results,
        gateways::create, gateways::list, gateways::get_one, gateways::update, gateways::delete,
    ),
    components(schemas(
        problem::Problem,
        model::ObjectMeta, model::Device, model::DeviceSpec, model::DeviceStatus,
        model::Application, model::ApplicationSpec, model::ApplicationStatus,
        model::ExecutionResult, model::WasmValue,
        model::Gateway, model::GatewaySpec, model::GatewayStatus,
    )),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
