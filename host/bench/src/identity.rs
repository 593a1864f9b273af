//! Enrolled bench devices without enrolling them one by one: keys made
//! here, certificates issued with the installation's device CA (as the
//! gateway would at enrollment), and device rows written to the gateway's
//! database before the gateway starts.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use rustls::ClientConfig;
use wasmbed_gateway::store::{DeviceRecord, Store, unix_ms};
use wasmbed_pki::{CertificateDer, Installation};
use wasmbed_protocol::{DeviceId, PUBLIC_KEY_LEN};

/// One enrolled device: its id and key, and its TLS client configuration.
pub(crate) struct Identity {
    pub(crate) id: DeviceId,
    pub(crate) public_key: [u8; PUBLIC_KEY_LEN],
    pub(crate) config: Arc<ClientConfig>,
}

/// `n` new device identities, made on every core.
pub(crate) fn make(installation: &Installation, n: usize) -> anyhow::Result<Vec<Identity>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let count = per_thread.min(n.saturating_sub(t * per_thread));
                scope.spawn(move || make_some(installation, count))
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for worker in workers {
            let some = worker
                .join()
                .map_err(|_| anyhow::anyhow!("an identity thread panicked"))??;
            all.extend(some);
        }
        Ok(all)
    })
}

fn make_some(installation: &Installation, count: usize) -> anyhow::Result<Vec<Identity>> {
    let issuer = installation.device_issuer()?;
    let mut rng = rand::rngs::OsRng;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut scalar = [0u8; 32];
        rng.fill_bytes(&mut scalar);
        // A random 32-byte string is a valid P-256 scalar but for odds
        // of about 2^-32; draw again then.
        let Ok(public_key) = wasmbed_pki::p256_public_key(&scalar) else {
            continue;
        };
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let certificate: CertificateDer<'static> = issuer.issue(id, &public_key)?;
        let config = wasmbed_pki::client_config_device(
            installation.gateway_ca(),
            certificate,
            wasmbed_pki::p256_scalar_to_pkcs8(&scalar)?,
        )?;
        out.push(Identity {
            id: DeviceId(id),
            public_key,
            config,
        });
    }
    Ok(out)
}

/// Records `devices` as enrolled in the gateway database `db` (created if
/// missing). The gateway must not be running on it yet.
pub(crate) fn register(db: &Path, devices: &[Identity]) -> anyhow::Result<()> {
    let store = Store::open(db).with_context(|| format!("opening {}", db.display()))?;
    let now = unix_ms();
    for device in devices {
        store.insert_device(&DeviceRecord {
            id: device.id,
            public_key: device.public_key.to_vec(),
            board: "wasmbed-bench".to_owned(),
            firmware_version: "0.1.0".to_owned(),
            enrolled_at_ms: now,
            last_seen_ms: None,
            runtime: None,
        })?;
    }
    Ok(())
}
