//! Who may call the HTTP interface: a TLS client with a certificate of the
//! installation's control CA (the API server, an operator's
//! `wasmbed certs issue-client` certificate). The TLS configuration
//! verifies the certificate ([`wasmbed_pki::gateway_http_server_config`]);
//! this layer refuses every request that did not present one. Only
//! `/healthz` and `/openapi.json` are open.
//!
//! Mutual TLS rather than bearer tokens: the interface carries modules and
//! control of devices across the network, so it needs TLS and server
//! authentication anyway, and a client certificate then authenticates
//! without a shared secret on the gateway, checked offline (no call to the
//! API server, which may be down).

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wasmbed_httpd::PeerCertificates;

use super::error::ApiError;

/// Marks a request made in this process (through
/// [`Gateway::router`](crate::Gateway::router), not the network) by `who`:
/// it needs no certificate. Nothing from outside the process can set a
/// request extension.
#[derive(Debug, Clone, Copy)]
pub struct InProcessCaller(pub &'static str);

/// Refuses (401) a request without a verified control client certificate;
/// logs who made each change.
pub(crate) async fn require_control_client(request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let client = extensions
        .get::<PeerCertificates>()
        .and_then(|chain| chain.0.first())
        .map(|leaf| wasmbed_pki::certificate_common_name(leaf).unwrap_or_default())
        .or_else(|| {
            extensions
                .get::<InProcessCaller>()
                .map(|caller| format!("in process: {}", caller.0))
        });
    let Some(client) = client else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a client certificate of the installation's control CA is required \
             (wasmbed certs issue-client)",
        )
        .into_response();
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        tracing::info!(%client, method = %request.method(), path = %request.uri().path(), "control request");
    }
    next.run(request).await
}
