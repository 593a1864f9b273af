//! Wasmbed's device agent: `no_std` + `alloc`, free of I/O.
//!
//! The agent is the part of a device that talks to the gateway and runs
//! WebAssembly modules. It is written once and driven by every platform:
//! the bare-metal firmware, the Zephyr application and the host fleet
//! simulator. It never touches a socket, a clock or flash directly:
//!
//! - bytes and the current time go in and bytes, events and deadlines come
//!   out of [`Agent`], which wraps the protocol crate's
//!   [`DeviceSession`](wasmbed_protocol::session::DeviceSession);
//! - randomness is an injected [`rand_core::CryptoRng`];
//! - the device identity lives behind [`identity::KeyStore`] and modules
//!   behind [`storage::ModuleStore`], implemented once by
//!   [`storage::SlotTable`] over a narrow [`storage::SlotMedium`]: NOR
//!   flash ([`flash`]) and, on the host, files and memory (`host`, feature
//!   `std`);
//! - modules run through [`runtime::Runtime`]; [`runtime::WasmiRuntime`]
//!   (feature `wasmi`, on by default) is the first implementation.
//!
//! The host functions a module may import are documented in
//! `docs/host-api.md`.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod agent;
pub mod console;
pub mod driver;
pub mod entropy;
pub mod flash;
#[cfg(feature = "std")]
pub mod host;
pub mod identity;
pub mod provisioning;
pub mod runtime;
pub mod storage;
pub mod x509;

pub use agent::{Agent, AgentConfig, AgentError, AgentEvent, Credentials};
