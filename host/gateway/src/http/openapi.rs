//! The OpenAPI 3.1 document of the gateway's HTTP interface, generated
//! from the handlers and types and served at `/openapi.json`.

use utoipa::openapi::security::SecurityScheme;
use utoipa::{Modify, OpenApi};

use wasmbed_gateway_api::{
    AppView, DeployRequest, DeploymentState, DeploymentView, Desired, DeviceView, ErrorBody,
    ForgetRequest, LimitsJson, Presence, ResultView, RuntimeView, ValueJson,
};

use super::{deployments, devices};
use crate::pairing::PairingStatus;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wasmbed gateway",
        description = "The HTTP interface of a Wasmbed gateway: its enrolled devices, pairing, deployments and results. Over TLS; every route but /healthz and /openapi.json needs a client certificate of the installation's control CA."
    ),
    paths(
        super::metrics,
        devices::list_devices, devices::get_device, devices::revoke_device,
        devices::get_pairing, devices::set_pairing, devices::preauthorize,
        deployments::create_deployments, deployments::list_deployments,
        deployments::get_deployment, deployments::stop_deployment,
        deployments::remove_deployment, deployments::forget_deployment,
        deployments::list_results,
    ),
    components(schemas(
        ErrorBody, DeviceView, RuntimeView, AppView, Presence, wasmbed_gateway_api::SetPairing,
        devices::Preauthorize, PairingStatus, DeployRequest, LimitsJson, ValueJson,
        DeploymentView, Desired, ResultView, DeploymentState, ForgetRequest,
    )),
    modifiers(&MutualTls),
    security(("control_client_certificate" = [])),
)]
struct GatewayDoc;

/// The security scheme: a TLS client certificate.
struct MutualTls;

impl Modify for MutualTls {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "control_client_certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "a client certificate of the installation's control CA (wasmbed certs issue-client)"
                        .to_owned(),
                ),
                extensions: None,
            },
        );
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    GatewayDoc::openapi()
}
