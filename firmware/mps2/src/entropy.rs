//! The device's CSPRNG: the shared construction of
//! `wasmbed_agent::entropy` (emulation only: QEMU's mps2-an385 has no
//! TRNG), with what varies between boots on this board mixed in: the
//! SysTick counter and the host's clock sampled around semihosting calls,
//! whose host-side duration jitters.

use rand_chacha::ChaCha20Rng;
use sha2::Digest;
use wasmbed_agent::entropy::seeded_generator;

use crate::semihosting::{self, FileFlash};

/// Builds the generator and saves a fresh seed for the next boot in `seed_sector`.
pub fn generator(provisioned: &[u8; 32], seed_sector: &mut FileFlash) -> ChaCha20Rng {
    let seeded = seeded_generator(provisioned, seed_sector, |hash| {
        for _ in 0..16 {
            hash.update(cortex_m::peripheral::SYST::get_current().to_le_bytes());
            hash.update(semihosting::host_time().to_le_bytes());
        }
    });
    if !seeded.saved {
        crate::println!("entropy: could not save the next boot's seed");
    }
    seeded.rng
}
