//! The C ABI of [`wasmbed_agent`], for the Zephyr application.
//!
//! The Zephyr firmware runs the very agent the bare-metal firmware and the
//! fleet simulator run: enrollment, sessions, chunked deployment into power-
//! safe slots, the result outbox and reconnection backoff all stay in Rust.
//! C supplies only what differs per platform:
//!
//! - the WebAssembly runtime, as a vtable ([`WbRuntime`]; WAMR on Zephyr)
//!   that reports through `wb_invocation_*`;
//! - one flash-like storage medium ([`WbMedium`]: read, write that only
//!   clears bits, erase) in which the agent lays out its key store, its seed
//!   sector and its module slots;
//! - the clock, free memory and boot-time entropy ([`WbAgentPlatform`]);
//! - the transport: the agent is sans-IO. C feeds received bytes in
//!   (`wb_agent_input`) and sends what `wb_agent_transmit` hands out.
//!
//! The library also carries the protocol's C ABI (`wasmbed_protocol.h`),
//! whose types this header uses.
//!
//! # Conventions
//!
//! As in `wasmbed_protocol.h`: functions that can fail return a `wb_status`;
//! pointer arguments are checked (`WB_STATUS_NULL_POINTER`); nothing is
//! thread-safe, an agent belongs to one thread. The agent allocates through
//! the C library's `malloc` family on bare metal (the protocol library's
//! `c-heap` feature).
#![no_std]

extern crate alloc;
// Hosted targets (the host tests) take the allocator from std.
#[cfg(not(target_os = "none"))]
extern crate std;

mod agent;
mod medium;
mod runtime;

pub use agent::*;
pub use medium::*;
pub use runtime::*;
