//! Gateway settings and their defaults.

use std::sync::Arc;
use std::time::Duration;

use wasmbed_httpd::HttpServerConfig;
use wasmbed_protocol::session;

use crate::limits::admission_limits;
pub use crate::rate::RateLimit;

/// Everything a gateway can be tuned with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing (no ClientHello) for this long is
    /// dropped, well before `handshake_timeout`: idle sockets cannot hold
    /// the admission places for long.
    pub hello_timeout: Duration,
    /// A write to a device that takes longer ends its session.
    pub write_timeout: Duration,
    /// Most open device connections; by default derived from the
    /// open-files limit ([`admission_limits`]).
    pub max_connections: usize,
    /// Most open connections from one source address; by default derived
    /// from the open-files limit ([`admission_limits`]).
    pub max_connections_per_ip: usize,
    /// The HTTP/JSON interface's connection cap, timeouts and allowed
    /// `Host` names; its cap by default derived from the open-files limit.
    pub http: HttpServerConfig,
    /// TLS for the HTTP/JSON interface, best from
    /// [`GatewayConfig::with_control_ca`]. Its clients' certificates reach
    /// the routes as [`wasmbed_httpd::PeerCertificates`]; every route but
    /// `/healthz` and `/openapi.json` refuses a request without one, so
    /// with `None` (plain HTTP) only those two answer.
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
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
    /// Enrollments from one source address; more are refused
    /// `rate-limited`.
    pub enroll_rate_per_source: RateLimit,
    /// Enrollments from all sources together.
    pub enroll_rate_total: RateLimit,
    /// Warning lines a source address can cause; the rest are counted
    /// (`wasmbed_gateway_log_lines_suppressed`) and summed up in the next
    /// line allowed.
    pub log_rate_per_source: RateLimit,
    /// Execution results kept per deployment; storing one more drops the
    /// oldest (`wasmbed_gateway_results_dropped`).
    pub max_results_per_deployment: usize,
    /// How long a stopping gateway, once its devices are gone, keeps its
    /// HTTP interface up for the API server to collect the results it has
    /// not read yet (zero: it does not wait).
    pub collect_grace: std::time::Duration,
}

impl Default for GatewayConfig {
    /// The defaults, with connection limits fitted to the process's
    /// open-files limit in force now.
    fn default() -> Self {
        GatewayConfig::for_open_files(wasmbed_httpd::open_files::soft_limit().unwrap_or(u64::MAX))
    }
}

impl GatewayConfig {
    /// Serves the HTTP interface over mutual TLS: the installation's
    /// gateway certificate, and clients with a certificate of `control_ca`
    /// (`control-ca.pem`).
    pub fn with_control_ca(
        mut self,
        installation: &wasmbed_pki::Installation,
        control_ca: &rustls::pki_types::CertificateDer<'static>,
    ) -> Result<GatewayConfig, wasmbed_pki::TlsConfigError> {
        self.http_tls = Some(wasmbed_pki::gateway_http_server_config(
            installation,
            control_ca,
        )?);
        Ok(self)
    }

    /// The defaults, with connection limits fitted to a process that may
    /// have `open_files` files open.
    pub fn for_open_files(open_files: u64) -> GatewayConfig {
        let limits = admission_limits(open_files, None);
        GatewayConfig {
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(30),
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            http: HttpServerConfig {
                max_connections: limits.http_max_connections,
                // Clients without a control certificate (health probes)
                // cannot take the places of those with one.
                max_anonymous_connections: Some(16),
                ..HttpServerConfig::default()
            },
            http_tls: None,
            max_fragment_size: wasmbed_pki::DEFAULT_MAX_FRAGMENT_SIZE,
            session: session::GatewayConfig::default(),
            chunk_size: wasmbed_protocol::DEFAULT_CHUNK_LEN,
            transfer_window: 8 * 1024,
            max_pending_deployments: 16,
            // A factory line or a NAT may put many devices behind one
            // address: a burst of 20, then 5 a second, from each.
            enroll_rate_per_source: RateLimit {
                burst: 20,
                per_second: 5,
            },
            // Enrollment verifies a signature, signs a certificate and
            // writes the store: 50 a second keeps it a small part of a core.
            enroll_rate_total: RateLimit {
                burst: 100,
                per_second: 50,
            },
            log_rate_per_source: RateLimit {
                burst: 20,
                per_second: 1,
            },
            max_results_per_deployment: 100,
            collect_grace: std::time::Duration::ZERO,
        }
    }
}
