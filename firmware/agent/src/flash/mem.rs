//! NOR flash in RAM, with power-loss injection for tests and the simulator.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Sector (erase) size of [`MemFlash`].
pub const MEM_FLASH_SECTOR: usize = 4096;
/// Word (write) size of [`MemFlash`].
pub const MEM_FLASH_WORD: usize = 4;

/// What [`MemFlash`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemFlashError {
    /// Power was lost during this operation or before it; nothing works
    /// until [`MemFlash::reboot`].
    PowerLost,
    OutOfBounds,
    NotAligned,
    /// A word was written twice without an erase in between. Real NOR flash
    /// would AND the values (or, with ECC, fault); the stores never do it,
    /// so the model refuses it to catch mistakes.
    NotErased,
}

impl NorFlashError for MemFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MemFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MemFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            MemFlashError::PowerLost | MemFlashError::NotErased => NorFlashErrorKind::Other,
        }
    }
}

/// [`MemFlashOf`] with 4 KiB sectors, like most SPI NOR and many MCUs.
pub type MemFlash = MemFlashOf<MEM_FLASH_SECTOR>;

/// NOR flash held in memory: sectors of `SECTOR` bytes, 4-byte words.
///
/// [`cut_power_after`](Self::cut_power_after)`(n)` makes power fail at the
/// `n`-th next *step*. Programming one byte is a step and erasing one
/// sector is a step. The interrupted step is left half done: a byte keeps
/// some of the bits it should have cleared, a sector is erased only in its
/// first half. From then on every write and erase fails with
/// [`MemFlashError::PowerLost`] until [`reboot`](Self::reboot); reads keep
/// working, so a test can inspect the damage.
///
/// Looping `n` from 0 until an operation completes without a cut visits
/// every point at which power can fail during it.
#[derive(Debug, Clone)]
pub struct MemFlashOf<const SECTOR: usize> {
    data: Vec<u8>,
    budget: Option<usize>,
    powered: bool,
    steps: usize,
}

impl<const SECTOR: usize> MemFlashOf<SECTOR> {
    /// Erased flash of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        MemFlashOf {
            data: vec![0xFF; sectors * SECTOR],
            budget: None,
            powered: true,
            steps: 0,
        }
    }

    /// Power fails at the `steps`-th next step (0: the very next one).
    pub fn cut_power_after(&mut self, steps: usize) {
        self.budget = Some(steps);
    }

    /// Whether power has failed since the last reboot.
    pub fn power_lost(&self) -> bool {
        !self.powered
    }

    /// Power is back: writes and erases work again, no cut is pending.
    pub fn reboot(&mut self) {
        self.powered = true;
        self.budget = None;
    }

    /// Steps carried out so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The raw contents.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The raw contents, to simulate bit rot.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Takes one step; `false` if power fails now.
    fn step(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => {
                self.powered = false;
                self.budget = None;
                false
            }
            Some(n) => {
                *n -= 1;
                self.steps += 1;
                true
            }
            None => {
                self.steps += 1;
                true
            }
        }
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, MemFlashError> {
        if !self.powered {
            return Err(MemFlashError::PowerLost);
        }
        let start = offset as usize;
        if start % align != 0 || len % align != 0 {
            return Err(MemFlashError::NotAligned);
        }
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.data.len())
        {
            return Err(MemFlashError::OutOfBounds);
        }
        Ok(start)
    }
}

impl<const SECTOR: usize> ErrorType for MemFlashOf<SECTOR> {
    type Error = MemFlashError;
}

impl<const SECTOR: usize> ReadNorFlash for MemFlashOf<SECTOR> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MemFlashError> {
        let start = offset as usize;
        let src = start
            .checked_add(bytes.len())
            .and_then(|end| self.data.get(start..end))
            .ok_or(MemFlashError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl<const SECTOR: usize> NorFlash for MemFlashOf<SECTOR> {
    const WRITE_SIZE: usize = MEM_FLASH_WORD;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MemFlashError> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(MemFlashError::OutOfBounds)?;
        let start = self.check(from, len, SECTOR)?;
        for sector in (start..start + len).step_by(SECTOR) {
            if !self.step() {
                self.data[sector..sector + SECTOR / 2].fill(0xFF);
                return Err(MemFlashError::PowerLost);
            }
            self.data[sector..sector + SECTOR].fill(0xFF);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MemFlashError> {
        let start = self.check(offset, bytes.len(), MEM_FLASH_WORD)?;
        let target = &self.data[start..start + bytes.len()];
        if target.iter().any(|&b| b != 0xFF) {
            return Err(MemFlashError::NotErased);
        }
        for (i, &byte) in bytes.iter().enumerate() {
            if !self.step() {
                // Half-programmed: only some of the bits to clear are cleared.
                self.data[start + i] &= byte | 0x55;
                return Err(MemFlashError::PowerLost);
            }
            self.data[start + i] &= byte;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_leaves_the_write_half_done_and_blocks_later_writes() {
        let mut flash = MemFlash::new(1);
        flash.cut_power_after(2);
        assert_eq!(flash.write(0, &[0, 0, 0, 0]), Err(MemFlashError::PowerLost));
        assert_eq!(&flash.bytes()[..4], &[0, 0, 0x55, 0xFF]);
        assert_eq!(flash.write(4, &[0; 4]), Err(MemFlashError::PowerLost));
        assert_eq!(flash.erase(0, 4096), Err(MemFlashError::PowerLost));
        flash.reboot();
        assert_eq!(flash.write(0, &[0; 4]), Err(MemFlashError::NotErased));
        flash.erase(0, 4096).expect("powered");
        flash.write(0, &[1, 2, 3, 4]).expect("erased");
        let mut buf = [0; 4];
        flash.read(0, &mut buf).expect("in bounds");
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn a_cut_erase_erases_half_a_sector() {
        let mut flash = MemFlash::new(2);
        flash.write(0, &[0; 4]).expect("erased");
        flash.write(2048, &[0; 4]).expect("erased");
        flash.cut_power_after(0);
        assert_eq!(flash.erase(0, 4096), Err(MemFlashError::PowerLost));
        assert_eq!(&flash.bytes()[..4], &[0xFF; 4]);
        assert_eq!(&flash.bytes()[2048..2052], &[0; 4]);
    }

    #[test]
    fn misuse_is_refused() {
        let mut flash = MemFlash::new(1);
        assert_eq!(flash.write(2, &[0; 4]), Err(MemFlashError::NotAligned));
        assert_eq!(flash.write(4096, &[0; 4]), Err(MemFlashError::OutOfBounds));
        assert_eq!(flash.erase(0, 100), Err(MemFlashError::NotAligned));
    }
}
