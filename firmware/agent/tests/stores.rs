//! The key and module stores, flash-backed and file-backed, behave alike.

// Test sizes and offsets are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

use std::cell::RefCell;
use std::rc::Rc;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore, MemFlash, MemFlashError};
use wasmbed_agent::host::{FileKeyStore, FileModuleStore};
use wasmbed_agent::identity::{Identity, KeyStore, PendingKey, StoredKey};
use wasmbed_agent::storage::{
    BeginError, CommitError, ModuleMeta, ModuleStore, SlotState, StoreError, WriteError,
};
use wasmbed_protocol::{AppState, ApplicationId, DeployFailure, DeploymentId, DeviceId, Limits};

fn module(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn meta(deployment: u64, bytes: &[u8]) -> ModuleMeta {
    use sha2::Digest;
    ModuleMeta {
        deployment: DeploymentId(deployment),
        application: ApplicationId(deployment * 10),
        size: bytes.len() as u32,
        sha256: sha2::Sha256::digest(bytes).into(),
        limits: Limits {
            fuel: 1000,
            memory_pages: 1,
            entry: "main".try_into().expect("short"),
            args: heapless::Vec::new(),
        },
    }
}

fn accept_all(_: &[u8]) -> Result<(), DeployFailure> {
    Ok(())
}

/// Sends `bytes` from `from` in chunks of `chunk` bytes.
fn send(store: &mut impl ModuleStore, id: u64, bytes: &[u8], from: usize, chunk: usize) {
    let mut at = from;
    for piece in bytes[from..].chunks(chunk) {
        let held = store
            .write(DeploymentId(id), at as u32, piece)
            .expect("written");
        at += piece.len();
        assert_eq!(held as usize, at);
    }
}

fn install(store: &mut impl ModuleStore, id: u64, bytes: &[u8]) {
    assert_eq!(store.begin(&meta(id, bytes)), Ok(0));
    send(store, id, bytes, 0, 333);
    store
        .commit(DeploymentId(id), &mut accept_all)
        .expect("committed");
}

/// Everything a module store must do, whatever it is built on.
fn behaves_like_a_module_store<S: ModuleStore>(mut open: impl FnMut() -> S) {
    let a = module(5000, 1);
    let b = module(700, 2);
    let mut store = open();
    assert_eq!(store.slots().len(), 2);
    assert!(store.apps().is_empty());

    // Too large, then a normal install.
    let huge = module(store.max_module_size() as usize + 1, 0);
    assert_eq!(store.begin(&meta(9, &huge)), Err(BeginError::TooLarge));
    install(&mut store, 1, &a);
    assert_eq!(store.load(DeploymentId(1)), Ok(a.clone()));
    assert_eq!(store.begin(&meta(1, &a)), Err(BeginError::AlreadyInstalled));
    // Committing again is harmless.
    assert_eq!(store.commit(DeploymentId(1), &mut accept_all), Ok(()));

    // Chunks: gaps are refused, repeats skipped, overruns refused.
    assert_eq!(store.begin(&meta(2, &b)), Ok(0));
    assert_eq!(
        store.write(DeploymentId(2), 10, &b[10..20]),
        Err(WriteError::UnexpectedOffset { held: 0 })
    );
    assert_eq!(store.write(DeploymentId(2), 0, &b[..301]), Ok(301));
    assert_eq!(store.write(DeploymentId(2), 0, &b[..100]), Ok(301));
    assert_eq!(store.write(DeploymentId(2), 300, &b[300..400]), Ok(400));
    assert_eq!(
        store.write(DeploymentId(2), 400, &[0; 400]),
        Err(WriteError::BeyondSize)
    );
    assert_eq!(
        store.write(DeploymentId(3), 0, &[0; 4]),
        Err(WriteError::UnknownDeployment)
    );
    assert_eq!(
        store.commit(DeploymentId(2), &mut accept_all),
        Err(CommitError::Incomplete { held: 400 })
    );
    // Resuming the same deployment continues where it stopped.
    assert_eq!(store.begin(&meta(2, &b)), Ok(400));
    send(&mut store, 2, &b, 400, 100);

    // No third slot while two are taken by installed modules... after
    // the acceptor refuses, the slot stays receiving.
    let mut refuse = |_: &[u8]| Err(DeployFailure::ImportNotAllowed);
    assert_eq!(
        store.commit(DeploymentId(2), &mut refuse),
        Err(CommitError::Rejected(DeployFailure::ImportNotAllowed))
    );
    assert!(matches!(
        store.find(DeploymentId(2)).map(|s| s.state),
        Some(SlotState::Receiving { .. })
    ));
    assert_eq!(store.commit(DeploymentId(2), &mut accept_all), Ok(()));
    assert_eq!(store.begin(&meta(3, &b)), Err(BeginError::NoFreeSlot));

    // State survives reopening; removal frees a slot.
    assert_eq!(
        store.set_state(DeploymentId(2), AppState::Stopped),
        Ok(true)
    );
    assert_eq!(
        store.set_state(DeploymentId(7), AppState::Stopped),
        Ok(false)
    );
    drop(store);
    let mut store = open();
    let apps = store.apps();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[1].state, AppState::Stopped);
    assert_eq!(store.load(DeploymentId(2)), Ok(b.clone()));
    assert_eq!(store.remove(DeploymentId(1)), Ok(true));
    assert_eq!(store.remove(DeploymentId(1)), Ok(false));
    assert_eq!(store.load(DeploymentId(1)), Err(StoreError::NotFound));

    // A corrupted transfer never installs.
    let mut bad = meta(4, &a);
    bad.sha256[0] ^= 1;
    assert_eq!(store.begin(&bad), Ok(0));
    send(&mut store, 4, &a, 0, 1024);
    assert_eq!(
        store.commit(DeploymentId(4), &mut accept_all),
        Err(CommitError::HashMismatch)
    );
    assert_eq!(store.apps().len(), 1);

    // A checkpoint survives reopening; bytes after it are received again.
    assert_eq!(store.begin(&meta(4, &a)), Ok(0));
    send(&mut store, 4, &a[..400], 0, 400);
    assert_eq!(store.checkpoint(DeploymentId(4)), Ok(400));
    send(&mut store, 4, &a[..500], 400, 100);
    drop(store);
    let mut store = open();
    assert_eq!(store.begin(&meta(4, &a)), Ok(400));

    // An unfinished transfer's slot is reused for another deployment.
    assert_eq!(store.begin(&meta(5, &b)), Ok(0));
    assert!(store.find(DeploymentId(4)).is_none());
    drop(store);
    let mut store = open();
    assert_eq!(store.begin(&meta(5, &b)), Ok(0));
}

/// One flash that every reopened store shares, as after a reboot.
#[derive(Clone)]
struct Shared(Rc<RefCell<MemFlash>>);

impl Shared {
    fn new(sectors: usize) -> Self {
        Shared(Rc::new(RefCell::new(MemFlash::new(sectors))))
    }
}

impl ErrorType for Shared {
    type Error = MemFlashError;
}

impl ReadNorFlash for Shared {
    const READ_SIZE: usize = MemFlash::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MemFlashError> {
        self.0.borrow_mut().read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().capacity()
    }
}

impl NorFlash for Shared {
    const WRITE_SIZE: usize = MemFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = MemFlash::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), MemFlashError> {
        self.0.borrow_mut().erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MemFlashError> {
        self.0.borrow_mut().write(offset, bytes)
    }
}

/// The result outbox: a result is stored with the end state, kept across
/// reopening and state changes, and dropped by `clear_result` or `remove`.
fn keeps_results_like_a_module_store<S: ModuleStore>(mut open: impl FnMut() -> S) {
    let a = module(900, 3);
    let b = module(300, 4);
    let result_a = vec![0xA1; 700];
    let result_b = vec![0xB2; 20];
    let mut store = open();
    install(&mut store, 1, &a);
    install(&mut store, 2, &b);
    assert!(store.outbox().is_empty());
    assert_eq!(store.result(DeploymentId(1)), None);
    assert_eq!(
        store.set_state(DeploymentId(1), AppState::Running),
        Ok(true)
    );
    assert_eq!(
        store.finish(DeploymentId(1), AppState::Stopped, &result_a),
        Ok(true)
    );
    assert_eq!(
        store.finish(DeploymentId(2), AppState::Failed, &result_b),
        Ok(true)
    );
    assert_eq!(
        store.finish(DeploymentId(9), AppState::Failed, &result_b),
        Ok(false)
    );
    drop(store);

    let mut store = open();
    assert_eq!(store.result(DeploymentId(1)), Some(&result_a[..]));
    assert_eq!(store.result(DeploymentId(2)), Some(&result_b[..]));
    assert_eq!(store.outbox(), vec![DeploymentId(1), DeploymentId(2)]);
    let states: Vec<_> = store.apps().iter().map(|app| app.state).collect();
    assert_eq!(states, vec![AppState::Stopped, AppState::Failed]);
    // A state change keeps the result.
    assert_eq!(
        store.set_state(DeploymentId(2), AppState::Stopped),
        Ok(true)
    );
    assert_eq!(store.clear_result(DeploymentId(1)), Ok(true));
    assert_eq!(store.clear_result(DeploymentId(1)), Ok(false));
    assert_eq!(store.clear_result(DeploymentId(9)), Ok(false));
    drop(store);

    let mut store = open();
    assert_eq!(store.result(DeploymentId(1)), None);
    assert_eq!(store.result(DeploymentId(2)), Some(&result_b[..]));
    assert_eq!(store.outbox(), vec![DeploymentId(2)]);
    assert_eq!(store.load(DeploymentId(1)), Ok(a.clone()));
    // Removing drops the result with the slot; a new deployment in the
    // slot starts without one.
    assert_eq!(store.remove(DeploymentId(2)), Ok(true));
    assert_eq!(store.result(DeploymentId(2)), None);
    install(&mut store, 3, &b);
    assert_eq!(store.result(DeploymentId(3)), None);
    drop(store);
    let store = open();
    assert!(store.outbox().is_empty());
    assert_eq!(store.apps().len(), 2);
}

#[test]
fn flash_module_store() {
    let flash = Shared::new(16);
    behaves_like_a_module_store(|| FlashModuleStore::new(flash.clone(), 2, 6000).expect("fits"));
    let flash = Shared::new(16);
    keeps_results_like_a_module_store(|| {
        FlashModuleStore::new(flash.clone(), 2, 6000).expect("fits")
    });
}

#[test]
fn file_module_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    behaves_like_a_module_store(|| FileModuleStore::open(dir.path(), 2, 6000).expect("opens"));
    let dir = tempfile::tempdir().expect("temp dir");
    keeps_results_like_a_module_store(|| {
        FileModuleStore::open(dir.path(), 2, 6000).expect("opens")
    });
}

#[test]
fn a_result_too_large_for_the_flash_table_is_refused_and_nothing_changes() {
    let a = module(900, 3);
    let mut store = FlashModuleStore::new(MemFlash::new(8), 2, 4096).expect("fits");
    install(&mut store, 1, &a);
    assert_eq!(
        store.set_state(DeploymentId(1), AppState::Running),
        Ok(true)
    );
    assert_eq!(
        store.finish(DeploymentId(1), AppState::Stopped, &[0; 5000]),
        Err(StoreError::TooLarge)
    );
    assert_eq!(store.result(DeploymentId(1)), None);
    assert_eq!(store.apps()[0].state, AppState::Running);
}

#[test]
fn flash_layouts_that_do_not_fit_are_refused() {
    assert_eq!(
        FlashModuleStore::new(MemFlash::new(4), 2, 6000).err(),
        Some(StoreError::Layout)
    );
    assert_eq!(
        FlashModuleStore::new(MemFlash::new(64), 0, 6000).err(),
        Some(StoreError::Layout)
    );
    assert_eq!(
        FlashKeyStore::new(MemFlash::new(1)).err(),
        Some(StoreError::Layout)
    );
}

fn identity(n: u8) -> StoredKey {
    StoredKey::Enrolled(Identity {
        device_id: DeviceId([n; 16]),
        private_key: [n; 32],
        certificate: vec![n; 500],
    })
}

fn behaves_like_a_key_store<K: KeyStore>(mut open: impl FnMut() -> K) {
    let mut keys = open();
    assert_eq!(keys.load(), Ok(None));
    let pending = StoredKey::Pending(PendingKey {
        private_key: [7; 32],
    });
    keys.save(&pending).expect("saved");
    assert_eq!(open().load(), Ok(Some(pending)));
    let mut keys = open();
    for n in 1..4 {
        keys.save(&identity(n)).expect("saved");
        assert_eq!(keys.load(), Ok(Some(identity(n))));
    }
    drop(keys);
    let mut keys = open();
    assert_eq!(keys.load(), Ok(Some(identity(3))));
    keys.clear().expect("cleared");
    assert_eq!(keys.load(), Ok(None));
    assert_eq!(open().load(), Ok(None));
}

#[test]
fn flash_key_store() {
    let flash = Shared::new(2);
    behaves_like_a_key_store(|| FlashKeyStore::new(flash.clone()).expect("fits"));
}

#[test]
fn file_key_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("identity.cbor");
    behaves_like_a_key_store(|| FileKeyStore::new(&path));
    std::fs::write(&path, b"garbage").expect("writable");
    assert_eq!(FileKeyStore::new(&path).load(), Err(StoreError::Corrupt));
}

/// The stored key is the device's private key: only its owner may read it.
#[cfg(unix)]
#[test]
fn file_key_store_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key.cbor");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("stored")
            .permissions()
            .mode()
            & 0o777
    };
    let mut store = FileKeyStore::new(&path);
    let key = identity(7);
    store.save(&key).expect("saved");
    assert_eq!(mode(&path), 0o600);
    // A temporary file left by a crash, readable by all, is not reused.
    let tmp = dir.path().join("key.cbor.tmp");
    std::fs::write(&tmp, b"left over").expect("writable");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    store.save(&key).expect("saved again");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(store.load(), Ok(Some(key)));
}
