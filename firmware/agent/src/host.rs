//! File-backed stores for agents running on a host (the fleet simulator,
//! tests). Atomicity comes from the file system: a file is replaced by
//! writing a temporary file, syncing it, renaming it over the old one and
//! syncing the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use wasmbed_protocol::{AppState, DeploymentId, MAX_APPS};

use crate::identity::{KeyStore, StoredKey};
use crate::storage::{
    Acceptor, BeginError, BeginSlot, CommitError, ModuleMeta, ModuleStore, SlotInfo, SlotRecord,
    SlotState, StoreError, WriteError, bytes_held, choose_begin_slot, sha256, slot_index,
};

fn io<E>(_: E) -> StoreError {
    StoreError::Io
}

/// Replaces `path` with `bytes` atomically and durably. The file is
/// readable by its owner only (mode 0600 on Unix): a device's stored state
/// holds its private key.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A temporary file left by a crash would keep its mode: start anew.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(StoreError::Io),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()).map_err(io),
        None => Ok(()),
    }
}

/// Reads `path`, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(_) => Err(StoreError::Io),
    }
}

/// A [`KeyStore`] in one file, replaced atomically, mode 0600.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    path: PathBuf,
}

impl FileKeyStore {
    /// A store in the file at `path`; its directory must exist.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeyStore { path: path.into() }
    }
}

impl KeyStore for FileKeyStore {
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError> {
        read_optional(&self.path)?
            .map(|bytes| StoredKey::from_bytes(&bytes))
            .transpose()
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        write_atomically(&self.path, &key.to_bytes())
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.path),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(_) => Err(StoreError::Io),
        }
    }
}

/// A [`ModuleStore`] in a directory: `slot-N/module.bin` holds the bytes,
/// `slot-N/meta.cbor` (replaced atomically, always last) what they are. A
/// slot without `meta.cbor` is free. While receiving, the meta records how
/// many bytes were synced at the last checkpoint; on open the module file
/// is cut back to that length. Once installed, the meta also carries the
/// undelivered execution result, if any.
#[derive(Debug)]
pub struct FileModuleStore {
    root: PathBuf,
    slots: Vec<Option<SlotInfo>>,
    /// Undelivered execution result (CBOR) of each installed slot.
    results: Vec<Option<Vec<u8>>>,
    /// Open module file of each receiving slot.
    files: Vec<Option<File>>,
    max_module_size: u32,
}

impl FileModuleStore {
    /// Opens (creating if needed) a store of `slots` slots in `root`.
    pub fn open(
        root: impl Into<PathBuf>,
        slots: usize,
        max_module_size: u32,
    ) -> Result<Self, StoreError> {
        let root = root.into();
        if slots == 0 || slots > MAX_APPS {
            return Err(StoreError::Layout);
        }
        let mut store = FileModuleStore {
            root,
            slots: Vec::with_capacity(slots),
            results: Vec::with_capacity(slots),
            files: Vec::with_capacity(slots),
            max_module_size,
        };
        for i in 0..slots {
            fs::create_dir_all(store.dir(i)).map_err(io)?;
            let record = read_optional(&store.meta_path(i))?
                .map(|bytes| SlotRecord::decode(&bytes))
                .transpose()?;
            let mut result = None;
            let (slot, file) = match record {
                None => (None, None),
                Some(record) => match record.installed {
                    Some(state) => {
                        result = record.result;
                        (
                            Some(SlotInfo {
                                meta: record.meta,
                                state: SlotState::Installed(state),
                            }),
                            None,
                        )
                    }
                    None => {
                        let file = store.open_module(i, false)?;
                        let len = file.metadata().map_err(io)?.len();
                        let held = record.held.min(u32::try_from(len).unwrap_or(u32::MAX));
                        file.set_len(u64::from(held)).map_err(io)?;
                        (
                            Some(SlotInfo {
                                meta: record.meta,
                                state: SlotState::Receiving { held },
                            }),
                            Some(file),
                        )
                    }
                },
            };
            store.slots.push(slot);
            store.results.push(result);
            store.files.push(file);
        }
        Ok(store)
    }

    fn dir(&self, slot: usize) -> PathBuf {
        self.root.join(format!("slot-{slot}"))
    }

    fn meta_path(&self, slot: usize) -> PathBuf {
        self.dir(slot).join("meta.cbor")
    }

    fn module_path(&self, slot: usize) -> PathBuf {
        self.dir(slot).join("module.bin")
    }

    fn open_module(&self, slot: usize, truncate: bool) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(self.module_path(slot))
            .map_err(io)
    }

    fn index(&self, deployment: DeploymentId) -> Option<usize> {
        slot_index(&self.slots, deployment)
    }

    /// Durably records slot `i` (held = bytes synced), keeping its result
    /// if it stays installed, then updates memory.
    fn save(&mut self, i: usize, slot: SlotInfo, held: u32) -> Result<(), StoreError> {
        let result = match slot.state {
            SlotState::Installed(_) => self.results[i].clone(),
            SlotState::Receiving { .. } => None,
        };
        self.save_with_result(i, slot, held, result)
    }

    /// Durably records slot `i` with `result` in one atomic file
    /// replacement, then updates memory.
    fn save_with_result(
        &mut self,
        i: usize,
        slot: SlotInfo,
        held: u32,
        result: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let record = SlotRecord {
            meta: slot.meta.clone(),
            installed: match slot.state {
                SlotState::Installed(state) => Some(state),
                SlotState::Receiving { .. } => None,
            },
            held,
            result,
        };
        write_atomically(&self.meta_path(i), &record.encode())?;
        self.slots[i] = Some(slot);
        self.results[i] = record.result;
        Ok(())
    }

    /// The installed slot of `deployment`.
    fn installed(&self, deployment: DeploymentId) -> Option<(usize, SlotInfo)> {
        let i = self.index(deployment)?;
        match &self.slots[i] {
            Some(
                slot @ SlotInfo {
                    state: SlotState::Installed(_),
                    ..
                },
            ) => Some((i, slot.clone())),
            _ => None,
        }
    }

    fn held(&self, i: usize) -> u32 {
        bytes_held(&self.slots[i])
    }
}

impl ModuleStore for FileModuleStore {
    fn slots(&self) -> &[Option<SlotInfo>] {
        &self.slots
    }

    fn max_module_size(&self) -> u32 {
        self.max_module_size
    }

    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError> {
        let resumable = |i: usize| self.files[i].is_some();
        let i = match choose_begin_slot(&self.slots, self.max_module_size, meta, resumable)? {
            BeginSlot::Resume { held } => return Ok(held),
            BeginSlot::Restart { index } => index,
        };
        self.files[i] = None;
        let file = self.open_module(i, true)?;
        file.sync_all().map_err(io)?;
        let slot = SlotInfo {
            meta: meta.clone(),
            state: SlotState::Receiving { held: 0 },
        };
        self.save(i, slot, 0)?;
        self.files[i] = Some(file);
        Ok(0)
    }

    fn write(&mut self, deployment: DeploymentId, at: u32, data: &[u8]) -> Result<u32, WriteError> {
        let i = self
            .index(deployment)
            .ok_or(WriteError::UnknownDeployment)?;
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
        let held = self.held(i);
        let file = self.files[i]
            .as_mut()
            .ok_or(WriteError::UnknownDeployment)?;
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
        let new = &data[(held - at) as usize..];
        file.seek(SeekFrom::Start(u64::from(held))).map_err(io)?;
        file.write_all(new).map_err(io)?;
        let held = u32::try_from(end).map_err(io)?;
        if let Some(slot) = &mut self.slots[i] {
            slot.state = SlotState::Receiving { held };
        }
        Ok(held)
    }

    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(0);
        };
        let (Some(file), Some(slot)) = (&self.files[i], self.slots[i].clone()) else {
            return Ok(0);
        };
        file.sync_data().map_err(io)?;
        let held = self.held(i);
        self.save(i, slot, held)?;
        Ok(held)
    }

    fn commit(
        &mut self,
        deployment: DeploymentId,
        accept: Acceptor<'_>,
    ) -> Result<(), CommitError> {
        let i = self
            .index(deployment)
            .ok_or(CommitError::UnknownDeployment)?;
        let Some(slot) = self.slots[i].clone() else {
            return Err(CommitError::UnknownDeployment);
        };
        if let SlotState::Installed(_) = slot.state {
            return Ok(());
        }
        let held = self.held(i);
        if held != slot.meta.size {
            return Err(CommitError::Incomplete { held });
        }
        let file = self.files[i]
            .as_mut()
            .ok_or(CommitError::UnknownDeployment)?;
        file.sync_all().map_err(io)?;
        let mut bytes = Vec::with_capacity(held as usize);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        if sha256(&bytes) != slot.meta.sha256 {
            return Err(CommitError::HashMismatch);
        }
        accept(&bytes).map_err(CommitError::Rejected)?;
        let installed = SlotInfo {
            meta: slot.meta,
            state: SlotState::Installed(AppState::Installed),
        };
        self.save(i, installed, held)?;
        self.files[i] = None;
        Ok(())
    }

    fn load(&mut self, deployment: DeploymentId) -> Result<Vec<u8>, StoreError> {
        match self.index(deployment) {
            Some(i) if matches!(&self.slots[i], Some(s) if matches!(s.state, SlotState::Installed(_))) => {
                fs::read(self.module_path(i)).map_err(io)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    fn set_state(&mut self, deployment: DeploymentId, state: AppState) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        match self.slots[i].clone() {
            Some(
                slot @ SlotInfo {
                    state: SlotState::Installed(_),
                    ..
                },
            ) => {
                let size = slot.meta.size;
                let slot = SlotInfo {
                    state: SlotState::Installed(state),
                    ..slot
                };
                self.save(i, slot, size)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn remove(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        // The meta goes first: without it the slot is free, whatever is left.
        match fs::remove_file(self.meta_path(i)) {
            Ok(()) => sync_dir(&self.meta_path(i))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(_) => return Err(StoreError::Io),
        }
        self.slots[i] = None;
        self.results[i] = None;
        self.files[i] = None;
        let _ = fs::remove_file(self.module_path(i));
        Ok(true)
    }

    fn finish(
        &mut self,
        deployment: DeploymentId,
        state: AppState,
        result: &[u8],
    ) -> Result<bool, StoreError> {
        let Some((i, slot)) = self.installed(deployment) else {
            return Ok(false);
        };
        let size = slot.meta.size;
        let slot = SlotInfo {
            state: SlotState::Installed(state),
            ..slot
        };
        self.save_with_result(i, slot, size, Some(result.to_vec()))?;
        Ok(true)
    }

    fn result(&self, deployment: DeploymentId) -> Option<&[u8]> {
        let i = self.index(deployment)?;
        self.results[i].as_deref()
    }

    fn clear_result(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        let Some((i, slot)) = self.installed(deployment) else {
            return Ok(false);
        };
        if self.results[i].is_none() {
            return Ok(false);
        }
        let size = slot.meta.size;
        self.save_with_result(i, slot, size, None)?;
        Ok(true)
    }
}
