//! Wasmbed's fleet simulator: the real device agent (`wasmbed-agent`,
//! with its wasmi runtime) on tokio and rustls, thousands of devices in one
//! process, for end-to-end tests and load.
//!
//! - [`Simulation`]: what the devices share: the gateway's address and
//!   name, the installation's trust anchors and claim certificate,
//!   counters ([`FleetSnapshot`]), a connect pacer and an optional channel
//!   of [`FleetEvent`]s.
//! - [`SimDevice`]: one device: an [`Agent`](wasmbed_agent::Agent) driven
//!   over TCP and TLS 1.3, enrolling with the claim certificate and then
//!   connecting with its own, heartbeating, installing and running
//!   modules, and reconnecting with the agent's backoff.
//! - [`Fleet`]: N devices as tokio tasks, stopped together.
//! - [`store`]: compact in-memory key and module stores (and wrappers of
//!   the agent's file stores), so that a simulated device costs a few tens
//!   of KiB: measured as process RSS in a release build, about 17 KiB per
//!   device waiting to connect and 31 KiB per device with an established
//!   TLS session (1,000 devices); 10,000 connected devices took 295 MiB.
//!
//! ```no_run
//! # async fn demo(installation: &wasmbed_pki::Installation) -> Result<(), wasmbed_sim::SimError> {
//! use std::time::Duration;
//! use wasmbed_sim::{Fleet, SimConfig, Simulation};
//!
//! let mut config = SimConfig::new("127.0.0.1:40029".parse().unwrap());
//! config.connect_rate = Some(200.0);
//! let fleet = Fleet::start(Simulation::new(config, installation)?, 1000, None)?;
//! tokio::time::sleep(Duration::from_secs(30)).await;
//! println!("{}", fleet.stats());
//! fleet.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod device;
mod fleet;
mod link;
mod simulation;
mod stats;
pub mod store;

pub use device::{FleetEvent, SimAgent, SimClock, SimDevice, SimEvent};
pub use fleet::Fleet;
pub use simulation::{SIM_BOARD, SimConfig, SimError, Simulation};
pub use stats::{DeviceSnapshot, DeviceStatus, ErrorCounts, ErrorKind, FleetSnapshot, FleetStats};
