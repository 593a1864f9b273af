//! The TCP bridge between an emulated device's link UART and the gateway.
//!
//! An emulator exposes a UART as a TCP socket. The bridge takes that socket
//! (the *device side*) and, once the device sends its first byte, connects
//! to the gateway's TLS port and copies bytes both ways unchanged: the
//! device's TLS session runs end to end through it.
//!
//! - The device side either listens ([`DeviceSide::Listen`], for QEMU,
//!   whose `-chardev socket,…,reconnect=1` connects to the bridge and
//!   reconnects a second after losing it) or connects ([`DeviceSide::Connect`],
//!   for Renode, whose server socket terminal listens), retrying until the
//!   emulator is up and again after every connection.
//! - The gateway is connected lazily, on the first byte from the device: an
//!   idle device holds no gateway connection, which the gateway's handshake
//!   timeout would otherwise close.
//! - When either side closes or fails, both are closed. An unreachable
//!   gateway is logged and closes the device side; the device reconnects.
//! - One device connection at a time: a new one replaces the old pair.
//! - A device reset inside its emulator keeps the emulator's socket open:
//!   the bridge sees the device start a new TLS session
//!   ([`crate::session_watch`]) and gives it a new gateway connection, so
//!   its first handshake after the reset does not land in the old one.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::session_watch::SessionWatch;

/// Size of the copy buffers.
const BUFFER: usize = 16 * 1024;

/// How the bridge reaches the device's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSide {
    /// Listen on this address (port 0: an ephemeral port) for the emulator
    /// to connect to.
    Listen(SocketAddr),
    /// Connect to the emulator listening on this address.
    Connect(SocketAddr),
}

/// What a [`Bridge`] connects.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Name in logs (the device's name).
    pub name: String,
    /// The device's side.
    pub device: DeviceSide,
    /// The gateway's TLS address, `HOST:PORT`, resolved at every connection.
    pub gateway: String,
    /// Longest wait for the gateway to accept a connection.
    pub connect_timeout: Duration,
    /// With [`DeviceSide::Connect`]: pause between attempts to reach the
    /// emulator, and after a connection ends.
    pub retry_interval: Duration,
}

impl BridgeConfig {
    /// A bridge listening on `listen` for the device, to `gateway`.
    pub fn listen(name: &str, listen: SocketAddr, gateway: &str) -> BridgeConfig {
        BridgeConfig {
            name: name.to_owned(),
            device: DeviceSide::Listen(listen),
            gateway: gateway.to_owned(),
            connect_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(250),
        }
    }

    /// A bridge connecting to the device at `device`, to `gateway`.
    pub fn connect(name: &str, device: SocketAddr, gateway: &str) -> BridgeConfig {
        BridgeConfig {
            device: DeviceSide::Connect(device),
            ..BridgeConfig::listen(name, device, gateway)
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    device_to_gateway: AtomicU64,
    gateway_to_device: AtomicU64,
    device_connections: AtomicU64,
    gateway_connections: AtomicU64,
    gateway_connect_failures: AtomicU64,
}

/// A bridge's counters since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeCounters {
    /// Bytes forwarded from the device to the gateway.
    pub device_to_gateway_bytes: u64,
    /// Bytes forwarded from the gateway to the device.
    pub gateway_to_device_bytes: u64,
    /// Device connections accepted (or made).
    pub device_connections: u64,
    /// Gateway connections made.
    pub gateway_connections: u64,
    /// Gateway connection attempts that failed or timed out.
    pub gateway_connect_failures: u64,
}

/// Reads a bridge's counters; see [`Bridge::meter`].
#[derive(Debug, Clone)]
pub struct BridgeMeter(Arc<Stats>);

impl BridgeMeter {
    /// The counters so far.
    pub fn counters(&self) -> BridgeCounters {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BridgeCounters {
            device_to_gateway_bytes: get(&self.0.device_to_gateway),
            gateway_to_device_bytes: get(&self.0.gateway_to_device),
            device_connections: get(&self.0.device_connections),
            gateway_connections: get(&self.0.gateway_connections),
            gateway_connect_failures: get(&self.0.gateway_connect_failures),
        }
    }
}

/// A running bridge. Dropping it (or [`Bridge::close`]) stops it and closes
/// its connections.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    local_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    task: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Starts a bridge; with [`DeviceSide::Listen`] it is listening when
    /// this returns. Needs a tokio runtime.
    pub async fn start(config: BridgeConfig) -> io::Result<Bridge> {
        let stats = Arc::new(Stats::default());
        let name = config.name.clone();
        let (local_addr, task) = match config.device {
            DeviceSide::Listen(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                tracing::debug!(bridge = %name, listen = %local, gateway = %config.gateway, "bridge listening");
                let task = tokio::spawn(listen_loop(listener, config, Arc::clone(&stats)));
                (Some(local), task)
            }
            DeviceSide::Connect(_) => {
                let task = tokio::spawn(connect_loop(config, Arc::clone(&stats)));
                (None, task)
            }
        };
        Ok(Bridge {
            name,
            local_addr,
            stats,
            task: Some(task),
        })
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the device connects to ([`DeviceSide::Listen`] only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The counters so far.
    pub fn counters(&self) -> BridgeCounters {
        self.meter().counters()
    }

    /// A reader of the counters that outlives the bridge.
    pub fn meter(&self) -> BridgeMeter {
        BridgeMeter(Arc::clone(&self.stats))
    }

    /// Stops the bridge and closes its connections; returns its counters.
    pub async fn close(mut self) -> BridgeCounters {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task ends at once (it only ever waits on sockets); once
            // it has, its sockets are closed.
            let _ = task.await;
        }
        self.counters()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn listen_loop(listener: TcpListener, config: BridgeConfig, stats: Arc<Stats>) {
    let mut current: Option<Connection> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((device, peer)) => {
                    stats.device_connections.fetch_add(1, Ordering::Relaxed);
                    if current.is_some() {
                        tracing::debug!(bridge = %config.name, %peer, "a new device connection replaces the previous one");
                    } else {
                        tracing::debug!(bridge = %config.name, %peer, "device connected");
                    }
                    // Replacing the future drops (closes) the old pair.
                    current = Some(Box::pin(serve(device, config.clone(), Arc::clone(&stats))));
                }
                Err(e) => {
                    tracing::warn!(bridge = %config.name, error = %e, "accepting a device connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = async { if let Some(connection) = current.as_mut() { connection.await } }, if current.is_some() => {
                current = None;
            }
        }
    }
}

async fn connect_loop(config: BridgeConfig, stats: Arc<Stats>) {
    let DeviceSide::Connect(addr) = config.device else {
        return;
    };
    let mut failures: u64 = 0;
    loop {
        match TcpStream::connect(addr).await {
            Ok(device) => {
                failures = 0;
                stats.device_connections.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(bridge = %config.name, device = %addr, "connected to the device");
                serve(device, config.clone(), Arc::clone(&stats)).await;
            }
            Err(e) => {
                failures += 1;
                // The emulator takes a while to open its socket: only
                // persistent failure is worth a warning.
                if failures % 40 == 0 {
                    tracing::warn!(bridge = %config.name, device = %addr, error = %e, "cannot reach the device's socket");
                }
            }
        }
        tokio::time::sleep(config.retry_interval).await;
    }
}

/// One device connection: wait for its first byte, connect the gateway,
/// copy both ways until either side ends, close both. When the device
/// starts a new TLS session on the same connection (it was reset), the
/// gateway connection is replaced by a new one for it.
async fn serve(mut device: TcpStream, config: BridgeConfig, stats: Arc<Stats>) {
    let _ = device.set_nodelay(true);
    let mut watch = SessionWatch::default();
    let mut buffer = vec![0u8; BUFFER];
    // An idle device holds no gateway connection.
    let mut opening = Vec::new();
    while opening.is_empty() {
        let n = match device.read(&mut buffer).await {
            Ok(0) => {
                tracing::debug!(bridge = %config.name, "device closed before sending anything");
                return;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(bridge = %config.name, error = %e, "reading from the device failed");
                return;
            }
        };
        let split = watch.feed(&buffer[..n]);
        opening = split.current;
        opening.extend(split.new_session.unwrap_or_default());
    }
    drop(buffer);
    loop {
        let Some(mut gateway) = connect_gateway(&config, &stats).await else {
            return;
        };
        if let Err(e) = gateway.write_all(&opening).await {
            tracing::debug!(bridge = %config.name, error = %e, "writing to the gateway failed");
            return;
        }
        stats
            .device_to_gateway
            .fetch_add(opening.len() as u64, Ordering::Relaxed);
        match relay(&mut device, &mut gateway, &mut watch, &config, &stats).await {
            Relayed::Ended => {
                let _ = gateway.shutdown().await;
                let _ = device.shutdown().await;
                return;
            }
            Relayed::NewSession(start) => {
                tracing::info!(bridge = %config.name,
                    "the device started a new TLS session (it was reset): connecting to the gateway again");
                let _ = gateway.shutdown().await;
                opening = start;
            }
        }
    }
}

/// Connects to the gateway, within the configured timeout.
async fn connect_gateway(config: &BridgeConfig, stats: &Stats) -> Option<TcpStream> {
    let connecting = TcpStream::connect(config.gateway.as_str());
    match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok(gateway)) => {
            let _ = gateway.set_nodelay(true);
            stats.gateway_connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(bridge = %config.name, gateway = %config.gateway, "gateway connected");
            Some(gateway)
        }
        Ok(Err(e)) => {
            stats
                .gateway_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(bridge = %config.name, gateway = %config.gateway, error = %e,
                "gateway unreachable: closing the device connection");
            None
        }
        Err(_) => {
            stats
                .gateway_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(bridge = %config.name, gateway = %config.gateway, timeout = ?config.connect_timeout,
                "gateway did not accept the connection in time: closing the device connection");
            None
        }
    }
}

/// How [`relay`] ended.
enum Relayed {
    /// One side closed or failed.
    Ended,
    /// The device began a new TLS session with these bytes.
    NewSession(Vec<u8>),
}

/// Copies both ways between the device and one gateway connection.
async fn relay(
    device: &mut TcpStream,
    gateway: &mut TcpStream,
    watch: &mut SessionWatch,
    config: &BridgeConfig,
    stats: &Stats,
) -> Relayed {
    let (mut device_read, mut device_write) = device.split();
    let (mut gateway_read, mut gateway_write) = gateway.split();
    let up = async {
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let n = device_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok(None);
            }
            let split = watch.feed(&buffer[..n]);
            gateway_write.write_all(&split.current).await?;
            stats
                .device_to_gateway
                .fetch_add(split.current.len() as u64, Ordering::Relaxed);
            if split.new_session.is_some() {
                return io::Result::Ok(split.new_session);
            }
        }
    };
    let down = pump(
        &mut gateway_read,
        &mut device_write,
        &stats.gateway_to_device,
    );
    let (side, result) = tokio::select! {
        result = up => match result {
            Ok(Some(start)) => return Relayed::NewSession(start),
            Ok(None) => ("device", Ok(())),
            Err(e) => ("device", Err(e)),
        },
        result = down => ("gateway", result),
    };
    match result {
        Ok(()) => {
            tracing::debug!(bridge = %config.name, "{side} closed the connection; closing both")
        }
        Err(e) => {
            tracing::debug!(bridge = %config.name, error = %e, "{side} connection failed; closing both")
        }
    }
    Relayed::Ended
}

/// Copies until end of stream or an error, counting what was written.
async fn pump<R, W>(from: &mut R, to: &mut W, counter: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
