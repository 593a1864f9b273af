//! The HTTP server loop of Wasmbed's API server and gateway: an
//! [`axum::Router`] served over HTTP/1.1 (optionally TLS) with the limits
//! a server facing untrusted clients needs, which `axum::serve` lacks.
//!
//! - **Connection cap**: at most [`HttpServerConfig::max_connections`]
//!   open; one more is answered `503` and closed at once (closed without an
//!   answer on TLS), so the accept loop never blocks and file descriptors
//!   stay bounded.
//! - **Header-read timeout**: a request head must arrive within
//!   [`header_read_timeout`](HttpServerConfig::header_read_timeout) of its
//!   first byte (the first one within it of connecting).
//! - **Idle timeout**: a connection with no request in flight that sends
//!   nothing for [`idle_timeout`](HttpServerConfig::idle_timeout) is
//!   closed, and so is one whose client takes none of a response for that
//!   long. A request in flight, an event stream say, is not idle.
//! - **Request body timeout**: a body must arrive within
//!   [`request_body_timeout`](HttpServerConfig::request_body_timeout) of
//!   its head; otherwise `408` and the connection is closed.
//! - **TLS**: with a [`rustls::ServerConfig`], connections are TLS, the
//!   handshake bounded by
//!   [`tls_handshake_timeout`](HttpServerConfig::tls_handshake_timeout); the
//!   client's certificate chain, if it sent one (and the configuration's
//!   verifier accepted it), is in each request's extensions as
//!   [`PeerCertificates`]. Only HTTP/1.1 is spoken (ALPN `http/1.1`).
//! - **Host check**: on a loopback listener, a request whose `Host` is not
//!   a loopback name (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`,
//!   any port) nor one of
//!   [`extra_allowed_hosts`](HttpServerConfig::extra_allowed_hosts) gets
//!   `421 Misdirected Request`: a web page cannot reach the server through
//!   DNS rebinding. A non-loopback listener without TLS logs a warning.
//! - **Shutdown**: requests in flight get
//!   [`shutdown_grace`](HttpServerConfig::shutdown_grace) to finish, then
//!   what is still open (event streams) is closed.
//!
//! Every request also carries the client's address as
//! [`axum::extract::ConnectInfo<SocketAddr>`]. Refusals are counted in
//! [`ServerStats`] and logged at most once per [`stats::LOG_INTERVAL`] per
//! kind.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use wasmbed_httpd::HttpServerConfig;
//!
//! let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! wasmbed_httpd::serve(listener, router, None, HttpServerConfig::default(), shutdown).await
//! # }
//! ```

mod activity;
mod body;
mod config;
mod connection;
mod host;
pub mod open_files;
mod sources;

pub use sources::source_of;
pub mod stats;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use config::*;
pub use stats::{Refusal, ServerStats};

use connection::Shared;
use host::HostCheck;
use sources::Sources;

/// The certificate chain a TLS client presented, leaf first, as verified
/// by the server configuration's client verifier. In the extensions of
/// every request of that connection; absent on plain HTTP and when the
/// client sent no certificate.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// How long the accept loop pauses after `accept` failed for lack of
/// resources (file descriptors), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The answer to a connection beyond the cap.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 28\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
too many connections; retry\n";

/// A server, before it serves: its configuration, TLS and counters.
#[derive(Debug)]
pub struct HttpServer {
    config: HttpServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    stats: Arc<ServerStats>,
}

impl HttpServer {
    /// A plain HTTP server with these limits.
    pub fn new(config: HttpServerConfig) -> HttpServer {
        HttpServer {
            config,
            tls: None,
            stats: Arc::default(),
        }
    }

    /// Serves TLS with `tls` (`None`: plain HTTP). Its ALPN list is replaced
    /// by `http/1.1`, the only protocol served.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        self.tls = tls;
        self
    }

    /// The server's counters, live while it serves.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serves `router` on `listener` until `shutdown` completes; then stops
    /// accepting, lets requests in flight finish within the shutdown grace,
    /// closes what is left and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let listen = listener.local_addr()?;
        self.stats.set_listen(listen);
        let loopback = listen.ip().to_canonical().is_loopback();
        if !loopback && self.tls.is_none() {
            warn!(
                %listen,
                "serving plain HTTP on a non-loopback address: anyone who can reach it can read \
                 and change what is sent; bind a loopback address or use TLS"
            );
        }
        let anonymous = match (&self.tls, self.config.max_anonymous_connections) {
            (Some(_), Some(max)) => Some(Arc::new(Semaphore::new(max))),
            _ => None,
        };
        let sources = Sources::new(self.config.max_connections_per_source);
        let shared = Arc::new(Shared {
            router,
            host_check: HostCheck::new(&self.config.extra_allowed_hosts),
            acceptor: self.tls.map(|tls| TlsAcceptor::from(http1_only(tls))),
            anonymous,
            config: self.config,
            stats: self.stats,
        });
        info!(
            %listen,
            tls = shared.acceptor.is_some(),
            max_connections = shared.config.max_connections,
            "HTTP server listening"
        );
        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
                // Reap finished connection tasks as they end.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    shared.stats.record(Refusal::AcceptFailed, Some(&e));
                    if !is_per_connection(&e) {
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refuse_over_capacity(tcp, shared.acceptor.is_none());
                shared.stats.record(Refusal::ConnectionLimit, Some(&peer));
                continue;
            };
            let Some(source_slot) = sources.admit(peer.ip()) else {
                refuse_over_capacity(tcp, shared.acceptor.is_none());
                shared.stats.record(Refusal::SourceLimit, Some(&peer));
                continue;
            };
            let open = shared.stats.connection_opened();
            let shared = shared.clone();
            let stop = stop_rx.clone();
            connections.spawn(async move {
                connection::run(shared, tcp, peer, open, stop).await;
                drop((slot, source_slot));
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        // Each connection ends within the grace after the stop signal.
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// Serves `router` on `listener` (TLS when `tls` is given) with `config`'s
/// limits until `shutdown` completes; see [`HttpServer::serve`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: HttpServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    HttpServer::new(config)
        .with_tls(tls)
        .serve(listener, router, shutdown)
        .await
}

/// `tls` offering only HTTP/1.1 in ALPN.
fn http1_only(tls: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    if tls.alpn_protocols == [b"http/1.1".to_vec()] {
        return tls;
    }
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(tls)
}

/// Whether an `accept` error concerns only the one connection (the next
/// `accept` may succeed at once) rather than the process's resources.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Answers a connection beyond the cap `503` (plain HTTP only) and closes
/// it, without waiting for anything.
fn refuse_over_capacity(tcp: TcpStream, plain_http: bool) {
    // Take the request bytes that already arrived (a bounded amount: this
    // runs on the accept loop): closing a socket with unread data sends a
    // reset, which may destroy the answer in flight.
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(tcp.try_read(&mut scratch), Ok(n) if n > 0) {
            break;
        }
    }
    if plain_http {
        // A new socket's send buffer is empty: this does not block, and a
        // partial write only shortens the answer.
        let _ = tcp.try_write(OVER_CAPACITY);
    }
}
