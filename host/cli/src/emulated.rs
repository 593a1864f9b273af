//! In `wasmbed up`: a Device resource created with `emulated: true` (through
//! the API, e.g. `wasmbed device create NAME --emulated`) boots as an
//! emulated device, as the architecture's flow has it. A level-triggered
//! loop: on every change a watch of the store shows and every two seconds, each emulated Device
//! without a running emulator is provisioned and started, an enrolled one
//! gets its device id written into its spec, and the emulator of a Device
//! that is gone or being deleted is stopped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmbed_api::model::Device;
use wasmbed_api::store::Store;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, DeviceSpec, EmulatorManager, ProvisionOptions, provision,
};

/// What the loop needs to start a device.
pub(crate) struct Emulated {
    pub(crate) manager: Arc<EmulatorManager>,
    pub(crate) store: Store,
    pub(crate) claim: ClaimMaterial,
    pub(crate) board: Board,
    pub(crate) firmware: PathBuf,
    /// Device state directories go under it, one per name.
    pub(crate) devices_dir: PathBuf,
    /// The gateway's device address.
    pub(crate) gateway: String,
}

const INTERVAL: Duration = Duration::from_secs(2);

impl Emulated {
    /// Runs until `stop` turns true.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.store.wakeups(None);
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(INTERVAL) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn reconcile(&self) {
        let devices = match self.store.list::<Device>().await {
            Ok(devices) => devices,
            Err(e) => {
                tracing::warn!(error = %e, "listing devices failed");
                return;
            }
        };
        let wanted: BTreeSet<&str> = devices
            .iter()
            .filter(|d| d.spec.emulated && !d.metadata.deleting())
            .map(|d| d.metadata.name.as_str())
            .collect();
        for device in devices
            .iter()
            .filter(|d| wanted.contains(d.metadata.name.as_str()))
        {
            self.ensure_running(device).await;
        }
        for running in self.manager.list() {
            if running.state.is_live() && !wanted.contains(running.name.as_str()) {
                crate::up::say(&format!(
                    "{}: its device resource is gone; stopping it",
                    running.name
                ));
                if let Err(e) = self.manager.stop(&running.name).await {
                    tracing::warn!(device = %running.name, error = %e, "stopping failed");
                }
            }
        }
    }

    async fn ensure_running(&self, device: &Device) {
        let name = &device.metadata.name;
        let handle = match self.manager.handle(name) {
            Some(handle) if handle.state().is_live() => handle,
            _ => match self.start(name).await {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(device = %name, error = %e, "starting the emulated device failed");
                    return;
                }
            },
        };
        if device.spec.device_id.is_some() {
            return;
        }
        let enrolled = handle
            .console()
            .lines()
            .iter()
            .rev()
            .find_map(|line| crate::up::device_id(&line.text));
        if let Some(id) = enrolled {
            let written = self
                .store
                .modify::<Device>(name, |d| {
                    let change = d.spec.device_id.as_deref() != Some(id.as_str());
                    d.spec.device_id = Some(id.clone());
                    change
                })
                .await;
            match written {
                Ok(_) => crate::up::say(&format!("{name}: enrolled as device {id}")),
                Err(e) => {
                    tracing::warn!(device = %name, error = %e, "recording the device id failed")
                }
            }
        }
    }

    async fn start(&self, name: &str) -> anyhow::Result<wasmbed_emulator::DeviceHandle> {
        let state_dir = self.devices_dir.join(name);
        provision(
            &state_dir,
            &ProvisionOptions {
                claim: self.claim.clone(),
                server_name: "localhost".into(),
                device_name: name.to_owned(),
                overwrite: false,
            },
        )?;
        let handle = self
            .manager
            .start(DeviceSpec {
                name: name.to_owned(),
                board: self.board.clone(),
                firmware: self.firmware.clone(),
                state_dir,
                gateway: self.gateway.clone(),
                backend: Backend::Qemu,
                icount: None,
            })
            .await?;
        crate::up::say(&format!(
            "{name}: created through the API; booting (pid {})",
            handle.pid().unwrap_or(0)
        ));
        Ok(handle)
    }
}
