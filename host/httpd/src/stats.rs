//! What a server refused, counted, and logged at most once per interval
//! per kind: a flood of refusals must not become a flood of log lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one log line per kind of refusal in this time.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a server turned a client away or closed its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open: the new one was answered `503` and closed.
    ConnectionLimit,
    /// `max_connections_per_source` were open from its source address.
    SourceLimit,
    /// `max_anonymous_connections` without a client certificate were open.
    AnonymousLimit,
    /// `accept` failed (out of file descriptors, most often).
    AcceptFailed,
    /// The TLS handshake took longer than `tls_handshake_timeout`.
    TlsHandshakeTimeout,
    /// The TLS handshake failed.
    TlsHandshakeFailed,
    /// A request head took longer than `header_read_timeout`.
    HeaderReadTimeout,
    /// A request body took longer than `request_body_timeout` (`408`).
    RequestBodyTimeout,
    /// The client took none of the response for `idle_timeout`.
    WriteStalled,
    /// The `Host` is not one a loopback listener answers to (`421`).
    MisdirectedHost,
}

impl Refusal {
    const ALL: [Refusal; 10] = [
        Refusal::ConnectionLimit,
        Refusal::SourceLimit,
        Refusal::AnonymousLimit,
        Refusal::AcceptFailed,
        Refusal::TlsHandshakeTimeout,
        Refusal::TlsHandshakeFailed,
        Refusal::HeaderReadTimeout,
        Refusal::RequestBodyTimeout,
        Refusal::WriteStalled,
        Refusal::MisdirectedHost,
    ];

    fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }

    /// A stable name, for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::SourceLimit => "source_limit",
            Refusal::AnonymousLimit => "anonymous_limit",
            Refusal::AcceptFailed => "accept_failed",
            Refusal::TlsHandshakeTimeout => "tls_handshake_timeout",
            Refusal::TlsHandshakeFailed => "tls_handshake_failed",
            Refusal::HeaderReadTimeout => "header_read_timeout",
            Refusal::RequestBodyTimeout => "request_body_timeout",
            Refusal::WriteStalled => "write_stalled",
            Refusal::MisdirectedHost => "misdirected_host",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "connections refused: too many open (503)",
            Refusal::SourceLimit => "connections refused: too many open from one address (503)",
            Refusal::AnonymousLimit => {
                "connections closed: too many open without a client certificate"
            }
            Refusal::AcceptFailed => "accepting connections failed",
            Refusal::TlsHandshakeTimeout => "connections closed: TLS handshake too slow",
            Refusal::TlsHandshakeFailed => "connections closed: TLS handshake failed",
            Refusal::HeaderReadTimeout => "connections closed: request head too slow",
            Refusal::RequestBodyTimeout => "requests refused: request body too slow (408)",
            Refusal::WriteStalled => "connections closed: client stopped reading the response",
            Refusal::MisdirectedHost => {
                "requests refused: Host is not a loopback name on a loopback listener (421)"
            }
        }
    }
}

/// A server's counters: connections open and refusals by kind.
#[derive(Debug)]
pub struct ServerStats {
    open: AtomicUsize,
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Per kind: when the last line was logged and the count it showed.
    logged: Mutex<[Option<(Instant, u64)>; Refusal::ALL.len()]>,
    /// Set once the server has its listener, for log lines.
    listen: Mutex<Option<SocketAddr>>,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            open: AtomicUsize::new(0),
            refused: Default::default(),
            logged: Mutex::new([None; Refusal::ALL.len()]),
            listen: Mutex::new(None),
        }
    }
}

impl ServerStats {
    /// Connections open now (TLS handshakes included).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// How many times `kind` happened since the server started.
    pub fn refused(&self, kind: Refusal) -> u64 {
        self.refused[kind.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn set_listen(&self, addr: SocketAddr) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }

    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Counts a refusal; logs it unless a line for its kind was logged
    /// less than [`LOG_INTERVAL`] ago (the next line gives the count since).
    pub(crate) fn record(&self, kind: Refusal, detail: Option<&dyn std::fmt::Display>) {
        let total = self.refused[kind.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let since_last_line = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            let last = &mut logged[kind.index()];
            if last.is_some_and(|(at, _)| now.duration_since(at) < LOG_INTERVAL) {
                return;
            }
            let shown = last.map_or(0, |(_, count)| count);
            *last = Some((now, total));
            total - shown
        };
        let listen = *self.listen.lock().unwrap_or_else(|e| e.into_inner());
        let listen = listen.map(|a| a.to_string()).unwrap_or_default();
        let detail = detail.map(|d| d.to_string()).unwrap_or_default();
        match kind {
            Refusal::ConnectionLimit
            | Refusal::SourceLimit
            | Refusal::AnonymousLimit
            | Refusal::AcceptFailed
            | Refusal::MisdirectedHost => {
                tracing::warn!(%listen, kind = kind.label(), count = since_last_line, total, %detail, "{}", kind.message());
            }
            _ => {
                tracing::info!(%listen, kind = kind.label(), count = since_last_line, total, %detail, "{}", kind.message());
            }
        }
    }
}

/// One open connection; dropping it counts it closed.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ServerStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_under_its_own_kind() {
        let stats = ServerStats::default();
        for _ in 0..1000 {
            stats.record(Refusal::ConnectionLimit, None);
        }
        stats.record(Refusal::HeaderReadTimeout, None);
        assert_eq!(stats.refused(Refusal::ConnectionLimit), 1000);
        assert_eq!(stats.refused(Refusal::HeaderReadTimeout), 1);
        assert_eq!(stats.refused(Refusal::WriteStalled), 0);
        // One line for the first, none for the 999 within the interval.
        let logged = stats.logged.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            logged[Refusal::ConnectionLimit.index()].map(|(_, n)| n),
            Some(1)
        );
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
