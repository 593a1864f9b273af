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
use wasmbed_protocol::{AppState, DeploymentId, MAX_APPS};

use super::record::RecordPair;
use super::{MAX_WORD, check_geometry, offset, round_up};
use crate::storage::{
    Acceptor, BeginError, BeginSlot, CommitError, ModuleMeta, ModuleStore, SlotInfo, SlotRecord,
    SlotState, StoreError, WriteError, choose_begin_slot, sha256, slot_index,
};

/// A [`ModuleStore`] on NOR flash (see the module docs for the layout).
#[derive(Debug)]
pub struct FlashModuleStore<F> {
    flash: F,
    table: RecordPair,
    slots: Vec<Option<SlotInfo>>,
    /// Undelivered execution result (CBOR) of each installed slot.
    results: Vec<Option<Vec<u8>>>,
    /// Write state of each receiving slot.
    rx: Vec<Option<Rx>>,
    max_module_size: u32,
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

/// Largest sector [`FlashModuleStore`] copies to RAM to keep a resumed
/// transfer's durable bytes (see `rewrite_sector`).
pub const MAX_REWRITE: usize = 4096;

const fn log_entry_len<F: NorFlash>() -> usize {
    if F::WRITE_SIZE > 8 { F::WRITE_SIZE } else { 8 }
}

impl<F: NorFlash> FlashModuleStore<F> {
    /// Opens a store of `slots` slots (at most `MAX_APPS`) holding modules
    /// of up to `max_module_size` bytes each.
    pub fn new(mut flash: F, slots: usize, max_module_size: u32) -> Result<Self, StoreError> {
        check_geometry::<F>()?;
        let sector = F::ERASE_SIZE;
        let region = sector + round_up(max_module_size as usize, sector);
        let needed = RecordPair::size::<F>() + slots * region;
        if slots == 0 || slots > MAX_APPS || needed > flash.capacity() {
            return Err(StoreError::Layout);
        }
        let (table, body) = RecordPair::open(&mut flash, 0)?;
        let mut records: Vec<Option<SlotRecord>> = match body {
            Some(body) => minicbor::decode(&body).map_err(|_| StoreError::Corrupt)?,
            None => Vec::new(),
        };
        records.resize(slots, None);
        let results = records
            .iter_mut()
            .map(|r| {
                r.as_mut()
                    .filter(|r| r.installed.is_some())
                    .and_then(|r| r.result.take())
            })
            .collect();
        let mut store = FlashModuleStore {
            flash,
            table,
            results,
            slots: records
                .into_iter()
                .map(|record| {
                    record.map(|r| SlotInfo {
                        state: match r.installed {
                            Some(state) => SlotState::Installed(state),
                            None => SlotState::Receiving { held: 0 },
                        },
                        meta: r.meta,
                    })
                })
                .collect(),
            rx: vec![None; slots],
            max_module_size,
            region: offset(region),
        };
        for i in 0..slots {
            if let Some(SlotInfo {
                state: SlotState::Receiving { .. },
                ..
            }) = store.slots[i]
            {
                // A transfer that cannot be recovered starts over when the
                // gateway sends it again; the store still opens.
                if store.recover(i).is_err() {
                    store.rx[i] = None;
                }
            }
        }
        Ok(store)
    }

    /// Gives the flash back, e.g. to reopen it after a simulated reboot.
    pub fn into_flash(self) -> F {
        self.flash
    }

    fn area(&self, slot: usize) -> SlotArea {
        let log = offset(RecordPair::size::<F>()) + offset(slot) * self.region;
        SlotArea {
            log,
            data: log + offset(F::ERASE_SIZE),
        }
    }

    fn index(&self, deployment: DeploymentId) -> Option<usize> {
        slot_index(&self.slots, deployment)
    }

    /// The table encoded with slot `change.0` replaced by `change.1` and
    /// its result by `change.2`.
    fn encode_table(&self, change: (usize, &Option<SlotInfo>, &Option<Vec<u8>>)) -> Vec<u8> {
        let records: Vec<Option<SlotRecord>> = self
            .slots
            .iter()
            .zip(&self.results)
            .enumerate()
            .map(|(i, (slot, result))| {
                let (slot, result) = if i == change.0 {
                    (change.1, change.2)
                } else {
                    (slot, result)
                };
                slot.as_ref().map(|s| SlotRecord {
                    meta: s.meta.clone(),
                    installed: match s.state {
                        SlotState::Installed(state) => Some(state),
                        SlotState::Receiving { .. } => None,
                    },
                    held: 0,
                    result: result.clone(),
                })
            })
            .collect();
        minicbor::to_vec(&records).unwrap_or_default()
    }

    /// Durably replaces slot `i` and its result, then updates the
    /// in-memory table.
    fn update(
        &mut self,
        i: usize,
        new: Option<SlotInfo>,
        result: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let body = self.encode_table((i, &new, &result));
        self.table.write(&mut self.flash, &body)?;
        self.slots[i] = new;
        self.results[i] = result;
        Ok(())
    }

    /// Durably sets the state of installed slot `i` and its result.
    fn set_installed(
        &mut self,
        i: usize,
        state: AppState,
        result: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let Some(SlotInfo {
            meta,
            state: SlotState::Installed(_),
        }) = &self.slots[i]
        else {
            return Ok(false);
        };
        let slot = SlotInfo {
            meta: meta.clone(),
            state: SlotState::Installed(state),
        };
        self.update(i, Some(slot), result)?;
        Ok(true)
    }

    /// Rebuilds slot `i`'s write state from its progress log and makes sure
    /// the flash after it can be programmed.
    fn recover(&mut self, i: usize) -> Result<(), StoreError> {
        let area = self.area(i);
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
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
        if let Some(slot) = &mut self.slots[i] {
            slot.state = SlotState::Receiving { held: rx.held() };
        }
        self.rx[i] = Some(rx);
        Ok(())
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
    fn append(&mut self, i: usize, rx: &mut Rx, mut data: &[u8]) -> Result<(), StoreError> {
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

    fn read_module(&mut self, i: usize, size: u32) -> Result<Vec<u8>, StoreError> {
        let mut bytes = vec![0u8; size as usize];
        let at = self.area(i).data;
        self.flash
            .read(at, &mut bytes)
            .map_err(|_| StoreError::Flash)?;
        Ok(bytes)
    }

    /// Starts slot `i` over for `meta`.
    fn restart(&mut self, i: usize, meta: &ModuleMeta) -> Result<(), StoreError> {
        let area = self.area(i);
        self.rx[i] = None;
        self.flash
            .erase(area.log, area.log + offset(F::ERASE_SIZE))
            .map_err(|_| StoreError::Flash)?;
        self.update(
            i,
            Some(SlotInfo {
                meta: meta.clone(),
                state: SlotState::Receiving { held: 0 },
            }),
            None,
        )?;
        self.rx[i] = Some(Rx::default());
        Ok(())
    }

    fn set_held(&mut self, i: usize, held: u32) {
        if let Some(slot) = &mut self.slots[i] {
            slot.state = SlotState::Receiving { held };
        }
    }
}

impl<F: NorFlash> ModuleStore for FlashModuleStore<F> {
    fn slots(&self) -> &[Option<SlotInfo>] {
        &self.slots
    }

    fn max_module_size(&self) -> u32 {
        self.max_module_size
    }

    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError> {
        let resumable = |i: usize| self.rx[i].is_some();
        let slot = match choose_begin_slot(&self.slots, self.max_module_size, meta, resumable)? {
            BeginSlot::Resume { held } => return Ok(held),
            BeginSlot::Restart { index } => index,
        };
        self.restart(slot, meta)?;
        Ok(0)
    }

    fn write(&mut self, deployment: DeploymentId, at: u32, data: &[u8]) -> Result<u32, WriteError> {
        let i = self
            .index(deployment)
            .ok_or(WriteError::UnknownDeployment)?;
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
        let mut rx = self.rx[i].take().ok_or(WriteError::UnknownDeployment)?;
        let held = rx.held();
        let end = u64::from(at) + data.len() as u64;
        let result = if at > held {
            Err(WriteError::UnexpectedOffset { held })
        } else if end > u64::from(size) {
            Err(WriteError::BeyondSize)
        } else if end <= u64::from(held) {
            Ok(())
        } else {
            let skip = (held - at) as usize;
            self.append(i, &mut rx, &data[skip..])
                .map_err(WriteError::Store)
        };
        if let Err(WriteError::Store(_)) = result {
            // A failed program leaves the flash in an unknown state:
            // continue from what the log says, as after a reboot.
            self.rx[i] = Some(rx);
            return match self.recover(i) {
                Ok(()) => result.map(|()| held),
                Err(e) => {
                    // Nothing is known about this transfer any more.
                    self.rx[i] = None;
                    Err(WriteError::Store(e))
                }
            };
        }
        let now_held = rx.held();
        self.rx[i] = Some(rx);
        self.set_held(i, now_held);
        result.map(|()| now_held)
    }

    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(0);
        };
        let Some(mut rx) = self.rx[i].take() else {
            return Ok(0);
        };
        let result = if rx.programmed > rx.durable {
            let previous = rx.durable;
            rx.durable = rx.programmed;
            let area = self.area(i);
            let appended = self.append_log(area, &mut rx, false);
            if appended.is_err() {
                rx.durable = previous;
            }
            appended
        } else {
            Ok(())
        };
        let durable = rx.durable;
        self.rx[i] = Some(rx);
        result.map(|()| durable)
    }

    fn commit(
        &mut self,
        deployment: DeploymentId,
        accept: Acceptor<'_>,
    ) -> Result<(), CommitError> {
        let i = self
            .index(deployment)
            .ok_or(CommitError::UnknownDeployment)?;
        let Some(slot) = self.slots[i].clone() else {
            return Err(CommitError::UnknownDeployment);
        };
        if let SlotState::Installed(_) = slot.state {
            return Ok(());
        }
        let mut rx = self.rx[i].take().ok_or(CommitError::UnknownDeployment)?;
        if rx.held() != slot.meta.size {
            let held = rx.held();
            self.rx[i] = Some(rx);
            return Err(CommitError::Incomplete { held });
        }
        let flushed = self.flush_tail(i, &mut rx);
        self.rx[i] = Some(rx);
        flushed?;
        let bytes = self.read_module(i, slot.meta.size)?;
        if sha256(&bytes) != slot.meta.sha256 {
            return Err(CommitError::HashMismatch);
        }
        accept(&bytes).map_err(CommitError::Rejected)?;
        drop(bytes);
        self.update(
            i,
            Some(SlotInfo {
                meta: slot.meta,
                state: SlotState::Installed(AppState::Installed),
            }),
            None,
        )?;
        self.rx[i] = None;
        Ok(())
    }

    fn load(&mut self, deployment: DeploymentId) -> Result<Vec<u8>, StoreError> {
        let i = self.index(deployment).ok_or(StoreError::NotFound)?;
        match &self.slots[i] {
            Some(SlotInfo {
                meta,
                state: SlotState::Installed(_),
            }) => {
                let size = meta.size;
                self.read_module(i, size)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    fn set_state(&mut self, deployment: DeploymentId, state: AppState) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        if self.slots[i]
            .as_ref()
            .is_some_and(|slot| slot.state == SlotState::Installed(state))
        {
            return Ok(true);
        }
        let result = self.results[i].clone();
        self.set_installed(i, state, result)
    }

    fn remove(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        self.update(i, None, None)?;
        self.rx[i] = None;
        Ok(true)
    }

    fn finish(
        &mut self,
        deployment: DeploymentId,
        state: AppState,
        result: &[u8],
    ) -> Result<bool, StoreError> {
        match self.index(deployment) {
            Some(i) => self.set_installed(i, state, Some(result.to_vec())),
            None => Ok(false),
        }
    }

    fn result(&self, deployment: DeploymentId) -> Option<&[u8]> {
        let i = self.index(deployment)?;
        self.results[i].as_deref()
    }

    fn clear_result(&mut self, deployment: DeploymentId) -> Result<bool, StoreError> {
        let Some(i) = self.index(deployment) else {
            return Ok(false);
        };
        if self.results[i].is_none() {
            return Ok(false);
        }
        let slot = self.slots[i].clone();
        self.update(i, slot, None)?;
        Ok(true)
    }
}
