//! The session logic of both ends as sans-IO state machines.
//!
//! A session never touches a socket or a clock. The driver (the firmware's
//! main loop, the gateway's tokio task, the fleet simulator) feeds it bytes
//! read from TLS and the current time, then:
//!
//! 1. drains [`DeviceSession::poll_event`] / [`GatewaySession::poll_event`]
//!    until `None`, reacting to each event,
//! 2. writes `poll_transmit()` to TLS and reports it with `advance_transmit`,
//! 3. sleeps until more bytes arrive or `poll_timeout()`, and then calls
//!    `handle_timeout(now)`,
//! 4. closes the connection once `is_closed()` and nothing is left to send.
//!
//! ```text
//!   bytes in ──► handle_input ─┐             ┌─► poll_transmit ──► bytes out
//!   now ───────► handle_timeout ┴► session ──┼─► poll_event ─────► events
//!                                            └─► poll_timeout ───► next deadline
//! ```
//!
//! Both ends wired back to back, as the tests do:
//!
//! ```
//! use wasmbed_protocol::session::*;
//! use wasmbed_protocol::*;
//!
//! let hello = SessionStart {
//!     agent_version: Name::try_from("0.1.0").unwrap(),
//!     capabilities: Capabilities {
//!         runtime: RuntimeKind::Wasmi,
//!         runtime_version: Name::try_from("0.40").unwrap(),
//!         max_module_size: 65_536,
//!         app_memory: 98_304,
//!         app_slots: 4,
//!     },
//!     apps: AppList::new(),
//! };
//! let now = Millis(0);
//! let mut device: DeviceSession = DeviceSession::resume(DeviceConfig::default(), &hello, now);
//! let mut gateway: GatewaySession =
//!     GatewaySession::new(PeerCredential::Device, GatewayConfig::default(), [0; 32], now);
//!
//! // Device → gateway: the session start.
//! let n = gateway.handle_input(device.poll_transmit(), now);
//! device.advance_transmit(n);
//! assert_eq!(gateway.poll_event(), Some(GatewayEvent::SessionRequested(hello)));
//! gateway.accept_session(DeviceId([7; 16])).unwrap();
//!
//! // Gateway → device: the acceptance.
//! let n = device.handle_input(gateway.poll_transmit(), now);
//! gateway.advance_transmit(n);
//! assert!(matches!(device.poll_event(), Some(DeviceEvent::Established(_))));
//! assert!(device.is_established());
//! ```

mod buffer;
mod device;
mod gateway;
mod link;

pub use buffer::ByteBuffer;
pub use device::{DeviceConfig, DeviceEvent, DeviceSession};
pub use gateway::{GatewayConfig, GatewayEvent, GatewaySession, PeerCredential};

use core::fmt;

use crate::codec::{DecodeError, EncodeError};
use crate::frame::{FrameError, HEADER_LEN, MAX_FRAME_LEN};
use crate::message::{ErrorCode, GoodbyeReason};

/// A fixed buffer large enough for one frame of the default size.
pub type FrameBuffer = heapless::Vec<u8, { HEADER_LEN + MAX_FRAME_LEN }>;

/// A call that the session could not carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The call does not fit the session's state (e.g. a heartbeat before
    /// the session is established).
    InvalidState,
    /// Too much output is waiting; send what is pending first.
    OutboxFull,
    /// The message can not be encoded as a frame.
    Encode(EncodeError),
    /// The session has ended.
    Closed,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::InvalidState => f.write_str("not possible in the session's state"),
            SessionError::OutboxFull => f.write_str("outgoing buffer full"),
            SessionError::Encode(e) => write!(f, "cannot encode message: {e}"),
            SessionError::Closed => f.write_str("session closed"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SessionError {}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer said goodbye.
    PeerGoodbye(GoodbyeReason),
    /// This side said goodbye.
    LocalGoodbye(GoodbyeReason),
    /// The peer broke the protocol; it was told `code` before closing.
    ProtocolViolation(Violation),
    /// The peer did not answer or send heartbeats in time.
    Timeout,
}

/// A protocol violation by the peer, with the detail that was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A frame that is not a valid message.
    Decode(DecodeError),
    /// A frame header beyond the limit, or an empty frame.
    Frame(FrameError),
    /// A valid message the peer may not send now (or, for a claim
    /// certificate, at all).
    Unexpected { code: ErrorCode, kind: &'static str },
    /// A message id that does not follow the previous one: each side
    /// numbers its messages increasingly within a session.
    MessageId { id: u32, previous: u32 },
    /// The peer kept sending `kind` faster than allowed after being told
    /// `rate-limited`.
    RateLimited { kind: &'static str },
}

impl Violation {
    /// The code the peer is told.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Violation::Decode(DecodeError::UnsupportedVersion { .. }) => {
                ErrorCode::UnsupportedVersion
            }
            Violation::Decode(_) => ErrorCode::Malformed,
            Violation::Frame(FrameError::TooLarge { .. }) => ErrorCode::FrameTooLarge,
            Violation::Frame(FrameError::Empty) => ErrorCode::Malformed,
            Violation::Unexpected { code, .. } => *code,
            Violation::MessageId { .. } => ErrorCode::Malformed,
            Violation::RateLimited { .. } => ErrorCode::RateLimited,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerGoodbye(r) => write!(f, "peer said goodbye ({r:?})"),
            CloseReason::LocalGoodbye(r) => write!(f, "closed locally ({r:?})"),
            CloseReason::ProtocolViolation(v) => match v {
                Violation::Decode(e) => write!(f, "protocol violation: {e}"),
                Violation::Frame(e) => write!(f, "protocol violation: {e}"),
                Violation::Unexpected { code, kind } => {
                    write!(f, "protocol violation: {kind} refused ({code:?})")
                }
                Violation::MessageId { id, previous } => write!(
                    f,
                    "protocol violation: message id {id} does not follow {previous}"
                ),
                Violation::RateLimited { kind } => {
                    write!(f, "protocol violation: {kind} sent too often")
                }
            },
            CloseReason::Timeout => f.write_str("peer timed out"),
        }
    }
}
