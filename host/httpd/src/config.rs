//! The limits and timeouts of a server, and their defaults.

use std::time::Duration;

/// Most connections open at once, by default.
///
/// A browser opens at most six connections to one host, an API client or a
/// gateway's controller a few pooled ones; 512 leaves room for many of
/// them while staying well inside the common 1,024 open-files limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Time a client has to send a whole request head, by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection with no request in flight may stay silent, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has to send a whole request body, by default.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client has to finish its TLS handshake, by default.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections from one source address (an IPv6 /64), by default: a
/// host cannot take every slot.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Time open requests get to finish at shutdown, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How many connections a server takes and how long it waits for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerConfig {
    /// Most connections open at once (TLS handshakes included); a
    /// connection beyond it is answered `503` and closed (closed without an
    /// answer on a TLS listener). Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Most connections open at once from one source address (IPv6
    /// addresses count by their /64); more are refused like those beyond
    /// `max_connections`. Default [`DEFAULT_MAX_CONNECTIONS_PER_SOURCE`].
    pub max_connections_per_source: usize,
    /// On a TLS listener that asks for client certificates: most
    /// connections open at once whose client presented none (health probes,
    /// anyone); more are closed after the handshake, so that clients without
    /// a certificate cannot take the slots of those with one. `None`: no
    /// separate bound (every client counts alike).
    pub max_anonymous_connections: Option<usize>,
    /// A request head (request line and headers) must arrive in full within
    /// this time of its first byte; the first request of a connection must
    /// arrive within it of the connection opening. A slower client is
    /// disconnected. Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// A connection with no request in flight that sends nothing for this
    /// long is closed; so is one whose client has not taken any of the
    /// response for this long. A request in flight, such as an event stream,
    /// keeps its connection open. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// A request body must arrive in full within this time of its head; a
    /// slower one is answered `408` and the connection closed. At 30 s a
    /// 1.4 MB upload needs about 50 kB/s. Default
    /// [`DEFAULT_REQUEST_BODY_TIMEOUT`].
    pub request_body_timeout: Duration,
    /// A TLS handshake slower than this is dropped. Default
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// At shutdown, requests in flight get this long to finish; then every
    /// connection still open (event streams) is closed. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// For connections made to a loopback address (of a loopback listener,
    /// or of one on every address), `Host` names accepted beside the
    /// loopback ones (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`),
    /// e.g. the name a port forward is reached by. `name` allows any port,
    /// `name:port` only that one. Connections to other addresses are not
    /// checked.
    pub extra_allowed_hosts: Vec<String>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_anonymous_connections: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            extra_allowed_hosts: Vec::new(),
        }
    }
}
