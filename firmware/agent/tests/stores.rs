//! The key and module stores behave alike on every medium: NOR flash,
//! files and memory.

// Test sizes and offsets are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

mod media;

use media::{InFiles, InMemory, Medium, OnFlash, Shared};
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore, MemFlash};
use wasmbed_agent::host::{FileKeyStore, MemKeyStore};
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

/// Everything a module store must do, whatever its medium.
fn behaves_like_a_module_store<M: Medium>(mut medium: M) {
    let a = module(5000, 1);
    let b = module(700, 2);
    let mut store = medium.boot();
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
    let mut store = medium.reboot(store);
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

    // A checkpoint survives reopening; bytes after it are received again
    // unless the medium keeps them too.
    assert_eq!(store.begin(&meta(4, &a)), Ok(0));
    send(&mut store, 4, &a[..400], 0, 400);
    assert_eq!(store.checkpoint(DeploymentId(4)), Ok(400));
    send(&mut store, 4, &a[..500], 400, 100);
    let mut store = medium.reboot(store);
    let kept = if M::KEEPS_UNSYNCED { 500 } else { 400 };
    assert_eq!(store.begin(&meta(4, &a)), Ok(kept));
    send(&mut store, 4, &a, kept as usize, 1000);
    assert_eq!(store.checkpoint(DeploymentId(4)), Ok(5000));
    assert_eq!(store.begin(&meta(4, &a)), Ok(5000));
    assert_eq!(store.commit(DeploymentId(4), &mut accept_all), Ok(()));
    assert_eq!(store.load(DeploymentId(4)), Ok(a.clone()));
    assert_eq!(store.remove(DeploymentId(4)), Ok(true));

    // An unfinished transfer's slot is reused for another deployment.
    assert_eq!(store.begin(&meta(4, &a)), Ok(0));
    send(&mut store, 4, &a[..100], 0, 100);
    assert_eq!(store.begin(&meta(5, &b)), Ok(0));
    assert!(store.find(DeploymentId(4)).is_none());
    let mut store = medium.reboot(store);
    assert_eq!(store.begin(&meta(5, &b)), Ok(0));
    // A free slot is taken before an unfinished transfer's.
    assert_eq!(store.remove(DeploymentId(2)), Ok(true));
    assert_eq!(store.begin(&meta(6, &b)), Ok(0));
    assert!(store.find(DeploymentId(5)).is_some());
    assert_eq!(store.apps().len(), 0);
}

/// The result outbox: a result is stored with the end state, kept across
/// reopening and state changes, and dropped by `clear_result` or `remove`.
fn keeps_results_like_a_module_store<M: Medium>(mut medium: M) {
    let a = module(900, 3);
    let b = module(300, 4);
    let result_a = vec![0xA1; 700];
    let result_b = vec![0xB2; 20];
    let mut store = medium.boot();
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
    let mut store = medium.reboot(store);
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
    let mut store = medium.reboot(store);
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
    let store = medium.reboot(store);
    assert!(store.outbox().is_empty());
    assert_eq!(store.apps().len(), 2);
}

#[test]
fn flash_module_store() {
    behaves_like_a_module_store(OnFlash::new(16, 6000));
    keeps_results_like_a_module_store(OnFlash::new(16, 6000));
}

#[test]
fn file_module_store() {
    behaves_like_a_module_store(InFiles::new(6000));
    keeps_results_like_a_module_store(InFiles::new(6000));
}

#[test]
fn memory_module_store() {
    behaves_like_a_module_store(InMemory::new(6000));
    keeps_results_like_a_module_store(InMemory::new(6000));
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
    let flash = Shared::<4096>::new(2);
    behaves_like_a_key_store(|| FlashKeyStore::new(flash.clone()).expect("fits"));
}

#[test]
fn memory_key_store() {
    // Memory keeps what the store holds: reopening is the same store.
    let keys = std::rc::Rc::new(std::cell::RefCell::new(MemKeyStore::new()));
    behaves_like_a_key_store(|| SharedKeys(keys.clone()));
}

/// One memory key store that every "reopened" store shares.
struct SharedKeys(std::rc::Rc<std::cell::RefCell<MemKeyStore>>);

impl KeyStore for SharedKeys {
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError> {
        self.0.borrow_mut().load()
    }
    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        self.0.borrow_mut().save(key)
    }
    fn clear(&mut self) -> Result<(), StoreError> {
        self.0.borrow_mut().clear()
    }
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
