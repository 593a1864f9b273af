//! Gateway settings and their defaults.

use std::time::Duration;

use wasmbed_protocol::session;

/// Everything a gateway can be tuned with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// A write to a device that takes longer ends its session.
    pub write_timeout: Duration,
    /// Most open device connections.
    pub max_connections: usize,
    /// Most open connections from one source address.
    pub max_connections_per_ip: usize,
    /// Largest TLS record plaintext sent; small enough for a device's
    /// 2 KiB receive buffer.
    pub max_fragment_size: usize,
    /// Frame size, heartbeat interval and liveness.
    pub session: session::GatewayConfig,
    /// Module chunk size.
    pub chunk_size: u16,
    /// Module bytes in flight per transfer before the device acknowledges.
    pub transfer_window: usize,
    /// Most unfinished deployments per device; more are refused.
    pub max_pending_deployments: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 50_000,
            max_connections_per_ip: 20_000,
            max_fragment_size: wasmbed_pki::DEFAULT_MAX_FRAGMENT_SIZE,
            session: session::GatewayConfig::default(),
            chunk_size: wasmbed_protocol::DEFAULT_CHUNK_LEN,
            transfer_window: 8 * 1024,
            max_pending_deployments: 16,
        }
    }
}
