//! Files on the host through Arm semihosting, and an emulated NOR flash on
//! top of them.
//!
//! The MPS2 boards have no flash controller for data, so in emulation the
//! device's persistent storage is a file in its state directory on the
//! host (QEMU runs with `-semihosting-config enable=on,target=native` and
//! that directory as its working directory). [`FileFlash`] gives the key
//! and module stores the same `NorFlash` interface a real chip's driver
//! would, with the same rules: erase sets a sector to `0xFF`, a write only
//! clears bits. Every write goes to the host file at once, so a reset or a
//! killed QEMU keeps what was written, like flash keeps it through a power
//! cut.

use cortex_m_semihosting::syscall;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

/// `SYS_OPEN` modes (ISO C `fopen` modes).
const MODE_READ_BINARY: usize = 1;
const MODE_READ_WRITE_BINARY: usize = 3;
const MODE_READ_WRITE_NEW_BINARY: usize = 7;

/// A semihosting call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIoError;

/// An open host file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFile(usize);

impl HostFile {
    fn open_mode(path: &str, mode: usize) -> Result<HostFile, HostIoError> {
        // SYS_OPEN wants a NUL-terminated name and its length without the NUL.
        let mut name = heapless::Vec::<u8, 64>::new();
        name.extend_from_slice(path.as_bytes())
            .map_err(|_| HostIoError)?;
        name.push(0).map_err(|_| HostIoError)?;
        // SAFETY: the arguments are a valid NUL-terminated string, a mode
        // and the string's length, as SYS_OPEN requires.
        let handle = unsafe { syscall!(OPEN, name.as_ptr(), mode, path.len()) };
        if handle as isize == -1 {
            Err(HostIoError)
        } else {
            Ok(HostFile(handle))
        }
    }

    /// Opens a file for reading.
    pub fn open_read(path: &str) -> Result<HostFile, HostIoError> {
        HostFile::open_mode(path, MODE_READ_BINARY)
    }

    /// Opens a file for reading and writing, creating it if absent.
    ///
    /// A file that exists but cannot be opened for writing is an error,
    /// never truncated: it holds the device's identity.
    pub fn open_or_create(path: &str) -> Result<HostFile, HostIoError> {
        if let Ok(existing) = HostFile::open_read(path) {
            existing.close();
            return HostFile::open_mode(path, MODE_READ_WRITE_BINARY);
        }
        HostFile::open_mode(path, MODE_READ_WRITE_NEW_BINARY)
    }

    pub fn close(self) {
        // SAFETY: SYS_CLOSE takes an open handle, used no more afterwards.
        unsafe { syscall!(CLOSE, self.0) };
    }

    /// Grows the file to `len` bytes of `0xFF` (erased flash), so that a
    /// write past its end never leaves a gap the host fills with zeros.
    pub fn extend_erased(self, len: usize) -> Result<(), HostIoError> {
        let erased = [0xFF; 256];
        let mut at = self.len()?;
        while at < len {
            let n = erased.len().min(len - at);
            self.write_at(at, &erased[..n])?;
            at += n;
        }
        Ok(())
    }

    pub fn len(self) -> Result<usize, HostIoError> {
        // SAFETY: SYS_FLEN takes an open handle.
        let len = unsafe { syscall!(FLEN, self.0) };
        if len as isize == -1 {
            Err(HostIoError)
        } else {
            Ok(len)
        }
    }

    fn seek(self, position: usize) -> Result<(), HostIoError> {
        // SAFETY: SYS_SEEK takes an open handle and an absolute position.
        let result = unsafe { syscall!(SEEK, self.0, position) };
        if result == 0 {
            Ok(())
        } else {
            Err(HostIoError)
        }
    }

    /// Reads at `position`; returns how many bytes there were (fewer at the
    /// end of the file).
    pub fn read_at(self, position: usize, buf: &mut [u8]) -> Result<usize, HostIoError> {
        self.seek(position)?;
        // SAFETY: SYS_READ writes at most `buf.len()` bytes to `buf`.
        let not_read = unsafe { syscall!(READ, self.0, buf.as_mut_ptr(), buf.len()) };
        buf.len().checked_sub(not_read).ok_or(HostIoError)
    }

    pub fn write_at(self, position: usize, data: &[u8]) -> Result<(), HostIoError> {
        self.seek(position)?;
        // SAFETY: SYS_WRITE reads `data.len()` bytes from `data`.
        let not_written = unsafe { syscall!(WRITE, self.0, data.as_ptr(), data.len()) };
        if not_written == 0 {
            Ok(())
        } else {
            Err(HostIoError)
        }
    }
}

/// Reads a whole host file.
pub fn read_file(path: &str) -> Result<alloc::vec::Vec<u8>, HostIoError> {
    let file = HostFile::open_read(path)?;
    let mut bytes = alloc::vec![0; file.len()?];
    let n = file.read_at(0, &mut bytes)?;
    bytes.truncate(n);
    file.close();
    Ok(bytes)
}

/// Seconds since the Unix epoch on the host.
pub fn host_time() -> usize {
    // SAFETY: SYS_TIME takes no argument.
    unsafe { syscall!(TIME) }
}

/// Ends the emulation with an exit status (QEMU exits with it).
pub fn exit(success: bool) -> ! {
    cortex_m_semihosting::debug::exit(if success {
        cortex_m_semihosting::debug::EXIT_SUCCESS
    } else {
        cortex_m_semihosting::debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Sector size of the emulated flash.
pub const SECTOR: usize = 4096;
/// [`SECTOR`] as a flash offset.
pub const SECTOR_U32: u32 = 4096;

/// A partition `[base, base + len)` of a host file, used as NOR flash.
/// Bytes past the end of the file read as erased (`0xFF`), so a new empty
/// file is a fresh chip.
#[derive(Debug)]
pub struct FileFlash {
    file: HostFile,
    base: usize,
    len: usize,
}

/// The host file could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    Host,
    Geometry(NorFlashErrorKind),
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::Host => NorFlashErrorKind::Other,
            FlashError::Geometry(kind) => *kind,
        }
    }
}

impl From<HostIoError> for FlashError {
    fn from(_: HostIoError) -> Self {
        FlashError::Host
    }
}

impl FileFlash {
    /// `base` and `len` are multiples of [`SECTOR`].
    pub fn new(file: HostFile, base: usize, len: usize) -> FileFlash {
        FileFlash { file, base, len }
    }
}

impl ErrorType for FileFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check_read(self, offset, bytes.len()).map_err(FlashError::Geometry)?;
        let n = self.file.read_at(self.base + offset as usize, bytes)?;
        bytes[n..].fill(0xFF);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        check_erase(self, from, to).map_err(FlashError::Geometry)?;
        let erased = [0xFF; 256];
        let mut at = from as usize;
        while at < to as usize {
            self.file.write_at(self.base + at, &erased)?;
            at += erased.len();
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check_write(self, offset, bytes.len()).map_err(FlashError::Geometry)?;
        // NOR programming clears bits only: AND with what is there, in
        // pieces so the stack stays small.
        let mut current = [0u8; 256];
        for (i, piece) in bytes.chunks(current.len()).enumerate() {
            let at = offset as usize + i * current.len();
            let old = &mut current[..piece.len()];
            self.read(u32::try_from(at).map_err(|_| FlashError::Host)?, old)?;
            for (old, new) in old.iter_mut().zip(piece) {
                *old &= *new;
            }
            self.file.write_at(self.base + at, old)?;
        }
        Ok(())
    }
}
