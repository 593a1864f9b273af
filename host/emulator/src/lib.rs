//! Wasmbed's emulator manager: runs firmware images on emulated boards
//! (QEMU, Renode) as devices of a Wasmbed installation.
//!
//! - [`board`]: the `boards/*.toml` descriptions of emulated boards.
//! - [`provision`](mod@provision): a device's state directory, its factory record
//!   (`provision.bin`) and its flash (`flash.bin`).
//! - [`backend`]: the emulators, behind [`EmulatorBackend`].
//! - [`bridge`]: the TCP bridge from a device's link UART to the gateway.
//! - [`console`]: a device's console, kept for waiting on lines.
//! - [`manager`]: [`EmulatorManager`], which starts, stops, restarts and
//!   lists devices.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use wasmbed_emulator::{Backend, Board, DeviceSpec, EmulatorManager};
//!
//! let manager = EmulatorManager::new();
//! let device = manager
//!     .start(DeviceSpec {
//!         name: "qemu-0".into(),
//!         board: Board::find("mps2-an385")?,
//!         firmware: "firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2".into(),
//!         state_dir: "wasmbed-devices/qemu-0".into(),
//!         gateway: "127.0.0.1:40029".into(),
//!         backend: Backend::Qemu,
//!         icount: None,
//!     })
//!     .await?;
//! device.wait_for("enrolled", Duration::from_secs(30)).await?;
//! let mark = device.console().mark();
//! manager.restart("qemu-0").await?;
//! device.wait_for_after(mark, "booted", Duration::from_secs(30)).await?;
//! manager.stop_all().await;
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod board;
pub mod bridge;
pub mod console;
pub mod manager;
pub mod provision;
mod session_watch;

pub use backend::{Backend, EmulatorBackend};
pub use board::{Board, BoardError};
pub use bridge::{Bridge, BridgeConfig, BridgeCounters, DeviceSide};
pub use console::{Console, ConsoleLine, ConsoleMark, Pattern, WaitError};
pub use manager::{
    DeviceHandle, DeviceSpec, DeviceState, DeviceSummary, EmulatorManager, ManagerError,
};
pub use provision::{
    ClaimMaterial, ProvisionError, ProvisionOptions, Provisioned, provision, reset_storage,
};
