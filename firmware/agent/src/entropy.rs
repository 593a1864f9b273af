//! A CSPRNG for boards without a hardware random number generator.
//!
//! **Emulation only.** QEMU's MPS2 boards have no TRNG. The generator is
//! ChaCha20 seeded with SHA-256 over: the per-device seed from
//! provisioning, a seed the device saved in flash at its previous boot, and
//! whatever varies between boots that the firmware can sample (timers read
//! around host calls whose duration jitters). The saved seed is replaced at
//! every boot, so two boots never start from the same state even under
//! `-icount`, where guest timing is exactly repeatable. A real board must
//! seed from its TRNG instead (e.g. the RNG peripheral of an STM32).
//!
//! Both firmwares (bare metal and Zephyr) use this one construction.

use embedded_storage::nor_flash::NorFlash;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::provisioning::SEED_LEN;

/// The generator, and whether the next boot's seed was saved.
#[derive(Debug)]
pub struct Seeded {
    pub rng: ChaCha20Rng,
    /// Saving failed: the next boot lacks one input (not fatal, worth a
    /// console line).
    pub saved: bool,
}

/// Builds the generator and saves a fresh seed for the next boot in the
/// first sector of `seed_sector`. `boot_entropy` adds what varies between
/// boots to the hash.
pub fn seeded_generator<F: NorFlash>(
    provisioned: &[u8; SEED_LEN],
    seed_sector: &mut F,
    boot_entropy: impl FnOnce(&mut Sha256),
) -> Seeded {
    let mut hash = Sha256::new();
    hash.update(b"wasmbed entropy v1");
    hash.update(provisioned);
    let mut saved = [0u8; 32];
    if seed_sector.read(0, &mut saved).is_ok() {
        hash.update(saved);
    }
    boot_entropy(&mut hash);
    let mut rng = ChaCha20Rng::from_seed(hash.finalize().into());
    let mut next = [0u8; 32];
    rng.fill_bytes(&mut next);
    // Losing the saved seed (a power cut while it is replaced) only drops
    // one input of the next boot's seed.
    let sector = u32::try_from(F::ERASE_SIZE).unwrap_or(u32::MAX);
    let saved = seed_sector
        .erase(0, sector)
        .and_then(|()| seed_sector.write(0, &next))
        .is_ok();
    Seeded { rng, saved }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::MemFlash;

    #[test]
    fn every_boot_starts_from_a_new_state_even_with_identical_inputs() {
        let mut flash = MemFlash::new(1);
        let mut first = seeded_generator(&[1; SEED_LEN], &mut flash, |_| {});
        let mut second = seeded_generator(&[1; SEED_LEN], &mut flash, |_| {});
        assert!(first.saved && second.saved);
        assert_ne!(first.rng.next_u64(), second.rng.next_u64());
    }

    #[test]
    fn the_provisioned_seed_matters() {
        let mut a = seeded_generator(&[1; SEED_LEN], &mut MemFlash::new(1), |_| {});
        let mut b = seeded_generator(&[2; SEED_LEN], &mut MemFlash::new(1), |_| {});
        assert_ne!(a.rng.next_u64(), b.rng.next_u64());
    }
}
