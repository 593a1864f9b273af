//! The console lines every firmware prints for the agent's events, so the
//! emulator manager, the tests and the robot suite read the bare-metal and
//! the Zephyr firmware alike (see `docs/firmware.md`).
//!
//! A firmware may append measurements of its own in parentheses (heap and
//! stack figures); the text before them is the grammar readers rely on.

use core::fmt;

use crate::AgentEvent;
use crate::identity::Identity;

/// An event's console line, without a line ending.
#[derive(Debug, Clone, Copy)]
pub struct EventLine<'a>(pub &'a AgentEvent);

impl fmt::Display for EventLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AgentEvent::Enrolled { device_id } => {
                write!(f, "agent: enrolled as device {device_id}")
            }
            AgentEvent::Established {
                device_id,
                heartbeat_interval_ms,
            } => write!(
                f,
                "agent: session established as device {device_id} (heartbeat every {heartbeat_interval_ms} ms)"
            ),
            AgentEvent::HeartbeatSent => f.write_str("agent: heartbeat"),
            AgentEvent::TransferAccepted {
                deployment,
                resume_offset,
            } => write!(
                f,
                "agent: receiving deployment {} from byte {resume_offset}",
                deployment.0
            ),
            AgentEvent::Installed { deployment } => {
                write!(f, "agent: installed deployment {}", deployment.0)
            }
            AgentEvent::Executed {
                deployment,
                outcome,
                fuel_used,
            } => write!(
                f,
                "agent: executed deployment {}: {outcome:?}, fuel {fuel_used}",
                deployment.0
            ),
            AgentEvent::DeployFailed { deployment, reason } => {
                write!(f, "agent: deployment {} failed: {reason:?}", deployment.0)
            }
            other => write!(f, "agent: {other:?}"),
        }
    }
}

/// The identity part of a firmware's boot line:
/// `identity device 3` or `identity none (will enroll)`.
#[derive(Debug, Clone, Copy)]
pub struct IdentityLine<'a>(pub Option<&'a Identity>);

impl fmt::Display for IdentityLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(identity) => write!(f, "identity device {}", identity.device_id),
            None => f.write_str("identity none (will enroll)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use wasmbed_protocol::{DeploymentId, DeviceId, Outcome, Value};

    use super::*;

    #[test]
    fn lines_keep_the_grammar_the_host_tools_read() {
        let executed = AgentEvent::Executed {
            deployment: DeploymentId(4),
            outcome: Outcome::Returned(
                heapless::Vec::from_slice(&[Value::I32(1229)]).unwrap_or_default(),
            ),
            fuel_used: 77,
        };
        assert_eq!(
            EventLine(&executed).to_string(),
            "agent: executed deployment 4: Returned([I32(1229)]), fuel 77"
        );
        let enrolled = AgentEvent::Enrolled {
            device_id: DeviceId([0xab; 16]),
        };
        assert_eq!(
            EventLine(&enrolled).to_string(),
            "agent: enrolled as device abababab-abab-abab-abab-abababababab"
        );
        assert_eq!(
            IdentityLine(None).to_string(),
            "identity none (will enroll)"
        );
    }
}
