//! Key and module stores for simulated devices.
//!
//! A simulated device must cost little memory: ten thousand of them share
//! one process. The agent's flash stores over `MemFlash` allocate every
//! sector up front (two 4 KiB sectors for the key, and for the modules
//! `2 + slots × (1 + max_module_size / 4 KiB)` sectors: 144 KiB for two
//! slots of 64 KiB), so the simulator has its own in-memory stores:
//!
//! - [`MemKeyStore`] keeps the stored key as a value (a few hundred bytes
//!   once enrolled);
//! - [`MemModuleStore`] keeps a slot table of a few hundred bytes and
//!   allocates module bytes only while a transfer is in progress. Once a
//!   module is verified and installed its bytes are shared through a
//!   [`ModuleCache`] by SHA-256, so a module deployed to the whole fleet is
//!   held once, not once per device.
//!
//! Memory is as durable as the simulated device: a [`SimDevice`] that stops
//! and starts again with the same stores behaves like a device that was
//! switched off and on. For state that outlives the process, [`SimKeys`]
//! and [`SimModules`] also wrap the agent's file-backed stores.
//!
//! [`SimDevice`]: crate::SimDevice

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmbed_agent::host::{FileKeyStore, FileModuleStore};
use wasmbed_agent::identity::{KeyStore, StoredKey};
use wasmbed_agent::storage::{
    Acceptor, BeginError, BeginSlot, CommitError, ModuleMeta, ModuleStore, SlotInfo, SlotState,
    StoreError, WriteError, bytes_held, choose_begin_slot, slot_index,
};
use wasmbed_protocol::{AppState, DeploymentId, MAX_APPS};

/// Installed module bytes shared by SHA-256 between the devices of a
/// fleet. Entries are weak: a module is freed when no device holds it.
#[derive(Debug, Clone, Default)]
pub struct ModuleCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Debug, Default)]
struct CacheInner {
    modules: HashMap<[u8; 32], Weak<[u8]>>,
    inserts: usize,
}

impl ModuleCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of the module with hash `sha256`; `bytes` becomes it
    /// if there is none yet. The caller has verified the hash.
    pub fn intern(&self, sha256: [u8; 32], bytes: Vec<u8>) -> Arc<[u8]> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(module) = inner.modules.get(&sha256).and_then(Weak::upgrade) {
            return module;
        }
        let module: Arc<[u8]> = bytes.into();
        inner.modules.insert(sha256, Arc::downgrade(&module));
        inner.inserts += 1;
        // Forget freed modules now and then.
        if inner.inserts % 64 == 0 {
            inner.modules.retain(|_, module| module.strong_count() > 0);
        }
        module
    }

    /// Distinct modules held by at least one device.
    pub fn live_modules(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .modules
            .values()
            .filter(|m| m.strong_count() > 0)
            .count()
    }
}

/// A [`KeyStore`] in memory.
#[derive(Debug, Clone, Default)]
pub struct MemKeyStore {
    key: Option<StoredKey>,
}

impl MemKeyStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyStore for MemKeyStore {
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.key.clone())
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        self.key = Some(key.clone());
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.key = None;
        Ok(())
    }
}

/// The bytes of one slot.
#[derive(Debug, Clone, Default)]
enum SlotBytes {
    #[default]
    Free,
    /// A transfer in progress: the bytes received so far.
    Receiving(Vec<u8>),
    /// A verified, installed module.
    Installed(Arc<[u8]>),
}

/// A [`ModuleStore`] in memory that allocates module bytes only as they
/// arrive (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct MemModuleStore {
    slots: Vec<Option<SlotInfo>>,
    bytes: Vec<SlotBytes>,
    /// Undelivered execution result (CBOR) of each installed slot.
    results: Vec<Option<Box<[u8]>>>,
    max_module_size: u32,
    cache: Option<ModuleCache>,
}

impl MemModuleStore {
    /// A store of `slots` slots (1 to `MAX_APPS`) for modules of up to
    /// `max_module_size` bytes.
    pub fn new(slots: usize, max_module_size: u32) -> Result<Self, StoreError> {
        if slots == 0 || slots > MAX_APPS {
            return Err(StoreError::Layout);
        }
        Ok(MemModuleStore {
            slots: vec![None; slots],
            bytes: vec![SlotBytes::Free; slots],
            results: vec![None; slots],
            max_module_size,
            cache: None,
        })
    }

    /// Shares installed modules through `cache`.
    pub fn with_cache(mut self, cache: ModuleCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn index(&self, deployment: DeploymentId) -> Option<usize> {
        slot_index(&self.slots, deployment)
    }

    fn held(&self, i: usize) -> u32 {
        bytes_held(&self.slots[i])
    }
}

impl ModuleStore for MemModuleStore {
    fn slots(&self) -> &[Option<SlotInfo>] {
        &self.slots
    }

    fn max_module_size(&self) -> u32 {
        self.max_module_size
    }

    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError> {
        let resumable = |_: usize| true;
        let i = match choose_begin_slot(&self.slots, self.max_module_size, meta, resumable)? {
            BeginSlot::Resume { held } => return Ok(held),
            BeginSlot::Restart { index } => index,
        };
        self.slots[i] = Some(SlotInfo {
            meta: meta.clone(),
            state: SlotState::Receiving { held: 0 },
        });
        self.results[i] = None;
        // Bounded by `max_module_size`, checked above.
        self.bytes[i] = SlotBytes::Receiving(Vec::with_capacity(meta.size as usize));
        Ok(0)
    }

    fn write(&mut self, deployment: DeploymentId, at: u32, data: &[u8]) -> Result<u32, WriteError> {
        let i = self
            .index(deployment)
            .ok_or(WriteError::UnknownDeployment)?;
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
        let held = self.held(i);
        let SlotBytes::Receiving(bytes) = &mut self.bytes[i] else {
            return Err(WriteError::UnknownDeployment);
        };
        let end = u64::from(at) + data.len() as u64;
        if at > held {
            return Err(WriteError::UnexpectedOffset { held });
        }
        if end > u64::from(size) {
            return Err(WriteError::BeyondSize);
        }
        if end <= u64::from(held) {
            return Ok(held);
        }
        bytes.extend_from_slice(&data[(held - at) as usize..]);
        // `end <= size`, a u32.
        let held = u32::try_from(end).map_err(|_| WriteError::BeyondSize)?;
        if let Some(slot) = &mut self.slots[i] {
            slot.state = SlotState::Receiving { held };
        }
        Ok(held)
    }

    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError> {
        // Memory lives as long as the simulated device: everything held is
        // as durable as it gets.
        Ok(self.index(deployment).map_or(0, |i| self.held(i)))
    }

    fn commit(
        &mut self,
        deployment: DeploymentId,
        accept: Acceptor<'_>,
    ) -> Result<(), CommitError> {
        let i = self
            .index(deployment)
            .ok_or(CommitError::UnknownDeployment)?;
        let Some(slot) = &self.slots[i] else {
            return Err(CommitError::UnknownDeployment);
        };
        if let SlotState::Installed(_) = slot.state {
            return Ok(());
        }
        let meta = slot.meta.clone();
        let SlotBytes::Receiving(bytes) = &self.bytes[i] else {
            return Err(CommitError::UnknownDeployment);
        };
        let held = self.held(i);
        if held != meta.size {
            return Err(CommitError::Incomplete { held });
        }
        if <[u8; 32]>::from(Sha256::digest(bytes)) != meta.sha256 {
            return Err(CommitError::HashMismatch);
        }
        accept(bytes).map_err(CommitError::Rejected)?;
        let SlotBytes::Receiving(bytes) = std::mem::take(&mut self.bytes[i]) else {
            return Err(CommitError::UnknownDeployment);
        };
        let module = match &self.cache {
            Some(cache) => cache.intern(meta.sha256, bytes),
            None => bytes.into(),
        };
        self.bytes[i] = SlotBytes::Installed(module);
        self.slots[i] = Some(SlotInfo {
            meta,
            state: SlotState::Installed(AppState::Installed),
        });
        Ok(())
    }

    fn load(&mut self, deployment: DeploymentId) -> Result<Vec<u8>, StoreError> {
        let i = self.index(deployment).ok_or(StoreError::NotFound)?;
        match &self.bytes[i] {
            SlotBytes::Installed(module) => Ok(module.to_vec()),
            _ => Err(StoreError::NotFound),
        }
    }

    fn set_state(&mut self, deployment: DeploymentId, state: AppState) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        match &mut self.slots[i] {
            Some(slot) if matches!(slot.state, SlotState::Installed(_)) => {
                slot.state = SlotState::Installed(state);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn remove(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        self.slots[i] = None;
        self.bytes[i] = SlotBytes::Free;
        self.results[i] = None;
        Ok(true)
    }

    fn finish(
        &mut self,
        deployment: DeploymentId,
        state: AppState,
        result: &[u8],
    ) -> Result<bool, StoreError> {
        if !self.set_state(deployment, state)? {
            return Ok(false);
        }
        if let Some(i) = self.index(deployment) {
            self.results[i] = Some(result.into());
        }
        Ok(true)
    }

    fn result(&self, deployment: DeploymentId) -> Option<&[u8]> {
        let i = self.index(deployment)?;
        self.results[i].as_deref()
    }

    fn clear_result(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        Ok(self
            .index(deployment)
            .is_some_and(|i| self.results[i].take().is_some()))
    }
}

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

#[cfg(test)]
mod tests {
    use wasmbed_protocol::{ApplicationId, DeployFailure, Limits};

    use super::*;

    fn meta(deployment: u64, module: &[u8]) -> ModuleMeta {
        ModuleMeta {
            deployment: DeploymentId(deployment),
            application: ApplicationId(1),
            size: u32::try_from(module.len()).unwrap_or(u32::MAX),
            sha256: Sha256::digest(module).into(),
            limits: Limits {
                fuel: 1,
                memory_pages: 1,
                entry: heapless::String::new(),
                args: heapless::Vec::new(),
            },
        }
    }

    fn accept_all(_: &[u8]) -> Result<(), DeployFailure> {
        Ok(())
    }

    #[test]
    fn a_transfer_resumes_skips_resent_bytes_and_installs_once() {
        let module: Vec<u8> = (0..=255).collect();
        let mut store = MemModuleStore::new(2, 1024).expect("valid");
        let m = meta(7, &module);
        assert_eq!(store.begin(&m), Ok(0));
        assert_eq!(store.write(m.deployment, 0, &module[..100]), Ok(100));
        // Resent and overlapping chunks are harmless; a gap is refused.
        assert_eq!(store.write(m.deployment, 50, &module[50..120]), Ok(120));
        assert_eq!(
            store.write(m.deployment, 200, &module[200..]),
            Err(WriteError::UnexpectedOffset { held: 120 })
        );
        assert_eq!(store.checkpoint(m.deployment), Ok(120));
        // The same deployment again resumes where it stood.
        assert_eq!(store.begin(&m), Ok(120));
        assert_eq!(
            store.commit(m.deployment, &mut accept_all),
            Err(CommitError::Incomplete { held: 120 })
        );
        assert_eq!(store.write(m.deployment, 120, &module[120..]), Ok(256));
        assert_eq!(store.commit(m.deployment, &mut accept_all), Ok(()));
        assert_eq!(store.begin(&m), Err(BeginError::AlreadyInstalled));
        assert_eq!(store.load(m.deployment), Ok(module.clone()));
        assert_eq!(store.apps().len(), 1);
        assert_eq!(store.set_state(m.deployment, AppState::Stopped), Ok(true));
        assert_eq!(store.remove(m.deployment), Ok(true));
        assert_eq!(store.remove(m.deployment), Ok(false));
        assert!(store.apps().is_empty());
    }

    #[test]
    fn bad_hashes_rejections_and_sizes_are_refused() {
        let module = vec![1u8; 64];
        let mut store = MemModuleStore::new(1, 64).expect("valid");
        let mut m = meta(1, &module);
        m.sha256 = [0; 32];
        store.begin(&m).expect("fits");
        store.write(m.deployment, 0, &module).expect("fits");
        assert_eq!(
            store.commit(m.deployment, &mut accept_all),
            Err(CommitError::HashMismatch)
        );
        // Another meta for the same deployment starts over.
        let m = meta(1, &module);
        assert_eq!(store.begin(&m), Ok(0));
        store.write(m.deployment, 0, &module).expect("fits");
        assert_eq!(
            store.commit(m.deployment, &mut |_| Err(DeployFailure::InvalidModule)),
            Err(CommitError::Rejected(DeployFailure::InvalidModule))
        );
        assert_eq!(
            store.write(m.deployment, 60, &[0; 8]),
            Err(WriteError::BeyondSize)
        );
        assert_eq!(
            store.begin(&meta(2, &[0; 65])),
            Err(BeginError::TooLarge),
            "larger than the slots"
        );
        // The one slot holds an unfinished transfer: a new deployment takes it.
        assert_eq!(store.begin(&meta(3, &[5; 8])), Ok(0));
        store.write(DeploymentId(3), 0, &[5; 8]).expect("fits");
        store
            .commit(DeploymentId(3), &mut accept_all)
            .expect("valid");
        assert_eq!(store.begin(&meta(4, &[6; 8])), Err(BeginError::NoFreeSlot));
        assert!(MemModuleStore::new(0, 1).is_err());
        assert!(MemModuleStore::new(MAX_APPS + 1, 1).is_err());
    }

    #[test]
    fn installed_modules_are_shared_through_the_cache() {
        let module = vec![9u8; 300];
        let cache = ModuleCache::new();
        let mut stores: Vec<MemModuleStore> = (0..3)
            .map(|_| {
                MemModuleStore::new(1, 1024)
                    .expect("valid")
                    .with_cache(cache.clone())
            })
            .collect();
        for store in &mut stores {
            let m = meta(1, &module);
            store.begin(&m).expect("fits");
            store.write(m.deployment, 0, &module).expect("fits");
            store.commit(m.deployment, &mut accept_all).expect("valid");
        }
        let held: Vec<*const u8> = stores
            .iter()
            .map(|s| match &s.bytes[0] {
                SlotBytes::Installed(m) => m.as_ptr(),
                other => panic!("not installed: {other:?}"),
            })
            .collect();
        assert!(held.iter().all(|p| *p == held[0]), "one copy");
        assert_eq!(cache.live_modules(), 1);
        drop(stores);
        assert_eq!(cache.live_modules(), 0);
    }

    #[test]
    fn the_key_store_keeps_what_was_saved() {
        let mut keys = MemKeyStore::new();
        assert_eq!(keys.load(), Ok(None));
        let key = StoredKey::Pending(wasmbed_agent::identity::PendingKey {
            private_key: [7; 32],
        });
        keys.save(&key).expect("memory");
        assert_eq!(keys.load(), Ok(Some(key)));
        keys.clear().expect("memory");
        assert_eq!(keys.load(), Ok(None));
    }
}
