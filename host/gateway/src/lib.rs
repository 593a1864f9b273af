//! The Wasmbed gateway: the TLS 1.3 server devices connect to, and the
//! HTTP/JSON interface operators and the API server use.
//!
//! - [`connection`]: one task per device connection, driving the protocol's
//!   sans-IO [`GatewaySession`](wasmbed_protocol::session::GatewaySession).
//! - [`transfer`]: chunked module transfer with flow control and resume.
//! - [`store`]: the SQLite records that survive a restart.
//! - [`fleet`]: live, in-memory device state.
//! - [`signer`]: who signs enrollments: this gateway, with the device CA
//!   key, or the fleet's signer (the API server).
//! - [`pairing`]: pairing windows; [`revocation`]: revoked device keys;
//!   [`rate`]: the rate limits on enrollment and on what a peer can log.
//! - [`http`]: the HTTP/JSON interface and `/metrics`.

mod clock;
pub mod config;
mod connection;
pub mod fleet;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod pairing;
pub mod rate;
pub mod revocation;
pub mod signer;
pub mod store;
pub mod transfer;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use wasmbed_pki::{ClientRoots, Installation};

use clock::Clock;
pub use config::GatewayConfig;
use fleet::Fleet;
use limits::ConnectionLimits;
use metrics::Metrics;
use pairing::Pairing;
use rate::{Decision, KeyedLimiter, Limiter};
use revocation::Revocations;
use signer::{FleetSigner, Signing};
use store::{Store, StoreError};

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] wasmbed_pki::TlsConfigError),
    #[error("device CA: {0}")]
    Issuer(#[from] wasmbed_pki::IssueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything the connection tasks and HTTP handlers share.
pub(crate) struct Shared {
    config: GatewayConfig,
    store: Store,
    fleet: Fleet,
    metrics: Metrics,
    signing: Signing,
    roots: ClientRoots,
    acceptor: TlsAcceptor,
    limits: ConnectionLimits,
    modules: Mutex<HashMap<[u8; 32], Arc<[u8]>>>,
    next_connection: AtomicU64,
    clock: Clock,
    pairing: Pairing,
    revocations: Arc<Revocations>,
    enroll_per_source: KeyedLimiter<IpAddr>,
    enroll_total: Limiter,
    log_per_source: KeyedLimiter<IpAddr>,
}

/// How long a stopping gateway waits for its sessions' goodbyes.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Most source addresses a per-source rate limit tracks at once.
const MAX_TRACKED_SOURCES: usize = 65_536;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Shows how many device keys are revoked in the metrics.
    pub(crate) fn count_revocations(&self) {
        let revoked = i64::try_from(self.revocations.len()).unwrap_or(i64::MAX);
        self.metrics.revoked_devices.set(revoked);
    }

    /// Whether a warning caused by `source` may be logged now, and how
    /// many were suppressed before it. Suppressed lines are counted.
    fn may_log(&self, source: IpAddr) -> Option<u64> {
        match self.log_per_source.take(&wasmbed_httpd::source_of(source)) {
            Decision::Allowed { refused_before } => Some(refused_before),
            Decision::Refused => {
                self.metrics.log_lines_suppressed.inc();
                None
            }
        }
    }

    /// A module's bytes, from memory or the store.
    fn module(&self, sha256: &[u8; 32]) -> Result<Option<Arc<[u8]>>, StoreError> {
        let mut cache = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(module) = cache.get(sha256) {
            return Ok(Some(module.clone()));
        }
        let Some(bytes) = self.store.module(sha256)? else {
            return Ok(None);
        };
        let module: Arc<[u8]> = bytes.into();
        cache.insert(*sha256, module.clone());
        Ok(Some(module))
    }
}

/// A configured gateway, ready to serve.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway that signs enrollments itself, with the installation's
    /// device CA key; pairing and pre-authorised keys are its own.
    pub fn new(
        config: GatewayConfig,
        installation: &Installation,
        store: Store,
    ) -> Result<Gateway, GatewayError> {
        let issuer = Arc::new(installation.device_issuer()?);
        Gateway::with_signing(config, installation, store, Signing::Local(issuer))
    }

    /// A gateway that forwards enrollments (once it checked their proof
    /// and its rate limits) to the fleet's `signer`: it needs no device CA
    /// key, and pairing and pre-authorised keys are the signer's.
    pub fn with_fleet_signer(
        config: GatewayConfig,
        installation: &Installation,
        store: Store,
        signer: Arc<dyn FleetSigner>,
    ) -> Result<Gateway, GatewayError> {
        Gateway::with_signing(config, installation, store, Signing::Fleet(signer))
    }

    fn with_signing(
        config: GatewayConfig,
        installation: &Installation,
        store: Store,
        signing: Signing,
    ) -> Result<Gateway, GatewayError> {
        let revocations = Arc::new(Revocations::new(store.revoked_keys()?));
        let tls = wasmbed_pki::server_config_revocable(
            installation,
            Some(config.max_fragment_size),
            revocations.clone(),
        )?;
        let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let gateway = Gateway {
            shared: Arc::new(Shared {
                signing,
                roots: installation.client_roots(),
                acceptor: TlsAcceptor::from(tls),
                store,
                fleet: Fleet::default(),
                metrics: Metrics::default(),
                limits,
                modules: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(1),
                clock: Clock::new(),
                pairing: Pairing::default(),
                revocations,
                enroll_per_source: KeyedLimiter::new(
                    config.enroll_rate_per_source,
                    MAX_TRACKED_SOURCES,
                ),
                enroll_total: Limiter::new(config.enroll_rate_total),
                log_per_source: KeyedLimiter::new(config.log_rate_per_source, MAX_TRACKED_SOURCES),
                config,
            }),
        };
        gateway.shared.count_revocations();
        Ok(gateway)
    }

    /// The HTTP/JSON interface, to serve or to call in tests.
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn fleet(&self) -> &Fleet {
        &self.shared.fleet
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Whether devices may enroll: closed at start.
    pub fn pairing(&self) -> &Pairing {
        &self.shared.pairing
    }

    /// Waits (at most [`GatewayConfig::collect_grace`]) until the API
    /// server has read every result this gateway holds: its devices went
    /// to other gateways, and the controller collects what they left here.
    async fn await_collection(&self) {
        let grace = self.shared.config.collect_grace;
        if grace.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut told = false;
        loop {
            let left = match self.shared.store.uncollected_results() {
                Ok(left) => left,
                Err(e) => {
                    warn!(error = %e, "counting uncollected results failed");
                    return;
                }
            };
            if left == 0 {
                if told {
                    info!("every result collected");
                }
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    left,
                    "results not collected after {grace:?}: kept in the database for when this                      gateway runs again"
                );
                return;
            }
            if !told {
                info!(left, "waiting for the API server to collect results");
                told = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Accepts device connections on `devices` and serves HTTP on `http`
    /// (with the limits, and TLS if any, of [`GatewayConfig::http`] and
    /// [`GatewayConfig::http_tls`]) until `shutdown` completes; then says
    /// goodbye to every device, waits for the API server to collect the
    /// results it has not read ([`GatewayConfig::collect_grace`]), and
    /// stops serving HTTP.
    pub async fn serve(
        self,
        devices: TcpListener,
        http: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        info!(
            devices = %devices.local_addr()?,
            http = %http.local_addr()?,
            "gateway listening"
        );
        let router = self.router();
        let (http_stop_tx, mut http_stop) = watch::channel(false);
        let http_config = self.shared.config.http.clone();
        let http_tls = self.shared.config.http_tls.clone();
        let http_task = tokio::spawn(async move {
            let stopped = async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            };
            wasmbed_httpd::serve(http, router, http_tls, http_config, stopped).await
        });
        let (sessions, mut sessions_ended) = tokio::sync::mpsc::channel::<()>(1);
        let accept_task = tokio::spawn(connection::accept_loop(
            self.shared.clone(),
            devices,
            stop_rx,
            sessions,
        ));
        shutdown.await;
        let connected = self.shared.metrics.connected_devices.get();
        info!(
            connected,
            "gateway shutting down: devices are told to reconnect (through the load balancer,              to another gateway)"
        );
        let _ = stop_tx.send(true);
        if let Err(e) = accept_task.await {
            warn!(error = %e, "device listener task failed");
        }
        // Every session says goodbye (a `Restart`: devices reconnect after
        // their short jitter) before the process may exit.
        let drained = tokio::time::timeout(DRAIN_GRACE, sessions_ended.recv()).await;
        match drained {
            Ok(_) => info!("every device session closed"),
            Err(_) => warn!(
                left = self.shared.metrics.connected_devices.get(),
                "sessions still open after {DRAIN_GRACE:?}: closed without goodbye"
            ),
        }
        self.await_collection().await;
        let _ = http_stop_tx.send(true);
        match http_task.await {
            Ok(result) => result?,
            Err(e) => warn!(error = %e, "HTTP task failed"),
        }
        Ok(())
    }
}
