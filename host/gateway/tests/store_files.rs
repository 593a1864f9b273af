//! The gateway's database holds the devices' enrollment records: it and
//! its `-wal` and `-shm` files are readable by their owner only.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use wasmbed_gateway::store::Store;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_database_and_its_wal_files_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let files: Vec<PathBuf> = ["gateway.db", "gateway.db-wal", "gateway.db-shm"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    let first = Store::open(&path).unwrap();
    first.preauthorize(&[4; 65]).unwrap();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Made readable by others (by an older version, a copy): tightened at
    // the next open, the data kept.
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let second = Store::open(&path).unwrap();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(second.is_preauthorized(&[4; 65]).unwrap());
    drop(first);
}
