//! Key and module stores on NOR flash, and an in-memory flash that can lose
//! power in the middle of a write.
//!
//! The stores use [`embedded_storage::nor_flash::NorFlash`], the trait
//! embedded HALs implement for internal and SPI NOR flash: sectors erase to
//! `0xFF`, writes can only clear bits. Each store owns a whole `NorFlash`
//! from offset 0; firmware that keeps both on one chip hands each a
//! partition (e.g. `embassy-embedded-hal`'s `BlockingPartition`).
//!
//! Requirements on the flash: `READ_SIZE` is 1 and `WRITE_SIZE` is 1, 2, 4,
//! 8 or 16. Every word is written at most once between erases, so flash
//! with ECC that forbids rewriting a word works too.
//!
//! Power safety rests on two patterns:
//!
//! - [`record`]: a value lives in one of two sectors, each record carrying
//!   a sequence number, a CRC and a commit marker written last. A write goes
//!   to the other sector, so a cut leaves the old record intact and the new
//!   one without its marker.
//! - a module's progress log: after chunks are written, an entry
//!   `offset, !offset` is appended to a per-slot log sector; a torn entry
//!   fails its complement check and is ignored.

mod key_store;
mod layout;
mod mem;
pub mod record;
mod slots;

pub use key_store::FlashKeyStore;
pub use layout::FlashLayout;
pub use mem::{MEM_FLASH_SECTOR, MEM_FLASH_WORD, MemFlash, MemFlashError, MemFlashOf};
pub use slots::{FlashModuleStore, MAX_REWRITE, NorSlots};

use embedded_storage::nor_flash::NorFlash;

use crate::storage::StoreError;

/// Largest supported `WRITE_SIZE`.
const MAX_WORD: usize = 16;

/// Checks the geometry assumptions listed in the module docs.
fn check_geometry<F: NorFlash>() -> Result<(), StoreError> {
    let word_ok = matches!(F::WRITE_SIZE, 1 | 2 | 4 | 8 | 16);
    let sector_ok = F::ERASE_SIZE >= 256 && F::ERASE_SIZE % MAX_WORD == 0;
    if F::READ_SIZE == 1 && word_ok && sector_ok {
        Ok(())
    } else {
        Err(StoreError::Layout)
    }
}

/// `n` rounded up to a multiple of `to`.
const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// CRC-32 (IEEE 802.3, reflected), bitwise: small rather than fast, as it
/// only checks records of a few hundred bytes.
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }
    !crc
}

/// Flash offsets are `u32`; every layout here is checked to fit.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(super::crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }
}
