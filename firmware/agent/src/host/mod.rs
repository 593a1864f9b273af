//! Stores for agents running on a host (the fleet simulator, tests): in
//! files ([`FileKeyStore`], [`FileModuleStore`]) and in memory
//! ([`MemKeyStore`], [`MemModuleStore`]). Atomicity in files comes from the
//! file system: a file is replaced by writing a temporary file, syncing it,
//! renaming it over the old one and syncing the directory.

mod file_slots;
mod memory;

pub use file_slots::{FileModuleStore, FileSlots};
pub use memory::{MemKeyStore, MemModuleStore, MemSlots, ModuleCache};

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::identity::{KeyStore, StoredKey};
use crate::storage::StoreError;

pub(crate) fn io<E>(_: E) -> StoreError {
    StoreError::Io
}

/// Replaces `path` with `bytes` atomically and durably. The file is
/// readable by its owner only (mode 0600 on Unix): a device's stored state
/// holds its private key.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
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

pub(crate) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()).map_err(io),
        None => Ok(()),
    }
}

/// Reads `path`, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
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
