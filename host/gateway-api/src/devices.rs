//! `GET /v1/devices`: enrolled devices and their live state.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmbed_protocol::AppState;

/// Whether a device can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// In session now.
    Connected,
    /// Missed its heartbeats; the connection was dropped.
    Unreachable,
    /// Said goodbye, or the connection closed.
    Disconnected,
}

/// A device as the HTTP interface shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceView {
    /// The id the gateway gave the device (`8-4-4-4-12` hex).
    pub id: String,
    /// Its P-256 public key, uncompressed SEC1, hex: its identity.
    pub public_key: String,
    /// The board it said it is.
    pub board: String,
    /// The firmware version it said it runs.
    pub firmware_version: String,
    /// The WebAssembly runtime it reported at its last session start,
    /// which tells its firmware; absent until its first session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeView>,
    /// When it enrolled (Unix milliseconds).
    pub enrolled_at_ms: u64,
    /// When its last session was seen (Unix milliseconds).
    pub last_seen_ms: Option<u64>,
    /// `connected`, `unreachable` (missed its heartbeats) or `disconnected`.
    pub presence: Presence,
    /// Its last heartbeat (Unix milliseconds).
    pub last_heartbeat_ms: Option<u64>,
    /// Its uptime at its last heartbeat.
    pub uptime_ms: Option<u64>,
    /// Its free memory at its last heartbeat, in bytes.
    pub free_memory: Option<u32>,
    /// The applications its last heartbeat reported.
    pub apps: Vec<AppView>,
}

/// A device's WebAssembly runtime, e.g. `{"kind": "wamr", "version": "2.4.3"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RuntimeView {
    /// `wasmi` (the bare-metal Rust firmware and the simulator), `wamr`
    /// (the Zephyr firmware), `wasmtime`, or `unknown(N)` for a code this
    /// gateway does not know.
    #[schema(example = "wamr")]
    pub kind: String,
    /// The runtime's version as the device reported it (at most 32 bytes).
    #[schema(example = "2.4.3")]
    pub version: String,
}

/// One application a device's heartbeat reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AppView {
    /// The gateway's id of its deployment.
    pub deployment: u64,
    /// The caller's id of the application.
    pub application: u64,
    /// `installed`, `running`, `stopped` or `failed` (see [`crate::app_state`]).
    #[serde(with = "crate::app_state")]
    #[schema(value_type = String)]
    pub state: AppState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_view_keeps_its_json() {
        for json in [
            r#"{"id":"00112233-4455-6677-8899-aabbccddeeff","public_key":"04ab","board":"mps2-an385","firmware_version":"0.1.0","runtime":{"kind":"wamr","version":"2.4.3"},"enrolled_at_ms":1,"last_seen_ms":2,"presence":"connected","last_heartbeat_ms":3,"uptime_ms":4,"free_memory":5,"apps":[{"deployment":7,"application":42,"state":"running"}]}"#,
            r#"{"id":"00112233-4455-6677-8899-aabbccddeeff","public_key":"04ab","board":"b","firmware_version":"f","enrolled_at_ms":1,"last_seen_ms":null,"presence":"unreachable","last_heartbeat_ms":null,"uptime_ms":null,"free_memory":null,"apps":[]}"#,
        ] {
            let view: DeviceView = serde_json::from_str(json).expect("decodes");
            assert_eq!(serde_json::to_string(&view).expect("encodes"), json);
        }
        let garbled = r#"{"deployment":7,"application":42,"state":"exploded"}"#;
        assert!(serde_json::from_str::<AppView>(garbled).is_err());
    }

    #[test]
    fn presences_are_named_as_before() {
        for (presence, name) in [
            (Presence::Connected, "\"connected\""),
            (Presence::Unreachable, "\"unreachable\""),
            (Presence::Disconnected, "\"disconnected\""),
        ] {
            assert_eq!(serde_json::to_string(&presence).expect("encodes"), name);
        }
        assert!(serde_json::from_str::<Presence>("\"asleep\"").is_err());
    }
}
