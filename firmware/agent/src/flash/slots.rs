//! Application slots on NOR flash.
//!
//! Layout, in sectors of `S = ERASE_SIZE` bytes:
//!
//! ```text
//! [0, 2S)                    slot table: a power-safe record (see `record`)
//! per slot i, from 2S + i·(1 + D)·S, D = ceil(max_module_size / S):
//!   one sector               progress log: entries (offset, !offset)
//!   D sectors                module data
//! ```
//!
//! - `begin` erases the slot's progress log, then writes the table with the
//!   slot receiving. Data sectors are erased lazily, when the write position
//!   enters them.
//! - `write` programs whole words; a partial word waits in RAM.
//!   `checkpoint` appends the programmed length to the progress log, which
//!   is what survives a reboot.
//! - On open, a receiving slot continues from its last log entry. If the
//!   rest of that sector is not erased (chunks were written after the last
//!   checkpoint, or a write was cut), the sector is rewritten with just its
//!   logged bytes: the sector start is logged first, so a cut during the
//!   rewrite falls back to it.
//! - `commit` reads the module back, checks size and SHA-256, asks the
//!   acceptor, and only then writes the table with the slot installed.
//! - An installed slot's record in the table may carry the undelivered
//!   execution result (`finish` writes it with the end state in one table
//!   write; `clear_result` and `remove` drop it). The table is one record,
//!   so all slots' results must fit in one sector with the metadata: a
//!   `finish` that does not fit fails with [`StoreError::TooLarge`].
//!
//! So after any power cut a slot is free, receiving with a verified prefix
//! count, or installed with a verified module: never installed with a
//! partial one.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;
use wasmbed_protocol::MAX_APPS;

use super::record::RecordPair;
use super::{MAX_WORD, check_geometry, offset, round_up};
use crate::storage::{SlotMedium, SlotRecord, SlotTable, StoreError};

/// A [`ModuleStore`](crate::storage::ModuleStore) on NOR flash (see
/// [`NorSlots`]).
pub type FlashModuleStore<F> = SlotTable<NorSlots<F>>;

impl<F: NorFlash> FlashModuleStore<F> {
    /// Opens a store of `slots` slots (at most `MAX_APPS`) holding modules
    /// of up to `max_module_size` bytes each.
    pub fn new(flash: F, slots: usize, max_module_size: u32) -> Result<Self, StoreError> {
        let medium = NorSlots::new(flash, slots, max_module_size)?;
        SlotTable::with_medium(medium, slots, max_module_size)
    }

    /// Gives the flash back, e.g. to reopen it after a simulated reboot.
    pub fn into_flash(self) -> F {
        self.into_medium().flash
    }
}

/// Slots on a whole [`NorFlash`]: the table in a record pair (two sectors),
/// and per slot a progress log sector and the module's sectors, erased as
/// the transfer enters them. A checkpoint appends the programmed length to
/// the log; on open a transfer continues from its last entry, so after any
/// power cut a slot is free, receiving with a verified prefix, or installed
/// with a verified module.
#[derive(Debug)]
pub struct NorSlots<F> {
    flash: F,
    table: RecordPair,
    /// Write state of each receiving slot.
    rx: Vec<Option<Rx>>,
    /// Bytes of one slot's region (log sector and data sectors).
    region: u32,
}

/// Where a transfer's bytes are.
#[derive(Debug, Clone, Default)]
struct Rx {
    /// Bytes programmed to flash (a multiple of the word size).
    programmed: u32,
    /// Received bytes after `programmed`, less than a word.
    tail: heapless::Vec<u8, MAX_WORD>,
    /// Bytes recorded in the progress log.
    durable: u32,
    /// Index of the next free log entry.
    log_next: u32,
}

impl Rx {
    fn held(&self) -> u32 {
        self.programmed + offset(self.tail.len())
    }
}

/// Where one slot lives in flash.
#[derive(Debug, Clone, Copy)]
struct SlotArea {
    log: u32,
    data: u32,
}

/// Largest sector [`NorSlots`] copies to RAM to keep a resumed
/// transfer's durable bytes (see `rewrite_sector`).
pub const MAX_REWRITE: usize = 4096;

const fn log_entry_len<F: NorFlash>() -> usize {
    if F::WRITE_SIZE > 8 { F::WRITE_SIZE } else { 8 }
}

impl<F: NorFlash> NorSlots<F> {
    /// The medium of `slots` slots for modules of up to `max_module_size`
    /// bytes, if the flash holds them.
    pub fn new(flash: F, slots: usize, max_module_size: u32) -> Result<Self, StoreError> {
        check_geometry::<F>()?;
        let sector = F::ERASE_SIZE;
        let region = sector + round_up(max_module_size as usize, sector);
        let needed = RecordPair::size::<F>() + slots * region;
        if slots == 0 || slots > MAX_APPS || needed > flash.capacity() {
            return Err(StoreError::Layout);
        }
        Ok(NorSlots {
            flash,
            table: RecordPair::at::<F>(0),
            rx: vec![None; slots],
            region: offset(region),
        })
    }

    fn area(&self, slot: usize) -> SlotArea {
        let log = offset(RecordPair::size::<F>()) + offset(slot) * self.region;
        SlotArea {
            log,
            data: log + offset(F::ERASE_SIZE),
        }
    }

    /// Rebuilds slot `i`'s write state from its progress log and makes sure
    /// the flash after it can be programmed.
    /// On error the slot has no write state: its transfer starts over.
    fn recover_rx(&mut self, i: usize, size: u32) -> Result<u32, StoreError> {
        self.rx[i] = None;
        let area = self.area(i);
        let entry_len = log_entry_len::<F>();
        let entries = F::ERASE_SIZE / entry_len;
        let mut rx = Rx::default();
        let mut entry = [0u8; MAX_WORD];
        for n in 0..entries {
            let at = area.log + offset(n * entry_len);
            self.flash
                .read(at, &mut entry[..entry_len])
                .map_err(|_| StoreError::Flash)?;
            if entry[..entry_len].iter().all(|&b| b == 0xFF) {
                break;
            }
            rx.log_next = offset(n + 1);
            let value = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let check = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if check == !value && value <= size && value as usize % F::WRITE_SIZE == 0 {
                rx.durable = value;
            }
        }
        rx.programmed = rx.durable;
        // Past a sector start, the rest of the sector must still be erased.
        let sector = offset(F::ERASE_SIZE);
        let in_sector = rx.programmed % sector;
        if in_sector != 0 {
            let sector_start = rx.programmed - in_sector;
            let end = sector_start + sector;
            if !self.is_erased(area.data + rx.programmed, area.data + end)? {
                self.rewrite_sector(area, &mut rx, sector_start)?;
            }
        }
        let held = rx.held();
        self.rx[i] = Some(rx);
        Ok(held)
    }

    /// Bytes after the durable offset were programmed but not logged (the
    /// gateway streams ahead of checkpoints, or a write was cut), so they
    /// cannot be programmed again. Keeps the durable bytes of that sector
    /// by erasing and reprogramming it, logging the sector start first so
    /// that a cut meanwhile falls back to it. Sectors larger than
    /// [`MAX_REWRITE`] are not copied to RAM: the transfer resumes from
    /// the sector start instead.
    fn rewrite_sector(
        &mut self,
        area: SlotArea,
        rx: &mut Rx,
        sector_start: u32,
    ) -> Result<(), StoreError> {
        let keep = rx.durable - sector_start;
        let saved = if F::ERASE_SIZE <= MAX_REWRITE {
            let mut saved = vec![0u8; keep as usize];
            self.flash
                .read(area.data + sector_start, &mut saved)
                .map_err(|_| StoreError::Flash)?;
            Some(saved)
        } else {
            None
        };
        rx.durable = sector_start;
        rx.programmed = sector_start;
        self.append_log(area, rx, true)?;
        if rx.durable != sector_start {
            // The log was full and the transfer starts over.
            return Ok(());
        }
        if let Some(saved) = saved {
            // `program` erases the sector as it starts at its beginning.
            self.program(area, sector_start, &saved)?;
            rx.programmed = sector_start + keep;
            rx.durable = rx.programmed;
            self.append_log(area, rx, false)?;
        }
        Ok(())
    }

    fn is_erased(&mut self, from: u32, to: u32) -> Result<bool, StoreError> {
        let mut buf = [0u8; 64];
        let mut at = from;
        while at < to {
            let n = (to - at).min(offset(buf.len()));
            let chunk = &mut buf[..n as usize];
            self.flash.read(at, chunk).map_err(|_| StoreError::Flash)?;
            if chunk.iter().any(|&b| b != 0xFF) {
                return Ok(false);
            }
            at += n;
        }
        Ok(true)
    }

    /// Appends `rx.durable` to the progress log. When the log is full, a
    /// `required` entry (one that lowers the offset) restarts the log and
    /// the transfer; an optional one is skipped.
    fn append_log(
        &mut self,
        area: SlotArea,
        rx: &mut Rx,
        required: bool,
    ) -> Result<(), StoreError> {
        let entry_len = log_entry_len::<F>();
        if rx.log_next as usize >= F::ERASE_SIZE / entry_len {
            if !required {
                return Ok(());
            }
            *rx = Rx::default();
            return self
                .flash
                .erase(area.log, area.log + offset(F::ERASE_SIZE))
                .map_err(|_| StoreError::Flash);
        }
        let mut entry = [0xFFu8; MAX_WORD];
        entry[..4].copy_from_slice(&rx.durable.to_le_bytes());
        entry[4..8].copy_from_slice(&(!rx.durable).to_le_bytes());
        let at = area.log + rx.log_next * offset(entry_len);
        rx.log_next += 1;
        self.flash
            .write(at, &entry[..entry_len])
            .map_err(|_| StoreError::Flash)
    }

    /// Programs word-aligned `bytes` at data offset `at`, erasing each
    /// sector as the write enters it.
    fn program(&mut self, area: SlotArea, at: u32, bytes: &[u8]) -> Result<(), StoreError> {
        let sector = offset(F::ERASE_SIZE);
        let (mut pos, mut rest) = (at, bytes);
        while !rest.is_empty() {
            let flash_at = area.data + pos;
            if pos % sector == 0 {
                self.flash
                    .erase(flash_at, flash_at + sector)
                    .map_err(|_| StoreError::Flash)?;
            }
            let n = rest.len().min((sector - pos % sector) as usize);
            self.flash
                .write(flash_at, &rest[..n])
                .map_err(|_| StoreError::Flash)?;
            pos += offset(n);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Appends `data` to the transfer in slot `i`.
    fn append_rx(&mut self, i: usize, rx: &mut Rx, mut data: &[u8]) -> Result<(), StoreError> {
        let area = self.area(i);
        let word = F::WRITE_SIZE;
        if !rx.tail.is_empty() {
            let take = (word - rx.tail.len()).min(data.len());
            // Cannot fail: the tail stays below one word.
            let _ = rx.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if rx.tail.len() < word {
                return Ok(());
            }
            let full = rx.tail.clone();
            self.program(area, rx.programmed, &full)?;
            rx.programmed += offset(word);
            rx.tail.clear();
        }
        let aligned = data.len() / word * word;
        self.program(area, rx.programmed, &data[..aligned])?;
        rx.programmed += offset(aligned);
        // Cannot fail: fewer than `word` bytes remain.
        let _ = rx.tail.extend_from_slice(&data[aligned..]);
        Ok(())
    }

    /// Pads the tail to a word and programs it (the transfer is complete).
    fn flush_tail(&mut self, i: usize, rx: &mut Rx) -> Result<(), StoreError> {
        if rx.tail.is_empty() {
            return Ok(());
        }
        let mut word = [0xFFu8; MAX_WORD];
        word[..rx.tail.len()].copy_from_slice(&rx.tail);
        let area = self.area(i);
        self.program(area, rx.programmed, &word[..F::WRITE_SIZE])?;
        rx.programmed += offset(F::WRITE_SIZE);
        rx.tail.clear();
        Ok(())
    }
}

impl<F: NorFlash> SlotMedium for NorSlots<F> {
    const DURABLE_IN_TABLE: bool = false;

    fn load_table(&mut self, _slots: usize) -> Result<Vec<Option<SlotRecord>>, StoreError> {
        let (table, body) = RecordPair::open(&mut self.flash, 0)?;
        self.table = table;
        match body {
            Some(body) => minicbor::decode(&body).map_err(|_| StoreError::Corrupt),
            None => Ok(Vec::new()),
        }
    }

    fn save_table(
        &mut self,
        table: &[Option<SlotRecord>],
        _changed: usize,
    ) -> Result<(), StoreError> {
        let body = minicbor::to_vec(table).map_err(|_| StoreError::Corrupt)?;
        self.table.write(&mut self.flash, &body)
    }

    fn start(&mut self, slot: usize, _size: u32) -> Result<(), StoreError> {
        let area = self.area(slot);
        self.rx[slot] = None;
        self.flash
            .erase(area.log, area.log + offset(F::ERASE_SIZE))
            .map_err(|_| StoreError::Flash)?;
        self.rx[slot] = Some(Rx::default());
        Ok(())
    }

    fn recover(&mut self, slot: usize, size: u32, _recorded: u32) -> Result<u32, StoreError> {
        self.recover_rx(slot, size)
    }

    fn append(&mut self, slot: usize, _at: u32, data: &[u8]) -> Result<(), StoreError> {
        let mut rx = self.rx[slot].take().ok_or(StoreError::NotFound)?;
        let appended = self.append_rx(slot, &mut rx, data);
        self.rx[slot] = Some(rx);
        appended
    }

    fn sync(&mut self, slot: usize) -> Result<u32, StoreError> {
        let Some(mut rx) = self.rx[slot].take() else {
            return Ok(0);
        };
        let result = if rx.programmed > rx.durable {
            let previous = rx.durable;
            rx.durable = rx.programmed;
            let area = self.area(slot);
            let appended = self.append_log(area, &mut rx, false);
            if appended.is_err() {
                rx.durable = previous;
            }
            appended
        } else {
            Ok(())
        };
        let durable = rx.durable;
        self.rx[slot] = Some(rx);
        result.map(|()| durable)
    }

    fn read(&mut self, slot: usize, size: u32) -> Result<Vec<u8>, StoreError> {
        if let Some(mut rx) = self.rx[slot].take() {
            let flushed = self.flush_tail(slot, &mut rx);
            self.rx[slot] = Some(rx);
            flushed?;
        }
        let mut bytes = vec![0u8; size as usize];
        let at = self.area(slot).data;
        self.flash
            .read(at, &mut bytes)
            .map_err(|_| StoreError::Flash)?;
        Ok(bytes)
    }

    fn installed(&mut self, slot: usize, _module: Vec<u8>, _sha256: &[u8; 32]) {
        self.rx[slot] = None;
    }

    fn release(&mut self, slot: usize) {
        self.rx[slot] = None;
    }
}
