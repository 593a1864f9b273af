//! In `wasmbed up`: the Device controller. A Device resource created with
//! `emulated: true` (through the API, e.g. `wasmbed device create NAME
//! --emulated`) boots as an emulated device, as the architecture's flow
//! has it. Per device, on the API server's controller runtime
//! ([`wasmbed_api::controller::runtime`]): an emulated Device without a
//! running emulator is provisioned and started (again, if its emulator
//! died), an enrolled one gets its device id written into its spec, and
//! the emulator of a Device that is gone, being deleted or no longer
//! emulated is stopped. Emulated devices are looked at every two seconds
//! (their consoles say when they enrolled); the others only when they
//! change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmbed_api::controller::runtime::{self, Action, Reconciler, Related};
use wasmbed_api::model::Device;
use wasmbed_api::store::Store;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, DeviceSpec, EmulatorManager, ProvisionOptions, provision,
};

/// What the controller needs to start a device.
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

/// How often an emulated device's emulator and console are looked at.
const INTERVAL: Duration = Duration::from_secs(2);

impl Emulated {
    /// Runs until `stop` turns true.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let (store, own) = self.store.quiet();
        let controller = Emulated { store, ..self };
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        runtime::run(controller.store.clone(), own, controller, stopped).await;
    }

    async fn stop_emulator(&self, name: &str, why: &str) {
        let live = self
            .manager
            .handle(name)
            .is_some_and(|handle| handle.state().is_live());
        if !live {
            return;
        }
        crate::up::say(&format!("{name}: {why}; stopping it"));
        if let Err(e) = self.manager.stop(name).await {
            tracing::warn!(device = %name, error = %e, "stopping failed");
        }
    }

    async fn ensure_running(&self, device: &Device) -> anyhow::Result<()> {
        let name = &device.metadata.name;
        let handle = match self.manager.handle(name) {
            Some(handle) if handle.state().is_live() => handle,
            _ => self.start(name).await?,
        };
        if device.spec.device_id.is_some() {
            return Ok(());
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
        Ok(())
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

impl Reconciler for Emulated {
    type Object = Device;
    type Error = String;

    async fn reconcile(&mut self, device: Arc<Device>, _: &Related) -> Result<Action, String> {
        let name = &device.metadata.name;
        if !device.spec.emulated {
            self.stop_emulator(name, "its device resource is no longer emulated")
                .await;
            return Ok(Action::AwaitChange);
        }
        if device.metadata.deleting() {
            self.stop_emulator(name, "its device resource is being deleted")
                .await;
            return Ok(Action::AwaitChange);
        }
        self.ensure_running(&device)
            .await
            .map_err(|e| format!("starting the emulated device failed: {e:#}"))?;
        Ok(Action::Requeue(INTERVAL))
    }

    async fn cleanup(&mut self, name: &str, _: &Related) {
        self.stop_emulator(name, "its device resource is gone")
            .await;
    }
}
