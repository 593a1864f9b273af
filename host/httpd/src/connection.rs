//! One connection: TLS handshake (when configured), then HTTP/1.1 requests
//! through the router, watched for slow and idle clients.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::activity::{Activity, Timeouts, Watched};
use crate::body::{GuardedBody, TimedBody};
use crate::host::HostCheck;
use crate::stats::{OpenConnection, Refusal, ServerStats};
use crate::{HttpServerConfig, PeerCertificates};

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: HttpServerConfig,
    /// Applied to connections made to a loopback address.
    pub(crate) host_check: HostCheck,
    pub(crate) acceptor: Option<TlsAcceptor>,
    /// Places for connections without a client certificate, when bounded.
    pub(crate) anonymous: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) stats: Arc<ServerStats>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("tls", &self.acceptor.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves one accepted connection until it ends, its watchdog closes it,
/// or the server stops (then after the shutdown grace at the latest).
pub(crate) async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    _open: OpenConnection,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    // A connection made to a loopback address, even on a listener of every
    // address, may come from a web page through DNS rebinding.
    let check_host = tcp
        .local_addr()
        .is_ok_and(|local| local.ip().to_canonical().is_loopback());
    let Some(acceptor) = &shared.acceptor else {
        serve_http(&shared, tcp, peer, None, check_host, stop).await;
        return;
    };
    let handshake = tokio::time::timeout(shared.config.tls_handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        handshake = handshake => handshake,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    let tls = match tls {
        Err(_) => {
            shared
                .stats
                .record(Refusal::TlsHandshakeTimeout, Some(&peer));
            return;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            shared.stats.record(Refusal::TlsHandshakeFailed, Some(&e));
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let certificates = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
    // Clients without a certificate share a few places of their own.
    let _anonymous = match (&certificates, &shared.anonymous) {
        (None, Some(places)) => match places.clone().try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) => {
                shared.stats.record(Refusal::AnonymousLimit, Some(&peer));
                return;
            }
        },
        _ => None,
    };
    serve_http(&shared, tls, peer, certificates, check_host, stop).await;
}

async fn serve_http<IO>(
    shared: &Arc<Shared>,
    io: IO,
    peer: SocketAddr,
    certificates: Option<PeerCertificates>,
    check_host: bool,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(Instant::now());
    let service = RequestService {
        shared: shared.clone(),
        activity: activity.clone(),
        peer,
        certificates,
        check_host,
    };
    let io = Watched {
        io,
        activity: activity.clone(),
    };
    // hyper's header-read timer would also run between requests: the
    // watchdog below keeps the header-read and idle times apart.
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let timeouts = Timeouts {
        header_read: shared.config.header_read_timeout,
        idle: shared.config.idle_timeout,
    };
    let watchdog = activity.expired(timeouts);
    tokio::pin!(watchdog);
    let mut grace_ends: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            expiry = &mut watchdog => {
                match expiry.refusal() {
                    Some(refusal) => shared.stats.record(refusal, Some(&peer)),
                    None => debug!(%peer, "idle connection closed"),
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if grace_ends.is_none() => {
                connection.as_mut().graceful_shutdown();
                grace_ends = Some(Instant::now() + shared.config.shutdown_grace);
            }
            () = tokio::time::sleep_until(grace_ends.unwrap_or_else(Instant::now)), if grace_ends.is_some() => {
                debug!(%peer, "connection still open after the shutdown grace: closed");
                return;
            }
        }
    }
}

/// Turns each request of a connection over to the router.
#[derive(Debug, Clone)]
struct RequestService {
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    peer: SocketAddr,
    certificates: Option<PeerCertificates>,
    /// The connection was made to a loopback address: its `Host` must be
    /// a loopback name (or an allowed one).
    check_host: bool,
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

impl RequestService {
    async fn handle(self, request: Request<Incoming>) -> Response<GuardedBody> {
        let in_flight = self.activity.request_started();
        let response = self.respond(request).await;
        response.map(|body| GuardedBody::new(body, in_flight))
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let shared = &self.shared;
        if self.check_host && !host_of(&request).is_some_and(|host| shared.host_check.allows(host))
        {
            shared
                .stats
                .record(Refusal::MisdirectedHost, Some(&self.peer));
            return plain(
                StatusCode::MISDIRECTED_REQUEST,
                "this connection was made to a loopback address: the server answers it only \
                     for loopback names (localhost, 127.0.0.1, [::1]) and the hosts it was told \
                     to allow\n",
            );
        }
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + shared.config.request_body_timeout;
        let mut request =
            request.map(|body| Body::new(TimedBody::new(body, deadline, timed_out.clone())));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(certificates) = &self.certificates {
            request.extensions_mut().insert(certificates.clone());
        }
        let mut router = shared.router.clone();
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if timed_out.load(Ordering::Relaxed) {
            shared
                .stats
                .record(Refusal::RequestBodyTimeout, Some(&self.peer));
            let mut response = plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time\n",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        response
    }
}

/// The authority a request names: its absolute URI's, else its `Host`.
fn host_of<B>(request: &Request<B>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    request.headers().get(header::HOST)?.to_str().ok()
}

/// A short plain-text answer.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
