//! Counters shared by the devices of a simulation, and per-device status.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wasmbed_protocol::DeviceId;

/// What went wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// The TLS handshake failed.
    Handshake,
    /// Connecting (TCP and TLS) took longer than the connect timeout.
    ConnectTimeout,
    /// The connection broke (read or write error, or closed without a
    /// goodbye).
    ConnectionLost,
    /// The gateway did not answer in time (a session timeout).
    SessionTimeout,
    /// One side broke the protocol.
    Protocol,
    /// The gateway refused an enrollment for a reason other than closed
    /// pairing.
    EnrollRefused,
    /// The gateway refused an enrollment because pairing is closed.
    PairingClosed,
    /// The gateway reported an error message.
    PeerError,
    /// A key or module store failed.
    Storage,
    /// The device's TLS configuration could not be built.
    Config,
}

impl ErrorKind {
    /// Every kind, in the order of [`ErrorCounts`]' fields.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectionLost,
        ErrorKind::SessionTimeout,
        ErrorKind::Protocol,
        ErrorKind::EnrollRefused,
        ErrorKind::PairingClosed,
        ErrorKind::PeerError,
        ErrorKind::Storage,
        ErrorKind::Config,
    ];

    /// A short, stable name.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "tls",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ConnectionLost => "lost",
            ErrorKind::SessionTimeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::EnrollRefused => "enroll_refused",
            ErrorKind::PairingClosed => "pairing_closed",
            ErrorKind::PeerError => "peer_error",
            ErrorKind::Storage => "storage",
            ErrorKind::Config => "config",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Errors counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: [u64; ErrorKind::ALL.len()],
}

impl ErrorCounts {
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The kinds that occurred, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .map(|kind| (*kind, self.get(*kind)))
            .filter(|(_, n)| *n > 0)
    }
}

impl fmt::Display for ErrorCounts {
    /// `none`, or `kind=n` pairs separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, n) in self.nonzero() {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{kind}={n}")?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Counters of a whole simulation, updated by every device.
#[derive(Debug, Default)]
pub struct FleetStats {
    devices: AtomicU64,
    enrolled: AtomicU64,
    connected: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
    enrollments: AtomicU64,
    sessions: AtomicU64,
    heartbeats: AtomicU64,
    transfers: AtomicU64,
    transfers_resumed: AtomicU64,
    installs: AtomicU64,
    deploy_failures: AtomicU64,
    results: AtomicU64,
    results_trapped: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
}

/// A copy of [`FleetStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetSnapshot {
    /// Devices created.
    pub devices: u64,
    /// Devices holding an identity (enrolled now or in an earlier run).
    pub enrolled: u64,
    /// Devices with an established session now.
    pub connected: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Connection attempts after a connection was lost or closed (not
    /// counting the planned one right after enrolling).
    pub reconnects: u64,
    /// Enrollments accepted by the gateway.
    pub enrollments: u64,
    /// Sessions established.
    pub sessions: u64,
    pub heartbeats: u64,
    /// Module transfers accepted, new or resumed.
    pub transfers: u64,
    /// Of those, transfers resumed at an offset above zero.
    pub transfers_resumed: u64,
    /// Modules verified and installed.
    pub installs: u64,
    pub deploy_failures: u64,
    /// Execution results produced (and sent, if the connection held).
    pub results: u64,
    /// Of those, invocations that trapped.
    pub results_trapped: u64,
    pub errors: ErrorCounts,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl FleetStats {
    pub fn snapshot(&self) -> FleetSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut errors = ErrorCounts::default();
        for (count, counter) in errors.counts.iter_mut().zip(&self.errors) {
            *count = get(counter);
        }
        FleetSnapshot {
            devices: get(&self.devices),
            enrolled: get(&self.enrolled),
            connected: get(&self.connected),
            connects: get(&self.connects),
            reconnects: get(&self.reconnects),
            enrollments: get(&self.enrollments),
            sessions: get(&self.sessions),
            heartbeats: get(&self.heartbeats),
            transfers: get(&self.transfers),
            transfers_resumed: get(&self.transfers_resumed),
            installs: get(&self.installs),
            deploy_failures: get(&self.deploy_failures),
            results: get(&self.results),
            results_trapped: get(&self.results_trapped),
            errors,
        }
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        inc(&self.errors[kind.index()]);
    }

    pub(crate) fn device_created(&self, enrolled: bool) {
        inc(&self.devices);
        if enrolled {
            inc(&self.enrolled);
        }
    }

    pub(crate) fn enrolled(&self, first_identity: bool) {
        inc(&self.enrollments);
        if first_identity {
            inc(&self.enrolled);
        }
    }

    pub(crate) fn connect(&self, reconnect: bool) {
        inc(&self.connects);
        if reconnect {
            inc(&self.reconnects);
        }
    }

    pub(crate) fn established(&self) {
        inc(&self.sessions);
        inc(&self.connected);
    }

    pub(crate) fn session_ended(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn heartbeat(&self) {
        inc(&self.heartbeats);
    }

    pub(crate) fn transfer(&self, resumed: bool) {
        inc(&self.transfers);
        if resumed {
            inc(&self.transfers_resumed);
        }
    }

    pub(crate) fn installed(&self) {
        inc(&self.installs);
    }

    pub(crate) fn deploy_failed(&self) {
        inc(&self.deploy_failures);
    }

    pub(crate) fn result(&self, trapped: bool) {
        inc(&self.results);
        if trapped {
            inc(&self.results_trapped);
        }
    }
}

impl fmt::Display for FleetSnapshot {
    /// One status line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "devices {} | connected {} | enrolled {} | heartbeats {} | installs {} | results {} ({} trapped) | reconnects {} | errors {}",
            self.devices,
            self.connected,
            self.enrolled,
            self.heartbeats,
            self.installs,
            self.results,
            self.results_trapped,
            self.reconnects,
            self.errors,
        )
    }
}

/// What one device did; shared with whoever watches it (tests, the CLI).
#[derive(Debug, Default)]
pub struct DeviceStatus {
    device_id: Mutex<Option<DeviceId>>,
    connected: AtomicBool,
    sessions: AtomicU64,
    reconnects: AtomicU64,
    heartbeats: AtomicU64,
    installs: AtomicU64,
    results: AtomicU64,
}

/// A copy of a [`DeviceStatus`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// The id the gateway gave the device, once enrolled.
    pub device_id: Option<DeviceId>,
    /// A session is established now.
    pub connected: bool,
    pub sessions: u64,
    pub reconnects: u64,
    pub heartbeats: u64,
    pub installs: u64,
    pub results: u64,
}

impl DeviceStatus {
    pub fn snapshot(&self) -> DeviceSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceSnapshot {
            device_id: self.device_id(),
            connected: self.connected.load(Ordering::Relaxed),
            sessions: get(&self.sessions),
            reconnects: get(&self.reconnects),
            heartbeats: get(&self.heartbeats),
            installs: get(&self.installs),
            results: get(&self.results),
        }
    }

    /// The id the gateway gave the device, once enrolled.
    pub fn device_id(&self) -> Option<DeviceId> {
        *self.device_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_device_id(&self, id: DeviceId) {
        *self.device_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            inc(&self.sessions);
        }
    }

    pub(crate) fn reconnect(&self) {
        inc(&self.reconnects);
    }

    pub(crate) fn heartbeat(&self) {
        inc(&self.heartbeats);
    }

    pub(crate) fn installed(&self) {
        inc(&self.installs);
    }

    pub(crate) fn result(&self) {
        inc(&self.results);
    }
}
