//! What both C-ABI tests need from the gateway's side.

// Test sizes are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

use sha2::Digest;
use wasmbed_protocol::session::GatewaySession;
use wasmbed_protocol::*;

/// Sends a whole deployment at once: start, every chunk, commit.
pub(crate) fn send_deployment(
    gateway: &mut GatewaySession<Vec<u8>>,
    deployment: DeploymentId,
    module: &[u8],
    chunk: usize,
    limits: Limits,
) {
    gateway
        .send(Downlink::DeployStart(DeployStart {
            deployment,
            application: ApplicationId(1),
            module_size: module.len() as u32,
            sha256: sha2::Sha256::digest(module).into(),
            chunk_size: chunk as u16,
            limits,
        }))
        .expect("established");
    for (i, data) in module.chunks(chunk).enumerate() {
        gateway
            .send(Downlink::DeployChunk(DeployChunk {
                deployment,
                offset: (i * chunk) as u32,
                data,
            }))
            .expect("established");
    }
    gateway
        .send(Downlink::DeployCommit(DeployCommit { deployment }))
        .expect("established");
}
