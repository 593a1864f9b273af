//! A simulated device's identity on disk (`--state-dir`) holds its private
//! key: readable by its owner only.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;
use wasmbed_agent::identity::{Identity, KeyStore, StoredKey};
use wasmbed_protocol::DeviceId;
use wasmbed_sim::Simulation;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn device_keys_are_readable_by_their_owner_only() {
    let sim = Simulation::new(sim_config("127.0.0.1:1".parse().unwrap()), installation()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device-00000");
    let key = StoredKey::Enrolled(Identity {
        device_id: DeviceId([3; 16]),
        private_key: [3; 32],
        certificate: vec![3; 300],
    });
    let (mut keys, _) = sim.file_stores(&device).unwrap();
    keys.save(&key).unwrap();
    let path = device.join("key.cbor");
    assert_eq!(mode(&path), 0o600);

    // A key file others could read (an older simulator wrote it) is
    // tightened when the device's stores are opened again.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut keys, _) = sim.file_stores(&device).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(keys.load().unwrap(), Some(key));
}
