//! The storage medium C supplies, as NOR flash partitions for the stores.

use core::ffi::c_void;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

/// Sector (erase unit) of a medium, in bytes.
pub const WB_MEDIUM_SECTOR: u32 = 4096;
/// Writes to a medium are whole words of this many bytes, aligned.
pub const WB_MEDIUM_WORD: u32 = 4;

/// A flash-like medium: the agent's key store, CSPRNG seed and module slots
/// live in it (see `wb_agent_medium_size`). It must behave like NOR flash:
/// `erase` sets whole sectors to `0xFF`, `write` only clears bits (a C
/// medium over a file ANDs the new bytes with the old), and what `write` or
/// `erase` finished survives a reset. Power safety is the agent's job.
///
/// Callbacks return 0 on success and a negative value on failure. Offsets
/// and lengths are checked by the agent: `erase` gets whole sectors,
/// `write` whole words, and nothing reaches past `size`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbMedium {
    pub ctx: *mut c_void,
    /// Bytes, a multiple of `WB_MEDIUM_SECTOR`.
    pub size: u32,
    pub read: Option<
        unsafe extern "C" fn(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32,
    >,
    pub write: Option<
        unsafe extern "C" fn(ctx: *mut c_void, offset: u32, data: *const u8, len: usize) -> i32,
    >,
    pub erase: Option<unsafe extern "C" fn(ctx: *mut c_void, offset: u32, len: u32) -> i32>,
}

/// The three callbacks, checked present.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Medium {
    ctx: *mut c_void,
    size: u32,
    read: unsafe extern "C" fn(*mut c_void, u32, *mut u8, usize) -> i32,
    write: unsafe extern "C" fn(*mut c_void, u32, *const u8, usize) -> i32,
    erase: unsafe extern "C" fn(*mut c_void, u32, u32) -> i32,
}

impl Medium {
    pub(crate) fn new(medium: &WbMedium) -> Option<Medium> {
        Some(Medium {
            ctx: medium.ctx,
            size: medium.size,
            read: medium.read?,
            write: medium.write?,
            erase: medium.erase?,
        })
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The bytes `[range.start, range.end)` as a flash of their own.
    pub(crate) fn partition(self, range: core::ops::Range<u32>) -> Partition {
        Partition {
            medium: self,
            base: range.start,
            len: range.end - range.start,
        }
    }
}

/// A part of the medium, as NOR flash from offset 0.
#[derive(Debug)]
pub struct Partition {
    medium: Medium,
    base: u32,
    len: u32,
}

/// The medium's callback reported a failure, or a request was out of
/// bounds or misaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumError {
    Failed,
    Geometry(NorFlashErrorKind),
}

impl NorFlashError for MediumError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MediumError::Failed => NorFlashErrorKind::Other,
            MediumError::Geometry(kind) => *kind,
        }
    }
}

fn done(code: i32) -> Result<(), MediumError> {
    if code == 0 {
        Ok(())
    } else {
        Err(MediumError::Failed)
    }
}

impl ErrorType for Partition {
    type Error = MediumError;
}

impl ReadNorFlash for Partition {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MediumError> {
        check_read(self, offset, bytes.len()).map_err(MediumError::Geometry)?;
        let m = self.medium;
        // SAFETY: the callback writes at most `bytes.len()` bytes to `bytes`
        // (the contract of `WbMedium::read`).
        done(unsafe { (m.read)(m.ctx, self.base + offset, bytes.as_mut_ptr(), bytes.len()) })
    }

    fn capacity(&self) -> usize {
        self.len as usize
    }
}

impl NorFlash for Partition {
    const WRITE_SIZE: usize = WB_MEDIUM_WORD as usize;
    const ERASE_SIZE: usize = WB_MEDIUM_SECTOR as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MediumError> {
        check_erase(self, from, to).map_err(MediumError::Geometry)?;
        let m = self.medium;
        // SAFETY: plain integers; the range was checked against the partition.
        done(unsafe { (m.erase)(m.ctx, self.base + from, to - from) })
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MediumError> {
        check_write(self, offset, bytes.len()).map_err(MediumError::Geometry)?;
        let m = self.medium;
        // SAFETY: the callback reads `bytes.len()` bytes from `bytes`.
        done(unsafe { (m.write)(m.ctx, self.base + offset, bytes.as_ptr(), bytes.len()) })
    }
}
