//! The start of an authenticated session and the heartbeats that keep it.

use minicbor::{Decode, Encode};

use super::{ApplicationId, DeploymentId, DeviceId, Millis};
use crate::wire_enum::wire_enum;

/// Bounds of the text fields describing a device.
pub const NAME_LEN: usize = 32;
/// Most applications a device reports at once.
pub const MAX_APPS: usize = 8;

/// Text of at most [`NAME_LEN`] bytes.
pub type Name = heapless::String<NAME_LEN>;

/// What the device is and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeviceInfo {
    /// Board name, e.g. `mps2-an385`.
    #[cbor(n(0), with = "crate::bounded::text")]
    pub board: Name,
    #[cbor(n(1), with = "crate::bounded::text")]
    pub firmware_version: Name,
}

wire_enum! {
    /// The WebAssembly runtime inside the device.
    pub enum RuntimeKind {
        Wasmi = 0,
        Wamr = 1,
        Wasmtime = 2,
    }
}

/// What the device can run.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Capabilities {
    #[n(0)]
    pub runtime: RuntimeKind,
    #[cbor(n(1), with = "crate::bounded::text")]
    pub runtime_version: Name,
    /// Largest module the device accepts, in bytes.
    #[n(2)]
    pub max_module_size: u32,
    /// Memory available to applications, in bytes.
    #[n(3)]
    pub app_memory: u32,
    /// How many applications can be installed at once.
    #[n(4)]
    pub app_slots: u8,
}

wire_enum! {
    /// The state of an installed application.
    pub enum AppState {
        Installed = 0,
        Running = 1,
        Stopped = 2,
        Failed = 3,
    }
}

/// One installed application as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct AppStatus {
    #[n(0)]
    pub deployment: DeploymentId,
    #[n(1)]
    pub application: ApplicationId,
    #[n(2)]
    pub state: AppState,
}

/// Applications a device reports, at most [`MAX_APPS`].
pub type AppList = heapless::Vec<AppStatus, MAX_APPS>;

/// Device → gateway, first message of a mutually authenticated session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SessionStart {
    #[cbor(n(0), with = "crate::bounded::text")]
    pub agent_version: Name,
    #[n(1)]
    pub capabilities: Capabilities,
    #[cbor(n(2), with = "crate::bounded::list")]
    pub apps: AppList,
}

/// Gateway → device: the session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SessionAccept {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub server_time: Millis,
    /// Send a heartbeat at least this often.
    #[n(2)]
    pub heartbeat_interval_ms: u32,
}

/// Device → gateway: the device is alive.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Heartbeat {
    #[n(0)]
    pub uptime: Millis,
    /// Free heap, in bytes.
    #[n(1)]
    pub free_memory: u32,
    #[cbor(n(2), with = "crate::bounded::list")]
    pub apps: AppList,
}

/// Gateway → device: heartbeat received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct HeartbeatAck {
    #[n(0)]
    pub server_time: Millis,
    /// Send the next heartbeat within this many milliseconds.
    #[n(1)]
    pub next_interval_ms: u32,
}
