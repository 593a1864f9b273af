//! The device's end of a session, in storage the C side provides.

use core::ffi::c_void;
use core::fmt;
use core::mem::{align_of, size_of};

use wasmbed_protocol::frame::MAX_FRAME_LEN;
use wasmbed_protocol::session::{DeviceConfig, DeviceEvent, DeviceSession};
use wasmbed_protocol::*;

use crate::raw::{bytes, get, get_mut, put};
use crate::status::status;
use crate::types::*;
use crate::{WB_MIN_FRAME_LEN, WbStatus};

/// The device's end of one connection, in storage the caller provides
/// (see `wb_device_session_init_enroll`). Opaque. A session is driven like
/// this:
///
/// ```c
/// static _Alignas(WB_DEVICE_SESSION_ALIGN) uint8_t storage[WB_DEVICE_SESSION_SIZE];
/// wb_device_session *s;
/// wb_device_config config = wb_device_config_default();
/// wb_device_session_init_resume(storage, sizeof storage, &config, &hello, now_ms(), &s);
/// for (;;) {
///     // 1. feed received bytes (repeat while some are left over)
///     wb_device_session_input(s, rx, rx_len, now_ms(), &taken);
///     // 2. react to every event
///     wb_device_event ev;
///     while (wb_device_session_poll_event(s, &ev)) { ... }
///     // 3. send what is pending
///     wb_device_session_transmit(s, &data, &len);
///     wb_device_session_advance(s, tls_write(data, len));
///     // 4. wait for input or the deadline, then
///     if (wb_device_session_timeout(s, &deadline) && now_ms() >= deadline)
///         wb_device_session_handle_timeout(s, now_ms());
/// }
/// ```
#[derive(Debug)]
pub struct WbDeviceSession {
    inner: DeviceSession,
}

/// Bytes of storage a session needs, on every supported target: the size
/// on 64-bit hosts (`thumbv7m-none-eabi` needs 8304).
pub const WB_DEVICE_SESSION_SIZE: usize = 8360;
/// Alignment the session's storage needs.
pub const WB_DEVICE_SESSION_ALIGN: usize = 8;

const _: () = assert!(
    size_of::<WbDeviceSession>() <= WB_DEVICE_SESSION_SIZE,
    "DeviceSession grew: raise WB_DEVICE_SESSION_SIZE and run `cargo xtask ffi-header`"
);
const _: () = assert!(
    align_of::<WbDeviceSession>() <= WB_DEVICE_SESSION_ALIGN,
    "DeviceSession's alignment grew: raise WB_DEVICE_SESSION_ALIGN and run `cargo xtask ffi-header`"
);

/// Timing and size settings of a device session.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WbDeviceConfig {
    /// Largest frame body accepted or sent, from `WB_MIN_FRAME_LEN` to
    /// `WB_MAX_FRAME_LEN`.
    pub max_frame_len: usize,
    /// How long to wait for the gateway to answer a request (challenge,
    /// enrollment, session start, heartbeat acknowledgement); not 0.
    pub response_timeout_ms: u32,
}

impl WbDeviceConfig {
    fn to_config(self) -> Result<DeviceConfig, WbStatus> {
        let frame_ok = (WB_MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&self.max_frame_len);
        if !frame_ok || self.response_timeout_ms == 0 {
            return Err(WbStatus::InvalidArgument);
        }
        Ok(DeviceConfig {
            max_frame_len: self.max_frame_len,
            response_timeout_ms: self.response_timeout_ms,
        })
    }
}

/// The default settings: frames up to `WB_MAX_FRAME_LEN` bytes, 10 s to
/// answer.
#[unsafe(no_mangle)]
pub extern "C" fn wb_device_config_default() -> WbDeviceConfig {
    let config = DeviceConfig::default();
    WbDeviceConfig {
        max_frame_len: config.max_frame_len,
        response_timeout_ms: config.response_timeout_ms,
    }
}

/// Checks the arguments of an init function, then writes the session made
/// by `make` into `storage` and its address to `*out`.
///
/// `make` returns the session itself, not a `Result`, so that the
/// optimizer can build it straight into `storage`. It does for `enroll`;
/// `resume` is not inlined, and its result is copied from the stack.
///
/// # Safety
///
/// `storage` is valid for writes of `storage_len` bytes and not used
/// otherwise while the session lives; `config` is valid for reads; `out`
/// for a write.
unsafe fn init(
    storage: *mut c_void,
    storage_len: usize,
    config: *const WbDeviceConfig,
    out: *mut *mut WbDeviceSession,
    make: impl FnOnce(DeviceConfig) -> DeviceSession,
) -> WbStatus {
    status((|| {
        // SAFETY: `out` is valid for a write (the caller's contract).
        unsafe { put(out, core::ptr::null_mut())? };
        if storage.is_null() {
            return Err(WbStatus::NullPointer);
        }
        let session = storage.cast::<WbDeviceSession>();
        if storage_len < size_of::<WbDeviceSession>() || !session.is_aligned() {
            return Err(WbStatus::BadStorage);
        }
        // SAFETY: `config` is valid for reads (the caller's contract).
        let config = unsafe { get(config)? }.to_config()?;
        // SAFETY: `storage` is large enough and aligned (checked above) and
        // valid for writes (the caller's contract). Whatever it held is
        // overwritten without being dropped; a session owns no resources.
        unsafe {
            session.write(WbDeviceSession {
                inner: make(config),
            })
        };
        // SAFETY: as for the first write to `out`.
        unsafe { put(out, session) }
    })())
}

/// Starts the session of a device without an identity, connected with the
/// claim certificate: it waits for the gateway's challenge
/// (`WB_DEVICE_EVENT_ENROLL_CHALLENGE`).
///
/// `storage` must hold `WB_DEVICE_SESSION_SIZE` bytes aligned to
/// `WB_DEVICE_SESSION_ALIGN` (else `WB_STATUS_BAD_STORAGE`), and stays in
/// use until the session is no longer needed; initializing it again starts
/// a new session. `*out` receives the session (`NULL` on failure).
/// `now_ms` is the device's monotonic clock, as for every call below.
///
/// # Safety
///
/// `storage` is valid for writes of `storage_len` bytes and not accessed
/// otherwise while the session is used; `config` is valid for reads; `out`
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_init_enroll(
    storage: *mut c_void,
    storage_len: usize,
    config: *const WbDeviceConfig,
    now_ms: u64,
    out: *mut *mut WbDeviceSession,
) -> WbStatus {
    let make = |config| DeviceSession::enroll(config, Millis(now_ms));
    // SAFETY: the caller's contract.
    unsafe { init(storage, storage_len, config, out, make) }
}

/// Starts the session of an enrolled device: `hello` is queued for
/// transmission, and the session waits for `WB_DEVICE_EVENT_ESTABLISHED`.
///
/// As `wb_device_session_init_enroll` otherwise, but for its stack: the
/// protocol crate builds a resumed session on the stack and returns it by
/// value, so this call needs about 18 KiB of stack on Cortex-M (twice the
/// session's size), where `wb_device_session_init_enroll` builds in place.
/// Call it from a thread with a stack that large.
///
/// # Safety
///
/// As `wb_device_session_init_enroll`; `hello` is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_init_resume(
    storage: *mut c_void,
    storage_len: usize,
    config: *const WbDeviceConfig,
    hello: *const WbSessionStart,
    now_ms: u64,
    out: *mut *mut WbDeviceSession,
) -> WbStatus {
    // SAFETY: `hello` is valid for reads (the caller's contract).
    let hello = match unsafe { get(hello) }.and_then(WbSessionStart::message) {
        Ok(hello) => hello,
        Err(e) => {
            // SAFETY: `out` is NULL or valid for a write (the caller's
            // contract).
            unsafe { crate::raw::put_opt(out, core::ptr::null_mut()) };
            return e;
        }
    };
    let make = |config| DeviceSession::resume(config, &hello, Millis(now_ms));
    // SAFETY: the caller's contract.
    unsafe { init(storage, storage_len, config, out, make) }
}

/// Feeds `len` bytes received from the gateway, and writes how many were
/// taken to `*taken`. When fewer than `len`, drain the events with
/// `wb_device_session_poll_event` and feed the rest again.
///
/// # Safety
///
/// `session` is an initialized session; `data` is valid for reads of `len`
/// bytes (or `NULL` with `len` 0); `taken` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_input(
    session: *mut WbDeviceSession,
    data: *const u8,
    len: usize,
    now_ms: u64,
    taken: *mut usize,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (session, data) = unsafe { (get_mut(session)?, bytes(data, len)?) };
        let n = session.inner.handle_input(data, Millis(now_ms));
        // SAFETY: the caller's contract.
        unsafe { put(taken, n) }
    })())
}

/// Kinds of session events (`wb_device_event.kind`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbDeviceEventKind {
    /// `data.enroll_challenge`: sign `wb_proof_payload` with the device key
    /// and answer with `wb_device_session_send_enroll_request`.
    EnrollChallenge = 0,
    /// `data.enrolled`: store the id and certificate; the gateway closes
    /// the session next.
    Enrolled = 1,
    /// `data.enroll_refused`, a `wb_enroll_refusal`.
    EnrollRefused = 2,
    /// `data.established`: the session is open; heartbeats follow.
    Established = 3,
    /// Time to call `wb_device_session_send_heartbeat`.
    HeartbeatDue = 4,
    /// `data.heartbeat_acked`.
    HeartbeatAcked = 5,
    /// `data.deploy_start`: a module is coming.
    DeployStart = 6,
    /// `data.deploy_chunk`: part of a module.
    DeployChunk = 7,
    /// `data.deployment`: all chunks sent; verify and install.
    DeployCommit = 8,
    /// `data.deployment`: stop the application (it stays installed).
    Stop = 9,
    /// `data.deployment`: stop the application and free its slot.
    Remove = 10,
    /// `data.peer_error`: the gateway reported an error; the session goes
    /// on unless it closes.
    PeerError = 11,
    /// `data.closed`: the session is over. Transmit what is pending, close
    /// the connection, and reconnect (with backoff) if appropriate.
    Closed = 12,
}

/// The contents of a `wb_device_event`; `kind` says which member is set.
#[repr(C)]
#[derive(Clone, Copy)]
pub union WbDeviceEventData {
    pub enroll_challenge: WbEnrollChallenge,
    pub enrolled: WbEnrolled,
    pub enroll_refused: u16,
    pub established: WbSessionAccept,
    pub heartbeat_acked: WbHeartbeatAck,
    pub deploy_start: WbDeployStart,
    pub deploy_chunk: WbDeployChunk,
    pub deployment: u64,
    pub peer_error: WbErrorMessage,
    pub closed: WbCloseReason,
}

impl fmt::Debug for WbDeviceEventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WbDeviceEventData { .. }")
    }
}

/// What the device must react to. Pointers in it (certificate, chunk data)
/// point into the session and are valid until the next call on it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbDeviceEvent {
    pub kind: WbDeviceEventKind,
    pub data: WbDeviceEventData,
}

impl WbDeviceEvent {
    fn from_event(event: &DeviceEvent<'_>) -> WbDeviceEvent {
        use WbDeviceEventKind as K;
        let mut data = WbDeviceEventData { deployment: 0 };
        let kind = match event {
            DeviceEvent::EnrollChallenge { nonce } => {
                data.enroll_challenge = WbEnrollChallenge { nonce: *nonce };
                K::EnrollChallenge
            }
            DeviceEvent::Enrolled {
                device_id,
                certificate,
            } => {
                data.enrolled = WbEnrolled {
                    device_id: device_id.0,
                    certificate: certificate.as_ptr(),
                    certificate_len: certificate.len(),
                };
                K::Enrolled
            }
            DeviceEvent::EnrollRefused { reason } => {
                data.enroll_refused = reason.code();
                K::EnrollRefused
            }
            DeviceEvent::Established(accept) => {
                data.established = WbSessionAccept::from_message(accept);
                K::Established
            }
            DeviceEvent::HeartbeatDue => K::HeartbeatDue,
            DeviceEvent::HeartbeatAcked(ack) => {
                data.heartbeat_acked = WbHeartbeatAck::from_message(ack);
                K::HeartbeatAcked
            }
            DeviceEvent::DeployStart(start) => {
                data.deploy_start = WbDeployStart::from_message(start);
                K::DeployStart
            }
            DeviceEvent::DeployChunk(chunk) => {
                data.deploy_chunk = WbDeployChunk::from_message(chunk);
                K::DeployChunk
            }
            DeviceEvent::DeployCommit(id) => {
                data.deployment = id.0;
                K::DeployCommit
            }
            DeviceEvent::Stop(id) => {
                data.deployment = id.0;
                K::Stop
            }
            DeviceEvent::Remove(id) => {
                data.deployment = id.0;
                K::Remove
            }
            DeviceEvent::PeerError(error) => {
                data.peer_error = WbErrorMessage::from_message(error);
                K::PeerError
            }
            DeviceEvent::Closed(reason) => {
                data.closed = WbCloseReason::from_message(*reason);
                K::Closed
            }
        };
        WbDeviceEvent { kind, data }
    }
}

/// Writes the next event to `*out` and returns true, or returns false when
/// there is none (or an argument is `NULL`). Call until it returns false
/// after every input and timeout.
///
/// # Safety
///
/// `session` is an initialized session; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_poll_event(
    session: *mut WbDeviceSession,
    out: *mut WbDeviceEvent,
) -> bool {
    if out.is_null() {
        return false;
    }
    // SAFETY: the caller's contract.
    let Ok(session) = (unsafe { get_mut(session) }) else {
        return false;
    };
    let Some(event) = session.inner.poll_event() else {
        return false;
    };
    // SAFETY: the caller's contract; `out` is not NULL (checked above).
    unsafe { put(out, WbDeviceEvent::from_event(&event)) }.is_ok()
}

/// Points `*data` at the bytes to write to the transport and writes their
/// number to `*len` (0 when nothing is pending). The bytes stay valid until
/// the next call on the session; report what was written with
/// `wb_device_session_advance`.
///
/// # Safety
///
/// `session` is an initialized session; `data` and `len` are valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_transmit(
    session: *const WbDeviceSession,
    data: *mut *const u8,
    len: *mut usize,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let pending = unsafe { get(session)? }.inner.poll_transmit();
        // SAFETY: the caller's contract.
        unsafe {
            put(data, pending.as_ptr())?;
            put(len, pending.len())
        }
    })())
}

/// Reports that the first `n` bytes of `wb_device_session_transmit` were
/// written to the transport. More than are pending is
/// `WB_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
///
/// `session` is an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_advance(
    session: *mut WbDeviceSession,
    n: usize,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let session = unsafe { get_mut(session)? };
        if n > session.inner.poll_transmit().len() {
            return Err(WbStatus::InvalidArgument);
        }
        session.inner.advance_transmit(n);
        Ok(())
    })())
}

/// Writes when `wb_device_session_handle_timeout` must be called next to
/// `*deadline_ms` and returns true; returns false when never (the session
/// is closed) or an argument is `NULL`.
///
/// # Safety
///
/// `session` is an initialized session; `deadline_ms` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_timeout(
    session: *const WbDeviceSession,
    deadline_ms: *mut u64,
) -> bool {
    // SAFETY: the caller's contract.
    let Ok(session) = (unsafe { get(session) }) else {
        return false;
    };
    let Some(deadline) = session.inner.poll_timeout() else {
        return false;
    };
    // SAFETY: the caller's contract.
    unsafe { put(deadline_ms, deadline.0) }.is_ok()
}

/// Advances the session's clock to `now_ms`; may produce events (a due
/// heartbeat, a timeout).
///
/// # Safety
///
/// `session` is an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_handle_timeout(
    session: *mut WbDeviceSession,
    now_ms: u64,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        unsafe { get_mut(session)? }
            .inner
            .handle_timeout(Millis(now_ms));
        Ok(())
    })())
}

/// Answers the gateway's challenge (after `WB_DEVICE_EVENT_ENROLL_CHALLENGE`).
///
/// # Safety
///
/// `session` is an initialized session; `request` is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_send_enroll_request(
    session: *mut WbDeviceSession,
    request: *const WbEnrollRequest,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (session, request) = unsafe { (get_mut(session)?, get(request)?) };
        let request = request.message()?;
        Ok(session.inner.send_enroll_request(&request)?)
    })())
}

/// Sends a heartbeat (after `WB_DEVICE_EVENT_HEARTBEAT_DUE`, or earlier)
/// and schedules the next one.
///
/// # Safety
///
/// `session` is an initialized session; `heartbeat` is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_send_heartbeat(
    session: *mut WbDeviceSession,
    heartbeat: *const WbHeartbeat,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (session, heartbeat) = unsafe { (get_mut(session)?, get(heartbeat)?) };
        let heartbeat = heartbeat.message()?;
        Ok(session.inner.send_heartbeat(&heartbeat)?)
    })())
}

/// Reports where a deployment stands.
///
/// # Safety
///
/// `session` is an initialized session; `message` is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_send_deploy_status(
    session: *mut WbDeviceSession,
    message: *const WbDeployStatus,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (session, message) = unsafe { (get_mut(session)?, get(message)?) };
        let message = message.message()?;
        Ok(session.inner.send_deploy_status(message)?)
    })())
}

/// Reports the result of an invocation.
///
/// # Safety
///
/// `session` is an initialized session; `message` is valid for reads, and
/// so are its `logs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_send_execution_result(
    session: *mut WbDeviceSession,
    message: *const WbExecutionResult,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract, for both pointers and the logs.
        let (session, message) = unsafe { (get_mut(session)?, get(message)?.message()?) };
        Ok(session.inner.send_execution_result(&message)?)
    })())
}

/// Tells the gateway something went wrong on the device.
///
/// # Safety
///
/// `session` is an initialized session; `message` is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_send_error(
    session: *mut WbDeviceSession,
    message: *const WbErrorMessage,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (session, message) = unsafe { (get_mut(session)?, get(message)?) };
        let message = message.message()?;
        Ok(session.inner.send_error(&message)?)
    })())
}

/// Says goodbye with `reason` (a `wb_goodbye_reason`) and ends the session.
/// A `WB_DEVICE_EVENT_CLOSED` follows; transmit what is pending before
/// closing the connection. Closing a closed session does nothing.
///
/// # Safety
///
/// `session` is an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_close(
    session: *mut WbDeviceSession,
    reason: u16,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        unsafe { get_mut(session)? }
            .inner
            .close(GoodbyeReason::from_code(reason));
        Ok(())
    })())
}

/// Whether the session is over (true for `NULL`): close the connection
/// once nothing is left to transmit.
///
/// # Safety
///
/// `session` is `NULL` or an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_is_closed(session: *const WbDeviceSession) -> bool {
    // SAFETY: the caller's contract.
    unsafe { get(session) }.map_or(true, |s| s.inner.is_closed())
}

/// Whether the session is established: heartbeats and deployments flow
/// (false for `NULL`).
///
/// # Safety
///
/// `session` is `NULL` or an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_is_established(session: *const WbDeviceSession) -> bool {
    // SAFETY: the caller's contract.
    unsafe { get(session) }.is_ok_and(|s| s.inner.is_established())
}

/// Received bytes not yet turned into events (0 for `NULL`).
///
/// # Safety
///
/// `session` is `NULL` or an initialized session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_device_session_buffered_input(
    session: *const WbDeviceSession,
) -> usize {
    // SAFETY: the caller's contract.
    unsafe { get(session) }.map_or(0, |s| s.inner.buffered_input())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resume` must be able to queue any session start, which it can not
    /// report failing to: the smallest frame limit allowed fits the largest
    /// one, and the largest enrollment request and heartbeat.
    #[test]
    fn the_smallest_frame_fits_the_largest_hello() {
        let name = || Name::try_from("x".repeat(NAME_LEN).as_str()).unwrap_or_default();
        let capabilities = Capabilities {
            runtime: RuntimeKind::Unknown(u16::MAX),
            runtime_version: name(),
            max_module_size: u32::MAX,
            app_memory: u32::MAX,
            app_slots: u8::MAX,
        };
        let app = AppStatus {
            deployment: DeploymentId(u64::MAX),
            application: ApplicationId(u64::MAX),
            state: AppState::Unknown(u16::MAX),
        };
        let apps = AppList::from_slice(&[app; MAX_APPS]).unwrap_or_default();
        assert_eq!(apps.len(), MAX_APPS);
        let largest = [
            Uplink::SessionStart(SessionStart {
                agent_version: name(),
                capabilities: capabilities.clone(),
                apps: apps.clone(),
            }),
            Uplink::EnrollRequest(EnrollRequest {
                public_key: [0xff; PUBLIC_KEY_LEN],
                proof: [0xff; SIGNATURE_LEN],
                device: DeviceInfo {
                    board: name(),
                    firmware_version: name(),
                },
                capabilities,
            }),
            Uplink::Heartbeat(Heartbeat {
                uptime: Millis(u64::MAX),
                free_memory: u32::MAX,
                apps,
            }),
        ];
        for message in largest {
            let mut out = [0u8; 2 * WB_MIN_FRAME_LEN];
            let envelope = Envelope::new(u32::MAX, message);
            let len = codec::encode(&envelope, &mut out);
            assert!(
                len.is_ok_and(|len| len <= WB_MIN_FRAME_LEN),
                "{} takes {len:?} bytes",
                envelope.body.kind()
            );
        }
    }

    /// The header's size is the 64-bit one exactly, so that it neither
    /// wastes memory nor hides a change of the session's layout.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn storage_size_is_tight() {
        assert_eq!(
            size_of::<WbDeviceSession>(),
            WB_DEVICE_SESSION_SIZE,
            "set WB_DEVICE_SESSION_SIZE to the session's size and run `cargo xtask ffi-header`"
        );
    }
}
