//! Slots and keys in memory, for simulated devices.
//!
//! A simulated device must cost little memory: ten thousand of them share
//! one process. The flash stores over `MemFlash` allocate every sector up
//! front (two 4 KiB sectors for the key, and for the modules
//! `2 + slots × (1 + max_module_size / 4 KiB)` sectors: 144 KiB for two
//! slots of 64 KiB), so memory has a medium of its own:
//!
//! - [`MemKeyStore`] keeps the stored key as a value (a few hundred bytes
//!   once enrolled);
//! - [`MemSlots`] allocates module bytes only while a transfer is in
//!   progress. Once a module is verified and installed its bytes are shared
//!   through a [`ModuleCache`] by SHA-256, so a module deployed to the whole
//!   fleet is held once, not once per device.
//!
//! Memory is as durable as the store itself: the table lives in the
//! [`SlotTable`] only, so a store opened anew on a [`MemSlots`] is empty,
//! and a device that keeps its store across a simulated reboot keeps
//! everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::identity::{KeyStore, StoredKey};
use crate::storage::{SlotMedium, SlotRecord, SlotTable, StoreError};

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

/// A [`ModuleStore`](crate::storage::ModuleStore) in memory that
/// allocates module bytes only as they arrive (see [`MemSlots`]).
pub type MemModuleStore = SlotTable<MemSlots>;

impl MemModuleStore {
    /// A store of `slots` slots (1 to `MAX_APPS`) for modules of up to
    /// `max_module_size` bytes.
    pub fn new(slots: usize, max_module_size: u32) -> Result<Self, StoreError> {
        SlotTable::with_medium(MemSlots::new(slots), slots, max_module_size)
    }

    /// Shares installed modules through `cache`.
    pub fn with_cache(mut self, cache: ModuleCache) -> Self {
        self.medium_mut().cache = Some(cache);
        self
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

/// Slots in memory. Module bytes are allocated as they arrive and, once
/// installed, shared with other stores through a [`ModuleCache`]. The
/// table lives in the [`SlotTable`] only: a store opened anew on a
/// `MemSlots` is empty, and one kept across a simulated reboot keeps
/// everything.
#[derive(Debug, Clone)]
pub struct MemSlots {
    bytes: Vec<SlotBytes>,
    cache: Option<ModuleCache>,
}

impl MemSlots {
    /// The medium of `slots` slots.
    pub fn new(slots: usize) -> Self {
        MemSlots {
            bytes: vec![SlotBytes::Free; slots],
            cache: None,
        }
    }

    fn receiving(&mut self, slot: usize) -> Result<&mut Vec<u8>, StoreError> {
        match &mut self.bytes[slot] {
            SlotBytes::Receiving(bytes) => Ok(bytes),
            _ => Err(StoreError::NotFound),
        }
    }
}

/// A length in memory as a transfer offset: transfers are bounded by the
/// largest module, a `u32`.
fn held(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

impl SlotMedium for MemSlots {
    const DURABLE_IN_TABLE: bool = false;

    fn load_table(&mut self, _slots: usize) -> Result<Vec<Option<SlotRecord>>, StoreError> {
        Ok(Vec::new())
    }

    fn save_table(
        &mut self,
        _table: &[Option<SlotRecord>],
        _changed: usize,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn start(&mut self, slot: usize, size: u32) -> Result<(), StoreError> {
        // Bounded by the largest module, checked by the table.
        self.bytes[slot] = SlotBytes::Receiving(Vec::with_capacity(size as usize));
        Ok(())
    }

    fn recover(&mut self, slot: usize, _size: u32, _recorded: u32) -> Result<u32, StoreError> {
        self.receiving(slot).map(|bytes| held(bytes))
    }

    fn append(&mut self, slot: usize, at: u32, data: &[u8]) -> Result<(), StoreError> {
        let bytes = self.receiving(slot)?;
        bytes.truncate(at as usize);
        bytes.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self, slot: usize) -> Result<u32, StoreError> {
        // Memory is as durable as it gets.
        self.receiving(slot).map(|bytes| held(bytes))
    }

    fn read(&mut self, slot: usize, size: u32) -> Result<Vec<u8>, StoreError> {
        let bytes: &[u8] = match &self.bytes[slot] {
            SlotBytes::Receiving(bytes) => bytes,
            SlotBytes::Installed(module) => module,
            SlotBytes::Free => return Err(StoreError::NotFound),
        };
        Ok(bytes[..bytes.len().min(size as usize)].to_vec())
    }

    fn installed(&mut self, slot: usize, module: Vec<u8>, sha256: &[u8; 32]) {
        let module = match &self.cache {
            Some(cache) => cache.intern(*sha256, module),
            None => module.into(),
        };
        self.bytes[slot] = SlotBytes::Installed(module);
    }

    fn release(&mut self, slot: usize) {
        self.bytes[slot] = SlotBytes::Free;
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use wasmbed_protocol::{
        AppState, ApplicationId, DeployFailure, DeploymentId, Limits, MAX_APPS,
    };

    use super::*;
    use crate::storage::{BeginError, CommitError, ModuleMeta, ModuleStore, WriteError};

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
            .map(|s| match &s.medium().bytes[0] {
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
        let key = StoredKey::Pending(crate::identity::PendingKey {
            private_key: [7; 32],
        });
        keys.save(&key).expect("memory");
        assert_eq!(keys.load(), Ok(Some(key)));
        keys.clear().expect("memory");
        assert_eq!(keys.load(), Ok(None));
    }
}
