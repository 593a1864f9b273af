//! Wasmbed's wire protocol, shared by the device firmware, the gateway and
//! the fleet simulator.
//!
//! - [`message`]: every message, CBOR-encoded with integer keys.
//! - [`codec`]: one message to and from a frame body, with typed errors.
//! - [`frame`]: the length-prefixed framing of the TLS byte stream.
//! - [`session`]: the sans-IO state machines of both ends.
//!
//! The crate is `no_std` and does not allocate. The `alloc` feature lets
//! sessions use growable buffers; `std` adds `std::error::Error` impls.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod bounded;
pub mod codec;
pub mod frame;
pub mod message;
pub mod session;
mod wellformed;
mod wire_enum;

pub use codec::{DecodeError, EncodeError};
pub use message::*;
pub use wellformed::MAX_DEPTH;

#[cfg(feature = "std")]
#[doc(hidden)]
pub mod samples;
