//! Sizes, limits and the wire codes, as the header's `#define`s and enums.
//!
//! cbindgen copies a constant's literal into the header, so each value is
//! written out here and checked against the protocol crate at compile time.

use wasmbed_protocol::frame::{HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::*;

/// The protocol version this library speaks.
pub const WB_PROTOCOL_VERSION: u16 = 1;
/// Length of a frame's header: a big-endian `uint32_t` body length.
pub const WB_FRAME_HEADER_LEN: usize = 4;
/// Largest frame body, and so the size of a receive buffer for one frame
/// (plus `WB_FRAME_HEADER_LEN`).
pub const WB_MAX_FRAME_LEN: usize = 4096;
/// Smallest `max_frame_len` a device session accepts: the largest session
/// start, enrollment request and heartbeat fit in it.
pub const WB_MIN_FRAME_LEN: usize = 512;

/// Most applications a heartbeat or session start lists.
pub const WB_MAX_APPS: usize = 8;
/// Size of a name field (board, versions): 32 bytes of UTF-8 and a NUL.
pub const WB_NAME_SIZE: usize = 33;
/// Size of an entry point's name field: 32 bytes of UTF-8 and a NUL.
pub const WB_ENTRY_SIZE: usize = 33;
/// Size of an error's detail field: 64 bytes of UTF-8 and a NUL.
pub const WB_DETAIL_SIZE: usize = 65;
/// Most arguments of an entry point.
pub const WB_MAX_ARGS: usize = 8;
/// Most values an execution result returns.
pub const WB_MAX_RESULTS: usize = 4;
/// Most log lines an execution result carries.
pub const WB_MAX_LOG_LINES: usize = 8;
/// Longest log line, in bytes; longer lines are cut.
pub const WB_LOG_LINE_LEN: usize = 96;

/// Length of a device id.
pub const WB_DEVICE_ID_LEN: usize = 16;
/// Length of a module's SHA-256.
pub const WB_SHA256_LEN: usize = 32;
/// Length of the gateway's enrollment nonce.
pub const WB_NONCE_LEN: usize = 32;
/// Length of an uncompressed SEC1 P-256 public key (`0x04 || x || y`).
pub const WB_PUBLIC_KEY_LEN: usize = 65;
/// Length of a raw P-256 ECDSA signature (`r || s`).
pub const WB_SIGNATURE_LEN: usize = 64;
/// Length of the bytes an enrollment proof signs (`wb_proof_payload`).
pub const WB_PROOF_PAYLOAD_LEN: usize = 115;

const _: () = {
    assert!(WB_PROTOCOL_VERSION == PROTOCOL_VERSION);
    assert!(WB_FRAME_HEADER_LEN == HEADER_LEN);
    assert!(WB_MAX_FRAME_LEN == MAX_FRAME_LEN);
    assert!(WB_MIN_FRAME_LEN <= WB_MAX_FRAME_LEN);
    assert!(WB_MAX_APPS == MAX_APPS);
    assert!(WB_NAME_SIZE == NAME_LEN + 1);
    assert!(WB_ENTRY_SIZE == ENTRY_LEN + 1);
    assert!(WB_DETAIL_SIZE == DETAIL_LEN + 1);
    assert!(WB_MAX_ARGS == MAX_ARGS);
    assert!(WB_MAX_RESULTS == MAX_RESULTS);
    assert!(WB_MAX_LOG_LINES == MAX_LOG_LINES);
    assert!(WB_LOG_LINE_LEN == LOG_LINE_LEN);
    assert!(WB_NONCE_LEN == NONCE_LEN);
    assert!(WB_PUBLIC_KEY_LEN == PUBLIC_KEY_LEN);
    assert!(WB_SIGNATURE_LEN == SIGNATURE_LEN);
    assert!(WB_PROOF_PAYLOAD_LEN == PROOF_PAYLOAD_LEN);
};

/// Values of `wb_app_status.state`.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbAppState {
    Installed = 0,
    Running = 1,
    Stopped = 2,
    Failed = 3,
}

/// Values of `wb_capabilities.runtime`.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbRuntimeKind {
    Wasmi = 0,
    Wamr = 1,
    Wasmtime = 2,
}

/// Why a session ends: a goodbye's reason.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbGoodbyeReason {
    /// Ordinary end, e.g. an operator action.
    Normal = 0,
    /// The sender is shutting down.
    Shutdown = 1,
    /// The sender restarts and will be back.
    Restart = 2,
    /// The session was idle too long.
    Idle = 3,
    /// Enrollment is complete; reconnect with the issued certificate.
    Enrolled = 4,
    /// After a protocol error.
    ProtocolError = 5,
}

/// Values of `wb_error_message.code`: what went wrong, as told to the peer.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbErrorCode {
    /// The frame was not a valid message.
    Malformed = 0,
    /// The frame was larger than the receiver accepts.
    FrameTooLarge = 1,
    /// The envelope's version is not supported.
    UnsupportedVersion = 2,
    /// A message the sender may not send with its credentials.
    Unauthorized = 3,
    /// A valid message that makes no sense in the session's state.
    UnexpectedMessage = 4,
    /// The deployment id is not known.
    UnknownDeployment = 5,
    /// The peer is sending too much; slow down.
    RateLimited = 6,
    /// The peer did not answer in time.
    Timeout = 7,
    /// The sender failed.
    Internal = 8,
}

/// Values of `wb_deploy_status.failure`: why a deployment failed.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbDeployFailure {
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

/// Values of `wb_execution_result.trap_code`: why a module trapped.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbTrapCode {
    Unreachable = 0,
    MemoryOutOfBounds = 1,
    TableOutOfBounds = 2,
    IndirectCallToNull = 3,
    BadSignature = 4,
    IntegerOverflow = 5,
    IntegerDivisionByZero = 6,
    BadConversionToInteger = 7,
    StackOverflow = 8,
    /// The invocation used up its fuel.
    OutOfFuel = 9,
    /// A host function refused the call.
    HostError = 10,
    /// Memory growth beyond the deployment's limit.
    MemoryLimit = 11,
    /// The device reset during the run: a fault, running out of memory, a
    /// watchdog or power loss; the run did not finish.
    DeviceReset = 12,
}

/// Why the gateway refused an enrollment.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbEnrollRefusal {
    /// Pairing is closed and the key was not pre-authorized.
    PairingClosed = 0,
    /// This public key already belongs to an enrolled device.
    KeyAlreadyEnrolled = 1,
    /// The signature does not verify for this key and nonce.
    BadProof = 2,
    /// The public key is not a valid P-256 point.
    InvalidKey = 3,
    /// Too many enrollments; retry later.
    RateLimited = 4,
    /// The gateway failed; retry later.
    Internal = 5,
    /// This public key was revoked; it is never accepted again.
    KeyRevoked = 6,
}

/// Checks at compile time that every variant of a header enum has the
/// protocol's code, and records how many codes each side knows.
macro_rules! same_codes {
    ($name:ident = $wire:ident { $($variant:ident),+ $(,)? }) => {
        const _: () = {
            $( assert!($name::$variant as u16 == $wire::$variant.code()); )+
        };

        #[cfg(test)]
        impl CodeList for $name {
            const LISTED: usize = [$($name::$variant),+].len();
            const KNOWN: usize = $wire::ALL.len();
        }
    };
}

/// How many codes a header enum lists, and how many the protocol knows:
/// a test checks that they agree, so a new code reaches the header.
#[cfg(test)]
trait CodeList {
    const LISTED: usize;
    const KNOWN: usize;
}

same_codes!(
    WbAppState = AppState {
        Installed,
        Running,
        Stopped,
        Failed
    }
);
same_codes!(
    WbRuntimeKind = RuntimeKind {
        Wasmi,
        Wamr,
        Wasmtime
    }
);
same_codes!(
    WbGoodbyeReason = GoodbyeReason {
        Normal,
        Shutdown,
        Restart,
        Idle,
        Enrolled,
        ProtocolError,
    }
);
same_codes!(
    WbErrorCode = ErrorCode {
        Malformed,
        FrameTooLarge,
        UnsupportedVersion,
        Unauthorized,
        UnexpectedMessage,
        UnknownDeployment,
        RateLimited,
        Timeout,
        Internal,
    }
);
same_codes!(
    WbDeployFailure = DeployFailure {
        HashMismatch,
        TooLarge,
        InvalidModule,
        ImportNotAllowed,
        OutOfMemory,
        NoFreeSlot,
        UnexpectedOffset,
        BadEntryPoint,
        StorageError,
        LimitsTooHigh,
    }
);
same_codes!(
    WbTrapCode = TrapCode {
        Unreachable,
        MemoryOutOfBounds,
        TableOutOfBounds,
        IndirectCallToNull,
        BadSignature,
        IntegerOverflow,
        IntegerDivisionByZero,
        BadConversionToInteger,
        StackOverflow,
        OutOfFuel,
        HostError,
        MemoryLimit,
        DeviceReset,
    }
);
same_codes!(
    WbEnrollRefusal = EnrollRefusal {
        PairingClosed,
        KeyAlreadyEnrolled,
        BadProof,
        InvalidKey,
        RateLimited,
        Internal,
        KeyRevoked,
    }
);

/// Values of `wb_deploy_status.state`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbDeployState {
    /// Ready to receive from `bytes` (0 for a new transfer).
    Accepted = 0,
    /// The device holds the first `bytes` bytes.
    Progress = 1,
    /// Verified and installed in a slot.
    Installed = 2,
    Running = 3,
    Stopped = 4,
    /// Removed; the slot is free.
    Removed = 5,
    /// Failed for `failure`.
    Failed = 6,
}

/// Values of `wb_value.kind`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbValueKind {
    I32 = 0,
    I64 = 1,
    F32 = 2,
    F64 = 3,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed<T: CodeList>() -> (usize, usize) {
        (T::LISTED, T::KNOWN)
    }

    #[test]
    fn every_wire_code_is_in_the_header() {
        for (name, (listed, known)) in [
            ("WbAppState", listed::<WbAppState>()),
            ("WbRuntimeKind", listed::<WbRuntimeKind>()),
            ("WbGoodbyeReason", listed::<WbGoodbyeReason>()),
            ("WbErrorCode", listed::<WbErrorCode>()),
            ("WbDeployFailure", listed::<WbDeployFailure>()),
            ("WbTrapCode", listed::<WbTrapCode>()),
            ("WbEnrollRefusal", listed::<WbEnrollRefusal>()),
        ] {
            assert_eq!(
                listed, known,
                "{name} lists {listed} codes, the protocol knows {known}: add the new ones \
                 in protocol/ffi/src/consts.rs and run `cargo xtask ffi-header`"
            );
        }
    }
}
