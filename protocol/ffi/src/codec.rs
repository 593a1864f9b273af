//! Messages to and from frames, without a session: `wb_frame_find`, the
//! `wb_encode_*` functions for the device's messages, and the decoders.

use core::fmt;

use wasmbed_protocol::frame::{self, HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::*;

use crate::raw::{bytes, bytes_mut, get, put, put_opt};
use crate::status::status;
use crate::types::*;
use crate::{WB_NONCE_LEN, WB_PROOF_PAYLOAD_LEN, WB_PUBLIC_KEY_LEN, WbStatus};

/// Finds the first frame in `buf`, a stream of received bytes.
///
/// Returns `WB_STATUS_OK` with the body at `buf + *body_off`, `*body_len`
/// bytes long; the frame ends at `*body_off + *body_len`. Returns
/// `WB_STATUS_NEED_MORE` while the frame is incomplete, with `*body_len`
/// the announced length once the header is in (0 before). Returns
/// `WB_STATUS_FRAME_TOO_LARGE` for a header announcing more than
/// `max_len` bytes (the connection should be dropped: the stream can not
/// be resynchronized), `WB_STATUS_EMPTY_FRAME` for an empty one.
///
/// # Safety
///
/// `buf` is valid for reads of `len` bytes (or `NULL` with `len` 0);
/// `body_off` and `body_len` are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_frame_find(
    buf: *const u8,
    len: usize,
    max_len: usize,
    body_off: *mut usize,
    body_len: *mut usize,
) -> WbStatus {
    if body_off.is_null() || body_len.is_null() {
        return WbStatus::NullPointer;
    }
    // SAFETY: both checked non-NULL above, valid for writes (the caller's
    // contract).
    unsafe {
        put_opt(body_off, 0);
        put_opt(body_len, 0);
    }
    // SAFETY: the caller's contract for `buf`.
    let stream = match unsafe { bytes(buf, len) } {
        Ok(stream) => stream,
        Err(e) => return e,
    };
    match frame::find_frame(stream, max_len) {
        Ok(Some(body)) => {
            // SAFETY: as above.
            unsafe {
                put_opt(body_off, body.start);
                put_opt(body_len, body.len());
            }
            WbStatus::Ok
        }
        Ok(None) => {
            if let Some(header) = stream.first_chunk::<HEADER_LEN>() {
                let declared = u32::from_be_bytes(*header) as usize;
                // SAFETY: as above.
                unsafe { put_opt(body_len, declared) };
            }
            WbStatus::NeedMore
        }
        Err(e) => e.into(),
    }
}

/// Encodes `body` as one whole frame into `out`.
///
/// # Safety
///
/// `out` is valid for writes of `cap` bytes; `written` for a write.
unsafe fn encode_frame<'a>(
    body: impl FnOnce() -> Result<Uplink<'a>, WbStatus>,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    // SAFETY: `written` is valid for writes (the caller's contract).
    if let Err(e) = unsafe { put(written, 0) } {
        return e;
    }
    status((|| {
        let body = body()?;
        // SAFETY: the caller's contract for `out`.
        let out = unsafe { bytes_mut(out, cap) }?;
        let n = frame::encode_frame(&Envelope::new(msg_id, body), out, MAX_FRAME_LEN)?;
        // SAFETY: as above.
        unsafe { put(written, n) }
    })())
}

/// Encodes a heartbeat.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads; `out` for writes of `cap` bytes;
/// `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_heartbeat(
    message: *const WbHeartbeat,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` is valid for reads (the caller's contract).
        let message = unsafe { get(message) }?;
        Ok(Uplink::Heartbeat(message.message()?))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes an enrollment request.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads; `out` for writes of `cap` bytes;
/// `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_enroll_request(
    message: *const WbEnrollRequest,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` is valid for reads (the caller's contract).
        let message = unsafe { get(message) }?;
        Ok(Uplink::EnrollRequest(message.message()?))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes a session start.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads; `out` for writes of `cap` bytes;
/// `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_session_start(
    message: *const WbSessionStart,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` is valid for reads (the caller's contract).
        let message = unsafe { get(message) }?;
        Ok(Uplink::SessionStart(message.message()?))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes a deployment's status.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads; `out` for writes of `cap` bytes;
/// `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_deploy_status(
    message: *const WbDeployStatus,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` is valid for reads (the caller's contract).
        let message = unsafe { get(message) }?;
        Ok(Uplink::DeployStatus(message.message()?))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes an error report.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads; `out` for writes of `cap` bytes;
/// `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_error(
    message: *const WbErrorMessage,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` is valid for reads (the caller's contract).
        let message = unsafe { get(message) }?;
        Ok(Uplink::Error(message.message()?))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes an execution result.
///
/// Writes one whole frame (header and body) with message id `msg_id` into
/// `out`, and its length to `*written` (0 on failure). Returns
/// `WB_STATUS_BUFFER_TOO_SMALL` when `cap` bytes are too few;
/// `WB_MAX_FRAME_LEN + WB_FRAME_HEADER_LEN` always suffice.
///
/// # Safety
///
/// `message` is valid for reads, and so are its `logs`; `out` is valid for
/// writes of `cap` bytes; `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_execution_result(
    message: *const WbExecutionResult,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        // SAFETY: `message` and its logs are valid for reads (the caller's
        // contract).
        let result = unsafe { get(message)?.message()? };
        Ok(Uplink::ExecutionResult(result))
    };
    // SAFETY: the caller's contract for `out` and `written`.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Encodes a goodbye with `reason`, a `wb_goodbye_reason`.
///
/// Writes one whole frame with message id `msg_id` into `out`, and its
/// length to `*written` (0 on failure).
///
/// # Safety
///
/// `out` is valid for writes of `cap` bytes; `written` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_encode_goodbye(
    reason: u16,
    msg_id: u32,
    out: *mut u8,
    cap: usize,
    written: *mut usize,
) -> WbStatus {
    let body = || {
        Ok(Uplink::Goodbye(Goodbye {
            reason: GoodbyeReason::from_code(reason),
        }))
    };
    // SAFETY: the caller's contract.
    unsafe { encode_frame(body, msg_id, out, cap, written) }
}

/// Decodes a frame body (as `wb_frame_find` finds it) holding a heartbeat,
/// and its message id into `*msg_id` unless that is `NULL`.
///
/// Returns `WB_STATUS_UNEXPECTED_MESSAGE` for another valid device message.
/// Devices do not receive heartbeats: this is for tests and tools.
///
/// # Safety
///
/// `body` is valid for reads of `len` bytes; `out` for a write; `msg_id`
/// is `NULL` or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_decode_heartbeat(
    body: *const u8,
    len: usize,
    out: *mut WbHeartbeat,
    msg_id: *mut u32,
) -> WbStatus {
    status((|| {
        if out.is_null() {
            return Err(WbStatus::NullPointer);
        }
        // SAFETY: the caller's contract for `body`.
        let envelope = codec::decode_uplink(unsafe { bytes(body, len) }?)?;
        let Uplink::Heartbeat(heartbeat) = &envelope.body else {
            return Err(WbStatus::UnexpectedMessage);
        };
        // SAFETY: the caller's contract for `out` and `msg_id`.
        unsafe {
            put(out, WbHeartbeat::from_message(heartbeat))?;
            put_opt(msg_id, envelope.id);
        }
        Ok(())
    })())
}

/// Kinds of gateway messages (`wb_downlink.kind`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbDownlinkKind {
    /// `data.enroll_challenge`.
    EnrollChallenge = 0,
    /// `data.enroll_accepted`.
    EnrollAccepted = 1,
    /// `data.enroll_refused`, a `wb_enroll_refusal`.
    EnrollRefused = 2,
    /// `data.session_accept`.
    SessionAccept = 3,
    /// `data.heartbeat_ack`.
    HeartbeatAck = 4,
    /// `data.deploy_start`.
    DeployStart = 5,
    /// `data.deploy_chunk`.
    DeployChunk = 6,
    /// `data.deployment`: all chunks sent; verify and install.
    DeployCommit = 7,
    /// `data.deployment`: stop the application (it stays installed).
    Stop = 8,
    /// `data.deployment`: stop the application and free its slot.
    Remove = 9,
    /// `data.error`.
    Error = 10,
    /// `data.goodbye`, a `wb_goodbye_reason`.
    Goodbye = 11,
}

/// The contents of a `wb_downlink`; `kind` says which member is set.
#[repr(C)]
#[derive(Clone, Copy)]
pub union WbDownlinkData {
    pub enroll_challenge: WbEnrollChallenge,
    pub enroll_accepted: WbEnrolled,
    pub enroll_refused: u16,
    pub session_accept: WbSessionAccept,
    pub heartbeat_ack: WbHeartbeatAck,
    pub deploy_start: WbDeployStart,
    pub deploy_chunk: WbDeployChunk,
    pub deployment: u64,
    pub error: WbErrorMessage,
    pub goodbye: u16,
}

impl fmt::Debug for WbDownlinkData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WbDownlinkData { .. }")
    }
}

/// A decoded gateway message.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbDownlink {
    pub kind: WbDownlinkKind,
    /// The message's id.
    pub id: u32,
    /// Whether the message answers the device's message `reply_to`.
    pub has_reply_to: bool,
    pub reply_to: u32,
    pub data: WbDownlinkData,
}

impl WbDownlink {
    pub(crate) fn from_message(envelope: &Envelope<Downlink<'_>>) -> WbDownlink {
        use WbDownlinkKind as K;
        let mut data = WbDownlinkData { deployment: 0 };
        let kind = match &envelope.body {
            Downlink::EnrollChallenge(c) => {
                data.enroll_challenge = WbEnrollChallenge { nonce: c.nonce };
                K::EnrollChallenge
            }
            Downlink::EnrollResponse(EnrollResponse::Accepted {
                device_id,
                certificate,
            }) => {
                data.enroll_accepted = WbEnrolled {
                    device_id: device_id.0,
                    certificate: certificate.as_ptr(),
                    certificate_len: certificate.len(),
                };
                K::EnrollAccepted
            }
            Downlink::EnrollResponse(EnrollResponse::Refused { reason }) => {
                data.enroll_refused = reason.code();
                K::EnrollRefused
            }
            Downlink::SessionAccept(a) => {
                data.session_accept = WbSessionAccept::from_message(a);
                K::SessionAccept
            }
            Downlink::HeartbeatAck(a) => {
                data.heartbeat_ack = WbHeartbeatAck::from_message(a);
                K::HeartbeatAck
            }
            Downlink::DeployStart(s) => {
                data.deploy_start = WbDeployStart::from_message(s);
                K::DeployStart
            }
            Downlink::DeployChunk(c) => {
                data.deploy_chunk = WbDeployChunk::from_message(c);
                K::DeployChunk
            }
            Downlink::DeployCommit(c) => {
                data.deployment = c.deployment.0;
                K::DeployCommit
            }
            Downlink::Stop(s) => {
                data.deployment = s.deployment.0;
                K::Stop
            }
            Downlink::Remove(r) => {
                data.deployment = r.deployment.0;
                K::Remove
            }
            Downlink::Error(e) => {
                data.error = WbErrorMessage::from_message(e);
                K::Error
            }
            Downlink::Goodbye(g) => {
                data.goodbye = g.reason.code();
                K::Goodbye
            }
        };
        WbDownlink {
            kind,
            id: envelope.id,
            has_reply_to: envelope.reply_to.is_some(),
            reply_to: envelope.reply_to.unwrap_or(0),
            data,
        }
    }
}

/// Decodes a frame body (as `wb_frame_find` finds it) sent by the gateway.
///
/// Chunk data and certificates in `*out` point into `body`: they are valid
/// while `body` is.
///
/// # Safety
///
/// `body` is valid for reads of `len` bytes; `out` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_decode_downlink(
    body: *const u8,
    len: usize,
    out: *mut WbDownlink,
) -> WbStatus {
    status((|| {
        if out.is_null() {
            return Err(WbStatus::NullPointer);
        }
        // SAFETY: the caller's contract for `body`.
        let envelope = codec::decode_downlink(unsafe { bytes(body, len) }?)?;
        // SAFETY: the caller's contract for `out`.
        unsafe { put(out, WbDownlink::from_message(&envelope)) }
    })())
}

/// Writes the `WB_PROOF_PAYLOAD_LEN` bytes an enrollment proof signs
/// (ECDSA P-256 with SHA-256) to `out`: the protocol's context, the
/// gateway's nonce (`WB_NONCE_LEN` bytes) and the device's public key
/// (`WB_PUBLIC_KEY_LEN` bytes).
///
/// # Safety
///
/// `nonce` and `public_key` are valid for reads of their lengths; `out`
/// for writes of `WB_PROOF_PAYLOAD_LEN` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_proof_payload(
    nonce: *const u8,
    public_key: *const u8,
    out: *mut u8,
) -> WbStatus {
    status((|| {
        // SAFETY: the caller's contract.
        let (nonce, key, out) = unsafe {
            (
                bytes(nonce, WB_NONCE_LEN)?,
                bytes(public_key, WB_PUBLIC_KEY_LEN)?,
                bytes_mut(out, WB_PROOF_PAYLOAD_LEN)?,
            )
        };
        let (Ok(nonce), Ok(key)) = (nonce.try_into(), key.try_into()) else {
            return Err(WbStatus::InvalidArgument);
        };
        out.copy_from_slice(&proof_payload(nonce, key));
        Ok(())
    })())
}
