//! The slot table: the bookkeeping of a [`ModuleStore`], written once over
//! a [`SlotMedium`] that only stores the table and the modules' bytes.
//!
//! The table decides which slot a transfer goes to, checks offsets and
//! sizes, verifies a module before it lists it installed, and keeps each
//! installed slot's result until it is delivered. A medium makes each of
//! its steps durable; power safety is the table's order of steps:
//!
//! - `begin`: the medium drops the slot's old bytes, then the table names
//!   the transfer;
//! - `commit`: the bytes are read back and verified, then the table lists
//!   the slot installed;
//! - `remove`: the table frees the slot, then the medium drops its bytes;
//! - `finish`: the end state and the result go into the table in one step.

use alloc::vec;
use alloc::vec::Vec;

use wasmbed_protocol::{AppState, DeploymentId, MAX_APPS};

use super::{
    Acceptor, BeginError, CommitError, ModuleMeta, ModuleStore, SlotInfo, SlotRecord, SlotState,
    StoreError, WriteError, sha256,
};

/// Where a [`SlotTable`] keeps its table and its modules' bytes: NOR flash
/// ([`crate::flash::NorSlots`]), files or memory (`crate::host`, feature
/// `std`). Slots are numbered from 0.
pub trait SlotMedium {
    /// Whether the table records how many bytes of a transfer are durable
    /// (`false`: the medium keeps that count itself).
    const DURABLE_IN_TABLE: bool;

    /// The stored table (entries past the slot count are ignored, missing
    /// ones are free).
    fn load_table(&mut self, slots: usize) -> Result<Vec<Option<SlotRecord>>, StoreError>;

    /// Replaces the stored table in one durable step; only entry `changed`
    /// differs from the stored one.
    fn save_table(
        &mut self,
        table: &[Option<SlotRecord>],
        changed: usize,
    ) -> Result<(), StoreError>;

    /// Drops the bytes of `slot` and prepares it for a transfer of `size`
    /// bytes (before the table names the transfer).
    fn start(&mut self, slot: usize, size: u32) -> Result<(), StoreError>;

    /// How many bytes of the unfinished transfer in `slot` are at hand,
    /// after a reboot or a failed [`Self::append`]; `recorded` is what the
    /// table holds (see [`Self::DURABLE_IN_TABLE`]). The medium continues
    /// from there.
    fn recover(&mut self, slot: usize, size: u32, recorded: u32) -> Result<u32, StoreError>;

    /// Appends `data` to the transfer in `slot`, which holds `at` bytes.
    fn append(&mut self, slot: usize, at: u32, data: &[u8]) -> Result<(), StoreError>;

    /// Makes the bytes appended to `slot` survive a power cut, as far as it
    /// can; returns how many would.
    fn sync(&mut self, slot: usize) -> Result<u32, StoreError>;

    /// The first `size` bytes of `slot`, a complete transfer or an
    /// installed module.
    fn read(&mut self, slot: usize, size: u32) -> Result<Vec<u8>, StoreError>;

    /// The table lists `slot` installed with `module`, whose bytes were
    /// read back and verified.
    fn installed(&mut self, slot: usize, module: Vec<u8>, sha256: &[u8; 32]);

    /// The table no longer names `slot`: its bytes may go.
    fn release(&mut self, slot: usize);
}

/// A [`ModuleStore`] over a [`SlotMedium`]: which slot a transfer goes to,
/// offsets and sizes, verification before a module is listed installed,
/// and each installed slot's undelivered result. Its steps are ordered for
/// power safety: the medium drops a slot's old bytes before the table names
/// a new transfer; the table lists a module installed only after it was
/// read back and verified; it frees a slot before the medium drops the
/// bytes.
#[derive(Debug, Clone)]
pub struct SlotTable<M> {
    medium: M,
    slots: Vec<Option<SlotInfo>>,
    /// Undelivered execution result (CBOR) of each installed slot.
    results: Vec<Option<Vec<u8>>>,
    /// Durable bytes of each receiving slot, as the table records them
    /// (always 0 unless [`SlotMedium::DURABLE_IN_TABLE`]).
    durable: Vec<u32>,
    /// Whether each receiving slot's bytes are at hand to continue.
    open: Vec<bool>,
    max_module_size: u32,
}

impl<M: SlotMedium> SlotTable<M> {
    /// Opens the table of `slots` slots (1 to `MAX_APPS`) on `medium`, for
    /// modules of up to `max_module_size` bytes. An unfinished transfer
    /// that cannot be recovered starts over when the gateway sends it
    /// again; the store still opens.
    pub fn with_medium(
        mut medium: M,
        slots: usize,
        max_module_size: u32,
    ) -> Result<Self, StoreError> {
        if slots == 0 || slots > MAX_APPS {
            return Err(StoreError::Layout);
        }
        let mut records = medium.load_table(slots)?;
        records.resize(slots, None);
        let mut table = SlotTable {
            medium,
            slots: Vec::with_capacity(slots),
            results: Vec::with_capacity(slots),
            durable: vec![0; slots],
            open: vec![false; slots],
            max_module_size,
        };
        for (i, record) in records.into_iter().enumerate() {
            let Some(record) = record else {
                table.slots.push(None);
                table.results.push(None);
                continue;
            };
            let state = match record.installed {
                Some(state) => SlotState::Installed(state),
                None => SlotState::Receiving { held: 0 },
            };
            let result = record.installed.and(record.result);
            if record.installed.is_none() && M::DURABLE_IN_TABLE {
                table.durable[i] = record.held;
            }
            table.slots.push(Some(SlotInfo {
                meta: record.meta,
                state,
            }));
            table.results.push(result);
            if record.installed.is_none() {
                table.recover(i);
            }
        }
        Ok(table)
    }

    /// Gives the medium back, e.g. to reopen it after a simulated reboot.
    pub fn into_medium(self) -> M {
        self.medium
    }

    /// The medium, e.g. to look at its bytes.
    pub fn medium(&self) -> &M {
        &self.medium
    }

    /// The medium, to configure it (`crate::host::MemModuleStore`).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn medium_mut(&mut self) -> &mut M {
        &mut self.medium
    }

    fn index(&self, deployment: DeploymentId) -> Option<usize> {
        slot_index(&self.slots, deployment)
    }

    /// Continues slot `i`'s transfer from what its medium still holds;
    /// when that is unknown, the transfer can only start over (it holds
    /// nothing).
    fn recover(&mut self, i: usize) {
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
        let recovered = self.medium.recover(i, size, self.durable[i]);
        self.open[i] = recovered.is_ok();
        self.set_held(i, recovered.unwrap_or(0));
    }

    fn set_held(&mut self, i: usize, held: u32) {
        if let Some(slot) = &mut self.slots[i] {
            slot.state = SlotState::Receiving { held };
        }
    }

    /// Durably replaces slot `i`, its result and its durable count, then
    /// updates memory.
    fn update(
        &mut self,
        i: usize,
        slot: Option<SlotInfo>,
        result: Option<Vec<u8>>,
        durable: u32,
    ) -> Result<(), StoreError> {
        let record = |slot: &Option<SlotInfo>, result: &Option<Vec<u8>>, held: u32| {
            slot.as_ref().map(|s| SlotRecord {
                meta: s.meta.clone(),
                installed: match s.state {
                    SlotState::Installed(state) => Some(state),
                    SlotState::Receiving { .. } => None,
                },
                held,
                result: result.clone(),
            })
        };
        let records: Vec<Option<SlotRecord>> = (0..self.slots.len())
            .map(|j| {
                if j == i {
                    record(&slot, &result, durable)
                } else {
                    record(&self.slots[j], &self.results[j], self.durable[j])
                }
            })
            .collect();
        self.medium.save_table(&records, i)?;
        self.slots[i] = slot;
        self.results[i] = result;
        self.durable[i] = durable;
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
        self.update(i, Some(slot), result, 0)?;
        Ok(true)
    }
}

impl<M: SlotMedium> ModuleStore for SlotTable<M> {
    fn slots(&self) -> &[Option<SlotInfo>] {
        &self.slots
    }

    fn max_module_size(&self) -> u32 {
        self.max_module_size
    }

    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError> {
        let open = &self.open;
        let i = match choose_begin_slot(&self.slots, self.max_module_size, meta, |i| open[i])? {
            BeginSlot::Resume { held } => return Ok(held),
            BeginSlot::Restart { index } => index,
        };
        self.open[i] = false;
        self.medium.start(i, meta.size)?;
        let slot = SlotInfo {
            meta: meta.clone(),
            state: SlotState::Receiving { held: 0 },
        };
        self.update(i, Some(slot), None, 0)?;
        self.open[i] = true;
        Ok(0)
    }

    fn write(&mut self, deployment: DeploymentId, at: u32, data: &[u8]) -> Result<u32, WriteError> {
        let i = self
            .index(deployment)
            .filter(|&i| self.open[i])
            .ok_or(WriteError::UnknownDeployment)?;
        let size = self.slots[i].as_ref().map_or(0, |s| s.meta.size);
        let held = bytes_held(&self.slots[i]);
        let end = u64::from(at) + data.len() as u64;
        if at > held {
            return Err(WriteError::UnexpectedOffset { held });
        }
        if end > u64::from(size) {
            return Err(WriteError::BeyondSize);
        }
        if end <= u64::from(held) {
            return Ok(held);
        }
        if let Err(e) = self.medium.append(i, held, &data[(held - at) as usize..]) {
            // The medium's state is unknown: continue from what it still
            // holds, as after a reboot.
            self.recover(i);
            return Err(WriteError::Store(e));
        }
        // `end <= size`, a u32.
        let end = u32::try_from(end).map_err(|_| WriteError::BeyondSize)?;
        self.set_held(i, end);
        Ok(end)
    }

    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError> {
        let Some(i) = self.index(deployment).filter(|&i| self.open[i]) else {
            return Ok(0);
        };
        let durable = self.medium.sync(i)?;
        if M::DURABLE_IN_TABLE {
            let slot = self.slots[i].clone();
            self.update(i, slot, None, durable)?;
        }
        Ok(durable)
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
        if !self.open[i] {
            return Err(CommitError::UnknownDeployment);
        }
        let held = bytes_held(&self.slots[i]);
        if held != slot.meta.size {
            return Err(CommitError::Incomplete { held });
        }
        let bytes = self.medium.read(i, slot.meta.size)?;
        if sha256(&bytes) != slot.meta.sha256 {
            return Err(CommitError::HashMismatch);
        }
        accept(&bytes).map_err(CommitError::Rejected)?;
        let sha256 = slot.meta.sha256;
        let installed = SlotInfo {
            meta: slot.meta,
            state: SlotState::Installed(AppState::Installed),
        };
        self.update(i, Some(installed), None, 0)?;
        self.open[i] = false;
        self.medium.installed(i, bytes, &sha256);
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
                self.medium.read(i, size)
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
        self.update(i, None, None, 0)?;
        self.open[i] = false;
        self.medium.release(i);
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
        self.update(i, slot, None, 0)?;
        Ok(true)
    }
}

/// Where a `begin` continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BeginSlot {
    /// The same transfer is under way: continue after `held` bytes.
    Resume { held: u32 },
    /// (Re)start the transfer from scratch in slot `index`.
    Restart { index: usize },
}

/// Picks the slot for `meta`: its own slot (resumed when `resumable`
/// says its bytes are still at hand), else a free slot, else one that is
/// only receiving. Installed modules are never displaced.
fn choose_begin_slot(
    slots: &[Option<SlotInfo>],
    max_module_size: u32,
    meta: &ModuleMeta,
    resumable: impl Fn(usize) -> bool,
) -> Result<BeginSlot, BeginError> {
    if meta.size > max_module_size {
        return Err(BeginError::TooLarge);
    }
    let Some(index) = slot_index(slots, meta.deployment) else {
        return slots
            .iter()
            .position(Option::is_none)
            .or_else(|| {
                slots.iter().position(|s| {
                    s.as_ref()
                        .is_some_and(|s| matches!(s.state, SlotState::Receiving { .. }))
                })
            })
            .map(|index| BeginSlot::Restart { index })
            .ok_or(BeginError::NoFreeSlot);
    };
    match &slots[index] {
        Some(SlotInfo {
            state: SlotState::Installed(_),
            ..
        }) => Err(BeginError::AlreadyInstalled),
        Some(SlotInfo {
            meta: held_meta,
            state: SlotState::Receiving { held },
        }) if held_meta == meta && resumable(index) => Ok(BeginSlot::Resume { held: *held }),
        _ => Ok(BeginSlot::Restart { index }),
    }
}

/// The index of the slot holding `deployment`.
fn slot_index(slots: &[Option<SlotInfo>], deployment: DeploymentId) -> Option<usize> {
    slots
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.meta.deployment == deployment))
}

/// Bytes a receiving slot holds; 0 otherwise.
fn bytes_held(slot: &Option<SlotInfo>) -> u32 {
    match slot {
        Some(SlotInfo {
            state: SlotState::Receiving { held },
            ..
        }) => *held,
        _ => 0,
    }
}
