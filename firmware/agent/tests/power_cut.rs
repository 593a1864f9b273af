//! Power fails at every possible point of a store operation; after the
//! reboot the store holds the state before or after it, never a mix.
//!
//! On flash, `MemFlash::cut_power_after(n)` interrupts the n-th programmed
//! byte or sector erase; on files and memory the n-th medium operation
//! fails (see `media::Failing`). Each test loops `n` from 0 until the
//! operation completes without a cut. The module store tests run on every
//! medium.

// Test sizes and offsets are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

mod media;

use std::cell::RefCell;
use std::rc::Rc;

use media::{CutMedium, MAX_MODULE, SECTORS, SLOTS, Shared, SmallFlash, open_small_flash};
use sha2::Digest;
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore, MemFlash, MemFlashOf};
use wasmbed_agent::identity::{Identity, KeyStore, PendingKey, StoredKey};
use wasmbed_agent::runtime::{WasmiConfig, WasmiRuntime};
use wasmbed_agent::storage::{ModuleMeta, ModuleStore, SlotState, StoreError};
use wasmbed_agent::{Agent, AgentConfig};
use wasmbed_protocol::{
    AppState, ApplicationId, DeployFailure, DeploymentId, DeviceId, DeviceInfo, ExecutionResult,
    Limits, Outcome, TrapCode,
};

fn enrolled(n: u8) -> StoredKey {
    StoredKey::Enrolled(Identity {
        device_id: DeviceId([n; 16]),
        private_key: [n; 32],
        certificate: vec![n; 400 + usize::from(n)],
    })
}

/// Runs `op` on a store over a copy of `flash` with power cut after `n`
/// steps, reboots, and returns the reopened store and whether power was cut.
fn cut_and_reboot<S, const SECTOR: usize>(
    flash: &MemFlashOf<SECTOR>,
    n: usize,
    open: impl Fn(MemFlashOf<SECTOR>) -> S,
    into_flash: impl Fn(S) -> MemFlashOf<SECTOR>,
    op: impl FnOnce(&mut S),
) -> (S, bool) {
    let mut flash = flash.clone();
    flash.cut_power_after(n);
    let mut store = open(flash);
    op(&mut store);
    let mut flash = into_flash(store);
    let cut = flash.power_lost();
    flash.reboot();
    (open(flash), cut)
}

fn open_keys(flash: MemFlash) -> FlashKeyStore<MemFlash> {
    FlashKeyStore::new(flash).expect("opens")
}

/// Applies `change` at every cut point, starting from `flash`, and checks
/// the identity is `before` or `after`. Returns the flash after the change.
fn every_cut(
    flash: &MemFlash,
    before: Option<StoredKey>,
    after: Option<StoredKey>,
    change: impl Fn(&mut FlashKeyStore<MemFlash>) -> Result<(), StoreError>,
) -> MemFlash {
    for n in 0.. {
        let (mut keys, cut) = cut_and_reboot(flash, n, open_keys, FlashKeyStore::into_flash, |k| {
            let _ = change(k);
        });
        let loaded = keys.load().expect("never corrupt");
        if !cut {
            assert_eq!(loaded, after, "completed without a cut");
            assert!(n > 0);
            return keys.into_flash();
        }
        assert!(
            loaded == before || loaded == after,
            "cut after {n} steps left {loaded:?}"
        );
    }
    unreachable!()
}

#[test]
fn a_power_cut_never_corrupts_the_identity() {
    let empty = MemFlash::new(2);
    let pending = StoredKey::Pending(PendingKey {
        private_key: [9; 32],
    });
    // Generate, enroll, re-enroll (both sectors in use), clear, enroll again.
    let flash = every_cut(&empty, None, Some(pending.clone()), |k| k.save(&pending));
    let flash = every_cut(&flash, Some(pending), Some(enrolled(1)), |k| {
        k.save(&enrolled(1))
    });
    let flash = every_cut(&flash, Some(enrolled(1)), Some(enrolled(2)), |k| {
        k.save(&enrolled(2))
    });
    let flash = every_cut(&flash, Some(enrolled(2)), None, |k| k.clear());
    every_cut(&flash, None, Some(enrolled(3)), |k| k.save(&enrolled(3)));
}

#[test]
fn a_rotten_record_falls_back_to_the_previous_one() {
    let mut keys = open_keys(MemFlash::new(2));
    keys.save(&enrolled(1)).expect("saved");
    keys.save(&enrolled(2)).expect("saved");
    let mut flash = keys.into_flash();
    // Flip a bit in the body of the newest record (sector 1).
    flash.bytes_mut()[4096 + 40] ^= 0x10;
    assert_eq!(open_keys(flash).load(), Ok(Some(enrolled(1))));
}

/// Boots a store on `state` with power cut after `n` steps, runs `op`,
/// reboots, and returns the store booted again and whether power was cut.
fn cut_and_reboot_store<M: CutMedium>(
    medium: &mut M,
    state: &M::State,
    n: usize,
    op: impl FnOnce(&mut M::Store),
) -> (M::Store, bool) {
    let mut store = medium.boot(state, Some(n));
    op(&mut store);
    let (state, cut) = medium.power_off(store);
    (medium.boot(&state, None), cut)
}

/// A store of `medium` holding deployment `id` installed with `bytes`.
fn installed<M: CutMedium>(medium: &mut M, id: u64, bytes: &[u8]) -> M::State {
    let fresh = medium.fresh();
    let mut store = medium.boot(&fresh, None);
    store.begin(&meta(id, bytes)).expect("slot free");
    assert!(transfer(&mut store, id, bytes, 0));
    medium.power_off(store).0
}

fn meta(deployment: u64, bytes: &[u8]) -> ModuleMeta {
    ModuleMeta {
        deployment: DeploymentId(deployment),
        application: ApplicationId(1),
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

/// A module that crosses a sector boundary, in chunks that are not a
/// multiple of the flash word.
fn module() -> Vec<u8> {
    (0..1500u32).map(|i| (i * 7 + i / 256) as u8).collect()
}
const CHUNK: usize = 301;

/// Receives `bytes` from `from` with a checkpoint after each chunk, then
/// commits. Stops at the first error (the power is gone).
fn transfer(store: &mut impl ModuleStore, id: u64, bytes: &[u8], from: usize) -> bool {
    let id = DeploymentId(id);
    let mut at = from;
    for piece in bytes[from..].chunks(CHUNK) {
        if store.write(id, at as u32, piece).is_err() || store.checkpoint(id).is_err() {
            return false;
        }
        at += piece.len();
    }
    store
        .commit(id, &mut |_| Ok::<(), DeployFailure>(()))
        .is_ok()
}

fn a_cut_transfer_never_installs_and_resumes_from_its_last_durable_offset<M: CutMedium>(
    mut medium: M,
) {
    let bytes = module();
    // Slot 0 holds another installed module that must survive everything.
    let other: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let base = installed(&mut medium, 1, &other);

    let mut resumed_midway = 0;
    for n in 0.. {
        let (mut store, cut) = cut_and_reboot_store(&mut medium, &base, n, |s| {
            if s.begin(&meta(2, &bytes)).is_ok() {
                transfer(s, 2, &bytes, 0);
            }
        });
        assert_eq!(store.load(DeploymentId(1)), Ok(other.clone()), "cut at {n}");
        let state = store.find(DeploymentId(2)).map(|s| s.state);
        if !cut {
            assert_eq!(state, Some(SlotState::Installed(AppState::Installed)));
            assert_eq!(store.load(DeploymentId(2)), Ok(bytes.clone()));
            if M::STEPS_ARE_BYTES {
                assert!(n > bytes.len(), "every byte was a cut point");
            } else {
                assert!(n > bytes.len() / CHUNK, "every chunk was a cut point");
            }
            break;
        }
        match state {
            // The table never said "receiving": nothing to resume.
            None => assert_eq!(store.apps().len(), 1),
            Some(SlotState::Installed(_)) => {
                assert_eq!(store.load(DeploymentId(2)), Ok(bytes.clone()), "cut at {n}");
            }
            Some(SlotState::Receiving { held }) => {
                // Not listed, not loadable: it can never run.
                assert_eq!(store.apps().len(), 1, "cut at {n}");
                assert_eq!(store.load(DeploymentId(2)), Err(StoreError::NotFound));
                // The gateway is told `held` and continues from there.
                assert_eq!(store.begin(&meta(2, &bytes)), Ok(held), "cut at {n}");
                resumed_midway += usize::from(held > 0);
                assert!(transfer(&mut store, 2, &bytes, held as usize), "cut at {n}");
                assert_eq!(store.load(DeploymentId(2)), Ok(bytes.clone()), "cut at {n}");
            }
        }
    }
    // Cuts while the second sector (the later chunks) is written resume
    // within the module.
    let least = if M::STEPS_ARE_BYTES { 400 } else { 4 };
    assert!(resumed_midway > least, "{resumed_midway}");
}

fn a_cut_removal_or_state_change_is_all_or_nothing<M: CutMedium>(mut medium: M) {
    let bytes = module();
    let base = installed(&mut medium, 1, &bytes);
    for n in 0.. {
        let (store, cut) = cut_and_reboot_store(&mut medium, &base, n, |s| {
            let _ = s
                .set_state(DeploymentId(1), AppState::Running)
                .and_then(|_| s.remove(DeploymentId(1)));
        });
        let state = store.find(DeploymentId(1)).map(|s| s.state);
        if !cut {
            assert_eq!(state, None);
            assert!(n > 1, "both changes were cut");
            break;
        }
        assert!(
            matches!(
                state,
                None | Some(SlotState::Installed(
                    AppState::Installed | AppState::Running
                ))
            ),
            "cut at {n}: {state:?}"
        );
    }
}

fn a_cut_while_storing_a_result_keeps_the_run_state_or_state_and_result<M: CutMedium>(
    mut medium: M,
) {
    let bytes = module();
    let result = vec![0x5A; 300];
    let installed = installed(&mut medium, 1, &bytes);
    let mut store = medium.boot(&installed, None);
    store
        .set_state(DeploymentId(1), AppState::Running)
        .expect("stored");
    let base = medium.power_off(store).0;
    for n in 0.. {
        let (mut store, cut) = cut_and_reboot_store(&mut medium, &base, n, |s| {
            let _ = s
                .finish(DeploymentId(1), AppState::Stopped, &result)
                .and_then(|_| s.clear_result(DeploymentId(1)));
        });
        let state = store.find(DeploymentId(1)).map(|s| s.state);
        let stored = store.result(DeploymentId(1)).map(<[u8]>::to_vec);
        if !cut {
            assert_eq!(state, Some(SlotState::Installed(AppState::Stopped)));
            assert_eq!(stored, None);
            assert!(n > 1, "both changes were cut");
            break;
        }
        match state {
            // Before: still running (the agent marks it failed, never
            // reruns it), no result.
            Some(SlotState::Installed(AppState::Running)) => assert_eq!(stored, None, "cut at {n}"),
            // After: the end state, with the result until it is cleared.
            Some(SlotState::Installed(AppState::Stopped)) => {
                assert!(
                    stored.is_none() || stored == Some(result.clone()),
                    "cut at {n}"
                );
            }
            other => panic!("cut at {n}: {other:?}"),
        }
        // The module itself is never harmed.
        assert_eq!(store.load(DeploymentId(1)), Ok(bytes.clone()));
    }
}

/// A store operation that fails leaves the store as it was, before and
/// after the reboot.
fn a_failed_operation_changes_nothing<M: CutMedium>(mut medium: M) {
    let bytes = module();
    let installed = installed(&mut medium, 1, &bytes);
    let before = |store: &M::Store| {
        assert_eq!(
            store.find(DeploymentId(1)).map(|s| s.state),
            Some(SlotState::Installed(AppState::Installed))
        );
        assert_eq!(store.result(DeploymentId(1)), None);
        assert!(store.find(DeploymentId(2)).is_none());
    };
    type Op<'a, S> = &'a dyn Fn(&mut S) -> bool;
    let ops: [Op<'_, M::Store>; 5] = [
        &|s| s.set_state(DeploymentId(1), AppState::Running).is_err(),
        &|s| {
            s.finish(DeploymentId(1), AppState::Stopped, &[1; 20])
                .is_err()
        },
        &|s| s.remove(DeploymentId(1)).is_err(),
        &|s| s.begin(&meta(2, &bytes)).is_err(),
        &|s| s.clear_result(DeploymentId(1)) == Ok(false),
    ];
    for (i, op) in ops.iter().enumerate() {
        let mut store = medium.boot(&installed, Some(0));
        assert!(op(&mut store), "operation {i} failed");
        before(&store);
        let (state, cut) = medium.power_off(store);
        assert!(cut || i == 4, "operation {i} cut");
        before(&medium.boot(&state, None));
    }
}

/// Runs a power-cut case on NOR flash, files and memory.
macro_rules! on_every_medium {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn flash() {
                    super::$case(super::media::FlashCuts);
                }
                #[test]
                fn files() {
                    super::$case(super::media::FileCuts::default());
                }
                #[test]
                fn memory() {
                    super::$case(super::media::MemoryCuts);
                }
            }
        )*
    };
}

on_every_medium!(
    a_failed_operation_changes_nothing,
    a_cut_transfer_never_installs_and_resumes_from_its_last_durable_offset,
    a_cut_removal_or_state_change_is_all_or_nothing,
    a_cut_while_storing_a_result_keeps_the_run_state_or_state_and_result,
);

#[test]
fn a_cut_while_recovering_a_transfer_still_resumes_correctly() {
    let bytes = module();
    // Chunks were written ahead of the last checkpoint, as when the gateway
    // streams a window of chunks, and then the device rebooted.
    let mut store = open_small_flash(SmallFlash::new(SECTORS));
    store.begin(&meta(1, &bytes)).expect("slot free");
    let id = DeploymentId(1);
    store.write(id, 0, &bytes[..1200]).expect("written");
    assert_eq!(store.checkpoint(id), Ok(1200));
    store.write(id, 1200, &bytes[1200..1300]).expect("written");
    let base = store.into_flash();

    for n in 0.. {
        let mut flash = base.clone();
        flash.cut_power_after(n);
        // Opening recovers the transfer, rewriting its last sector.
        let flash = FlashModuleStore::new(flash, SLOTS, MAX_MODULE)
            .expect("opens even when recovery is cut")
            .into_flash();
        let cut = flash.power_lost();
        let mut flash = flash;
        flash.reboot();
        let mut store = open_small_flash(flash);
        let Some(SlotState::Receiving { held }) = store.find(id).map(|s| s.state) else {
            panic!("cut at {n}: transfer lost")
        };
        if !cut {
            assert_eq!(held, 1200, "the checkpointed bytes are kept");
        }
        assert!(held == 1200 || held == 1024, "cut at {n}: held {held}");
        assert_eq!(store.begin(&meta(1, &bytes)), Ok(held));
        assert!(transfer(&mut store, 1, &bytes, held as usize), "cut at {n}");
        assert_eq!(store.load(id), Ok(bytes.clone()), "cut at {n}");
        if !cut {
            break;
        }
    }
}

/// Boots an agent over `flash`: returns whether it started.
fn boot(flash: &Shared<1024>) -> bool {
    let config = AgentConfig::new(DeviceInfo {
        board: "mps2-an385".try_into().expect("short"),
        firmware_version: "0.1.0".try_into().expect("short"),
    });
    let Ok(modules) = FlashModuleStore::new(flash.clone(), SLOTS, MAX_MODULE) else {
        return false;
    };
    let keys = FlashKeyStore::new(MemFlash::new(2)).expect("opens");
    let clock: fn() -> u64 = || 0;
    let runtime = WasmiRuntime::new(WasmiConfig::default(), clock);
    Agent::new(config, keys, modules, runtime).is_ok()
}

#[test]
fn a_cut_while_recording_a_run_interrupted_by_a_reset_keeps_it_running_or_failed_with_a_result() {
    let bytes = module();
    let reset = minicbor::to_vec(ExecutionResult {
        deployment: DeploymentId(1),
        invocation: 1,
        outcome: Outcome::Trapped(TrapCode::DeviceReset),
        fuel_used: 0,
        duration_us: 0,
        logs: heapless::Vec::new(),
        logs_truncated: false,
    })
    .expect("encodes");
    // The device reset while deployment 1 ran.
    let mut store = open_small_flash(SmallFlash::new(SECTORS));
    store.begin(&meta(1, &bytes)).expect("slot free");
    assert!(transfer(&mut store, 1, &bytes, 0));
    store
        .set_state(DeploymentId(1), AppState::Running)
        .expect("stored");
    let base = store.into_flash();

    let outcome = |flash: &Shared<1024>| {
        let mut store = open_small_flash(flash.0.borrow().clone());
        assert_eq!(
            store.load(DeploymentId(1)),
            Ok(bytes.clone()),
            "module harmed"
        );
        (
            store.find(DeploymentId(1)).map(|s| s.state),
            store.result(DeploymentId(1)).map(<[u8]>::to_vec),
        )
    };
    let failed = (
        Some(SlotState::Installed(AppState::Failed)),
        Some(reset.clone()),
    );
    for n in 0.. {
        let flash = Shared(Rc::new(RefCell::new(base.clone())));
        flash.0.borrow_mut().cut_power_after(n);
        let started = boot(&flash);
        let cut = flash.0.borrow().power_lost();
        flash.0.borrow_mut().reboot();
        let after = outcome(&flash);
        if !cut {
            assert!(started);
            assert_eq!(after, failed);
            assert!(n > 0);
            break;
        }
        // Still running (recorded at the next boot), or failed with its
        // result: never failed without one.
        assert!(
            after == (Some(SlotState::Installed(AppState::Running)), None) || after == failed,
            "cut at {n}: {after:?}"
        );
        // The next boot ends in the same place, with one result.
        assert!(boot(&flash), "cut at {n}");
        assert_eq!(outcome(&flash), failed, "cut at {n}");
    }
}
