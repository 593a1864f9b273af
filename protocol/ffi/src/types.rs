//! The C structs, and their conversions to and from the protocol's messages.
//!
//! Structs the C side fills (inputs) hold wire codes as plain integers, so
//! that no value C writes can be invalid for a Rust type; structs this
//! library fills (outputs) may use the `repr(u8)` kind enums.

use core::ffi::{CStr, c_char};
use core::fmt;

use wasmbed_protocol::session::{CloseReason, Violation};
use wasmbed_protocol::*;

use crate::WbStatus;
use crate::consts::*;

// ---------------------------------------------------------------- text ----

/// Reads a NUL-terminated UTF-8 field of at most `N` bytes (`InvalidArgument`
/// without a NUL, with invalid UTF-8 or with more than `N` bytes).
pub fn text_in<const N: usize, const SIZE: usize>(
    field: &[c_char; SIZE],
) -> Result<heapless::String<N>, WbStatus> {
    let mut bytes = [0u8; SIZE];
    for (b, c) in bytes.iter_mut().zip(field) {
        // `c_char` is `i8` on some targets and `u8` on others.
        [*b] = c.to_ne_bytes();
    }
    let len = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(WbStatus::InvalidArgument)?;
    let text = core::str::from_utf8(&bytes[..len]).map_err(|_| WbStatus::InvalidArgument)?;
    heapless::String::try_from(text).map_err(|_| WbStatus::InvalidArgument)
}

/// `text` as a NUL-terminated field, cut to fit if need be.
pub fn text_out<const SIZE: usize>(text: &str) -> [c_char; SIZE] {
    let mut out = [0 as c_char; SIZE];
    for (o, b) in out
        .iter_mut()
        .zip(text.bytes())
        .take(SIZE.saturating_sub(1))
    {
        *o = c_char::from_ne_bytes([b]);
    }
    out
}

// --------------------------------------------------------------- value ----

/// The bits of a `wb_value`; `kind` says which member is set.
#[repr(C)]
#[derive(Clone, Copy)]
pub union WbValueBits {
    pub i32: i32,
    pub i64: i64,
    pub f32: f32,
    pub f64: f64,
}

impl fmt::Debug for WbValueBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WbValueBits { .. }")
    }
}

/// A WebAssembly value: an argument or a result.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbValue {
    /// A `wb_value_kind`.
    pub kind: u8,
    pub of: WbValueBits,
}

impl WbValue {
    /// The value `kind` and the bits say, or `InvalidArgument` for an
    /// unknown kind.
    pub fn message(self) -> Result<Value, WbStatus> {
        // In each arm, `kind` names the member the C side set, and every bit
        // pattern is a valid value of the member's type.
        Ok(match self.kind {
            // SAFETY: see above.
            k if k == WbValueKind::I32 as u8 => Value::I32(unsafe { self.of.i32 }),
            // SAFETY: see above.
            k if k == WbValueKind::I64 as u8 => Value::I64(unsafe { self.of.i64 }),
            // SAFETY: see above.
            k if k == WbValueKind::F32 as u8 => Value::F32(unsafe { self.of.f32 }),
            // SAFETY: see above.
            k if k == WbValueKind::F64 as u8 => Value::F64(unsafe { self.of.f64 }),
            _ => return Err(WbStatus::InvalidArgument),
        })
    }

    pub fn from_message(value: Value) -> WbValue {
        let mut of = WbValueBits { i64: 0 };
        let kind = match value {
            Value::I32(v) => {
                of.i32 = v;
                WbValueKind::I32
            }
            Value::I64(v) => {
                of.i64 = v;
                WbValueKind::I64
            }
            Value::F32(v) => {
                of.f32 = v;
                WbValueKind::F32
            }
            Value::F64(v) => {
                of.f64 = v;
                WbValueKind::F64
            }
        };
        WbValue {
            kind: kind as u8,
            of,
        }
    }

    const ZERO: WbValue = WbValue {
        kind: WbValueKind::I32 as u8,
        of: WbValueBits { i64: 0 },
    };
}

/// The first `count` of `values`.
fn values_in<const N: usize>(
    count: usize,
    values: &[WbValue],
) -> Result<heapless::Vec<Value, N>, WbStatus> {
    let values = values.get(..count).ok_or(WbStatus::InvalidArgument)?;
    let mut out = heapless::Vec::new();
    for value in values {
        out.push(value.message()?)
            .map_err(|_| WbStatus::InvalidArgument)?;
    }
    Ok(out)
}

fn values_out<const N: usize>(values: &[Value]) -> (usize, [WbValue; N]) {
    let mut out = [WbValue::ZERO; N];
    for (o, v) in out.iter_mut().zip(values) {
        *o = WbValue::from_message(*v);
    }
    (values.len().min(N), out)
}

// ---------------------------------------------------- device messages ----

/// One installed application, as a heartbeat or session start lists it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbAppStatus {
    pub deployment: u64,
    pub application: u64,
    /// A `wb_app_state`.
    pub state: u16,
}

const NO_APP: WbAppStatus = WbAppStatus {
    deployment: 0,
    application: 0,
    state: 0,
};

fn apps_in(count: usize, apps: &[WbAppStatus]) -> Result<AppList, WbStatus> {
    let apps = apps.get(..count).ok_or(WbStatus::InvalidArgument)?;
    let mut out = AppList::new();
    for app in apps {
        out.push(AppStatus {
            deployment: DeploymentId(app.deployment),
            application: ApplicationId(app.application),
            state: AppState::from_code(app.state),
        })
        .map_err(|_| WbStatus::InvalidArgument)?;
    }
    Ok(out)
}

fn apps_out(apps: &AppList) -> (usize, [WbAppStatus; WB_MAX_APPS]) {
    let mut out = [NO_APP; WB_MAX_APPS];
    for (o, app) in out.iter_mut().zip(apps) {
        *o = WbAppStatus {
            deployment: app.deployment.0,
            application: app.application.0,
            state: app.state.code(),
        };
    }
    (apps.len().min(WB_MAX_APPS), out)
}

/// Device → gateway: the device is alive.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbHeartbeat {
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Free heap, in bytes.
    pub free_memory: u32,
    /// How many of `apps` are set, at most `WB_MAX_APPS`.
    pub app_count: usize,
    pub apps: [WbAppStatus; WB_MAX_APPS],
}

impl WbHeartbeat {
    pub(crate) fn message(&self) -> Result<Heartbeat, WbStatus> {
        Ok(Heartbeat {
            uptime: Millis(self.uptime_ms),
            free_memory: self.free_memory,
            apps: apps_in(self.app_count, &self.apps)?,
        })
    }

    pub(crate) fn from_message(heartbeat: &Heartbeat) -> WbHeartbeat {
        let (app_count, apps) = apps_out(&heartbeat.apps);
        WbHeartbeat {
            uptime_ms: heartbeat.uptime.0,
            free_memory: heartbeat.free_memory,
            app_count,
            apps,
        }
    }
}

/// What the device is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbDeviceInfo {
    /// Board name, e.g. `"mps2-an385"`.
    pub board: [c_char; WB_NAME_SIZE],
    pub firmware_version: [c_char; WB_NAME_SIZE],
}

impl WbDeviceInfo {
    fn message(&self) -> Result<DeviceInfo, WbStatus> {
        Ok(DeviceInfo {
            board: text_in(&self.board)?,
            firmware_version: text_in(&self.firmware_version)?,
        })
    }
}

/// What the device can run.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbCapabilities {
    /// A `wb_runtime_kind`.
    pub runtime: u16,
    pub runtime_version: [c_char; WB_NAME_SIZE],
    /// Largest module the device accepts, in bytes.
    pub max_module_size: u32,
    /// Memory available to applications, in bytes.
    pub app_memory: u32,
    /// How many applications can be installed at once.
    pub app_slots: u8,
}

impl WbCapabilities {
    fn message(&self) -> Result<Capabilities, WbStatus> {
        Ok(Capabilities {
            runtime: RuntimeKind::from_code(self.runtime),
            runtime_version: text_in(&self.runtime_version)?,
            max_module_size: self.max_module_size,
            app_memory: self.app_memory,
            app_slots: self.app_slots,
        })
    }
}

/// Device → gateway: the key to enroll and the proof of its possession.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbEnrollRequest {
    /// Uncompressed SEC1 P-256 public key.
    pub public_key: [u8; WB_PUBLIC_KEY_LEN],
    /// Raw ECDSA P-256/SHA-256 signature (`r || s`) of `wb_proof_payload`.
    pub proof: [u8; WB_SIGNATURE_LEN],
    pub device: WbDeviceInfo,
    pub capabilities: WbCapabilities,
}

impl WbEnrollRequest {
    pub(crate) fn message(&self) -> Result<EnrollRequest, WbStatus> {
        Ok(EnrollRequest {
            public_key: self.public_key,
            proof: self.proof,
            device: self.device.message()?,
            capabilities: self.capabilities.message()?,
        })
    }
}

/// Device → gateway: the first message of an enrolled device's session.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbSessionStart {
    pub agent_version: [c_char; WB_NAME_SIZE],
    pub capabilities: WbCapabilities,
    /// How many of `apps` are set, at most `WB_MAX_APPS`.
    pub app_count: usize,
    pub apps: [WbAppStatus; WB_MAX_APPS],
}

impl WbSessionStart {
    pub(crate) fn message(&self) -> Result<SessionStart, WbStatus> {
        Ok(SessionStart {
            agent_version: text_in(&self.agent_version)?,
            capabilities: self.capabilities.message()?,
            apps: apps_in(self.app_count, &self.apps)?,
        })
    }
}

/// Device → gateway: where a deployment stands.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbDeployStatus {
    pub deployment: u64,
    /// A `wb_deploy_state`.
    pub state: u8,
    /// `WB_DEPLOY_STATE_ACCEPTED`: the offset to resume from;
    /// `WB_DEPLOY_STATE_PROGRESS`: the bytes held; otherwise unused.
    pub bytes: u32,
    /// `WB_DEPLOY_STATE_FAILED`: a `wb_deploy_failure`; otherwise unused.
    pub failure: u16,
}

impl WbDeployStatus {
    pub(crate) fn message(&self) -> Result<DeployStatus, WbStatus> {
        use WbDeployState as S;
        let state = match self.state {
            s if s == S::Accepted as u8 => DeployState::Accepted {
                resume_offset: self.bytes,
            },
            s if s == S::Progress as u8 => DeployState::Progress {
                bytes_held: self.bytes,
            },
            s if s == S::Installed as u8 => DeployState::Installed,
            s if s == S::Running as u8 => DeployState::Running,
            s if s == S::Stopped as u8 => DeployState::Stopped,
            s if s == S::Removed as u8 => DeployState::Removed,
            s if s == S::Failed as u8 => DeployState::Failed {
                reason: DeployFailure::from_code(self.failure),
            },
            _ => return Err(WbStatus::InvalidArgument),
        };
        Ok(DeployStatus {
            deployment: DeploymentId(self.deployment),
            state,
        })
    }
}

/// Device → gateway: one invocation of a module finished.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbExecutionResult {
    pub deployment: u64,
    /// Counts invocations of this deployment from 1.
    pub invocation: u32,
    /// Non-zero: the module trapped with `trap_code`, and `values` are
    /// unused. Zero: it returned `values`.
    pub trapped: u8,
    /// A `wb_trap_code`.
    pub trap_code: u16,
    /// How many of `values` are set, at most `WB_MAX_RESULTS`.
    pub value_count: usize,
    pub values: [WbValue; WB_MAX_RESULTS],
    pub fuel_used: u64,
    pub duration_us: u64,
    /// `log_count` NUL-terminated lines the module logged; may be `NULL`
    /// when `log_count` is 0. Lines longer than `WB_LOG_LINE_LEN` bytes
    /// are cut, as is anything from the first byte that is not UTF-8;
    /// lines beyond `WB_MAX_LOG_LINES` are dropped and counted as
    /// truncated.
    pub logs: *const *const c_char,
    pub log_count: usize,
    /// Non-zero: the module logged more lines than `logs` holds.
    pub logs_truncated: u8,
}

impl WbExecutionResult {
    /// # Safety
    ///
    /// `logs` is `NULL` or points to `log_count` pointers, each `NULL` or
    /// a NUL-terminated string.
    pub(crate) unsafe fn message(&self) -> Result<ExecutionResult<'_>, WbStatus> {
        let outcome = if self.trapped != 0 {
            Outcome::Trapped(TrapCode::from_code(self.trap_code))
        } else {
            Outcome::Returned(values_in(self.value_count, &self.values)?)
        };
        let mut logs = heapless::Vec::new();
        if self.log_count > 0 {
            if self.logs.is_null() {
                return Err(WbStatus::NullPointer);
            }
            for i in 0..self.log_count.min(WB_MAX_LOG_LINES) {
                // SAFETY: `logs` holds `log_count` pointers (the caller's
                // contract) and `i < log_count`.
                let line = unsafe { *self.logs.add(i) };
                if line.is_null() {
                    return Err(WbStatus::NullPointer);
                }
                // SAFETY: a non-NULL line is NUL-terminated (the caller's
                // contract).
                let line = unsafe { CStr::from_ptr(line) }.to_bytes();
                let text = match core::str::from_utf8(line) {
                    Ok(text) => text,
                    Err(e) => core::str::from_utf8(&line[..e.valid_up_to()]).unwrap_or(""),
                };
                // Cannot fail: at most WB_MAX_LOG_LINES lines are pushed.
                let _ = logs.push(LogLine::truncated(text));
            }
        }
        Ok(ExecutionResult {
            deployment: DeploymentId(self.deployment),
            invocation: self.invocation,
            outcome,
            fuel_used: self.fuel_used,
            duration_us: self.duration_us,
            logs,
            logs_truncated: self.logs_truncated != 0 || self.log_count > WB_MAX_LOG_LINES,
        })
    }
}

/// Either direction: something went wrong.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbErrorMessage {
    /// A `wb_error_code`.
    pub code: u16,
    /// Human-readable detail for logs; empty when there is none.
    pub detail: [c_char; WB_DETAIL_SIZE],
}

impl WbErrorMessage {
    pub(crate) fn message(&self) -> Result<ErrorMessage, WbStatus> {
        let detail: heapless::String<DETAIL_LEN> = text_in(&self.detail)?;
        Ok(ErrorMessage {
            code: ErrorCode::from_code(self.code),
            detail: (!detail.is_empty()).then_some(detail),
        })
    }

    pub(crate) fn from_message(error: &ErrorMessage) -> WbErrorMessage {
        WbErrorMessage {
            code: error.code.code(),
            detail: text_out(error.detail.as_deref().unwrap_or("")),
        }
    }
}

// --------------------------------------------------- gateway messages ----

/// Gateway → device: the nonce the enrollment proof signs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbEnrollChallenge {
    pub nonce: [u8; WB_NONCE_LEN],
}

/// Gateway → device: enrolled. Store the id and the certificate (DER);
/// `certificate` points into the decoded buffer or the session.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbEnrolled {
    pub device_id: [u8; WB_DEVICE_ID_LEN],
    pub certificate: *const u8,
    pub certificate_len: usize,
}

/// Gateway → device: the session is open.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbSessionAccept {
    pub device_id: [u8; WB_DEVICE_ID_LEN],
    /// The gateway's Unix time, in milliseconds.
    pub server_time_ms: u64,
    /// Send a heartbeat at least this often.
    pub heartbeat_interval_ms: u32,
}

impl WbSessionAccept {
    pub(crate) fn from_message(accept: &SessionAccept) -> WbSessionAccept {
        WbSessionAccept {
            device_id: accept.device_id.0,
            server_time_ms: accept.server_time.0,
            heartbeat_interval_ms: accept.heartbeat_interval_ms,
        }
    }
}

/// Gateway → device: heartbeat received.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbHeartbeatAck {
    pub server_time_ms: u64,
    /// Send the next heartbeat within this many milliseconds.
    pub next_interval_ms: u32,
}

impl WbHeartbeatAck {
    pub(crate) fn from_message(ack: &HeartbeatAck) -> WbHeartbeatAck {
        WbHeartbeatAck {
            server_time_ms: ack.server_time.0,
            next_interval_ms: ack.next_interval_ms,
        }
    }
}

/// What a module may consume and how it is started.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbLimits {
    /// Fuel per invocation.
    pub fuel: u64,
    /// Largest linear memory, in 64 KiB pages.
    pub memory_pages: u16,
    /// Exported function to call, NUL-terminated.
    pub entry: [c_char; WB_ENTRY_SIZE],
    /// How many of `args` are set.
    pub arg_count: usize,
    pub args: [WbValue; WB_MAX_ARGS],
}

/// Gateway → device: a module is coming.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbDeployStart {
    pub deployment: u64,
    pub application: u64,
    /// Size of the whole module, in bytes.
    pub module_size: u32,
    pub sha256: [u8; WB_SHA256_LEN],
    /// Size of every chunk but the last.
    pub chunk_size: u16,
    pub limits: WbLimits,
}

impl WbDeployStart {
    pub(crate) fn from_message(start: &DeployStart) -> WbDeployStart {
        WbDeployStart {
            deployment: start.deployment.0,
            application: start.application.0,
            module_size: start.module_size,
            sha256: start.sha256,
            chunk_size: start.chunk_size,
            limits: WbLimits::from_limits(&start.limits),
        }
    }
}

impl WbLimits {
    pub fn from_limits(limits: &Limits) -> WbLimits {
        let (arg_count, args) = values_out(&limits.args);
        WbLimits {
            fuel: limits.fuel,
            memory_pages: limits.memory_pages,
            entry: text_out(&limits.entry),
            arg_count,
            args,
        }
    }
}

/// Gateway → device: part of a module; `data` points into the decoded
/// buffer or the session.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbDeployChunk {
    pub deployment: u64,
    /// Where `data` starts in the module.
    pub offset: u32,
    pub data: *const u8,
    pub data_len: usize,
}

impl WbDeployChunk {
    pub(crate) fn from_message(chunk: &DeployChunk<'_>) -> WbDeployChunk {
        WbDeployChunk {
            deployment: chunk.deployment.0,
            offset: chunk.offset,
            data: chunk.data.as_ptr(),
            data_len: chunk.data.len(),
        }
    }
}

// ------------------------------------------------------- session close ----

/// How a session ended (`wb_close_reason.kind`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbCloseKind {
    /// The gateway said goodbye with `goodbye_reason`.
    PeerGoodbye = 0,
    /// This side said goodbye with `goodbye_reason`.
    LocalGoodbye = 1,
    /// The gateway broke the protocol: it was told `error_code`, and
    /// `violation` says what was wrong.
    ProtocolViolation = 2,
    /// The gateway did not answer in time.
    Timeout = 3,
}

/// Why a session ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbCloseReason {
    pub kind: WbCloseKind,
    /// A `wb_goodbye_reason`, for the goodbye kinds.
    pub goodbye_reason: u16,
    /// A `wb_error_code`, for `WB_CLOSE_KIND_PROTOCOL_VIOLATION`.
    pub error_code: u16,
    /// For `WB_CLOSE_KIND_PROTOCOL_VIOLATION`: the decoding or framing
    /// error, or `WB_STATUS_UNEXPECTED_MESSAGE`; `WB_STATUS_OK` otherwise.
    pub violation: WbStatus,
}

impl WbCloseReason {
    pub(crate) fn from_message(reason: CloseReason) -> WbCloseReason {
        let mut out = WbCloseReason {
            kind: WbCloseKind::Timeout,
            goodbye_reason: 0,
            error_code: 0,
            violation: WbStatus::Ok,
        };
        match reason {
            CloseReason::PeerGoodbye(r) => {
                out.kind = WbCloseKind::PeerGoodbye;
                out.goodbye_reason = r.code();
            }
            CloseReason::LocalGoodbye(r) => {
                out.kind = WbCloseKind::LocalGoodbye;
                out.goodbye_reason = r.code();
            }
            CloseReason::ProtocolViolation(v) => {
                out.kind = WbCloseKind::ProtocolViolation;
                out.error_code = v.code().code();
                out.violation = match v {
                    Violation::Decode(e) => e.into(),
                    Violation::Frame(e) => e.into(),
                    Violation::Unexpected { .. } => WbStatus::UnexpectedMessage,
                    Violation::MessageId { .. } => WbStatus::BadMessageId,
                    Violation::RateLimited { .. } => WbStatus::RateLimited,
                };
            }
            CloseReason::Timeout => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_need_a_nul_and_utf8() {
        let mut field = [b'x' as c_char; WB_NAME_SIZE];
        assert_eq!(
            text_in::<NAME_LEN, WB_NAME_SIZE>(&field),
            Err(WbStatus::InvalidArgument)
        );
        field[NAME_LEN] = 0;
        assert_eq!(
            text_in::<NAME_LEN, WB_NAME_SIZE>(&field).map(|s| s.len()),
            Ok(NAME_LEN)
        );
        field[0] = 0xff_u8 as c_char;
        assert_eq!(
            text_in::<NAME_LEN, WB_NAME_SIZE>(&field),
            Err(WbStatus::InvalidArgument)
        );
        let out: [c_char; WB_NAME_SIZE] = text_out("héllo");
        let back: Result<Name, _> = text_in(&out);
        assert_eq!(back.as_deref(), Ok("héllo"));
    }

    #[test]
    fn values_round_trip() {
        for value in [
            Value::I32(-7),
            Value::I64(i64::MIN),
            Value::F32(1.5),
            Value::F64(-0.25),
        ] {
            assert_eq!(WbValue::from_message(value).message(), Ok(value));
        }
        let bad = WbValue {
            kind: 4,
            ..WbValue::ZERO
        };
        assert_eq!(bad.message(), Err(WbStatus::InvalidArgument));
    }

    #[test]
    fn counts_beyond_the_arrays_are_refused() {
        let heartbeat = WbHeartbeat {
            uptime_ms: 1,
            free_memory: 2,
            app_count: WB_MAX_APPS + 1,
            apps: [NO_APP; WB_MAX_APPS],
        };
        assert_eq!(heartbeat.message(), Err(WbStatus::InvalidArgument));
    }
}
