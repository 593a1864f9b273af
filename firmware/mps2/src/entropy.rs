//! The device's CSPRNG.
//!
//! **Emulation only.** QEMU's mps2-an385 has no TRNG. The generator is
//! ChaCha20 seeded with SHA-256 over: the per-device seed from
//! provisioning, a seed the device saved in flash at its previous boot, the
//! host's clock and the SysTick counter sampled around semihosting calls
//! (whose host-side duration jitters). The saved seed is replaced at every
//! boot, so two boots never start from the same state even under
//! `-icount`, where guest timing is exactly repeatable. A real board must
//! seed from its TRNG instead (e.g. the RNG peripheral of an STM32).

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::semihosting::{self, FileFlash, SECTOR_U32};

/// Builds the generator and saves a fresh seed for the next boot in `seed_sector`.
pub fn generator(provisioned: &[u8; 32], seed_sector: &mut FileFlash) -> ChaCha20Rng {
    let mut hash = Sha256::new();
    hash.update(b"wasmbed-mps2 entropy v1");
    hash.update(provisioned);
    let mut saved = [0u8; 32];
    if seed_sector.read(0, &mut saved).is_ok() {
        hash.update(saved);
    }
    for _ in 0..16 {
        hash.update(cortex_m::peripheral::SYST::get_current().to_le_bytes());
        hash.update(semihosting::host_time().to_le_bytes());
    }
    let mut rng = ChaCha20Rng::from_seed(hash.finalize().into());
    let mut next = [0u8; 32];
    rng.fill_bytes(&mut next);
    // Losing the saved seed (a power cut while it is replaced) only drops
    // one input of the next boot's seed.
    let saved_ok = seed_sector
        .erase(0, SECTOR_U32)
        .and_then(|()| seed_sector.write(0, &next));
    if saved_ok.is_err() {
        crate::println!("entropy: could not save the next boot's seed");
    }
    rng
}
