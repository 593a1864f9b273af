//! One representative value of every message, for snapshot tests, the CDDL
//! check, benchmarks, fuzz seeds and documentation.

use alloc::vec;
use alloc::vec::Vec;

use crate::message::*;

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap_or_default()
}

/// An application installed on a device.
pub fn app_status() -> AppStatus {
    AppStatus {
        deployment: DeploymentId(7),
        application: ApplicationId(3),
        state: AppState::Running,
    }
}

/// What an `mps2-an385` running the wasmi agent reports.
pub fn capabilities() -> Capabilities {
    Capabilities {
        runtime: RuntimeKind::Wasmi,
        runtime_version: name("0.40.0"),
        max_module_size: 65_536,
        app_memory: 98_304,
        app_slots: 4,
    }
}

/// A heartbeat with one running application.
pub fn heartbeat() -> Heartbeat {
    Heartbeat {
        uptime: Millis(123_456),
        free_memory: 40_960,
        apps: AppList::from_slice(&[app_status()]).unwrap_or_default(),
    }
}

/// The public key used by the samples (not a valid curve point; the
/// protocol layer does not check it).
pub const PUBLIC_KEY: [u8; PUBLIC_KEY_LEN] = {
    let mut key = [0x11; PUBLIC_KEY_LEN];
    key[0] = 0x04;
    key
};

/// A module chunk of `len` bytes.
pub fn chunk_data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect()
}

/// Every device → gateway message, with a name for each.
pub fn uplinks() -> Vec<(&'static str, Uplink<'static>)> {
    let mut logs = heapless::Vec::new();
    let _ = logs.push(LogLine::truncated("hello from wasm"));
    vec![
        (
            "enroll_request",
            Uplink::EnrollRequest(EnrollRequest {
                public_key: PUBLIC_KEY,
                proof: [0x22; SIGNATURE_LEN],
                device: DeviceInfo {
                    board: name("mps2-an385"),
                    firmware_version: name("0.1.0"),
                },
                capabilities: capabilities(),
            }),
        ),
        (
            "session_start",
            Uplink::SessionStart(SessionStart {
                agent_version: name("0.1.0"),
                capabilities: capabilities(),
                apps: AppList::from_slice(&[app_status()]).unwrap_or_default(),
            }),
        ),
        ("heartbeat", Uplink::Heartbeat(heartbeat())),
        (
            "deploy_status_progress",
            Uplink::DeployStatus(DeployStatus {
                deployment: DeploymentId(7),
                state: DeployState::Progress { bytes_held: 2048 },
            }),
        ),
        (
            "deploy_status_failed",
            Uplink::DeployStatus(DeployStatus {
                deployment: DeploymentId(7),
                state: DeployState::Failed {
                    reason: DeployFailure::HashMismatch,
                },
            }),
        ),
        (
            "execution_result_returned",
            Uplink::ExecutionResult(ExecutionResult {
                deployment: DeploymentId(7),
                invocation: 1,
                outcome: Outcome::Returned(
                    heapless::Vec::from_slice(&[Value::I32(42), Value::F64(1.5)])
                        .unwrap_or_default(),
                ),
                fuel_used: 1_234,
                duration_us: 87,
                logs,
                logs_truncated: false,
            }),
        ),
        (
            "execution_result_trapped",
            Uplink::ExecutionResult(ExecutionResult {
                deployment: DeploymentId(7),
                invocation: 2,
                outcome: Outcome::Trapped(TrapCode::OutOfFuel),
                fuel_used: 1_000_000,
                duration_us: 52_000,
                logs: heapless::Vec::new(),
                logs_truncated: true,
            }),
        ),
        (
            // What a device reports after it reset during the run.
            "execution_result_device_reset",
            Uplink::ExecutionResult(ExecutionResult {
                deployment: DeploymentId(7),
                invocation: 1,
                outcome: Outcome::Trapped(TrapCode::DeviceReset),
                fuel_used: 0,
                duration_us: 0,
                logs: heapless::Vec::new(),
                logs_truncated: false,
            }),
        ),
        (
            "error",
            Uplink::Error(ErrorMessage {
                code: ErrorCode::UnknownDeployment,
                detail: heapless::String::try_from("deployment 9").ok(),
            }),
        ),
        (
            "goodbye",
            Uplink::Goodbye(Goodbye {
                reason: GoodbyeReason::Restart,
            }),
        ),
    ]
}

/// The certificate bytes used by the samples (not real DER).
pub const CERTIFICATE: &[u8] = &[0x30, 0x82, 0x01, 0x0a, 0xde, 0xad, 0xbe, 0xef];

/// Module bytes used by the chunk sample.
pub const CHUNK: &[u8] = b"\0asm\x01\0\0\0";

/// Every gateway → device message, with a name for each.
pub fn downlinks() -> Vec<(&'static str, Downlink<'static>)> {
    vec![
        (
            "enroll_challenge",
            Downlink::EnrollChallenge(EnrollChallenge {
                nonce: [0x33; NONCE_LEN],
            }),
        ),
        (
            "enroll_accepted",
            Downlink::EnrollResponse(EnrollResponse::Accepted {
                device_id: DeviceId([0xab; 16]),
                certificate: CERTIFICATE,
            }),
        ),
        (
            "enroll_refused",
            Downlink::EnrollResponse(EnrollResponse::Refused {
                reason: EnrollRefusal::PairingClosed,
            }),
        ),
        (
            "session_accept",
            Downlink::SessionAccept(SessionAccept {
                device_id: DeviceId([0xab; 16]),
                server_time: Millis(1_764_253_000_000),
                heartbeat_interval_ms: 10_000,
            }),
        ),
        (
            "heartbeat_ack",
            Downlink::HeartbeatAck(HeartbeatAck {
                server_time: Millis(1_764_253_000_000),
                next_interval_ms: 10_000,
            }),
        ),
        ("deploy_start", Downlink::DeployStart(deploy_start())),
        (
            "deploy_chunk",
            Downlink::DeployChunk(DeployChunk {
                deployment: DeploymentId(7),
                offset: 0,
                data: CHUNK,
            }),
        ),
        (
            "deploy_commit",
            Downlink::DeployCommit(DeployCommit {
                deployment: DeploymentId(7),
            }),
        ),
        (
            "stop",
            Downlink::Stop(StopApp {
                deployment: DeploymentId(7),
            }),
        ),
        (
            "remove",
            Downlink::Remove(RemoveApp {
                deployment: DeploymentId(7),
            }),
        ),
        (
            "error",
            Downlink::Error(ErrorMessage {
                code: ErrorCode::Unauthorized,
                detail: None,
            }),
        ),
        (
            "goodbye",
            Downlink::Goodbye(Goodbye {
                reason: GoodbyeReason::Enrolled,
            }),
        ),
    ]
}

/// The start of a 16 KiB module deployment with a fuel limit.
pub fn deploy_start() -> DeployStart {
    DeployStart {
        deployment: DeploymentId(7),
        application: ApplicationId(3),
        module_size: 16_384,
        sha256: [0x44; 32],
        chunk_size: DEFAULT_CHUNK_LEN,
        limits: Limits {
            fuel: 1_000_000,
            memory_pages: 1,
            entry: heapless::String::try_from("run").unwrap_or_default(),
            args: heapless::Vec::from_slice(&[Value::I32(5), Value::I64(-1)]).unwrap_or_default(),
        },
    }
}
