//! What the devices of one simulation share: settings, TLS trust and the
//! claim configuration, counters, the connect pacer and the event channel.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::broadcast;
use tokio::time::Instant;
use wasmbed_agent::AgentConfig;
use wasmbed_agent::agent::BackoffConfig;
use wasmbed_agent::host::{FileKeyStore, FileModuleStore};
use wasmbed_agent::runtime::WasmiConfig;
use wasmbed_pki::Installation;
use wasmbed_protocol::{DeviceInfo, Name};

use crate::device::{FleetEvent, SimDevice};
use crate::stats::{FleetSnapshot, FleetStats};
use crate::store::{MemKeyStore, MemModuleStore, ModuleCache, SimKeys, SimModules};

/// Why a simulation or a device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] wasmbed_pki::TlsConfigError),
    #[error("device key: {0}")]
    Key(#[from] wasmbed_pki::KeyError),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    #[error("device store: {0}")]
    Store(#[from] wasmbed_agent::storage::StoreError),
    #[error("agent: {0}")]
    Agent(#[from] wasmbed_agent::AgentError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings shared by every device of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The gateway's device port.
    pub gateway: SocketAddr,
    /// The name the gateway's certificate is checked against.
    pub server_name: String,
    /// The agent's settings (device info, limits, backoff), as on a device.
    pub agent: AgentConfig,
    /// Application slots per device.
    pub app_slots: usize,
    /// Largest module a device accepts, in bytes.
    pub max_module_size: u32,
    pub wasmi: WasmiConfig,
    /// Connecting (TCP and TLS handshake) longer than this fails.
    pub connect_timeout: Duration,
    /// A write to the gateway longer than this breaks the connection.
    pub write_timeout: Duration,
    /// Most connection attempts per second, over all devices (first
    /// connections and reconnections alike); `None`: no limit.
    pub connect_rate: Option<f64>,
    /// Capacity of the channel of [`FleetEvent`]s
    /// ([`Simulation::subscribe`]); 0 disables it.
    pub event_capacity: usize,
}

/// The board name simulated devices enroll with.
pub const SIM_BOARD: &str = "wasmbed-sim";

impl SimConfig {
    /// Defaults for a gateway at `gateway` whose certificate names
    /// `localhost`: 4 slots of 64 KiB modules, 64 KiB of application
    /// memory, the agent's default backoff (1 s doubling to 60 s).
    pub fn new(gateway: SocketAddr) -> Self {
        let mut agent = AgentConfig::new(DeviceInfo {
            board: name(SIM_BOARD),
            firmware_version: name(env!("CARGO_PKG_VERSION")),
        });
        agent.free_memory = || 48 * 1024;
        SimConfig {
            gateway,
            server_name: "localhost".to_owned(),
            agent,
            app_slots: 4,
            max_module_size: 64 * 1024,
            wasmi: WasmiConfig::default(),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            connect_rate: None,
            event_capacity: 0,
        }
    }

    /// Sets the agent's reconnection backoff.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        self.agent.backoff = BackoffConfig {
            initial_ms: ms(initial),
            max_ms: ms(max),
        };
        self
    }
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

/// Spaces connection attempts `interval` apart.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Option<Pacer> {
        if !rate.is_finite() || rate <= 0.0 {
            return None;
        }
        Some(Pacer {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Reserves the next free slot and waits for it.
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) gateway_ca: CertificateDer<'static>,
    /// One claim configuration for the whole fleet.
    pub(crate) claim: Arc<ClientConfig>,
    pub(crate) stats: FleetStats,
    pub(crate) modules: ModuleCache,
    pacer: Option<Pacer>,
    pub(crate) events: Option<broadcast::Sender<FleetEvent>>,
}

/// The shared parts of a simulation; cheap to clone. Devices are made with
/// [`Simulation::device`] and counted in [`Simulation::stats`].
#[derive(Clone)]
pub struct Simulation {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("gateway", &self.shared.config.gateway)
            .field("server_name", &self.shared.config.server_name)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Devices trust `installation`'s gateway CA and enroll with its claim
    /// certificate.
    pub fn new(config: SimConfig, installation: &Installation) -> Result<Simulation, SimError> {
        let server_name = ServerName::try_from(config.server_name.clone())
            .map_err(|_| SimError::ServerName(config.server_name.clone()))?;
        let claim = wasmbed_pki::client_config_claim(installation)?;
        let events =
            (config.event_capacity > 0).then(|| broadcast::channel(config.event_capacity).0);
        Ok(Simulation {
            shared: Arc::new(Shared {
                pacer: config.connect_rate.and_then(Pacer::new),
                server_name,
                gateway_ca: installation.gateway_ca().clone(),
                claim,
                stats: FleetStats::default(),
                modules: ModuleCache::new(),
                events,
                config,
            }),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The counters of every device made from this simulation.
    pub fn stats(&self) -> FleetSnapshot {
        self.shared.stats.snapshot()
    }

    /// The events of every device, tagged with its index; `None` unless
    /// [`SimConfig::event_capacity`] is set. A slow receiver loses the
    /// oldest events (see [`broadcast`]).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<FleetEvent>> {
        self.shared
            .events
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    /// Installed modules shared between devices.
    pub fn module_cache(&self) -> &ModuleCache {
        &self.shared.modules
    }

    /// Fresh in-memory stores (see [`crate::store`]).
    pub fn memory_stores(&self) -> Result<(SimKeys, SimModules), SimError> {
        let config = &self.shared.config;
        let modules = MemModuleStore::new(config.app_slots, config.max_module_size)?
            .with_cache(self.shared.modules.clone());
        Ok((
            SimKeys::Memory(MemKeyStore::new()),
            SimModules::Memory(modules),
        ))
    }

    /// Stores in `dir` (created if missing) that outlive the process: the
    /// identity in `dir/key.cbor` (mode 0600: it holds the device's private
    /// key; one that others may read is tightened, with a warning) and the
    /// modules in `dir/modules/`.
    pub fn file_stores(&self, dir: &Path) -> Result<(SimKeys, SimModules), SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let key = dir.join("key.cbor");
        match wasmbed_pki::private_file::tighten(&key) {
            Ok(Some(mode)) => tracing::warn!(
                path = %key.display(),
                was = format_args!("{mode:o}"),
                "the device key could be read by other users; its mode is now 0600"
            ),
            Ok(None) => {}
            Err(source) => return Err(SimError::Io { path: key, source }),
        }
        let config = &self.shared.config;
        let modules = FileModuleStore::open(
            dir.join("modules"),
            config.app_slots,
            config.max_module_size,
        )?;
        Ok((
            SimKeys::File(FileKeyStore::new(key)),
            SimModules::File(modules),
        ))
    }

    /// Device number `index` with these stores; an identity in `keys` is
    /// used, otherwise the device enrolls.
    pub fn device(
        &self,
        index: usize,
        keys: SimKeys,
        modules: SimModules,
    ) -> Result<SimDevice, SimError> {
        SimDevice::new(self.clone(), index, keys, modules)
    }

    /// Device number `index` with fresh in-memory stores.
    pub fn memory_device(&self, index: usize) -> Result<SimDevice, SimError> {
        let (keys, modules) = self.memory_stores()?;
        self.device(index, keys, modules)
    }

    pub(crate) async fn pace(&self) {
        if let Some(pacer) = &self.shared.pacer {
            pacer.wait().await;
        }
    }
}
