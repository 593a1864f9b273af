//! Revoked device keys, kept in memory for the TLS handshake (which must
//! not wait for the database) and in the store so they survive a restart.

use std::collections::HashSet;
use std::sync::RwLock;

use wasmbed_pki::{DevicePublicKey, RevocationList};
use wasmbed_protocol::PUBLIC_KEY_LEN;

/// The public keys of revoked devices.
#[derive(Debug, Default)]
pub struct Revocations {
    keys: RwLock<HashSet<[u8; PUBLIC_KEY_LEN]>>,
}

impl Revocations {
    /// The set holding `keys` (as the store returns them; other lengths
    /// cannot be device keys and are skipped).
    pub fn new(keys: impl IntoIterator<Item = Vec<u8>>) -> Revocations {
        let keys = keys
            .into_iter()
            .filter_map(|key| <[u8; PUBLIC_KEY_LEN]>::try_from(key).ok())
            .collect();
        Revocations {
            keys: RwLock::new(keys),
        }
    }

    pub fn add(&self, key: &[u8]) {
        if let Ok(key) = <[u8; PUBLIC_KEY_LEN]>::try_from(key) {
            self.keys
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        <[u8; PUBLIC_KEY_LEN]>::try_from(key).is_ok_and(|key| {
            self.keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        })
    }

    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationList for Revocations {
    fn is_revoked(&self, key: &DevicePublicKey) -> bool {
        self.contains(key.as_sec1())
    }
}
