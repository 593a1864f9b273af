//! Emulated devices as processes: start, stop, restart, list.
//!
//! Each device runs in its own emulator process with its own bridge. The
//! manager captures the console (see [`crate::console`]), notices when the
//! process exits and kills every process it started when it is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::backend::qemu::LINK_CHARDEV;
use crate::backend::qmp::Qmp;
use crate::backend::{
    Backend, BackendError, ConsoleSource, EmulatorBackend, GracefulStop, LinkMode, Ports, QmpError,
};
use crate::board::Board;
use crate::bridge::{Bridge, BridgeConfig, BridgeCounters, BridgeMeter};
use crate::console::{
    self, Console, ConsoleLine, ConsoleMark, Ended, Pattern, Tail, WaitError, lock,
};
use crate::provision::CONSOLE_LOG;

/// How long an emulator gets to exit after being asked before it is
/// killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the output readers get to drain after the process ended.
const DRAIN: Duration = Duration::from_secs(2);

/// What to run: one device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// The device's name: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// The board emulated.
    pub board: Board,
    /// The firmware image (ELF).
    pub firmware: PathBuf,
    /// The device's state directory, the emulator's working directory
    /// (created if missing; see [`crate::provision`](mod@crate::provision)).
    pub state_dir: PathBuf,
    /// The gateway's TLS address, `HOST:PORT`.
    pub gateway: String,
    /// The emulator.
    pub backend: Backend,
    /// QEMU's `-icount shift`: each instruction takes 2^N ns of virtual
    /// time, so instruction counts and the time the firmware measures for
    /// its own work are repeatable (waiting for the network still takes
    /// real time).
    pub icount: Option<u8>,
}

impl DeviceSpec {
    /// The device's `console.log`.
    pub fn console_log(&self) -> PathBuf {
        self.state_dir.join(CONSOLE_LOG)
    }
}

/// Where a device is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// The emulator is being started.
    Starting,
    /// The emulator process is running.
    Running,
    /// Being reset: stopped, about to be started again.
    Restarting,
    /// Stopped on request.
    Stopped,
    /// The emulator exited on its own.
    Exited {
        /// Its exit status.
        code: i32,
    },
    /// The emulator was killed by a signal it was not sent by the manager,
    /// or could not be waited for.
    Crashed {
        /// The signal, if one killed it.
        signal: Option<i32>,
        /// What happened, for humans.
        reason: String,
    },
}

impl DeviceState {
    /// Running, starting or restarting: not ended.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            DeviceState::Starting | DeviceState::Running | DeviceState::Restarting
        )
    }

    /// Exited or crashed: ended without being asked to.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            DeviceState::Exited { .. } | DeviceState::Crashed { .. }
        )
    }

    fn from_status(status: io::Result<ExitStatus>) -> DeviceState {
        match status {
            Ok(status) => match status.code() {
                Some(code) => DeviceState::Exited { code },
                None => {
                    #[cfg(unix)]
                    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
                    #[cfg(not(unix))]
                    let signal: Option<i32> = None;
                    DeviceState::Crashed {
                        signal,
                        reason: match signal {
                            Some(signal) => {
                                format!("killed by signal {signal}{}", signal_name(signal))
                            }
                            None => format!("ended with {status}"),
                        },
                    }
                }
            },
            Err(e) => DeviceState::Crashed {
                signal: None,
                reason: format!("waiting for the emulator failed: {e}"),
            },
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceState::Starting => f.write_str("is starting"),
            DeviceState::Running => f.write_str("is running"),
            DeviceState::Restarting => f.write_str("is restarting"),
            DeviceState::Stopped => f.write_str("was stopped"),
            DeviceState::Exited { code } => write!(f, "exited with code {code}"),
            DeviceState::Crashed { reason, .. } => write!(f, "crashed: {reason}"),
        }
    }
}

/// One line of [`EmulatorManager::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// The device's name.
    pub name: String,
    /// Its board's name.
    pub board: String,
    /// Its emulator.
    pub backend: Backend,
    /// Its state.
    pub state: DeviceState,
    /// The emulator's process id, while it runs.
    pub pid: Option<u32>,
    /// The link UART's port on 127.0.0.1 (the bridge's with QEMU).
    pub link_port: Option<u16>,
    /// Its console log.
    pub console_log: PathBuf,
    /// When its current (or last) run started.
    pub started_at: Option<SystemTime>,
}

/// Why the manager could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// A device of that name is running.
    #[error("a device named {0:?} is already running")]
    AlreadyRunning(String),
    /// No device of that name.
    #[error("no device named {0:?}")]
    UnknownDevice(String),
    /// The name cannot be used.
    #[error("invalid device name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    /// The emulator program is not installed.
    #[error("{program} not found: {hint}")]
    BackendMissing {
        /// The program.
        program: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The backend cannot run this spec.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The state directory cannot be created.
    #[error("creating the state directory {}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The device is not running, or its emulator cannot be reset from
    /// outside (no QMP connection).
    #[error("{0:?} is not running under a monitor that can reset it")]
    CannotReset(String),
    /// Talking to the emulator's QMP monitor failed.
    #[error("the monitor of {device} failed")]
    Monitor {
        /// The device.
        device: String,
        /// What failed.
        #[source]
        source: QmpError,
    },
    /// A networked device's `provision.bin` cannot be pointed at the
    /// gateway.
    #[error("pointing {device} at the gateway")]
    Provision {
        /// The device.
        device: String,
        /// What failed.
        #[source]
        source: crate::provision::ProvisionError,
    },
    /// The gateway's address cannot be reached from a networked device.
    #[error("{device}: the gateway address {gateway:?} is not HOST:PORT of an IPv4 host")]
    GatewayAddress {
        /// The device.
        device: String,
        /// The address given.
        gateway: String,
    },
    /// The bridge cannot be started.
    #[error("starting the bridge of {device}")]
    Bridge {
        /// The device.
        device: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The emulator process cannot be started.
    #[error("starting {program} for {device}")]
    Spawn {
        /// The device.
        device: String,
        /// The program.
        program: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// Why a run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Stop,
    Restart,
}

/// The emulator process of a run, for killing it from `Drop`.
#[derive(Debug)]
struct Process {
    pid: u32,
    /// Set once the process has been waited for: its pid may then belong
    /// to another process.
    reaped: AtomicBool,
}

impl Process {
    fn kill(&self) {
        if !self.reaped.load(Ordering::SeqCst) {
            send_signal(self.pid, rustix::process::Signal::KILL);
        }
    }
}

fn send_signal(pid: u32, signal: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // The process may be gone already: nothing to do then.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// What the rest of the crate may read about a device while it runs.
#[derive(Debug, Default)]
struct Status {
    process: Option<Arc<Process>>,
    link_port: Option<u16>,
    started_at: Option<SystemTime>,
    stderr: Tail,
    bridge: Option<BridgeMeter>,
}

/// One run of the emulator process.
#[derive(Debug)]
struct Run {
    stop: Option<oneshot::Sender<StopKind>>,
    supervisor: JoinHandle<()>,
    /// The link UART's bridge; none on a networked board.
    bridge: Option<Bridge>,
    /// Reads the console from a socket (Renode).
    console_reader: Option<AbortOnDrop>,
    /// The emulator's QMP connection, open while it runs (QEMU).
    qmp: Option<Qmp>,
}

impl Run {
    /// Asks the supervisor to stop the process, waits until it has been
    /// reaped and its state recorded, and closes the bridge.
    async fn stop(mut self, kind: StopKind) {
        if let Some(stop) = self.stop.take() {
            // Fails if the process already ended: then there is nothing
            // to stop.
            let _ = stop.send(kind);
        }
        let _ = (&mut self.supervisor).await;
        drop(self.console_reader.take());
        if let Some(bridge) = self.bridge.take() {
            bridge.close().await;
        }
    }
}

/// A task aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
struct Device {
    spec: DeviceSpec,
    console: Console,
    state: watch::Sender<DeviceState>,
    status: Mutex<Status>,
    /// Serialises start, stop and restart of this device.
    run: tokio::sync::Mutex<Option<Run>>,
}

impl Device {
    fn set_state(&self, state: DeviceState) {
        self.state.send_replace(state);
    }

    fn kill_now(&self) {
        if let Some(process) = &lock(&self.status).process {
            process.kill();
        }
    }
}

/// A running (or ended) device: its console, state and counters. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    device: Arc<Device>,
}

impl DeviceHandle {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.device.spec.name
    }

    /// What the device was started with.
    pub fn spec(&self) -> &DeviceSpec {
        &self.device.spec
    }

    /// Its console.
    pub fn console(&self) -> &Console {
        &self.device.console
    }

    /// Its state now.
    pub fn state(&self) -> DeviceState {
        self.device.state.borrow().clone()
    }

    /// The emulator's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let status = lock(&self.device.status);
        status
            .process
            .as_ref()
            .filter(|p| !p.reaped.load(Ordering::SeqCst))
            .map(|p| p.pid)
    }

    /// The link UART's port on 127.0.0.1.
    pub fn link_port(&self) -> Option<u16> {
        lock(&self.device.status).link_port
    }

    /// The current run's bridge counters.
    pub fn bridge_counters(&self) -> BridgeCounters {
        lock(&self.device.status)
            .bridge
            .as_ref()
            .map(BridgeMeter::counters)
            .unwrap_or_default()
    }

    /// The last lines the emulator wrote to its standard error (and, for
    /// Renode, its standard output).
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.device.status).stderr.lines()
    }

    /// A summary, as in [`EmulatorManager::list`].
    pub fn summary(&self) -> DeviceSummary {
        let spec = &self.device.spec;
        DeviceSummary {
            name: spec.name.clone(),
            board: spec.board.name.clone(),
            backend: spec.backend,
            state: self.state(),
            pid: self.pid(),
            link_port: self.link_port(),
            console_log: spec.console_log(),
            started_at: lock(&self.device.status).started_at,
        }
    }

    /// Waits for a console line matching `pattern`, anywhere in the
    /// device's console so far or to come; see [`Console::wait_for`].
    pub async fn wait_for(
        &self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        self.device.console.wait_for(pattern, timeout).await
    }

    /// Waits for a console line after `mark` matching `pattern`; see
    /// [`Console::wait_for_after`].
    pub async fn wait_for_after(
        &self,
        mark: ConsoleMark,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        self.device
            .console
            .wait_for_after(mark, pattern, timeout)
            .await
    }

    /// Waits until the device has stopped, exited or crashed; its state
    /// then, or `None` after `timeout`.
    pub async fn wait_ended(&self, timeout: Duration) -> Option<DeviceState> {
        let mut receiver = self.device.state.subscribe();
        let ended = tokio::time::timeout(timeout, receiver.wait_for(|s| !s.is_live())).await;
        match ended {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        }
    }

    /// A receiver of the device's state changes.
    pub fn watch_state(&self) -> watch::Receiver<DeviceState> {
        self.device.state.subscribe()
    }
}

/// Starts, stops and tracks emulated devices.
///
/// Dropping the manager kills every emulator process it started. The
/// processes are also asked to die with their parent thread
/// (`PR_SET_PDEATHSIG` on Linux), so call `start` and `restart` from a
/// runtime worker or the thread that owns the runtime, not from
/// `spawn_blocking`, whose threads come and go.
#[derive(Debug, Default)]
pub struct EmulatorManager {
    devices: Mutex<BTreeMap<String, Arc<Device>>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl EmulatorManager {
    /// A manager with no devices.
    pub fn new() -> EmulatorManager {
        EmulatorManager::default()
    }

    /// Starts a device: its bridge, then its emulator. The device's name
    /// must not be in use by a running device; an ended device of the same
    /// name is replaced.
    ///
    /// Returns once the emulator runs (QEMU starts paused and is resumed
    /// once its link UART is connected to the bridge). An emulator that
    /// fails at start shows up as [`DeviceState::Exited`] (see
    /// [`DeviceHandle::wait_ended`], [`DeviceHandle::wait_for`]).
    ///
    /// The emulator runs in a process group of its own, so a Ctrl-C at the
    /// terminal reaches the program using the manager, which stops its
    /// devices, and not the emulators directly.
    pub async fn start(&self, spec: DeviceSpec) -> Result<DeviceHandle, ManagerError> {
        if !valid_name(&spec.name) {
            return Err(ManagerError::InvalidName(spec.name));
        }
        let name = spec.name.clone();
        let device = Arc::new(Device {
            console: Console::new(&spec.name),
            spec,
            state: watch::Sender::new(DeviceState::Starting),
            status: Mutex::new(Status::default()),
            run: tokio::sync::Mutex::new(None),
        });
        let replaced = {
            let mut devices = lock(&self.devices);
            if let Some(existing) = devices.get(&name) {
                if existing.state.borrow().is_live() {
                    return Err(ManagerError::AlreadyRunning(name));
                }
            }
            devices.insert(name.clone(), Arc::clone(&device))
        };
        if let Some(replaced) = replaced {
            // Its process has ended; this closes the bridge it kept.
            if let Some(old) = replaced.run.lock().await.take() {
                old.stop(StopKind::Stop).await;
            }
        }
        let mut run = device.run.lock().await;
        // If this future is dropped while launching (a caller's timeout),
        // the device must not stay `Starting`, which would block its name.
        let mut cancelled = CancelledStart {
            device: Arc::clone(&device),
            armed: true,
        };
        let launched = launch(&device).await;
        cancelled.armed = false;
        drop(cancelled);
        match launched {
            Ok(started) => {
                *run = Some(started);
                drop(run);
                Ok(DeviceHandle { device })
            }
            Err(e) => {
                drop(run);
                let mut devices = lock(&self.devices);
                if devices.get(&name).is_some_and(|d| Arc::ptr_eq(d, &device)) {
                    devices.remove(&name);
                }
                Err(e)
            }
        }
    }

    /// The device of that name.
    pub fn handle(&self, name: &str) -> Option<DeviceHandle> {
        lock(&self.devices).get(name).map(|device| DeviceHandle {
            device: Arc::clone(device),
        })
    }

    fn device(&self, name: &str) -> Result<Arc<Device>, ManagerError> {
        lock(&self.devices)
            .get(name)
            .cloned()
            .ok_or_else(|| ManagerError::UnknownDevice(name.to_owned()))
    }

    /// Stops a device: asks the emulator to exit (SIGTERM, or `quit` for
    /// Renode), kills it after [`STOP_GRACE`], waits for it and closes its
    /// bridge. Returns its final state ([`DeviceState::Stopped`], or how it
    /// ended if it had already).
    pub async fn stop(&self, name: &str) -> Result<DeviceState, ManagerError> {
        let device = self.device(name)?;
        let mut run = device.run.lock().await;
        if let Some(current) = run.take() {
            current.stop(StopKind::Stop).await;
        }
        Ok(device.state.borrow().clone())
    }

    /// Resets a device: stops its emulator and starts it again with the
    /// same state directory (its flash persists) and a fresh bridge. The
    /// console continues: take a [`ConsoleMark`] before and wait after it.
    pub async fn restart(&self, name: &str) -> Result<DeviceHandle, ManagerError> {
        let device = self.device(name)?;
        let mut run = device.run.lock().await;
        if let Some(current) = run.take() {
            device.set_state(DeviceState::Restarting);
            current.stop(StopKind::Restart).await;
        }
        device.set_state(DeviceState::Starting);
        match launch(&device).await {
            Ok(started) => {
                *run = Some(started);
                Ok(DeviceHandle {
                    device: Arc::clone(&device),
                })
            }
            Err(e) => {
                let state = DeviceState::Crashed {
                    signal: None,
                    reason: format!("restart failed: {e}"),
                };
                device.set_state(state.clone());
                device.console.set_ended(Some(Ended {
                    state,
                    stderr_tail: Vec::new(),
                }));
                Err(e)
            }
        }
    }

    /// Presses the device's reset button: the emulator resets the
    /// processor and peripherals (QEMU's `system_reset`) and keeps running,
    /// its process, sockets and bridge untouched, as a watchdog reset
    /// would on a board. Unlike [`EmulatorManager::restart`], nothing
    /// outside the device notices. Returns once QEMU has reset the machine
    /// (its `RESET` event).
    pub async fn reset(&self, name: &str) -> Result<(), ManagerError> {
        let device = self.device(name)?;
        let mut run = device.run.lock().await;
        let qmp = run
            .as_mut()
            .and_then(|run| run.qmp.as_mut())
            .ok_or_else(|| ManagerError::CannotReset(name.to_owned()))?;
        qmp.system_reset()
            .await
            .map_err(|source| ManagerError::Monitor {
                device: name.to_owned(),
                source,
            })?;
        tracing::info!(device = name, "device reset");
        Ok(())
    }

    /// Every device, by name.
    pub fn list(&self) -> Vec<DeviceSummary> {
        let devices: Vec<Arc<Device>> = lock(&self.devices).values().cloned().collect();
        devices
            .into_iter()
            .map(|device| DeviceHandle { device }.summary())
            .collect()
    }

    /// Stops every device, concurrently.
    pub async fn stop_all(&self) {
        let names: Vec<String> = lock(&self.devices).keys().cloned().collect();
        let mut stops = tokio::task::JoinSet::new();
        for name in names {
            if let Ok(device) = self.device(&name) {
                stops.spawn(async move {
                    let mut run = device.run.lock().await;
                    if let Some(current) = run.take() {
                        current.stop(StopKind::Stop).await;
                    }
                });
            }
        }
        while stops.join_next().await.is_some() {}
    }
}

impl Drop for EmulatorManager {
    fn drop(&mut self) {
        let devices = std::mem::take(&mut *lock(&self.devices));
        for device in devices.values() {
            device.kill_now();
            // Dropping the run drops its stop sender: the supervisor reaps
            // the process and records it as stopped. If a stop is in
            // progress it holds the run, and the kill above ends it.
            if let Ok(mut run) = device.run.try_lock() {
                run.take();
            }
        }
    }
}

/// A free port on 127.0.0.1, for an emulator that listens. Another process
/// could take it before the emulator binds it; the emulator then fails to
/// start and says so.
/// The gateway's `HOST:PORT` as a device on QEMU's user-mode network
/// reaches it: a loopback host is the emulator's host, `host_address` to
/// the guest; another IPv4 host is reached as it is. `None` for anything
/// that is not an IPv4 socket address (after resolving a name, with tokio:
/// a host name must not block the runtime's thread).
async fn guest_gateway_address(gateway: &str, host_address: Ipv4Addr) -> Option<SocketAddr> {
    let address = tokio::net::lookup_host(gateway)
        .await
        .ok()?
        .find(SocketAddr::is_ipv4)?;
    Some(if address.ip().is_loopback() {
        SocketAddr::from((host_address, address.port()))
    } else {
        address
    })
}

fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

async fn launch(device: &Arc<Device>) -> Result<Run, ManagerError> {
    let spec = &device.spec;
    let backend = spec.backend.implementation();
    if !backend.available() {
        return Err(missing(backend.as_ref()));
    }
    std::fs::create_dir_all(&spec.state_dir).map_err(|source| ManagerError::StateDir {
        path: spec.state_dir.clone(),
        source,
    })?;
    let bridge_error = |source| ManagerError::Bridge {
        device: spec.name.clone(),
        source,
    };
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (bridge, link) = match (&spec.board.network, backend.link_mode()) {
        (Some(network), _) => {
            let address = guest_gateway_address(&spec.gateway, network.host_address)
                .await
                .ok_or_else(|| ManagerError::GatewayAddress {
                    device: spec.name.clone(),
                    gateway: spec.gateway.clone(),
                })?;
            crate::provision::set_gateway_address(&spec.state_dir, &address.to_string()).map_err(
                |source| ManagerError::Provision {
                    device: spec.name.clone(),
                    source,
                },
            )?;
            (None, None)
        }
        (None, LinkMode::EmulatorConnects) => {
            let bridge = Bridge::start(BridgeConfig::listen(&spec.name, localhost, &spec.gateway))
                .await
                .map_err(bridge_error)?;
            let port = bridge.local_addr().map_or(0, |a| a.port());
            (Some(bridge), Some(port))
        }
        (None, LinkMode::EmulatorListens) => {
            let port = free_port().map_err(bridge_error)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let bridge = Bridge::start(BridgeConfig::connect(&spec.name, addr, &spec.gateway))
                .await
                .map_err(bridge_error)?;
            (Some(bridge), Some(port))
        }
    };
    let console_port = match backend.console_source() {
        ConsoleSource::Stdout => None,
        ConsoleSource::Socket => Some(free_port().map_err(bridge_error)?),
    };
    // QMP goes over a socket pair, not a listening socket: no port to
    // race for, nothing another local user could connect to, and the
    // manager knows its peer is the QEMU it started.
    let qmp_pair = if backend.starts_paused() {
        Some(
            std::os::unix::net::UnixStream::pair().map_err(|source| ManagerError::Monitor {
                device: spec.name.clone(),
                source: source.into(),
            })?,
        )
    } else {
        None
    };
    let ports = Ports {
        link,
        console: console_port,
        qmp_fd: qmp_pair.as_ref().map(|(_, qemu_end)| qemu_end.as_raw_fd()),
    };
    let mut command = backend.command(spec, &ports)?;
    if let Some(fd) = ports.qmp_fd {
        inherit_fd(&mut command, fd);
    }
    let stop_method = backend.graceful_stop();
    command
        .stdin(match stop_method {
            GracefulStop::Stdin(_) => Stdio::piped(),
            GracefulStop::Terminate => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    die_with_parent(&mut command);
    private_files(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let program = backend.program().to_string_lossy().into_owned();
    tracing::debug!(device = %spec.name, command = ?command.as_std(), "starting the emulator");
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            missing(backend.as_ref())
        } else {
            ManagerError::Spawn {
                device: spec.name.clone(),
                program: program.clone(),
                source,
            }
        }
    })?;
    // QEMU has its own copy; closing ours lets the manager see the end of
    // the connection when QEMU exits.
    let qmp_end = qmp_pair.map(|(manager_end, _qemu_end)| manager_end);
    let pid = child.id().unwrap_or(0);
    let process = Arc::new(Process {
        pid,
        reaped: AtomicBool::new(false),
    });
    let tail = Tail::default();
    let log_path = spec.console_log();
    let mut readers = Vec::new();
    let mut console_reader = None;
    if let Some(stdout) = child.stdout.take() {
        match backend.console_source() {
            ConsoleSource::Stdout => {
                let console = device.console.clone();
                let log_path = log_path.clone();
                readers.push(tokio::spawn(async move {
                    console::capture(stdout, console, &log_path).await;
                }));
            }
            ConsoleSource::Socket => {
                let tail = tail.clone();
                let name = spec.name.clone();
                readers.push(tokio::spawn(
                    async move { tail.capture(stdout, &name).await },
                ));
            }
        }
    }
    if let Some(port) = console_port {
        let console = device.console.clone();
        console_reader = Some(AbortOnDrop(tokio::spawn(read_console_socket(
            port, console, log_path,
        ))));
    }
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        let name = spec.name.clone();
        readers.push(tokio::spawn(
            async move { tail.capture(stderr, &name).await },
        ));
    }
    {
        let mut status = lock(&device.status);
        *status = Status {
            process: Some(Arc::clone(&process)),
            link_port: link,
            started_at: Some(SystemTime::now()),
            stderr: tail.clone(),
            bridge: bridge.as_ref().map(Bridge::meter),
        };
    }
    device.console.set_ended(None);
    let qmp = match qmp_end {
        Some(stream) => resume(&mut child, stream, &spec.name, link.is_some()).await,
        None => None,
    };
    device.set_state(DeviceState::Running);
    let qemu_version = qmp
        .as_ref()
        .map(|qmp| tracing::field::display(qmp.version()));
    tracing::info!(device = %spec.name, backend = %spec.backend, pid, link_port = link, networked = spec.board.is_networked(),
        state_dir = %spec.state_dir.display(), qemu = qemu_version, "device started");
    let (stop_sender, stop_receiver) = oneshot::channel();
    let stdin = child.stdin.take();
    let supervisor = tokio::spawn(supervise(
        Arc::clone(device),
        child,
        stdin,
        stop_method,
        stop_receiver,
        process,
        readers,
        tail,
    ));
    Ok(Run {
        stop: Some(stop_sender),
        supervisor,
        bridge,
        console_reader,
        qmp,
    })
}

/// Longest wait for a paused emulator's QMP greeting.
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the emulator to answer a QMP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a paused emulator to connect its link UART.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Lets a paused emulator (QEMU) run once its link UART is connected (at
/// once without a link UART): negotiates QMP, asks until the link is up,
/// sends `cont`. Returns the QMP connection (kept open for the run), or
/// `None` if the emulator exited or QMP failed (then it stays paused, and
/// the reason is logged).
async fn resume(
    child: &mut Child,
    stream: std::os::unix::net::UnixStream,
    name: &str,
    link_uart: bool,
) -> Option<Qmp> {
    let resuming = async {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let mut qmp = Qmp::handshake(stream, name, GREETING_TIMEOUT, COMMAND_TIMEOUT).await?;
        if !link_uart {
            qmp.cont().await?;
        } else if !qmp.cont_once_connected(LINK_CHARDEV, LINK_TIMEOUT).await? {
            tracing::warn!(device = name, timeout = ?LINK_TIMEOUT,
                "the emulator did not connect its link UART to the bridge; resumed anyway (what the firmware sends before it connects is lost)");
        }
        Ok::<_, QmpError>(qmp)
    };
    tokio::select! {
        resumed = resuming => match resumed {
            Ok(qmp) => Some(qmp),
            Err(e) => {
                tracing::warn!(device = name, error = %e, "the emulator's QMP monitor failed; it stays paused");
                None
            }
        },
        // Exited at start (bad firmware path, say): the supervisor reports it.
        _ = child.wait() => None,
    }
}

fn missing(backend: &dyn EmulatorBackend) -> ManagerError {
    ManagerError::BackendMissing {
        program: backend.program().to_string_lossy().into_owned(),
        hint: backend.install_hint(),
    }
}

/// On Linux, has the kernel kill the emulator when the thread that started
/// it dies, so that not even a SIGKILLed manager leaves emulators behind.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes one prctl system call, which is async-signal-safe, and touches
    // no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut std::process::Command) {}

/// Has the emulator create its files readable by their owner only: the
/// device's flash (`flash.bin`) holds its private key.
fn private_files(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it makes
    // one umask system call, which is async-signal-safe, and allocates
    // nothing.
    unsafe {
        command.pre_exec(|| {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            Ok(())
        });
    }
}

/// Has the emulator inherit descriptor `fd` (open in the manager with
/// close-on-exec, as Rust opens every descriptor, so that no other child
/// gets it).
fn inherit_fd(command: &mut std::process::Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it makes
    // one fcntl system call, which is async-signal-safe, on a descriptor
    // the child inherited open from the manager, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from)
        });
    }
}

/// Connects to an emulator's console socket (retrying while the emulator
/// starts) and captures it.
async fn read_console_socket(port: u16, console: Console, log_path: PathBuf) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                console::capture(stream, console.clone(), &log_path).await;
            }
            Err(e) => {
                tracing::trace!(device = console.device(), error = %e, "console socket not ready");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Owns the emulator process: waits for it to exit or for a stop request,
/// then records how it ended.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    device: Arc<Device>,
    mut child: Child,
    mut stdin: Option<ChildStdin>,
    stop_method: GracefulStop,
    stop: oneshot::Receiver<StopKind>,
    process: Arc<Process>,
    readers: Vec<JoinHandle<()>>,
    tail: Tail,
) {
    let name = device.spec.name.clone();
    let (status, requested) = tokio::select! {
        status = child.wait() => (status, None),
        kind = stop => {
            // A dropped sender (the manager went away) is a stop too.
            let kind = kind.unwrap_or(StopKind::Stop);
            match stop_method {
                GracefulStop::Terminate => send_signal(process.pid, rustix::process::Signal::TERM),
                GracefulStop::Stdin(text) => {
                    if let Some(stdin) = stdin.as_mut() {
                        let _ = stdin.write_all(text.as_bytes()).await;
                        let _ = stdin.flush().await;
                    }
                }
            }
            let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    tracing::warn!(device = %name, grace = ?STOP_GRACE, "the emulator ignored the request to exit: killing it");
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            (status, Some(kind))
        }
    };
    process.reaped.store(true, Ordering::SeqCst);
    drop(stdin);
    // The readers end at end of stream, which comes with the exit; wait
    // for them so that every line is in the console before the end is
    // recorded.
    for reader in readers {
        let _ = tokio::time::timeout(DRAIN, reader).await;
    }
    let state = match requested {
        Some(StopKind::Stop) => DeviceState::Stopped,
        Some(StopKind::Restart) => DeviceState::Restarting,
        None => DeviceState::from_status(status),
    };
    let stderr_tail = tail.lines();
    match &state {
        DeviceState::Exited { .. } | DeviceState::Crashed { .. } => {
            tracing::warn!(device = %name, stderr = %stderr_tail.join("\n"), "device {state}");
        }
        _ => tracing::info!(device = %name, "device {state}"),
    }
    device.set_state(state.clone());
    if state != DeviceState::Restarting {
        device.console.set_ended(Some(Ended { state, stderr_tail }));
    }
}

/// Marks a device whose launch was abandoned midway (the future dropped)
/// as crashed; its emulator is killed with the dropped child.
struct CancelledStart {
    device: Arc<Device>,
    armed: bool,
}

impl Drop for CancelledStart {
    fn drop(&mut self) {
        if self.armed {
            self.device.state.send_replace(DeviceState::Crashed {
                signal: None,
                reason: "start was cancelled".to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gateway_on_loopback_is_the_host_address_to_a_networked_guest() {
        let host = Ipv4Addr::new(10, 0, 2, 2);
        assert_eq!(
            guest_gateway_address("127.0.0.1:40029", host).await,
            Some(SocketAddr::from((host, 40029)))
        );
        assert_eq!(
            guest_gateway_address("localhost:4423", host).await,
            Some(SocketAddr::from((host, 4423)))
        );
        assert_eq!(
            guest_gateway_address("192.0.2.7:4423", host).await,
            Some(SocketAddr::from(([192, 0, 2, 7], 4423)))
        );
        assert_eq!(guest_gateway_address("[::1]:4423", host).await, None);
        assert_eq!(guest_gateway_address("no port", host).await, None);
    }
}
