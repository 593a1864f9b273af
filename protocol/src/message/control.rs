//! Errors and the end of a session.

use minicbor::{Decode, Encode};

use crate::wire_enum::wire_enum;

/// Longest detail text of an [`ErrorMessage`].
pub const DETAIL_LEN: usize = 64;

wire_enum! {
    /// What went wrong, as told to the peer.
    pub enum ErrorCode {
        /// The frame was not a valid message.
        Malformed = 0,
        /// The frame was larger than the receiver accepts.
        FrameTooLarge = 1,
        /// The envelope's version is not supported.
        UnsupportedVersion = 2,
        /// A message the sender may not send with its credentials, such as
        /// anything but enrollment under the claim certificate.
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
}

/// Either direction: something went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ErrorMessage {
    #[n(0)]
    pub code: ErrorCode,
    /// Human-readable, for logs; never parsed.
    #[cbor(n(1), with = "crate::bounded::opt_text", has_nil)]
    pub detail: Option<heapless::String<DETAIL_LEN>>,
}

wire_enum! {
    /// Why a session ends.
    pub enum GoodbyeReason {
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
}

/// Either direction: the sender closes the connection after this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Goodbye {
    #[n(0)]
    pub reason: GoodbyeReason,
}
