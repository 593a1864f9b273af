//! Key and module stores for simulated devices: in memory (the agent's
//! [`MemKeyStore`] and [`MemModuleStore`], whose module bytes are shared
//! between devices through a [`ModuleCache`]), or in files that outlive
//! the process (the agent's [`FileKeyStore`] and [`FileModuleStore`]).
//!
//! Memory is as durable as the simulated device: a [`SimDevice`] that stops
//! and starts again with the same stores behaves like a device that was
//! switched off and on.
//!
//! [`SimDevice`]: crate::SimDevice

use wasmbed_agent::host::{FileKeyStore, FileModuleStore};
pub use wasmbed_agent::host::{MemKeyStore, MemModuleStore, ModuleCache};
use wasmbed_agent::identity::{KeyStore, StoredKey};
use wasmbed_agent::storage::{
    Acceptor, BeginError, CommitError, ModuleMeta, ModuleStore, SlotInfo, StoreError, WriteError,
};
use wasmbed_protocol::{AppState, DeploymentId};

/// The key store of a simulated device: in memory, or in a file.
#[derive(Debug)]
pub enum SimKeys {
    Memory(MemKeyStore),
    File(FileKeyStore),
}

impl KeyStore for SimKeys {
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError> {
        match self {
            SimKeys::Memory(s) => s.load(),
            SimKeys::File(s) => s.load(),
        }
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        match self {
            SimKeys::Memory(s) => s.save(key),
            SimKeys::File(s) => s.save(key),
        }
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        match self {
            SimKeys::Memory(s) => s.clear(),
            SimKeys::File(s) => s.clear(),
        }
    }
}

/// The module store of a simulated device: in memory, or in a directory.
#[derive(Debug)]
pub enum SimModules {
    Memory(MemModuleStore),
    File(FileModuleStore),
}

macro_rules! modules {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            SimModules::Memory($s) => $e,
            SimModules::File($s) => $e,
        }
    };
}

impl ModuleStore for SimModules {
    fn slots(&self) -> &[Option<SlotInfo>] {
        modules!(self, s => s.slots())
    }

    fn max_module_size(&self) -> u32 {
        modules!(self, s => s.max_module_size())
    }

    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError> {
        modules!(self, s => s.begin(meta))
    }

    fn write(
        &mut self,
        deployment: DeploymentId,
        offset: u32,
        data: &[u8],
    ) -> Result<u32, WriteError> {
        modules!(self, s => s.write(deployment, offset, data))
    }

    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError> {
        modules!(self, s => s.checkpoint(deployment))
    }

    fn commit(
        &mut self,
        deployment: DeploymentId,
        accept: Acceptor<'_>,
    ) -> Result<(), CommitError> {
        modules!(self, s => s.commit(deployment, accept))
    }

    fn load(&mut self, deployment: DeploymentId) -> Result<Vec<u8>, StoreError> {
        modules!(self, s => s.load(deployment))
    }

    fn set_state(&mut self, deployment: DeploymentId, state: AppState) -> Result<bool, StoreError> {
        modules!(self, s => s.set_state(deployment, state))
    }

    fn remove(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        modules!(self, s => s.remove(deployment))
    }

    fn finish(
        &mut self,
        deployment: DeploymentId,
        state: AppState,
        result: &[u8],
    ) -> Result<bool, StoreError> {
        modules!(self, s => s.finish(deployment, state, result))
    }

    fn result(&self, deployment: DeploymentId) -> Option<&[u8]> {
        modules!(self, s => s.result(deployment))
    }

    fn clear_result(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        modules!(self, s => s.clear_result(deployment))
    }
}
