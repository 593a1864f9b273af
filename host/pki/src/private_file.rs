//! Files that hold secrets — private keys, bearer tokens, databases of
//! token hashes or device keys — readable and writable by their owner
//! only (mode 0600 on Unix), whatever the umask.
//!
//! Used by the installation's key files here, the API server's and the
//! gateway's SQLite databases and the CLI's token file. On other systems
//! than Unix the functions create and open files with the default
//! permissions.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

/// The mode of a private file: read and write for its owner, nothing for
/// anyone else.
pub const PRIVATE_MODE: u32 = 0o600;

/// Creates `path` for writing, mode 0600; fails if it already exists
/// (so that an existing file's looser mode is never inherited).
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_MODE);
    options.open(path)
}

/// Replaces the contents of `path` with `contents`, creating it with mode
/// 0600; an existing file that others may read is made private first.
/// Returns the mode it had when it had to be tightened (for a warning).
pub fn write(path: &Path, contents: &[u8]) -> io::Result<Option<u32>> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_MODE);
    let mut file = options.open(path)?;
    let loose = tighten_open(&file)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(loose)
}

/// Makes sure `path` is a private file before another library opens it
/// (SQLite gives its `-wal` and `-shm` files the mode of the database
/// file): creates it empty with mode 0600 when missing; when it exists and
/// others may read or write it, sets mode 0600. Returns the mode it had
/// when it had to be tightened.
pub fn ensure(path: &Path) -> io::Result<Option<u32>> {
    match create_new(path) {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(path),
        Err(e) => Err(e),
    }
}

/// Sets mode 0600 on `path` if it exists and others may read or write
/// it; returns the mode it had then. A missing file is left missing.
pub fn tighten(path: &Path) -> io::Result<Option<u32>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match loose_mode(&metadata) {
        Some(mode) => {
            fs::set_permissions(path, private_permissions(metadata.permissions()))?;
            Ok(Some(mode))
        }
        None => Ok(None),
    }
}

/// [`tighten`] for a file already open.
fn tighten_open(file: &File) -> io::Result<Option<u32>> {
    let metadata = file.metadata()?;
    match loose_mode(&metadata) {
        Some(mode) => {
            file.set_permissions(private_permissions(metadata.permissions()))?;
            Ok(Some(mode))
        }
        None => Ok(None),
    }
}

/// The file's mode when group or others have any permission on it.
#[cfg(unix)]
fn loose_mode(metadata: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_metadata: &fs::Metadata) -> Option<u32> {
    None
}

#[cfg(unix)]
fn private_permissions(_old: fs::Permissions) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    fs::Permissions::from_mode(PRIVATE_MODE)
}

#[cfg(not(unix))]
fn private_permissions(old: fs::Permissions) -> fs::Permissions {
    old
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    #[test]
    fn new_files_are_private_and_existing_ones_are_not_reused() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key");
        create_new(&path)?.write_all(b"secret")?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            create_new(&path).map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        Ok(())
    }

    #[test]
    fn ensure_creates_missing_files_and_tightens_loose_ones() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db");
        assert_eq!(ensure(&path)?, None);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::metadata(&path)?.len(), 0, "created empty");

        fs::write(&path, b"data")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        assert_eq!(ensure(&path)?, Some(0o644));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path)?, b"data", "contents kept");
        assert_eq!(ensure(&path)?, None, "already private");

        // Owner-only modes other than 0600 are left as they are.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400))?;
        assert_eq!(tighten(&path)?, None);
        assert_eq!(mode(&path), 0o400);
        assert_eq!(tighten(&dir.path().join("missing"))?, None);
        assert!(!dir.path().join("missing").exists());
        Ok(())
    }

    #[test]
    fn write_replaces_contents_and_tightens() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        assert_eq!(write(&path, b"first")?, None);
        assert_eq!(mode(&path), 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
        assert_eq!(write(&path, b"second")?, Some(0o666));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path)?, b"second");
        Ok(())
    }
}
