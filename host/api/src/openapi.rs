//! The OpenAPI 3 document, generated from the handlers and types.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::http::{applications, auth, devices, enrollments, gateways, problem};
use crate::model;

#[derive(OpenApi)]
#[openapi(
    info(title = "Wasmbed API", description = "Devices, applications and gateways of a Wasmbed installation."),
    paths(
        auth::create_token, auth::list_tokens, auth::revoke_token,
        devices::create, devices::list, devices::get_one, devices::update, devices::delete, devices::revoke,
        applications::create, applications::list, applications::get_one, applications::update, applications::delete,
        applications::results,
        gateways::create, gateways::list, gateways::get_one, gateways::update, gateways::delete,
        enrollments::enroll, enrollments::get_pairing, enrollments::set_pairing, enrollments::preauthorize,
    ),
    components(schemas(
        problem::Problem,
        auth::CreateToken, auth::TokenInfo, auth::CreatedToken, crate::store::Role,
        model::ObjectMeta, model::Device, model::DeviceSpec, model::DeviceStatus, model::DeviceRuntime,
        model::Application, model::ApplicationSpec, model::ApplicationStatus,
        model::ExecutionResult, model::WasmValue,
        model::Gateway, model::GatewaySpec, model::GatewayStatus,
        wasmbed_gateway_api::EnrollmentRequest, wasmbed_gateway_api::EnrollmentAnswer,
        wasmbed_gateway_api::EnrollmentOutcome,
        wasmbed_gateway_api::PairingStatus, wasmbed_gateway_api::SetPairing, enrollments::Preauthorize,
    )),
    modifiers(&BearerScheme, &RoleRefusals),
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

/// Documents the 403 of every operation that needs a token and does not
/// say it already: any route refuses some role (a gateway token may only
/// touch its own gateway).
struct RoleRefusals;

impl Modify for RoleRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
            ];
            for operation in operations.into_iter().flatten() {
                add_forbidden(operation);
            }
        }
    }
}

fn add_forbidden(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    if !responses.contains_key("401") || responses.contains_key("403") {
        return;
    }
    let problem = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    responses.insert(
        "403".to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description("the token's role does not allow it")
                .content("application/problem+json", problem)
                .build(),
        ),
    );
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
