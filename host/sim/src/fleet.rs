//! Many simulated devices, each a tokio task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::device::SimDevice;
use crate::simulation::{SimError, Simulation};
use crate::stats::{DeviceStatus, FleetSnapshot};

/// `n` simulated devices running as tokio tasks, started together and
/// stopped together.
///
/// Connection attempts are spaced by [`SimConfig::connect_rate`], so a
/// fleet starts staggered and reconnects after a gateway restart without a
/// thundering herd (the agent's jittered backoff spreads them further).
///
/// [`SimConfig::connect_rate`]: crate::SimConfig::connect_rate
#[derive(Debug)]
pub struct Fleet {
    sim: Simulation,
    statuses: Vec<Arc<DeviceStatus>>,
    tasks: Vec<JoinHandle<SimDevice>>,
    shutdown: watch::Sender<bool>,
}

impl Fleet {
    /// Starts `devices` devices with in-memory stores, or, with
    /// `state_dir`, with file stores in `state_dir/device-NNNNN/` that a
    /// later run picks up again (enrolled devices stay enrolled).
    ///
    /// Must be called within a tokio runtime.
    pub fn start(
        sim: Simulation,
        devices: usize,
        state_dir: Option<&Path>,
    ) -> Result<Fleet, SimError> {
        let (shutdown, stop) = watch::channel(false);
        let mut fleet = Fleet {
            sim,
            statuses: Vec::with_capacity(devices),
            tasks: Vec::with_capacity(devices),
            shutdown,
        };
        for index in 0..devices {
            let (keys, modules) = match state_dir {
                Some(dir) => fleet
                    .sim
                    .file_stores(&dir.join(format!("device-{index:05}")))?,
                None => fleet.sim.memory_stores()?,
            };
            let device = fleet.sim.device(index, keys, modules)?;
            fleet.statuses.push(device.status());
            fleet.tasks.push(device.spawn(stop.clone()));
        }
        Ok(fleet)
    }

    pub fn simulation(&self) -> &Simulation {
        &self.sim
    }

    /// The fleet's counters now.
    pub fn stats(&self) -> FleetSnapshot {
        self.sim.stats()
    }

    /// Each device's status, by index.
    pub fn devices(&self) -> &[Arc<DeviceStatus>] {
        &self.statuses
    }

    pub fn len(&self) -> usize {
        self.statuses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
    }

    /// Asks every device to stop (established sessions say goodbye), waits
    /// up to `grace` for them, aborts the rest and returns the final
    /// counters.
    pub async fn shutdown(self, grace: Duration) -> FleetSnapshot {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.sim.stats()
    }
}
