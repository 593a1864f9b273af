//! Application slots in a directory: `slot-N/module.bin` holds the bytes,
//! `slot-N/meta.cbor` (replaced atomically, always after the bytes) the
//! slot's table entry. A slot without `meta.cbor` is free. While
//! receiving, the entry records how many bytes were synced at the last
//! checkpoint; on open the module file is cut back to that length.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io, read_optional, sync_dir, write_atomically};
use crate::storage::{SlotMedium, SlotRecord, SlotTable, StoreError};

/// A [`ModuleStore`](crate::storage::ModuleStore) in a directory (see
/// [`FileSlots`]).
pub type FileModuleStore = SlotTable<FileSlots>;

impl FileModuleStore {
    /// Opens (creating if needed) a store of `slots` slots in `root`.
    pub fn open(
        root: impl Into<PathBuf>,
        slots: usize,
        max_module_size: u32,
    ) -> Result<Self, StoreError> {
        SlotTable::with_medium(FileSlots::new(root, slots), slots, max_module_size)
    }
}

/// Slots as files in a directory: `slot-N/module.bin` holds the bytes,
/// `slot-N/meta.cbor` (replaced atomically) the slot's table entry; a slot
/// without `meta.cbor` is free. A transfer's entry records the bytes synced
/// at the last checkpoint; on open the module file is cut back to them.
#[derive(Debug)]
pub struct FileSlots {
    root: PathBuf,
    /// Open module file of each receiving slot.
    files: Vec<Option<File>>,
}

impl FileSlots {
    /// The medium of `slots` slots in `root` (created when the table is
    /// loaded).
    pub fn new(root: impl Into<PathBuf>, slots: usize) -> Self {
        FileSlots {
            root: root.into(),
            files: (0..slots).map(|_| None).collect(),
        }
    }

    /// The directory of the slots.
    pub fn root(&self) -> &Path {
        &self.root
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

    fn file(&mut self, slot: usize) -> Result<&mut File, StoreError> {
        self.files[slot].as_mut().ok_or(StoreError::NotFound)
    }
}

impl SlotMedium for FileSlots {
    const DURABLE_IN_TABLE: bool = true;

    fn load_table(&mut self, slots: usize) -> Result<Vec<Option<SlotRecord>>, StoreError> {
        (0..slots)
            .map(|i| {
                fs::create_dir_all(self.dir(i)).map_err(io)?;
                read_optional(&self.meta_path(i))?
                    .map(|bytes| SlotRecord::decode(&bytes))
                    .transpose()
            })
            .collect()
    }

    fn save_table(
        &mut self,
        table: &[Option<SlotRecord>],
        changed: usize,
    ) -> Result<(), StoreError> {
        let path = self.meta_path(changed);
        match &table[changed] {
            Some(record) => write_atomically(&path, &record.encode()),
            // Without its meta the slot is free, whatever is left.
            None => match fs::remove_file(&path) {
                Ok(()) => sync_dir(&path),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(_) => Err(StoreError::Io),
            },
        }
    }

    fn start(&mut self, slot: usize, _size: u32) -> Result<(), StoreError> {
        self.files[slot] = None;
        let file = self.open_module(slot, true)?;
        file.sync_all().map_err(io)?;
        self.files[slot] = Some(file);
        Ok(())
    }

    fn recover(&mut self, slot: usize, _size: u32, recorded: u32) -> Result<u32, StoreError> {
        self.files[slot] = None;
        let file = self.open_module(slot, false)?;
        let len = file.metadata().map_err(io)?.len();
        let held = recorded.min(u32::try_from(len).unwrap_or(u32::MAX));
        file.set_len(u64::from(held)).map_err(io)?;
        self.files[slot] = Some(file);
        Ok(held)
    }

    fn append(&mut self, slot: usize, at: u32, data: &[u8]) -> Result<(), StoreError> {
        let file = self.file(slot)?;
        file.seek(SeekFrom::Start(u64::from(at))).map_err(io)?;
        file.write_all(data).map_err(io)
    }

    fn sync(&mut self, slot: usize) -> Result<u32, StoreError> {
        let file = self.file(slot)?;
        file.sync_data().map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        u32::try_from(len).map_err(io)
    }

    fn read(&mut self, slot: usize, size: u32) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(size as usize);
        match &mut self.files[slot] {
            Some(file) => {
                file.sync_all().map_err(io)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                Read::by_ref(file)
                    .take(u64::from(size))
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
            }
            None => {
                File::open(self.module_path(slot))
                    .and_then(|file| file.take(u64::from(size)).read_to_end(&mut bytes))
                    .map_err(io)?;
            }
        }
        Ok(bytes)
    }

    fn installed(&mut self, slot: usize, _module: Vec<u8>, _sha256: &[u8; 32]) {
        self.files[slot] = None;
    }

    fn release(&mut self, slot: usize) {
        self.files[slot] = None;
        let _ = fs::remove_file(self.module_path(slot));
    }
}
