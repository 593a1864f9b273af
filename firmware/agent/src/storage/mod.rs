//! Installed modules: the [`ModuleStore`] trait and its typed errors.
//!
//! A store has a fixed number of application slots. A deployment moves
//! through a slot as follows:
//!
//! ```text
//!   free ──begin──► receiving ──write…──► receiving(held = size) ──commit──► installed
//!     ▲                 │  ▲                                                    │
//!     └─────remove──────┘  └── begin again (resume: returns bytes held)         │
//!     └──────────────────────────────remove─────────────────────────────────────┘
//! ```
//!
//! Implementations must be power-safe: a slot is listed as installed only
//! after the whole module was verified (size and SHA-256) and accepted, and
//! a power cut at any point leaves either the state before or after the
//! operation. Every store is a [`SlotTable`], the bookkeeping written once,
//! over a [`SlotMedium`]: [`crate::flash::FlashModuleStore`] keeps slots on
//! NOR flash; `crate::host::FileModuleStore` in a directory and
//! `crate::host::MemModuleStore` in memory (feature `std`).

mod table;

pub use table::{SlotMedium, SlotTable};

use alloc::vec::Vec;
use core::fmt;

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};
use wasmbed_protocol::{
    AppList, AppState, AppStatus, ApplicationId, DeployFailure, DeploymentId, Limits,
};

/// A key or module store could not do its job. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The flash driver reported an error (including a power cut).
    Flash,
    /// A file operation failed (host stores).
    Io,
    /// The stored data does not decode although its checksum matched,
    /// e.g. written by an incompatible firmware.
    Corrupt,
    /// The value does not fit the space reserved for it.
    TooLarge,
    /// The flash is too small or its geometry is not supported.
    Layout,
    /// No module of that deployment is installed.
    NotFound,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Flash => "flash operation failed",
            StoreError::Io => "file operation failed",
            StoreError::Corrupt => "stored data is corrupt",
            StoreError::TooLarge => "value too large for its storage",
            StoreError::Layout => "unsupported storage layout",
            StoreError::NotFound => "no such module",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StoreError {}

/// What the gateway announced about a module, kept with it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct ModuleMeta {
    #[n(0)]
    pub deployment: DeploymentId,
    #[n(1)]
    pub application: ApplicationId,
    /// Size of the whole module in bytes.
    #[n(2)]
    pub size: u32,
    #[cbor(n(3), with = "minicbor::bytes")]
    pub sha256: [u8; 32],
    /// How the module is run.
    #[n(4)]
    pub limits: Limits,
}

/// Where a slot's deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Receiving; the first `held` bytes are stored.
    Receiving { held: u32 },
    /// Verified and installed, with the application's state.
    Installed(AppState),
}

/// One occupied slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotInfo {
    pub meta: ModuleMeta,
    pub state: SlotState,
}

/// Why a transfer could not begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginError {
    /// Larger than the store's largest module.
    TooLarge,
    /// Every slot holds an installed module.
    NoFreeSlot,
    /// The deployment is installed already; it is never received twice.
    AlreadyInstalled,
    Store(StoreError),
}

/// Why a chunk was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// No transfer of this deployment is in progress.
    UnknownDeployment,
    /// The chunk starts after the bytes held: a chunk is missing.
    UnexpectedOffset {
        held: u32,
    },
    /// The chunk ends beyond the announced size.
    BeyondSize,
    Store(StoreError),
}

/// Why a transfer was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitError {
    /// No transfer of this deployment is in progress.
    UnknownDeployment,
    /// Fewer bytes than announced are held.
    Incomplete {
        held: u32,
    },
    /// The stored bytes do not hash to the announced SHA-256.
    HashMismatch,
    /// The check passed to [`ModuleStore::commit`] refused the module.
    Rejected(DeployFailure),
    Store(StoreError),
}

impl BeginError {
    /// The reason told to the gateway.
    pub const fn failure(self) -> DeployFailure {
        match self {
            BeginError::TooLarge => DeployFailure::TooLarge,
            BeginError::NoFreeSlot => DeployFailure::NoFreeSlot,
            // Not a failure on the wire: the agent reports `Installed`.
            BeginError::AlreadyInstalled | BeginError::Store(_) => DeployFailure::StorageError,
        }
    }
}

impl WriteError {
    /// The reason told to the gateway.
    pub const fn failure(self) -> DeployFailure {
        match self {
            WriteError::UnknownDeployment | WriteError::UnexpectedOffset { .. } => {
                DeployFailure::UnexpectedOffset
            }
            WriteError::BeyondSize => DeployFailure::TooLarge,
            WriteError::Store(_) => DeployFailure::StorageError,
        }
    }
}

impl CommitError {
    /// The reason told to the gateway.
    pub const fn failure(self) -> DeployFailure {
        match self {
            CommitError::UnknownDeployment | CommitError::Incomplete { .. } => {
                DeployFailure::UnexpectedOffset
            }
            CommitError::HashMismatch => DeployFailure::HashMismatch,
            CommitError::Rejected(reason) => reason,
            CommitError::Store(_) => DeployFailure::StorageError,
        }
    }
}

impl From<StoreError> for BeginError {
    fn from(e: StoreError) -> Self {
        BeginError::Store(e)
    }
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        CommitError::Store(e)
    }
}

/// Decides whether verified module bytes may be installed (the agent
/// validates them with its runtime).
pub type Acceptor<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), DeployFailure>;

/// Durable application slots.
pub trait ModuleStore {
    /// One entry per slot; `None` is a free slot.
    fn slots(&self) -> &[Option<SlotInfo>];

    /// Largest module a slot holds, in bytes.
    fn max_module_size(&self) -> u32;

    /// Starts receiving `meta.deployment`, or resumes it. Returns how many
    /// bytes are held already (0 for a new transfer).
    ///
    /// A transfer of the same deployment with the same size and hash is
    /// resumed; with another size or hash it restarts. When no slot is free
    /// the slot of an unfinished transfer of another deployment is reused.
    fn begin(&mut self, meta: &ModuleMeta) -> Result<u32, BeginError>;

    /// Stores `data` at `offset` and returns the bytes held. Bytes the
    /// store holds already are skipped, so a resent chunk is harmless.
    fn write(
        &mut self,
        deployment: DeploymentId,
        offset: u32,
        data: &[u8],
    ) -> Result<u32, WriteError>;

    /// Makes the bytes held so far survive a power cut, as far as the
    /// store can (best effort); returns how many would survive.
    fn checkpoint(&mut self, deployment: DeploymentId) -> Result<u32, StoreError>;

    /// Verifies size and SHA-256, asks `accept`, and marks the module
    /// installed. Nothing is installed unless all three pass.
    fn commit(&mut self, deployment: DeploymentId, accept: Acceptor<'_>)
    -> Result<(), CommitError>;

    /// The bytes of an installed module.
    fn load(&mut self, deployment: DeploymentId) -> Result<Vec<u8>, StoreError>;

    /// Records the state of an installed application. Returns `false` if
    /// the deployment is not installed.
    fn set_state(&mut self, deployment: DeploymentId, state: AppState) -> Result<bool, StoreError>;

    /// Frees the slot of `deployment`, installed or receiving, with its
    /// stored result. Returns `false` if there was none.
    fn remove(&mut self, deployment: DeploymentId) -> Result<bool, StoreError>;

    /// Records the end state of an installed application together with the
    /// CBOR-encoded `ExecutionResult` of its run, in one durable step: after
    /// a power cut both or neither are stored. The result stays in the
    /// slot's outbox (see [`Self::result`]) until [`Self::clear_result`] or
    /// [`Self::remove`]; a slot holds one. Returns `false` if the
    /// deployment is not installed.
    fn finish(
        &mut self,
        deployment: DeploymentId,
        state: AppState,
        result: &[u8],
    ) -> Result<bool, StoreError>;

    /// The stored result of `deployment` not yet confirmed delivered.
    fn result(&self, deployment: DeploymentId) -> Option<&[u8]>;

    /// Forgets the stored result of `deployment`: the gateway has it.
    /// Returns `false` if there was none.
    fn clear_result(&mut self, deployment: DeploymentId) -> Result<bool, StoreError>;

    /// The deployments with a stored result, in slot order.
    fn outbox(&self) -> Vec<DeploymentId> {
        self.slots()
            .iter()
            .flatten()
            .map(|slot| slot.meta.deployment)
            .filter(|deployment| self.result(*deployment).is_some())
            .collect()
    }

    /// The slot of `deployment`, if any.
    fn find(&self, deployment: DeploymentId) -> Option<&SlotInfo> {
        self.slots()
            .iter()
            .flatten()
            .find(|slot| slot.meta.deployment == deployment)
    }

    /// The installed applications, as reported to the gateway.
    fn apps(&self) -> AppList {
        let mut apps = AppList::new();
        for slot in self.slots().iter().flatten() {
            if let SlotState::Installed(state) = slot.state {
                // Stores have at most MAX_APPS slots.
                let _ = apps.push(AppStatus {
                    deployment: slot.meta.deployment,
                    application: slot.meta.application,
                    state,
                });
            }
        }
        apps
    }
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A slot as a [`SlotMedium`] stores it: the meta data, and the
/// application state once installed (`None` while receiving). `held` is
/// the durable transfer offset for media that keep it in the table
/// ([`SlotMedium::DURABLE_IN_TABLE`]), else 0. `result` is the undelivered
/// execution result (CBOR); records written before it existed decode
/// without one.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct SlotRecord {
    #[n(0)]
    pub meta: ModuleMeta,
    #[n(1)]
    pub installed: Option<AppState>,
    #[n(2)]
    pub held: u32,
    #[cbor(n(3), with = "minicbor::bytes")]
    pub result: Option<Vec<u8>>,
}

#[cfg(feature = "std")]
impl SlotRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Writing to a Vec cannot fail and the derived impls do not error.
        minicbor::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        minicbor::decode(bytes).map_err(|_| StoreError::Corrupt)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use wasmbed_protocol::Limits;

    /// A slot record as written before results were stored.
    #[derive(Encode)]
    #[cbor(map)]
    struct RecordWithoutResult {
        #[n(0)]
        meta: ModuleMeta,
        #[n(1)]
        installed: Option<AppState>,
        #[n(2)]
        held: u32,
    }

    #[test]
    fn records_without_a_result_still_decode() {
        let meta = ModuleMeta {
            deployment: DeploymentId(3),
            application: ApplicationId(4),
            size: 10,
            sha256: [1; 32],
            limits: Limits {
                fuel: 5,
                memory_pages: 1,
                entry: heapless::String::new(),
                args: heapless::Vec::new(),
            },
        };
        let old = RecordWithoutResult {
            meta: meta.clone(),
            installed: Some(AppState::Stopped),
            held: 10,
        };
        let bytes = minicbor::to_vec(&old).expect("encodes");
        let record = SlotRecord::decode(&bytes).expect("decodes");
        assert_eq!(record.meta, meta);
        assert_eq!(record.installed, Some(AppState::Stopped));
        assert_eq!(record.result, None);
        let with = SlotRecord {
            result: Some(vec![9; 3]),
            ..record
        };
        assert_eq!(SlotRecord::decode(&with.encode()), Ok(with));
    }
}
