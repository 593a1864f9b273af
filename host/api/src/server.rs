//! The API server as one call: open the SQLite store, load (or make) the
//! tokens, run the [`Controller`] and serve [`http::app`] until shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), wasmbed_api::server::ServerError> {
//! use wasmbed_api::server::{ApiServer, ApiServerConfig};
//!
//! let config = ApiServerConfig::default();
//! let server = ApiServer::open(&config).await?;
//! if let Some(token) = server.admin_token() {
//!     eprintln!("admin token (shown once): {token}");
//! }
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};
use wasmbed_httpd::HttpServerConfig;

use crate::controller::leader::{AlwaysLeader, Leadership, reconcile_while_leading};
use crate::controller::{Controller, ControllerConfig};
use crate::http::events::EventStreamLimits;
use crate::http::{self, AppState, Auth};
use crate::store::{SqliteStore, Store, StoreError};

/// The default address of the REST API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// File descriptors the API server keeps for itself beyond its HTTP
/// connections: standard streams, the runtime, the listener, the SQLite
/// database and its journal, and the controller's connections to gateways.
pub const FD_RESERVE: u64 = 128;

/// The default HTTP connection cap for a process that may have
/// `open_files` files open: [`wasmbed_httpd::DEFAULT_MAX_CONNECTIONS`], but
/// no more than the files left after [`FD_RESERVE`] (at least one).
pub fn http_max_connections_for(open_files: u64) -> usize {
    let room = usize::try_from(open_files.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    wasmbed_httpd::DEFAULT_MAX_CONNECTIONS.min(room).max(1)
}

/// Where the server listens, where it keeps its data, how the controller runs.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Address of the REST API (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// SQLite database file; created if missing.
    pub db: PathBuf,
    pub controller: ControllerConfig,
    /// Connection cap, timeouts and allowed `Host` names of the REST API;
    /// by default the cap is fitted to the open-files limit
    /// ([`http_max_connections_for`]).
    pub http: HttpServerConfig,
    /// How many event streams may be open.
    pub events: EventStreamLimits,
    /// TLS for the REST API (`wasmbed api --tls-cert`); `None`: plain HTTP,
    /// which is fine on loopback only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Which replica reconciles: this one alone by default; on Kubernetes,
    /// the holder of a Lease.
    pub leadership: Arc<dyn Leadership>,
    /// How often the tokens are read again from the store, when other API
    /// servers share it (replicas over one [`DirStore`](crate::store::DirStore)):
    /// a token made or revoked at one counts at the others within this
    /// time. `None` (the default): this server alone writes them.
    pub token_reload: Option<Duration>,
    /// The device CA that signs the enrollments gateways forward
    /// (`POST /api/v1/enrollments`); `None` (the default): they are
    /// answered 503, and gateways sign themselves.
    pub device_issuer: Option<Arc<wasmbed_pki::DeviceIssuer>>,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        let open_files = wasmbed_httpd::open_files::soft_limit().unwrap_or(u64::MAX);
        ApiServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: PathBuf::from("wasmbed-api.db"),
            controller: ControllerConfig::default(),
            http: HttpServerConfig {
                max_connections: http_max_connections_for(open_files),
                ..HttpServerConfig::default()
            },
            events: EventStreamLimits::default(),
            tls: None,
            leadership: Arc::new(AlwaysLeader),
            token_reload: None,
            device_issuer: None,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// An opened API server, ready to serve.
#[derive(Debug)]
pub struct ApiServer {
    state: AppState,
    admin_token: Option<String>,
    controller: ControllerConfig,
    http: HttpServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    leadership: Arc<dyn Leadership>,
    token_reload: Option<Duration>,
}

impl ApiServer {
    /// Opens (creating if needed) the database and loads the tokens; a new
    /// database gets an admin token, returned by [`admin_token`](Self::admin_token).
    pub async fn open(config: &ApiServerConfig) -> Result<ApiServer, ServerError> {
        let backend = SqliteStore::open(&config.db).map_err(|source| ServerError::Open {
            path: config.db.clone(),
            source,
        })?;
        ApiServer::over(Store::sqlite(backend), config).await
    }

    /// A server over an already opened store, with the default HTTP limits
    /// and event stream bounds.
    pub async fn with_store(
        store: Store,
        controller: ControllerConfig,
    ) -> Result<ApiServer, ServerError> {
        let config = ApiServerConfig {
            controller,
            ..ApiServerConfig::default()
        };
        ApiServer::over(store, &config).await
    }

    /// A server over an already opened store (another backend than
    /// `config.db`'s, say), with `config`'s limits.
    pub async fn over(store: Store, config: &ApiServerConfig) -> Result<ApiServer, ServerError> {
        let (auth, admin_token) = Auth::bootstrap(&store).await?;
        Ok(ApiServer {
            state: AppState {
                device_issuer: config.device_issuer.clone(),
                ..AppState::with_stream_limits(store, auth, config.events)
            },
            admin_token,
            controller: config.controller.clone(),
            http: config.http.clone(),
            tls: config.tls.clone(),
            leadership: config.leadership.clone(),
            token_reload: config.token_reload,
        })
    }

    /// The admin token made when the database was new; `None` when it
    /// already had one (only its hash is stored).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The store, for callers that register resources in process.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Runs the controller and serves the REST API on `listener` until
    /// `shutdown` completes; then stops the controller and lets requests in
    /// flight finish within the HTTP shutdown grace (event streams, which
    /// never finish on their own, are closed after it).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let store = self.state.store.clone();
        let controller_config = self.controller.clone();
        let leadership = self.leadership.clone();
        let controller_stop = stop_rx.clone();
        let controller_task = tokio::spawn(async move {
            reconcile_while_leading(
                leadership.as_ref(),
                || {
                    let controller = Controller::new(&store, controller_config.clone());
                    move |halted: tokio::sync::oneshot::Receiver<()>| {
                        controller.run(async move {
                            let _ = halted.await;
                        })
                    }
                },
                controller_stop,
            )
            .await;
        });
        if let Some(every) = self.token_reload {
            let auth = self.state.auth.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = auth.reload().await {
                        warn!(error = %e, "reading the shared tokens again failed; the ones read last still count");
                    }
                }
            });
        }
        info!(listen = %listener.local_addr()?, "API server listening");
        let router = http::app(self.state);
        let mut http_stop = stop_rx;
        let http_config = self.http;
        let tls = self.tls;
        let http_task = tokio::spawn(async move {
            let stopped = async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            };
            wasmbed_httpd::serve(listener, router, tls, http_config, stopped).await
        });
        shutdown.await;
        info!("API server shutting down");
        let _ = stop_tx.send(true);
        if let Err(e) = controller_task.await {
            warn!(error = %e, "controller task failed");
        }
        match http_task.await {
            Ok(result) => result?,
            Err(e) => warn!(error = %e, "HTTP task failed"),
        }
        Ok(())
    }
}

/// Opens the server of `config`, hands a newly made admin token to
/// `on_admin_token` (once, before serving), and serves on `listener` until
/// `shutdown` completes.
pub async fn serve(
    config: ApiServerConfig,
    listener: TcpListener,
    on_admin_token: impl FnOnce(&str),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let server = ApiServer::open(&config).await?;
    if let Some(token) = server.admin_token() {
        on_admin_token(token);
    }
    server.serve(listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_cap_fits_inside_the_open_files_limit() {
        assert_eq!(http_max_connections_for(1_048_576), 512);
        assert_eq!(http_max_connections_for(1024), 512);
        assert_eq!(http_max_connections_for(256), 128);
        assert_eq!(http_max_connections_for(100), 1);
    }

    async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> reqwest::StatusCode {
        let mut request = reqwest::Client::new().get(format!("http://{addr}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request").status()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_health_and_refuses_requests_without_a_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ApiServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            db: dir.path().join("api.db"),
            ..ApiServerConfig::default()
        };
        let listener = TcpListener::bind(config.listen).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (token_tx, token_rx) = std::sync::mpsc::channel::<String>();
        let server = tokio::spawn(serve(
            config.clone(),
            listener,
            move |token| token_tx.send(token.to_owned()).expect("send token"),
            async move {
                let _ = stop_rx.await;
            },
        ));
        // The token is handed over before serving starts.
        let token = tokio::task::spawn_blocking(move || {
            token_rx.recv_timeout(std::time::Duration::from_secs(10))
        })
        .await
        .expect("join")
        .expect("an admin token for a new database");
        assert!(token.starts_with("wbd_"), "{token}");

        assert_eq!(get(addr, "/healthz", None).await, 200);
        assert_eq!(get(addr, "/api/v1/devices", None).await, 401);
        assert_eq!(get(addr, "/api/v1/devices", Some("wbd_nope")).await, 401);
        assert_eq!(get(addr, "/api/v1/devices", Some(&token)).await, 200);

        // An open event stream (a dashboard) does not hold the shutdown up.
        let events = reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/events"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("event stream");
        assert_eq!(events.status(), 200);
        stop_tx.send(()).expect("stop");
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("stops in time")
            .expect("join")
            .expect("served");
        drop(events);

        // The same database again: the admin token is not shown twice, and
        // the first one still works.
        let server = ApiServer::open(&config).await.expect("reopen");
        assert_eq!(server.admin_token(), None);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stop_rx.await;
        }));
        assert_eq!(get(addr, "/api/v1/devices", Some(&token)).await, 200);
        stop_tx.send(()).expect("stop");
        task.await.expect("join").expect("served");
    }
}
