//! The load client's connections: TCP from a spread of loopback source
//! addresses, closed with a reset (no TIME_WAIT), then TLS 1.3 with a
//! device or claim certificate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmbed_protocol::{
    AppList, AppState, AppStatus, ApplicationId, Capabilities, DeploymentId, Heartbeat, Millis,
    Name, RuntimeKind, SessionStart,
};

/// The name in the installation's gateway certificate.
const SERVER_NAME: &str = "localhost";

/// Source addresses 127.0.0.2 .. 127.0.0.(2 + SOURCES - 1).
const SOURCES: usize = 32;

/// The next source address, round robin: spreads the client's ephemeral
/// ports over several addresses.
fn source() -> IpAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % SOURCES;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i).unwrap_or(0)))
}

/// TCP connect from a loopback source address, with `SO_LINGER` 0: a
/// dropped connection is reset at once and leaves no TIME_WAIT behind, so
/// tens of thousands of short connections do not run out of ports.
pub(crate) async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source(), 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO))?;
    Ok(tcp)
}

/// TCP connect and the TLS 1.3 handshake.
pub(crate) async fn tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    TlsConnector::from(config).connect(name, tcp).await
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// The client's clock for its device sessions: milliseconds since start.
pub(crate) fn now() -> Millis {
    Millis(u64::try_from(start().elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// The tokio instant of a time on the client's clock.
pub(crate) fn instant(at: Millis) -> tokio::time::Instant {
    tokio::time::Instant::from_std(start() + Duration::from_millis(at.0))
}

pub(crate) fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

fn name(text: &str) -> Name {
    let mut out = Name::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The session start of a bench device: a sim-like device with no apps.
pub(crate) fn hello() -> SessionStart {
    SessionStart {
        agent_version: name("wasmbed-bench"),
        capabilities: Capabilities {
            runtime: RuntimeKind::Wasmi,
            runtime_version: name("2.0.0"),
            max_module_size: 65_536,
            app_memory: 65_536,
            app_slots: 4,
        },
        apps: AppList::new(),
    }
}

/// A heartbeat as a device running one application sends it.
pub(crate) fn heartbeat() -> Heartbeat {
    let mut apps = AppList::new();
    let _ = apps.push(AppStatus {
        deployment: DeploymentId(1),
        application: ApplicationId(1),
        state: AppState::Running,
    });
    Heartbeat {
        uptime: now(),
        free_memory: 48 * 1024,
        apps,
    }
}
