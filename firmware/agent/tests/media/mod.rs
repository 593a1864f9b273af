//! The slot media the store suites run on: NOR flash, files and memory,
//! each behind the same small traits, and a wrapper that makes any medium
//! lose power after a number of steps.

// Each test binary uses part of this module.
#![allow(dead_code, unreachable_pub)]

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use wasmbed_agent::flash::{FlashModuleStore, MemFlashError, MemFlashOf};
use wasmbed_agent::host::{FileModuleStore, FileSlots, MemModuleStore, MemSlots};
use wasmbed_agent::storage::{ModuleStore, SlotMedium, SlotRecord, SlotTable, StoreError};

/// Slots and largest module of every store the suites open.
pub const SLOTS: usize = 2;

/// A medium for the conformance suite: a store as after a boot, and the
/// same store after a reboot.
pub trait Medium {
    type Store: ModuleStore;
    /// Bytes written after the last checkpoint survive a reboot.
    const KEEPS_UNSYNCED: bool;
    fn boot(&mut self) -> Self::Store;
    fn reboot(&mut self, store: Self::Store) -> Self::Store;
}

/// One flash that every store booted on it shares, as after a reboot.
#[derive(Clone)]
pub struct Shared<const SECTOR: usize>(pub Rc<RefCell<MemFlashOf<SECTOR>>>);

impl<const SECTOR: usize> Shared<SECTOR> {
    pub fn new(sectors: usize) -> Self {
        Shared(Rc::new(RefCell::new(MemFlashOf::new(sectors))))
    }
}

impl<const SECTOR: usize> ErrorType for Shared<SECTOR> {
    type Error = MemFlashError;
}

impl<const SECTOR: usize> ReadNorFlash for Shared<SECTOR> {
    const READ_SIZE: usize = MemFlashOf::<SECTOR>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MemFlashError> {
        self.0.borrow_mut().read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().capacity()
    }
}

impl<const SECTOR: usize> NorFlash for Shared<SECTOR> {
    const WRITE_SIZE: usize = MemFlashOf::<SECTOR>::WRITE_SIZE;
    const ERASE_SIZE: usize = MemFlashOf::<SECTOR>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), MemFlashError> {
        self.0.borrow_mut().erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MemFlashError> {
        self.0.borrow_mut().write(offset, bytes)
    }
}

/// NOR flash of 4 KiB sectors.
pub struct OnFlash {
    flash: Shared<4096>,
    max_module_size: u32,
}

impl OnFlash {
    pub fn new(sectors: usize, max_module_size: u32) -> Self {
        OnFlash {
            flash: Shared::new(sectors),
            max_module_size,
        }
    }
}

impl Medium for OnFlash {
    type Store = FlashModuleStore<Shared<4096>>;
    const KEEPS_UNSYNCED: bool = false;
    fn boot(&mut self) -> Self::Store {
        FlashModuleStore::new(self.flash.clone(), SLOTS, self.max_module_size).expect("fits")
    }
    fn reboot(&mut self, store: Self::Store) -> Self::Store {
        drop(store);
        self.boot()
    }
}

/// A directory.
pub struct InFiles {
    dir: tempfile::TempDir,
    max_module_size: u32,
}

impl InFiles {
    pub fn new(max_module_size: u32) -> Self {
        InFiles {
            dir: tempfile::tempdir().expect("temp dir"),
            max_module_size,
        }
    }
}

impl Medium for InFiles {
    type Store = FileModuleStore;
    const KEEPS_UNSYNCED: bool = false;
    fn boot(&mut self) -> Self::Store {
        FileModuleStore::open(self.dir.path(), SLOTS, self.max_module_size).expect("opens")
    }
    fn reboot(&mut self, store: Self::Store) -> Self::Store {
        drop(store);
        self.boot()
    }
}

/// Memory, as durable as the simulated device that keeps it: a reboot
/// keeps the store.
pub struct InMemory {
    max_module_size: u32,
}

impl InMemory {
    pub fn new(max_module_size: u32) -> Self {
        InMemory { max_module_size }
    }
}

impl Medium for InMemory {
    type Store = MemModuleStore;
    const KEEPS_UNSYNCED: bool = true;
    fn boot(&mut self) -> Self::Store {
        MemModuleStore::new(SLOTS, self.max_module_size).expect("valid")
    }
    fn reboot(&mut self, store: Self::Store) -> Self::Store {
        store
    }
}

/// A medium for the power-cut suite: what survives a power cut, a store
/// booted on a copy of it that loses power after a number of steps, and
/// what is left when the power is gone.
pub trait CutMedium {
    type Store: ModuleStore;
    /// What outlives a power cut.
    type State;
    /// A step is a programmed byte or an erased sector (else one medium
    /// operation).
    const STEPS_ARE_BYTES: bool;
    fn fresh(&mut self) -> Self::State;
    /// A store on a copy of `state`; power fails at the `cut_after`-th
    /// next step.
    fn boot(&mut self, state: &Self::State, cut_after: Option<usize>) -> Self::Store;
    /// What is left, and whether power failed.
    fn power_off(&mut self, store: Self::Store) -> (Self::State, bool);
}

/// Small sectors keep a module that crosses sector boundaries small, so
/// that trying every cut point stays fast.
pub type SmallFlash = MemFlashOf<1024>;
/// Largest module of the power-cut suite.
pub const MAX_MODULE: u32 = 2000;
/// Table, and per slot a log sector and two data sectors.
pub const SECTORS: usize = 2 + SLOTS * 3;

pub fn open_small_flash(flash: SmallFlash) -> FlashModuleStore<SmallFlash> {
    FlashModuleStore::new(flash, SLOTS, MAX_MODULE).expect("opens")
}

/// NOR flash that loses power after any programmed byte or erase.
pub struct FlashCuts;

impl CutMedium for FlashCuts {
    type Store = FlashModuleStore<SmallFlash>;
    type State = SmallFlash;
    const STEPS_ARE_BYTES: bool = true;
    fn fresh(&mut self) -> SmallFlash {
        SmallFlash::new(SECTORS)
    }
    fn boot(&mut self, state: &SmallFlash, cut_after: Option<usize>) -> Self::Store {
        let mut flash = state.clone();
        if let Some(n) = cut_after {
            flash.cut_power_after(n);
        }
        open_small_flash(flash)
    }
    fn power_off(&mut self, store: Self::Store) -> (SmallFlash, bool) {
        let mut flash = store.into_flash();
        let cut = flash.power_lost();
        flash.reboot();
        (flash, cut)
    }
}

/// A medium that fails every operation from its `n`-th step on, as when
/// power is lost; reads still work (they change nothing).
#[derive(Debug, Clone)]
pub struct Failing<M> {
    inner: M,
    left: Cell<Option<usize>>,
    cut: Cell<bool>,
}

impl<M> Failing<M> {
    pub fn new(inner: M, cut_after: Option<usize>) -> Self {
        Failing {
            inner,
            left: Cell::new(cut_after),
            cut: Cell::new(false),
        }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }

    pub fn cut_after(&self, steps: Option<usize>) {
        self.left.set(steps);
        self.cut.set(false);
    }

    /// Power is back; returns whether it failed.
    pub fn power_on(&self) -> bool {
        self.left.set(None);
        self.cut.replace(false)
    }

    fn step(&self) -> Result<(), StoreError> {
        match self.left.get() {
            _ if self.cut.get() => Err(StoreError::Io),
            Some(0) => {
                self.cut.set(true);
                Err(StoreError::Io)
            }
            Some(n) => {
                self.left.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl<M: SlotMedium> SlotMedium for Failing<M> {
    const DURABLE_IN_TABLE: bool = M::DURABLE_IN_TABLE;

    fn load_table(&mut self, slots: usize) -> Result<Vec<Option<SlotRecord>>, StoreError> {
        self.inner.load_table(slots)
    }

    fn save_table(
        &mut self,
        table: &[Option<SlotRecord>],
        changed: usize,
    ) -> Result<(), StoreError> {
        self.step()?;
        self.inner.save_table(table, changed)
    }

    fn start(&mut self, slot: usize, size: u32) -> Result<(), StoreError> {
        self.step()?;
        self.inner.start(slot, size)
    }

    fn recover(&mut self, slot: usize, size: u32, recorded: u32) -> Result<u32, StoreError> {
        self.step()?;
        self.inner.recover(slot, size, recorded)
    }

    fn append(&mut self, slot: usize, at: u32, data: &[u8]) -> Result<(), StoreError> {
        self.step()?;
        self.inner.append(slot, at, data)
    }

    fn sync(&mut self, slot: usize) -> Result<u32, StoreError> {
        self.step()?;
        self.inner.sync(slot)
    }

    fn read(&mut self, slot: usize, size: u32) -> Result<Vec<u8>, StoreError> {
        self.inner.read(slot, size)
    }

    fn installed(&mut self, slot: usize, module: Vec<u8>, sha256: &[u8; 32]) {
        if !self.cut.get() {
            self.inner.installed(slot, module, sha256);
        }
    }

    fn release(&mut self, slot: usize) {
        if !self.cut.get() {
            self.inner.release(slot);
        }
    }
}

/// Files that lose power between two file operations (each replacement
/// of a table entry is atomic).
pub struct FileCuts {
    root: tempfile::TempDir,
    copies: usize,
}

impl Default for FileCuts {
    fn default() -> Self {
        FileCuts {
            root: tempfile::tempdir().expect("temp dir"),
            copies: 0,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates");
    for entry in std::fs::read_dir(from).expect("lists") {
        let entry = entry.expect("lists");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("stats").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copies");
        }
    }
}

impl CutMedium for FileCuts {
    type Store = SlotTable<Failing<FileSlots>>;
    type State = PathBuf;
    const STEPS_ARE_BYTES: bool = false;
    fn fresh(&mut self) -> PathBuf {
        self.copies += 1;
        self.root.path().join(self.copies.to_string())
    }
    fn boot(&mut self, state: &PathBuf, cut_after: Option<usize>) -> Self::Store {
        let copy = self.fresh();
        if state.exists() {
            copy_dir(state, &copy);
        }
        let medium = Failing::new(FileSlots::new(copy, SLOTS), cut_after);
        SlotTable::with_medium(medium, SLOTS, MAX_MODULE).expect("opens")
    }
    fn power_off(&mut self, store: Self::Store) -> (PathBuf, bool) {
        let medium = store.into_medium();
        let cut = medium.power_on();
        (medium.inner().root().to_path_buf(), cut)
    }
}

/// Memory whose operations fail from a given step on; the store itself is
/// what outlives the cut, as a simulated device keeps it.
pub struct MemoryCuts;

impl CutMedium for MemoryCuts {
    type Store = SlotTable<Failing<MemSlots>>;
    type State = SlotTable<Failing<MemSlots>>;
    const STEPS_ARE_BYTES: bool = false;
    fn fresh(&mut self) -> Self::State {
        SlotTable::with_medium(Failing::new(MemSlots::new(SLOTS), None), SLOTS, MAX_MODULE)
            .expect("valid")
    }
    fn boot(&mut self, state: &Self::State, cut_after: Option<usize>) -> Self::Store {
        let store = state.clone();
        store.medium().cut_after(cut_after);
        store
    }
    fn power_off(&mut self, store: Self::Store) -> (Self::State, bool) {
        let cut = store.medium().power_on();
        (store, cut)
    }
}
