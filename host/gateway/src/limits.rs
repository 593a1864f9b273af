//! Admission of device connections: a total limit and a per-address
//! limit, and the defaults of both derived from the open-files limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// File descriptors the gateway keeps for itself beyond its connections:
/// standard streams, the runtime's event queue and wakers, both listeners,
/// the SQLite database and its journal, the client registering with the
/// API server, a log file. About 20 are in use; 64 leaves room, and also
/// covers the moment a refused connection is accepted before it is closed.
pub const PROCESS_FD_RESERVE: u64 = 64;
/// The most device connections by default, however many files may be open.
pub const MAX_DEVICE_CONNECTIONS: usize = 50_000;
/// The most device connections from one address by default.
pub const MAX_DEVICE_CONNECTIONS_PER_IP: usize = 20_000;

/// The connection limits an open-files limit allows; see [`admission_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most open device connections.
    pub max_connections: usize,
    /// Most open device connections from one address.
    pub max_connections_per_ip: usize,
    /// The HTTP port's connection cap.
    pub http_max_connections: usize,
    /// The most device connections the file descriptors leave room for
    /// (before the [`MAX_DEVICE_CONNECTIONS`] bound): a larger
    /// `max_connections` can run out of descriptors first.
    pub device_fd_budget: usize,
}

/// The default limits for a process that may have `open_files` files open,
/// so that admission refuses device connections before descriptors run
/// out and the HTTP port (`/healthz`, the API server's calls) keeps its own:
///
/// 1. [`PROCESS_FD_RESERVE`] descriptors are kept for the process;
/// 2. the HTTP port's cap is `http_max_connections` when given, else
///    [`wasmbed_httpd::DEFAULT_MAX_CONNECTIONS`] but at most a quarter of
///    what is left (the device port is the one that needs many);
/// 3. the rest is for device connections (at least one), at most
///    [`MAX_DEVICE_CONNECTIONS`]; one source address (an IPv6 /64) may
///    hold half of them, at most [`MAX_DEVICE_CONNECTIONS_PER_IP`]: a NAT or
///    the emulators' bridge may put many devices behind one address, but
///    one host cannot take every place.
///
/// A caller that shares the process with more (the API server in `wasmbed
/// up`) passes `open_files` less what that needs.
pub fn admission_limits(open_files: u64, http_max_connections: Option<usize>) -> AdmissionLimits {
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let available = to_usize(open_files.saturating_sub(PROCESS_FD_RESERVE));
    let http = http_max_connections
        .unwrap_or_else(|| wasmbed_httpd::DEFAULT_MAX_CONNECTIONS.min(available / 4))
        .max(1);
    let device_fd_budget = available.saturating_sub(http);
    let max_connections = device_fd_budget.clamp(1, MAX_DEVICE_CONNECTIONS);
    AdmissionLimits {
        max_connections,
        max_connections_per_ip: per_source_default(max_connections),
        http_max_connections: http,
        device_fd_budget,
    }
}

/// The default limit of connections from one source: half of
/// `max_connections` (at least one), at most [`MAX_DEVICE_CONNECTIONS_PER_IP`].
pub fn per_source_default(max_connections: usize) -> usize {
    (max_connections / 2).clamp(1, MAX_DEVICE_CONNECTIONS_PER_IP)
}

#[derive(Debug)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManyConnections,
    TooManyFromAddress,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::TooManyFromAddress => "too_many_from_address",
        }
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Admission {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimits {
            max_total,
            max_per_ip,
            counts: Arc::new(Mutex::new(Counts {
                total: 0,
                per_ip: HashMap::new(),
            })),
        }
    }

    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let ip = wasmbed_httpd::source_of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            return Err(Refusal::TooManyConnections);
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(Admission {
            ip,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_and_released() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limits.admit(a).expect("room");
        let _second = limits.admit(a).expect("room");
        assert_eq!(limits.admit(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = limits.admit(b).expect("room");
        assert_eq!(limits.admit(b).err(), Some(Refusal::TooManyConnections));
        drop(first);
        assert!(limits.admit(a).is_ok());
    }

    #[test]
    fn a_common_1024_file_limit_gives_limits_that_fire_before_descriptors_run_out() {
        let limits = admission_limits(1024, None);
        assert_eq!(
            limits,
            AdmissionLimits {
                max_connections: 720,
                max_connections_per_ip: 360,
                http_max_connections: 240,
                device_fd_budget: 720,
            }
        );
        let used =
            PROCESS_FD_RESERVE + (limits.max_connections + limits.http_max_connections) as u64;
        assert!(used <= 1024);
    }

    #[test]
    fn a_large_file_limit_keeps_the_fixed_bounds() {
        let limits = admission_limits(1_048_576, None);
        assert_eq!(limits.max_connections, MAX_DEVICE_CONNECTIONS);
        assert_eq!(limits.max_connections_per_ip, MAX_DEVICE_CONNECTIONS_PER_IP);
        assert_eq!(
            limits.http_max_connections,
            wasmbed_httpd::DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(limits.device_fd_budget, 1_048_576 - 64 - 512);
        // Unlimited (or unknown) behaves the same.
        assert_eq!(
            admission_limits(u64::MAX, None).max_connections,
            MAX_DEVICE_CONNECTIONS
        );
    }

    #[test]
    fn an_explicit_http_cap_is_kept_and_taken_from_the_devices_share() {
        let limits = admission_limits(1024, Some(100));
        assert_eq!(limits.http_max_connections, 100);
        assert_eq!(limits.max_connections, 1024 - 64 - 100);
        // A cap that leaves nothing: one device connection, and a budget of
        // zero that the caller warns about.
        let limits = admission_limits(1024, Some(5000));
        assert_eq!(limits.device_fd_budget, 0);
        assert_eq!(limits.max_connections, 1);
    }

    #[test]
    fn tiny_limits_still_give_each_port_a_connection() {
        let limits = admission_limits(256, None);
        assert_eq!(
            (limits.max_connections, limits.http_max_connections),
            (144, 48)
        );
        let limits = admission_limits(10, None);
        assert_eq!(
            (
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.http_max_connections
            ),
            (1, 1, 1)
        );
    }
}
