//! One simulated device: the real [`Agent`] driven over TCP and rustls by
//! a tokio task, with the agent's driver loop
//! ([`wasmbed_agent::driver::nonblocking`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;
use wasmbed_agent::driver::nonblocking::{self, Wait, Wake};
use wasmbed_agent::driver::{self, Host, Point};
use wasmbed_agent::runtime::{Clock, WasmiRuntime};
use wasmbed_agent::storage::{ModuleStore, SlotState};
use wasmbed_agent::{Agent, AgentEvent, Credentials};
use wasmbed_protocol::session::CloseReason;
use wasmbed_protocol::{EnrollRefusal, GoodbyeReason, Millis, Outcome};

use crate::link::Link;
use crate::simulation::{SimError, Simulation};
use crate::stats::{DeviceStatus, ErrorKind};
use crate::store::{SimKeys, SimModules};

/// A simulated device's clock: time since it was created ("booted"),
/// independent of tokio's clock. It is the agent's clock (heartbeat uptime,
/// session deadlines) and the runtime's (`wasmbed.clock_ms`).
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    boot: std::time::Instant,
}

impl SimClock {
    pub fn new() -> Self {
        SimClock {
            boot: std::time::Instant::now(),
        }
    }

    /// Milliseconds since boot.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.boot.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a time on this clock.
    pub fn instant(&self, at: Millis) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.boot + Duration::from_millis(at.0))
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.boot.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// The agent as the simulator runs it.
pub type SimAgent = Agent<SimKeys, SimModules, WasmiRuntime<SimClock>>;

/// Something a simulated device did.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A connection attempt starts, with the claim certificate (to enroll)
    /// or the device certificate.
    Connecting { claim: bool },
    /// The attempt failed before the session started.
    ConnectFailed(ErrorKind),
    /// TCP and TLS are up; the agent's session starts.
    Connected,
    /// What the agent reported.
    Agent(AgentEvent),
    /// The fault injected with [`SimDevice::cut_connection_at`] cut the
    /// connection.
    ConnectionCut,
    /// The connection is over; the next attempt is in `retry_in`.
    Disconnected { retry_in: Duration },
    /// The device stopped (shutdown).
    Stopped,
}

/// A [`SimEvent`] of device number `device`.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvent {
    pub device: usize,
    pub event: SimEvent,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The session ended with a goodbye (or a timeout/violation the agent
    /// noticed); reconnect with backoff.
    Closed,
    /// The connection broke or could not be made.
    Failed,
    /// Shutdown was asked for.
    Shutdown,
}

/// One simulated device.
///
/// [`SimDevice::run`] connects with the agent's
/// [`credentials`](Agent::credentials), feeds what the gateway sends to the
/// agent, writes what it answers, fires its timers, and after a connection
/// ends waits for the agent's backoff and connects again, until shutdown.
/// On shutdown an established session says goodbye first.
pub struct SimDevice {
    index: usize,
    /// Boxed: the agent holds its session's frame buffers inline (about
    /// 9 KiB), and a large value moved into an async task risks being
    /// stored in the task twice.
    agent: Box<SimAgent>,
    sim: Simulation,
    clock: SimClock,
    status: Arc<DeviceStatus>,
    /// Cut the connection once a transfer holds this many bytes (once).
    cut_at: Option<u32>,
    /// Cut the connection once a module ran (once): before its result is
    /// written (`false`) or right after (`true`).
    cut_after_run: Option<bool>,
    /// A module ran while `cut_after_run` was armed.
    ran: bool,
    /// The identity's private key as PKCS#8, made once: converting the raw
    /// scalar costs a P-256 scalar multiplication.
    device_key: Option<PrivateKeyDer<'static>>,
    has_identity: bool,
    /// The session is established.
    connected: bool,
    /// The next connection is not a reconnection (first one, or right
    /// after enrolling).
    planned: bool,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDevice")
            .field("index", &self.index)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl SimDevice {
    pub(crate) fn new(
        sim: Simulation,
        index: usize,
        keys: SimKeys,
        modules: SimModules,
    ) -> Result<SimDevice, SimError> {
        let clock = SimClock::new();
        let config = &sim.shared.config;
        let runtime = WasmiRuntime::new(config.wasmi, clock);
        let agent = Box::new(Agent::new(config.agent.clone(), keys, modules, runtime)?);
        let status = Arc::new(DeviceStatus::default());
        let has_identity = match agent.identity() {
            Some(identity) => {
                status.set_device_id(identity.device_id);
                true
            }
            None => false,
        };
        sim.shared.stats.device_created(has_identity);
        Ok(SimDevice {
            index,
            agent,
            sim,
            clock,
            status,
            cut_at: None,
            cut_after_run: None,
            ran: false,
            device_key: None,
            has_identity,
            connected: false,
            planned: true,
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn agent(&self) -> &SimAgent {
        &self.agent
    }

    /// What the device did, shared: it stays valid while the device runs.
    pub fn status(&self) -> Arc<DeviceStatus> {
        self.status.clone()
    }

    pub fn clock(&self) -> SimClock {
        self.clock
    }

    /// Fault injection: drop the TCP connection, without a goodbye, as soon
    /// as a module transfer holds at least `bytes_held` bytes. Fires once.
    pub fn cut_connection_at(&mut self, bytes_held: u32) {
        self.cut_at = Some(bytes_held);
    }

    /// Fault injection: drop the TCP connection, without a goodbye, right
    /// after the agent ran a module: before anything it then sent is
    /// written (the result is lost in flight) if `after_sending` is false,
    /// else once it is written (the gateway has the result, the device has
    /// no confirmation yet). Fires once.
    pub fn cut_connection_after_run(&mut self, after_sending: bool) {
        self.cut_after_run = Some(after_sending);
    }

    /// Gives the stores back, e.g. to start the device again after a
    /// simulated reboot with [`Simulation::device`].
    pub fn into_stores(self) -> (SimKeys, SimModules) {
        let (keys, modules, _) = self.agent.into_parts();
        (keys, modules)
    }

    /// Runs [`Self::run`] as a tokio task.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<SimDevice> {
        tokio::spawn(self.run(shutdown))
    }

    /// Connects, serves and reconnects until `shutdown` becomes `true` (or
    /// its sender is dropped); gives the device back, stores and all.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> SimDevice {
        let mut reconnect_at = self.clock.now();
        loop {
            tokio::select! {
                () = sleep_until(self.clock.instant(reconnect_at)) => {}
                () = stopped(&mut shutdown) => break,
            }
            tokio::select! {
                () = self.sim.pace() => {}
                () = stopped(&mut shutdown) => break,
            }
            let reconnect = !std::mem::take(&mut self.planned);
            self.sim.shared.stats.connect(reconnect);
            if reconnect {
                self.status.reconnect();
            }
            let end = self.connection(&mut shutdown).await;
            if self.connected {
                self.connected = false;
                self.status.set_connected(false);
                self.sim.shared.stats.session_ended();
            }
            let now = self.clock.now();
            reconnect_at = self.agent.disconnected(now, &mut OsRng);
            if end == End::Shutdown {
                break;
            }
            let retry_in = Duration::from_millis(reconnect_at.0.saturating_sub(now.0));
            self.emit(SimEvent::Disconnected { retry_in });
        }
        self.emit(SimEvent::Stopped);
        self
    }

    /// One connection, from TCP connect to its end.
    async fn connection(&mut self, shutdown: &mut watch::Receiver<bool>) -> End {
        let claim = matches!(self.agent.credentials(), Credentials::Claim);
        self.emit(SimEvent::Connecting { claim });
        let config = match self.client_config() {
            Ok(config) => config,
            Err(e) => {
                debug!(device = self.index, error = %e, "no TLS configuration");
                return self.connect_failed(ErrorKind::Config);
            }
        };
        let shared = &self.sim.shared;
        let connect = connect(shared.config.gateway, shared.server_name.clone(), config);
        let tls = tokio::select! {
            result = timeout(shared.config.connect_timeout, connect) => result,
            () = stopped(shutdown) => return End::Shutdown,
        };
        let tls = match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err((kind, e))) => {
                debug!(device = self.index, error = %e, "connecting failed");
                return self.connect_failed(kind);
            }
            Err(_) => return self.connect_failed(ErrorKind::ConnectTimeout),
        };
        if let Err(e) = self.agent.connect(self.clock.now(), &mut OsRng) {
            debug!(device = self.index, error = %e, "the agent could not start a session");
            self.error(ErrorKind::Storage);
            return End::Failed;
        }
        self.emit(SimEvent::Connected);
        let mut link = Link::new(tls, shared.config.write_timeout);
        let mut serving = Serving {
            device: self,
            shutdown,
        };
        let end = nonblocking::serve(&mut serving, &mut link).await;
        if matches!(end, driver::End::Closed | driver::End::Stopped) && self.agent.is_closed() {
            // Everything was written, the goodbye included.
            link.shutdown(Duration::from_secs(1)).await;
        }
        match end {
            driver::End::Closed => End::Closed,
            driver::End::Stopped => End::Shutdown,
            // The fault was reported when it fired.
            driver::End::Dropped => End::Failed,
            driver::End::Eof => self.lost(&io::ErrorKind::UnexpectedEof.into()),
            driver::End::Read(e) | driver::End::Write(e) => self.lost(&e),
        }
    }

    fn connect_failed(&mut self, kind: ErrorKind) -> End {
        self.error(kind);
        self.emit(SimEvent::ConnectFailed(kind));
        End::Failed
    }

    /// The TLS configuration for the agent's credentials. A device's own
    /// configuration lives only as long as its connection.
    fn client_config(&mut self) -> Result<Arc<ClientConfig>, SimError> {
        match self.agent.credentials() {
            Credentials::Claim => Ok(self.sim.shared.claim.clone()),
            Credentials::Device {
                certificate,
                private_key,
            } => {
                let key = match &self.device_key {
                    Some(key) => key.clone_key(),
                    None => {
                        let key = wasmbed_pki::p256_scalar_to_pkcs8(private_key)?;
                        self.device_key = Some(key.clone_key());
                        key
                    }
                };
                Ok(wasmbed_pki::client_config_device(
                    &self.sim.shared.gateway_ca,
                    CertificateDer::from(certificate.to_vec()),
                    key,
                )?)
            }
        }
    }

    fn lost(&mut self, error: &io::Error) -> End {
        debug!(device = self.index, %error, "connection lost");
        self.error(ErrorKind::ConnectionLost);
        End::Failed
    }

    fn cut_before_flush(&self) -> bool {
        self.ran && self.cut_after_run == Some(false)
    }

    fn cut_due(&self) -> bool {
        if self.ran && self.cut_after_run == Some(true) {
            return true;
        }
        let Some(at) = self.cut_at else {
            return false;
        };
        self.agent
            .store()
            .slots()
            .iter()
            .flatten()
            .any(|slot| matches!(slot.state, SlotState::Receiving { held } if held >= at))
    }

    fn cut(&mut self) -> End {
        // Disarm the fault that fired.
        if std::mem::take(&mut self.ran) {
            self.cut_after_run = None;
        } else {
            self.cut_at = None;
        }
        debug!(
            device = self.index,
            "cutting the connection (fault injection)"
        );
        self.emit(SimEvent::ConnectionCut);
        End::Failed
    }

    fn record(&mut self, event: &AgentEvent) {
        let stats = &self.sim.shared.stats;
        match event {
            AgentEvent::Enrolled { device_id } => {
                debug!(device = self.index, id = %device_id, "enrolled");
                stats.enrolled(!self.has_identity);
                self.has_identity = true;
                self.device_key = None;
                self.status.set_device_id(*device_id);
                self.planned = true;
            }
            AgentEvent::EnrollRefused { reason } => {
                debug!(device = self.index, ?reason, "enrollment refused");
                self.error(match reason {
                    EnrollRefusal::PairingClosed => ErrorKind::PairingClosed,
                    _ => ErrorKind::EnrollRefused,
                });
            }
            AgentEvent::Established { device_id, .. } => {
                self.status.set_device_id(*device_id);
                if !self.connected {
                    self.connected = true;
                    self.status.set_connected(true);
                    stats.established();
                }
            }
            AgentEvent::HeartbeatSent => {
                stats.heartbeat();
                self.status.heartbeat();
            }
            AgentEvent::TransferAccepted { resume_offset, .. } => {
                stats.transfer(*resume_offset > 0);
            }
            AgentEvent::Installed { .. } => {
                stats.installed();
                self.status.installed();
            }
            AgentEvent::DeployFailed { deployment, reason } => {
                debug!(
                    device = self.index,
                    deployment = deployment.0,
                    ?reason,
                    "deployment failed"
                );
                stats.deploy_failed();
            }
            AgentEvent::Executed { outcome, .. } => {
                stats.result(matches!(outcome, Outcome::Trapped(_)));
                self.status.result();
                self.ran |= self.cut_after_run.is_some();
            }
            AgentEvent::PeerError(error) => {
                debug!(device = self.index, code = ?error.code, "the gateway reported an error");
                self.error(ErrorKind::PeerError);
            }
            AgentEvent::StorageFailed(e) => {
                debug!(device = self.index, error = %e, "store failed");
                self.error(ErrorKind::Storage);
            }
            AgentEvent::Closed(reason) => {
                debug!(device = self.index, %reason, "session closed");
                match reason {
                    CloseReason::Timeout => self.error(ErrorKind::SessionTimeout),
                    CloseReason::ProtocolViolation(_)
                    | CloseReason::LocalGoodbye(GoodbyeReason::ProtocolError)
                    | CloseReason::PeerGoodbye(GoodbyeReason::ProtocolError) => {
                        self.error(ErrorKind::Protocol);
                    }
                    CloseReason::PeerGoodbye(_) | CloseReason::LocalGoodbye(_) => {}
                }
            }
            AgentEvent::EnrollRequested
            | AgentEvent::AlreadyInstalled { .. }
            | AgentEvent::Stopped { .. }
            | AgentEvent::Removed { .. }
            | AgentEvent::ResultResent { .. }
            | AgentEvent::ResultDelivered { .. } => {}
        }
    }

    fn error(&self, kind: ErrorKind) {
        self.sim.shared.stats.error(kind);
    }

    fn emit(&self, event: SimEvent) {
        tracing::trace!(device = self.index, ?event);
        if let Some(events) = &self.sim.shared.events {
            // No receiver is fine.
            let _ = events.send(FleetEvent {
                device: self.index,
                event,
            });
        }
    }
}

/// A device while its connection is served: the driver loop's host.
struct Serving<'a> {
    device: &'a mut SimDevice,
    shutdown: &'a mut watch::Receiver<bool>,
}

impl Host for Serving<'_> {
    type Keys = SimKeys;
    type Modules = SimModules;
    type Runtime = WasmiRuntime<SimClock>;

    fn agent(&mut self) -> &mut SimAgent {
        &mut self.device.agent
    }

    fn now(&self) -> Millis {
        self.device.clock.now()
    }

    fn event(&mut self, event: AgentEvent) {
        self.device.record(&event);
        self.device.emit(SimEvent::Agent(event));
    }

    fn proceed(&mut self, point: Point) -> bool {
        let cut = match point {
            Point::BeforeWrite => self.device.cut_before_flush(),
            Point::AfterWrite => self.device.cut_due(),
        };
        if cut {
            self.device.cut();
        }
        !cut
    }
}

impl Wait for Serving<'_> {
    async fn wait(&mut self, deadline: Option<Millis>, stoppable: bool) -> Wake {
        let deadline = deadline.map(|at| self.device.clock.instant(at));
        tokio::select! {
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => Wake::Deadline,
            () = stopped(self.shutdown), if stoppable => Wake::Stop,
            else => std::future::pending().await,
        }
    }
}

/// TCP connect and TLS handshake.
async fn connect(
    addr: std::net::SocketAddr,
    server_name: rustls::pki_types::ServerName<'static>,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, (ErrorKind, io::Error)> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| (ErrorKind::Connect, e))?;
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| (ErrorKind::Handshake, e))
}

/// Completes once shutdown is asked for, or nobody can ask any more.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}
