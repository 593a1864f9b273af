//! Deploying a module: start, chunks, commit; the device reports progress.
//!
//! A transfer resumes after a reconnect: the device answers a repeated
//! [`DeployStart`] with [`DeployState::Accepted`] carrying the bytes it
//! already holds, and the gateway continues from there. A deployment id the
//! device has already installed is never installed or run twice.

use minicbor::{Decode, Encode};

use super::{ApplicationId, DeploymentId, Value};
use crate::wire_enum::wire_enum;

/// Bound of an entry point's name.
pub const ENTRY_LEN: usize = 32;
/// Most arguments an entry point takes.
pub const MAX_ARGS: usize = 8;
/// Largest module chunk a frame carries.
pub const MAX_CHUNK_LEN: usize = 2048;
/// Chunk size the gateway uses unless configured otherwise.
pub const DEFAULT_CHUNK_LEN: u16 = 1024;

/// What a module may consume and how it is started.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct Limits {
    /// Fuel (roughly, instructions) per invocation; the module traps when
    /// it runs out.
    #[n(0)]
    pub fuel: u64,
    /// Largest linear memory, in 64 KiB pages.
    #[n(1)]
    pub memory_pages: u16,
    /// Exported function to call.
    #[cbor(n(2), with = "crate::bounded::text")]
    pub entry: heapless::String<ENTRY_LEN>,
    #[cbor(n(3), with = "crate::bounded::list")]
    pub args: heapless::Vec<Value, MAX_ARGS>,
}

/// Gateway → device: a module is coming.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct DeployStart {
    #[n(0)]
    pub deployment: DeploymentId,
    #[n(1)]
    pub application: ApplicationId,
    /// Size of the whole module, in bytes.
    #[n(2)]
    pub module_size: u32,
    #[cbor(n(3), with = "minicbor::bytes")]
    pub sha256: [u8; 32],
    /// Size of every chunk but the last.
    #[n(4)]
    pub chunk_size: u16,
    #[n(5)]
    pub limits: Limits,
}

/// Gateway → device: part of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeployChunk<'a> {
    #[n(0)]
    pub deployment: DeploymentId,
    /// Where `data` starts in the module.
    #[n(1)]
    pub offset: u32,
    /// At most [`MAX_CHUNK_LEN`] bytes; longer chunks do not decode.
    #[cbor(
        b(2),
        encode_with = "minicbor::bytes::encode",
        decode_with = "crate::bounded::bytes_at_most::decode::<Ctx, MAX_CHUNK_LEN>"
    )]
    pub data: &'a [u8],
}

/// Gateway → device: all chunks sent; verify and install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeployCommit {
    #[n(0)]
    pub deployment: DeploymentId,
}

/// Gateway → device: stop a running application (it stays installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct StopApp {
    #[n(0)]
    pub deployment: DeploymentId,
}

/// Gateway → device: stop an application and free its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct RemoveApp {
    #[n(0)]
    pub deployment: DeploymentId,
}

/// Device → gateway: where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeployStatus {
    #[n(0)]
    pub deployment: DeploymentId,
    #[n(1)]
    pub state: DeployState,
}

/// The states of a deployment on a device.
///
/// Encoded as `[index, fields...]`. Decoding is written out by hand: the
/// derived decoder of a field-less variant would leave extra array items
/// unread, and the next map key would be read from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode)]
#[cbor(flat)]
pub enum DeployState {
    /// Ready to receive; send from `resume_offset` (0 for a new transfer).
    #[n(0)]
    Accepted {
        #[n(0)]
        resume_offset: u32,
    },
    /// The device holds the first `bytes_held` bytes.
    #[n(1)]
    Progress {
        #[n(0)]
        bytes_held: u32,
    },
    /// Verified and installed in a slot.
    #[n(2)]
    Installed,
    #[n(3)]
    Running,
    #[n(4)]
    Stopped,
    /// Removed; the slot is free.
    #[n(5)]
    Removed,
    #[n(6)]
    Failed {
        #[n(0)]
        reason: DeployFailure,
    },
}

wire_enum! {
    /// Why a deployment failed on the device.
    pub enum DeployFailure {
        /// The module's SHA-256 differs from the announced one.
        HashMismatch = 0,
        /// Larger than the device's largest module.
        TooLarge = 1,
        /// Not a valid WebAssembly module.
        InvalidModule = 2,
        /// Imports something outside the device's host API.
        ImportNotAllowed = 3,
        /// Not enough memory to instantiate or to hold the module.
        OutOfMemory = 4,
        /// Every application slot is taken.
        NoFreeSlot = 5,
        /// A chunk did not continue where the previous one ended.
        UnexpectedOffset = 6,
        /// The entry point is missing or has another signature.
        BadEntryPoint = 7,
        /// Storing the module failed.
        StorageError = 8,
        /// The limits ask for more than the device allows.
        LimitsTooHigh = 9,
    }
}

impl<'b, C> minicbor::Decode<'b, C> for DeployState {
    fn decode(d: &mut minicbor::Decoder<'b>, ctx: &mut C) -> Result<Self, minicbor::decode::Error> {
        let at = d.position();
        let len = d.array()?.filter(|n| *n >= 1).ok_or_else(|| {
            minicbor::decode::Error::message("deploy state: expected [index, ...]").at(at)
        })?;
        // Unknown variants are reported at the variant number, like the
        // derived decoders do.
        let at = d.position();
        let index = d.u32()?;
        let (state, fields) = match index {
            0 => (
                DeployState::Accepted {
                    resume_offset: field(d, ctx, len, 1)?,
                },
                1,
            ),
            1 => (
                DeployState::Progress {
                    bytes_held: field(d, ctx, len, 1)?,
                },
                1,
            ),
            2 => (DeployState::Installed, 0),
            3 => (DeployState::Running, 0),
            4 => (DeployState::Stopped, 0),
            5 => (DeployState::Removed, 0),
            6 => (
                DeployState::Failed {
                    reason: field(d, ctx, len, 1)?,
                },
                1,
            ),
            _ => return Err(minicbor::decode::Error::unknown_variant(i64::from(index)).at(at)),
        };
        // Fields a newer peer appended to the variant.
        for _ in (1 + fields)..len {
            d.skip()?;
        }
        Ok(state)
    }
}

/// Decodes field `n` of a variant array of `len` items.
fn field<'b, C, T: minicbor::Decode<'b, C>>(
    d: &mut minicbor::Decoder<'b>,
    ctx: &mut C,
    len: u64,
    n: u64,
) -> Result<T, minicbor::decode::Error> {
    if n >= len {
        return Err(
            minicbor::decode::Error::message("deploy state: missing field").at(d.position()),
        );
    }
    T::decode(d, ctx)
}
