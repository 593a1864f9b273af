//! Pairing windows, as a gateway (`/v1/pairing`) and the API server
//! (`/api/v1/pairing`, fleet-wide) show and set them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a window stays open when no duration is given, in seconds.
pub const DEFAULT_PAIRING_SECS: u64 = 10 * 60;
/// The longest window that can be asked for, in seconds (a week).
pub const MAX_PAIRING_SECS: u64 = 7 * 24 * 60 * 60;

/// Whether devices may enroll now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PairingStatus {
    pub open: bool,
    /// When the window closes by itself (Unix ms); absent when closed, or
    /// open until closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at_ms: Option<u64>,
}

/// `PUT .../pairing`: open a window that closes by itself, or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetPairing {
    pub open: bool,
    /// How long the window stays open, in seconds (default 600, at most
    /// 604800); checked but unused when closing.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub duration_s: Option<u64>,
}

impl SetPairing {
    /// The window's length asked for, or why it cannot be.
    pub fn duration_secs(&self) -> Result<u64, String> {
        let secs = self.duration_s.unwrap_or(DEFAULT_PAIRING_SECS);
        if (1..=MAX_PAIRING_SECS).contains(&secs) {
            Ok(secs)
        } else {
            Err(format!("duration_s must be 1 to {MAX_PAIRING_SECS}"))
        }
    }
}
